package gormmutex

import (
	"encoding/json"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"log/slog"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MinTTL is the shortest TTL that [Config.Validate] accepts. A lease
// shorter than a few round trips to the database lapses before its holder
// has learnt that it holds it, so it never protects anything; a smaller
// TTL is almost always a unit mistake (30 nanoseconds for 30 seconds).
const MinTTL = 10 * time.Millisecond

// Config says how a [Locker] takes locks. The zero Config is valid, but its
// locks never expire (TTL nil), so a holder that crashes keeps its lock
// until an operator force-releases it: most callers start from
// [DefaultConfig] and change what they need.
//
// A Go literal Config{} has TTL nil and never expires, while a Config
// decoded from JSON or YAML without a ttl key gets [DefaultTTL] (30
// minutes), and only an explicit "ttl: null" decodes to never.
//
// A Config is a plain value meant to sit inside an application's own
// configuration. It decodes from JSON and YAML with durations written as
// strings with a unit ("30m", "1800s", "1.5s"). Decoding rejects a bare
// number (30 would be 30 nanoseconds), an unknown key (suggesting the key
// it is nearest to), and a result that fails [Config.Validate], with an
// error that says where (the YAML line, or the JSON block), so that a
// service with a wrong lock configuration fails at start-up rather than at
// its first lock. A block that is absent from the file, or empty ("lock:"
// with nothing under it, which YAML reads as null), is not decoded at all
// and leaves the Config as it was: start from [DefaultConfig] if that must
// expire.
type Config struct {
	// TTL is how long a lock lives after it is acquired (or last refreshed)
	// before others may take it over; nil means the lock never expires.
	// The expiry is fixed, on the database's clock, when the lock is taken:
	// a later competitor's TTL does not change it. [DefaultConfig] sets
	// [DefaultTTL]; at least [MinTTL].
	TTL *time.Duration `json:"ttl" yaml:"ttl"`

	// Wait is how long Acquire and Do keep trying while the lock is held.
	// 0, the default, fails at once with [ErrLocked]. Above 0, they retry
	// with capped, jittered exponential backoff until the lock is free, Wait
	// has passed ([ErrLocked]) or the context ends (the context's error).
	// Where the database can notify (PostgreSQL), a waiter is also woken by
	// the holder's release.
	Wait time.Duration `json:"wait" yaml:"wait"`

	// SuppressAcquisitionErrors makes Do return nil without running fn when
	// the lock is held (after Wait), logging the skip at Info level through
	// Logger, like django-db-mutex's suppress_acquisition_exceptions. Other
	// errors are still returned.
	SuppressAcquisitionErrors bool `json:"suppress_acquisition_errors" yaml:"suppress_acquisition_errors"`

	// KeepAlive makes [Locker.Do] renew the lease while fn runs, about every
	// TTL/3, so the lock does not expire while its holder is alive and can
	// reach the database; TTL then only bounds how long a crashed holder
	// blocks others. If a renewal finds the lock lost, or cannot reach the
	// database before the lease runs out, fn's context is cancelled with
	// cause [ErrTimeout]. Callers of [Locker.Acquire] get the same with
	// [Lock.KeepAlive]. KeepAlive needs a TTL.
	KeepAlive bool `json:"keep_alive" yaml:"keep_alive"`

	// MinHold keeps a lock unavailable to others until at least MinHold
	// after it was acquired, even when its holder releases it earlier, so a
	// short scheduled job does not run twice on nodes whose schedules drift
	// apart (ShedLock's lockAtLeastFor). Release still returns at once.
	// 0, the default, frees the lock on release.
	MinHold time.Duration `json:"min_hold" yaml:"min_hold"`

	// AsyncCommit is PostgreSQL's fast mode: the acquiring statement commits
	// without waiting for the write-ahead log to reach the disk
	// (synchronous_commit = off for that statement alone), which roughly
	// halves its cost on a disk that honours fsync. The price: if the
	// database server crashes (not a clean shutdown), locks acquired in the
	// last few hundred milliseconds before the crash may be forgotten, so a
	// second holder can start while the first still runs, and a fencing
	// token may be handed out again. A crash of the application, or a
	// restart of the server, loses nothing. Other databases refuse it with
	// [ErrInvalidConfig]. Default false.
	AsyncCommit bool `json:"async_commit" yaml:"async_commit"`

	// TransactionPooling says that the connections go through a pooler in
	// transaction mode (PgBouncer with pool_mode=transaction, Supavisor's
	// transaction port, RDS Proxy), where a server connection serves
	// another client after every transaction. On PostgreSQL, waiters then
	// poll instead of LISTENing for releases: a LISTEN would stay on
	// whichever server connection ran it, for other clients to receive.
	// Nothing else changes: every lock statement is a transaction of its
	// own. Default false. See docs/deploying.md for the DSN
	// settings such a pooler needs.
	TransactionPooling bool `json:"transaction_pooling" yaml:"transaction_pooling"`

	// Fair serves the waiters of a lock in the order they started waiting
	// (first in, first out), across processes and machines: a waiter whose
	// first attempt finds the lock held takes a numbered place in a queue
	// kept in the lock table, and an acquire takes the lock only when no
	// live place of an earlier waiter is ahead of it (a newcomer yields to
	// every waiter). A waiter that gives up or is cancelled leaves the
	// queue at once; one that crashes or is paused loses its place within
	// two seconds, so it holds up the ones behind it for at most that
	// long. An uncontended acquire, and an attempt with Wait 0, cost what
	// they cost without Fair; waiting costs more statements (a place to
	// keep, renew and read), and a handoff is slower, since the next
	// waiter in line must notice that the lock is free: on MySQL and
	// SQLite, where nothing notifies, by polling. Every process that
	// waits for a lock must set Fair for its order to hold: an unfair
	// acquire does not look at the queue. [Locker.Semaphore] and
	// [NewElection] refuse it. See docs/locks-and-configuration.md.
	// Default false.
	Fair bool `json:"fair" yaml:"fair"`

	// Holder says who holds the lock, in the lock's row, at most 200 bytes.
	// Empty means "hostname:pid"; a Holder that is set is stored as
	// "Holder (hostname:pid)", so that the host and process of a lock stay
	// visible to operators whatever the application calls itself.
	Holder string `json:"holder" yaml:"holder"`

	// Table is the name of the lock table. Empty, the default, is
	// [TableName] as the *gorm.DB's NamingStrategy names tables: with its
	// TablePrefix before it ("app_db_mutexes"), but never pluralized or
	// singularized. A name that is set is used as it is: ASCII letters,
	// digits and underscores, not starting with a digit, at most 64 bytes
	// (63 on PostgreSQL), and on PostgreSQL optionally schema-qualified
	// ("locks.db_mutexes"). Lockers on different tables do not see each
	// other's locks, even in one database. [Locker.AutoMigrate] creates
	// the table; every process that shares a lock must name the same
	// table. An application whose NamingStrategy has a TablePrefix and
	// whose locks are in the table of earlier versions, which ignored the
	// prefix, keeps that table with Table set to [TableName]
	// ("db_mutexes").
	Table string `json:"table" yaml:"table"`

	// Logger receives the log lines of SuppressAcquisitionErrors and of
	// background work (purges, keep-alive retries). Nil means
	// slog.Default().
	Logger *slog.Logger `json:"-" yaml:"-"`

	// Observer receives the Locker's events (acquires, Do, releases,
	// renewals, lost leases, takeovers, purges) for metrics and traces; see
	// [observe.Observer]. Nil, the default, reports nothing and costs nothing.
	// Like Logger, it is not part of the JSON or YAML form: decoding leaves
	// it as it was.
	Observer observe.Observer `json:"-" yaml:"-"`
}

// DefaultConfig returns the configuration that the package-level [Do]
// uses: TTL [DefaultTTL], Wait 0 (fail fast), everything else off.
func DefaultConfig() Config {
	ttl := DefaultTTL
	return Config{TTL: &ttl}
}

// maxHolderLen is the longest Config.Holder: with " (hostname:pid)" after
// it, the stored holder still fits its 255-byte column (where it does not,
// the host part is shortened).
const maxHolderLen = 200

// Validate reports whether c can work, with an error matching
// [ErrInvalidConfig] that names the field: a TTL below [MinTTL], a negative
// Wait or MinHold, KeepAlive without a TTL, a Holder that does not fit, or
// a Table that is not a name.
// [New] and the JSON and YAML decoders call it; call it yourself to check a
// Config built in code at start-up. Whether the database supports
// AsyncCommit, and a Table's limits on it, are checked by New, which knows
// the database.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate is Validate, and says which key the error is about.
func (c Config) validate() (key string, err error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.TTL != nil && *c.TTL <= 0:
		return "ttl", invalid("TTL (ttl) %v is not positive; use nil (null) for locks that never expire", *c.TTL)
	case c.TTL != nil && *c.TTL < MinTTL:
		return "ttl", invalid("TTL (ttl) %v is below the minimum %v: a lease shorter than a few round trips "+
			"to the database lapses before its holder can use it (was a unit forgotten?)", *c.TTL, MinTTL)
	case c.Wait < 0:
		return "wait", invalid("Wait (wait) %v is negative", c.Wait)
	case c.MinHold < 0:
		return "min_hold", invalid("MinHold (min_hold) %v is negative", c.MinHold)
	case c.KeepAlive && c.TTL == nil:
		return "keep_alive", invalid("KeepAlive (keep_alive) needs a TTL: a lock that never expires has no lease to renew")
	case len(c.Holder) > maxHolderLen || !validText(c.Holder):
		return "holder", invalid("Holder (holder) must be at most %d bytes of UTF-8 without NUL", maxHolderLen)
	case c.Table != "":
		if err := validTable(c.Table); err != nil {
			return "table", invalid("Table (table) %q: %v", c.Table, err)
		}
	}
	return "", nil
}

