package gormmutex

import (
	"encoding/json"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"
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
// A Config is a plain value meant to sit inside an application's own
// configuration. It decodes from JSON and YAML with durations written as
// strings with a unit ("30m", "1800s", "1.5s") and a TTL of null meaning
// "never expires". Decoding rejects a bare number (30 would be 30
// nanoseconds), an unknown key, and a result that fails [Config.Validate],
// so that a service with a wrong lock configuration fails at start-up
// rather than at its first lock.
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

	// Holder says who holds the lock, in the lock's row, at most 200 bytes.
	// Empty means "hostname:pid"; a Holder that is set is stored as
	// "Holder (hostname:pid)", so that the host and process of a lock stay
	// visible to operators whatever the application calls itself.
	Holder string `json:"holder" yaml:"holder"`

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
// Wait or MinHold, KeepAlive without a TTL, or a Holder that does not fit.
// [New] and the JSON and YAML decoders call it; call it yourself to check a
// Config built in code at start-up. Whether the database supports
// AsyncCommit is checked by New, which knows the database.
func (c Config) Validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case c.TTL != nil && *c.TTL <= 0:
		return invalid("TTL (ttl) %v is not positive; use nil (null) for locks that never expire", *c.TTL)
	case c.TTL != nil && *c.TTL < MinTTL:
		return invalid("TTL (ttl) %v is below the minimum %v: a lease shorter than a few round trips "+
			"to the database lapses before its holder can use it (was a unit forgotten?)", *c.TTL, MinTTL)
	case c.Wait < 0:
		return invalid("Wait (wait) %v is negative", c.Wait)
	case c.MinHold < 0:
		return invalid("MinHold (min_hold) %v is negative", c.MinHold)
	case c.KeepAlive && c.TTL == nil:
		return invalid("KeepAlive (keep_alive) needs a TTL: a lock that never expires has no lease to renew")
	case len(c.Holder) > maxHolderLen || !validText(c.Holder):
		return invalid("Holder (holder) must be at most %d bytes of UTF-8 without NUL", maxHolderLen)
	}
	return nil
}

// configKeys are the keys that UnmarshalJSON and UnmarshalYAML accept.
var configKeys = []string{"ttl", "wait", "keep_alive", "min_hold", "suppress_acquisition_errors", "async_commit",
	"transaction_pooling", "holder"}

// UnmarshalJSON reads a Config written as JSON. Durations are strings with
// a unit, such as "30m" or "1800s"; "ttl": null means the lock never
// expires. Keys that are absent keep the Config's current values, so
// decoding into [DefaultConfig]() keeps its defaults. A bare number, an
// unknown key or a result that fails [Config.Validate] is an error, and
// leaves c unchanged.
func (c *Config) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("gormmutex: config: %w", err)
	}
	return c.apply(m)
}

// UnmarshalYAML reads a Config written as YAML, with the same rules as
// [Config.UnmarshalJSON]. It has the signature that gopkg.in/yaml.v2,
// yaml.v3 and goccy/go-yaml call, so gormmutex needs no YAML library of its
// own.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		return fmt.Errorf("gormmutex: config: %w", err)
	}
	return c.apply(m)
}

// apply sets the fields whose keys m holds. A map, not a struct, because
// only a map tells "ttl: null" (never expires) from a missing ttl (keep),
// and because a decoder's own strict mode does not reach into an
// unmarshaler. c is changed only if every key and value is valid.
func (c *Config) apply(m map[string]any) error {
	out := *c
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
			d, err = parseDuration(v)
			out.TTL = &d
		case "wait":
			out.Wait, err = parseDuration(v)
		case "min_hold":
			out.MinHold, err = parseDuration(v)
		case "suppress_acquisition_errors":
			out.SuppressAcquisitionErrors, err = parseBool(v)
		case "keep_alive":
			out.KeepAlive, err = parseBool(v)
		case "async_commit":
			out.AsyncCommit, err = parseBool(v)
		case "transaction_pooling":
			out.TransactionPooling, err = parseBool(v)
		case "holder":
			s, ok := v.(string)
			if !ok {
				err = fmt.Errorf("want a string, got %v", v)
			}
			out.Holder = s
		default:
			msg := fmt.Sprintf("gormmutex: unknown config key %q", key)
			if near := nearestKey(key); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			return fmt.Errorf("%w: %s; the keys are %s", ErrInvalidConfig, msg, strings.Join(configKeys, ", "))
		}
		if err != nil {
			return fmt.Errorf("%w: config key %q: %w", ErrInvalidConfig, key, err)
		}
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*c = out
	return nil
}

// nearestKey returns the known key that key is a misspelling of, judged by
// letters alone ("keepAlive", "keep-alive", "keepalive" are "keep_alive"),
// or "".
func nearestKey(key string) string {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' || r == ' ' {
				return -1
			}
			return r
		}, strings.ToLower(s))
	}
	for _, k := range configKeys {
		if norm(k) == norm(key) {
			return k
		}
	}
	return ""
}

// parseDuration reads a duration written as a string with a unit. A bare
// number is refused, except 0, which means the same in every unit: a
// number read as nanoseconds is how "ttl: 30" used to turn a lock off.
func parseDuration(v any) (time.Duration, error) {
	var n float64
	switch v := v.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration; write it with a unit, such as \"30s\", \"30m\" or \"1800s\"", v)
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
		return 0, fmt.Errorf("want a duration such as \"30m\" or \"1800s\", got %v", v)
	}
	if n == 0 {
		return 0, nil
	}
	unitless := fmt.Sprint(v)
	if !math.IsInf(n, 0) && !math.IsNaN(n) && n == math.Trunc(n) && math.Abs(n) < 1e15 {
		unitless = fmt.Sprintf("%.0f", n)
	}
	return 0, fmt.Errorf("a bare number (%s) has no unit; write a duration such as \"%ss\" or \"30m\" (\"1800s\" for django-db-mutex's 1800), or null for a TTL that never expires",
		unitless, unitless)
}

func parseBool(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("want true or false, got %v", v)
	}
	return b, nil
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
}

func (c Config) encode() encoded {
	var ttl *string
	if c.TTL != nil {
		s := c.TTL.String()
		ttl = &s
	}
	return encoded{ttl, c.Wait.String(), c.SuppressAcquisitionErrors, c.KeepAlive, c.MinHold.String(), c.AsyncCommit, c.TransactionPooling, c.Holder}
}

// MarshalJSON writes the Config the way [Config.UnmarshalJSON] reads it,
// with durations as strings.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.encode()) }

// MarshalYAML writes the Config the way [Config.UnmarshalYAML] reads it,
// with durations as strings, for the YAML libraries that call it.
func (c Config) MarshalYAML() (any, error) { return c.encode(), nil }