// configKeys are the keys that UnmarshalJSON and UnmarshalYAML accept.
var configKeys = []string{"ttl", "wait", "keep_alive", "min_hold", "suppress_acquisition_errors", "async_commit",
	"transaction_pooling", "holder", "table", "fair"}

// UnmarshalJSON reads a Config written as JSON. Durations are strings with
// a unit, such as "30m" or "1800s". A "ttl" key that is absent gives
// [DefaultTTL] where the Config has no TTL yet (so a block without "ttl"
// decoded into a zero Config expires after 30 minutes), and only
// "ttl": null means the lock never expires. Other keys that are absent
// keep the Config's current values. A bare number, an unknown key or a
// result that fails [Config.Validate] is an error that matches
// [ErrInvalidConfig] and quotes the block it is in, and leaves c
// unchanged.
func (c *Config) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%w: a lock configuration is an object of the keys %s: %s",
			ErrInvalidConfig, strings.Join(configKeys, ", "), oneLine(err.Error()))
	}
	block := jsonBlock(b)
	return c.apply(m, func(string) location { return location{block: block} })
}

// UnmarshalYAML reads a Config written as YAML, with the same rules as
// [Config.UnmarshalJSON]; its errors name the line of the bad key (with
// gopkg.in/yaml.v2 and yaml.v3). It has the signature that gopkg.in/yaml.v2,
// yaml.v3 and goccy/go-yaml call, so gormmutex needs no YAML library of its
// own.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		return fmt.Errorf("%w: a lock configuration is a mapping of the keys %s: %s",
			ErrInvalidConfig, strings.Join(configKeys, ", "), oneLine(err.Error()))
	}
	return c.apply(m, func(key string) location { return location{line: yamlLine(unmarshal, key)} })
}

// location says where a key of a decoded block is, for its errors: the
// YAML line, or for JSON the block itself (a JSON unmarshaler is not told
// where its block is).
type location struct {
	line  int    // the line of the key's value, or 0
	block string // the block, shortened, or ""
}

// prefix and suffix put the location around an error's subject:
// `line 8: config key "ttl"` (YAML) or `config key "ttl" in {"ttl": 1}`
// (JSON).
func (l location) prefix() string {
	if l.line > 0 {
		return fmt.Sprintf("line %d: ", l.line)
	}
	return ""
}

func (l location) suffix() string {
	if l.line <= 0 && l.block != "" {
		return " in " + l.block
	}
	return ""
}

// wrap adds the location to err, an error of Validate about key.
func (l location) wrap(err error) error {
	switch {
	case l.line > 0:
		return &locatedError{err: err, prefix: l.prefix()}
	case l.block != "":
		return &locatedError{err: err, suffix: " (" + strings.TrimPrefix(l.suffix(), " ") + ")"}
	}
	return err
}

// apply sets the fields whose keys m holds. A map, not a struct, because
// only a map tells "ttl: null" (never expires) from a missing ttl (the
// default), and because a decoder's own strict mode does not reach into an
// unmarshaler. where tells where a key is, for the errors. c is changed
// only if every key and value is valid.
func (c *Config) apply(m map[string]any, where func(key string) location) error {
	out := *c
	if _, ok := m["ttl"]; !ok && out.TTL == nil {
		ttl := DefaultTTL
		out.TTL = &ttl
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // report the same error for the same input
	for _, key := range keys {
		v := m[key]
		var err error
		switch key {
		case "ttl":
			if v == nil {
				out.TTL = nil
				continue
			}
			var d time.Duration
			d, err = parseDuration(key, v)
			out.TTL = &d
		case "wait":
			out.Wait, err = parseDuration(key, v)
		case "min_hold":
			out.MinHold, err = parseDuration(key, v)
		case "suppress_acquisition_errors":
			out.SuppressAcquisitionErrors, err = parseBool(v)
		case "keep_alive":
			out.KeepAlive, err = parseBool(v)
		case "async_commit":
			out.AsyncCommit, err = parseBool(v)
		case "transaction_pooling":
			out.TransactionPooling, err = parseBool(v)
		case "fair":
			out.Fair, err = parseBool(v)
		case "holder":
			s, ok := v.(string)
			if !ok {
				err = fmt.Errorf("want a string, got %v", v)
			}
			out.Holder = s
		case "table":
			s, ok := v.(string)
			if !ok {
				err = fmt.Errorf("want a string, got %v", v)
			}
			out.Table = s
		default:
			loc := where(key)
			msg := fmt.Sprintf("%sunknown config key %q", loc.prefix(), key)
			if near := nearestKey(key); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			msg += loc.suffix()
			return fmt.Errorf("%w: %s; the keys are %s", ErrInvalidConfig, msg, strings.Join(configKeys, ", "))
		}
		if err != nil {
			loc := where(key)
			return fmt.Errorf("%w: %sconfig key %q%s: %w", ErrInvalidConfig, loc.prefix(), key, loc.suffix(), err)
		}
	}
	if key, err := out.validate(); err != nil {
		if _, ok := m[key]; ok {
			return where(key).wrap(err)
		}
		return err
	}
	*c = out
	return nil
}

// nearestKey returns the known key that key is most likely a misspelling
// of, or "": one with the same letters ("keepAlive", "keep-alive" and
// "keepalive" are "keep_alive"), or else the nearest by edit distance
// (letters inserted, deleted, changed or swapped), if that is at most a
// third of key's length (at least 1: "tll" is "ttl").
func nearestKey(key string) string {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || r == ' ' {
				return -1
			}
			return r
		}, strings.ToLower(s))
	}
	nk := norm(key)
	best, bestDist := "", max(1, len([]rune(nk))/3)+1
	for _, k := range configKeys {
		if d := editDistance(nk, norm(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// the fewest letters inserted, deleted, changed, or swapped with their
// neighbour, that turn a into b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// durationAdvice is, for each duration key, what to write and what 0 or
// null means there; %s is the number that was written.
var durationAdvice = map[string]string{
	"ttl": `write a duration such as "%ss" or "30m" ("1800s" for django-db-mutex's 1800), ` +
		`or null for a TTL that never expires`,
	"wait": `write a duration such as "%ss" or "500ms" for how long to keep trying while the lock is held, ` +
		`or 0 to fail at once`,
	"min_hold": `write a duration such as "%ss" or "1m" for how long a lock stays taken after it is acquired, ` +
		`or 0 to free it on release`,
}

// parseDuration reads the duration of key, written as a string with a
// unit. A bare number is refused, except 0, which means the same in every
// unit: a number read as nanoseconds is how "ttl: 30" used to turn a lock
// off. The advice in the errors fits key.
func parseDuration(key string, v any) (time.Duration, error) {
	var n float64
	switch v := v.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			example := `"30s", "30m" or "1800s"`
			if key != "ttl" {
				example = `"10s" or "500ms"`
			}
			if f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64); ferr == nil && f > 0 {
				example = fmt.Sprintf("%q", strings.TrimSpace(v)+"s")
				if key == "ttl" {
					example += ` or "30m"`
				}
			}
			return 0, fmt.Errorf("%q is not a duration; write it with a unit, such as %s", v, example)
		}
		return d, nil
	case float64:
		n = v
	case int:
		n = float64(v)
	case int64:
		n = float64(v)
	case uint64:
		n = float64(v)
	default:
		return 0, fmt.Errorf("want a duration such as \"30s\" or \"500ms\", got %v", v)
	}
	if n == 0 {
		return 0, nil
	}
	unitless := fmt.Sprint(v)
	if !math.IsInf(n, 0) && !math.IsNaN(n) && n == math.Trunc(n) && math.Abs(n) < 1e15 {
		unitless = fmt.Sprintf("%.0f", n)
	}
	return 0, fmt.Errorf("a bare number (%s) has no unit; "+durationAdvice[key], unitless, unitless)
}

func parseBool(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("want true or false, got %v", v)
	}
	return b, nil
}

// yamlLineProbe is a type that no YAML value decodes into, so that the
// YAML library's own error, which has the line, tells where a key's value
// is.
type yamlLineProbe chan struct{}

var yamlLineRE = regexp.MustCompile(`\bline (\d+)\b|\[(\d+):\d+\]`)

// yamlLine returns the line of key's value in the block that unmarshal
// decodes, or 0 where the library does not say (a null value, a YAML
// library whose errors carry no line). It decodes the block into a struct
// whose only field, named key, is a yamlLineProbe, and reads the line from
// the error: a YAML unmarshaler is not given its node, and gormmutex does
// not import a YAML library to name the node's type.
func yamlLine(unmarshal func(any) error, key string) int {
	if !validText(key) || strings.ContainsAny(key, ",\"`") {
		return 0
	}
	typ, ok := probeType(key)
	if !ok {
		return 0
	}
	err := unmarshal(reflect.New(typ).Interface())
	if err == nil {
		return 0
	}
	for _, msg := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(msg, "yamlLineProbe") {
			continue
		}
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1] + m[2])
			return n
		}
	}
	return 0
}

// probeType returns struct { V yamlLineProbe `yaml:"key"` }.
func probeType(key string) (t reflect.Type, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return reflect.StructOf([]reflect.StructField{{
		Name: "V",
		Type: reflect.TypeFor[yamlLineProbe](),
		Tag:  reflect.StructTag(`yaml:` + strconv.Quote(key)),
	}}), true
}

// jsonBlock is a JSON block as an error quotes it: on one line, with runs
// of white space made one space, shortened to about 80 bytes.
func jsonBlock(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		cut := 77
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// oneLine joins the lines of a message (yaml.v3 puts each error on a line
// of its own) with "; ", or a space after a line that ends in a colon.
func oneLine(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(l)
	}
	return b.String()
}

// encoded is a Config as JSON and YAML write it, durations as strings.
type encoded struct {
	TTL                       *string `json:"ttl" yaml:"ttl"`
	Wait                      string  `json:"wait" yaml:"wait"`
	SuppressAcquisitionErrors bool    `json:"suppress_acquisition_errors" yaml:"suppress_acquisition_errors"`
	KeepAlive                 bool    `json:"keep_alive" yaml:"keep_alive"`
	MinHold                   string  `json:"min_hold" yaml:"min_hold"`
	AsyncCommit               bool    `json:"async_commit,omitempty" yaml:"async_commit,omitempty"`
	TransactionPooling        bool    `json:"transaction_pooling,omitempty" yaml:"transaction_pooling,omitempty"`
	Holder                    string  `json:"holder,omitempty" yaml:"holder,omitempty"`
	Table                     string  `json:"table,omitempty" yaml:"table,omitempty"`
	Fair                      bool    `json:"fair,omitempty" yaml:"fair,omitempty"`
}

func (c Config) encode() encoded {
	var ttl *string
	if c.TTL != nil {
		s := c.TTL.String()
		ttl = &s
	}
	return encoded{ttl, c.Wait.String(), c.SuppressAcquisitionErrors, c.KeepAlive, c.MinHold.String(), c.AsyncCommit, c.TransactionPooling, c.Holder, c.Table, c.Fair}
}

// MarshalJSON writes the Config the way [Config.UnmarshalJSON] reads it,
// with durations as strings.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.encode()) }

// MarshalYAML writes the Config the way [Config.UnmarshalYAML] reads it,
// with durations as strings, for the YAML libraries that call it.
func (c Config) MarshalYAML() (any, error) { return c.encode(), nil }
