package gormmutex

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// DefaultTTL is the TTL that DefaultConfig sets, the same 30 minutes as
// django-db-mutex's DB_MUTEX_TTL_SECONDS. Set Config.TTL to change it, or to
// nil for locks that never expire.
const DefaultTTL = 30 * time.Minute

// Config says how a Locker takes locks. The zero Config is valid, but its
// locks never expire (TTL nil), so a holder that crashes keeps its lock
// until an operator force-releases it: most callers start from
// DefaultConfig and change what they need. A Config is a plain value meant to sit inside an
// application's own configuration; it decodes from JSON and YAML with
// durations written as strings ("30m", "1.5s") and a TTL of null meaning
// "never expires".
type Config struct {
	// TTL is how long a lock lives after it is acquired (or last refreshed)
	// before others may take it over; nil means the lock never expires.
	// The expiry is fixed, on the database's clock, when the lock is taken:
	// a later competitor's TTL does not change it. DefaultConfig sets
	// DefaultTTL.
	TTL *time.Duration `json:"ttl" yaml:"ttl"`

	// Wait is how long Acquire and Do keep trying while the lock is held.
	// 0, the default, fails at once with ErrLocked. Above 0, they retry with
	// capped, jittered exponential backoff until the lock is free, Wait has
	// passed (ErrLocked) or the context ends (the context's error). On
	// PostgreSQL a waiter is also woken by the holder's release: it marks
	// the held lock's row, and a release notifies only while such a mark is
	// fresh.
	Wait time.Duration `json:"wait" yaml:"wait"`

	// SuppressAcquisitionErrors makes Do return nil without running fn when
	// the lock is held (after Wait), logging the skip at Info level through
	// Logger, like django-db-mutex's suppress_acquisition_exceptions. Other
	// errors are still returned.
	SuppressAcquisitionErrors bool `json:"suppress_acquisition_errors" yaml:"suppress_acquisition_errors"`

	// KeepAlive makes Locker.Do renew the lease while fn runs, about every
	// TTL/3, so the lock does not expire while its holder is alive and can
	// reach the database; TTL then only bounds how long a crashed holder
	// blocks others. (Acquire does not renew: call Lock.Refresh.) If a renewal finds the lock lost, or cannot reach the database
	// before the lease runs out, fn's context is cancelled with cause
	// ErrTimeout. KeepAlive needs a TTL.
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
	// ErrInvalidConfig. Default false.
	AsyncCommit bool `json:"async_commit" yaml:"async_commit"`

	// Holder is stored in the lock's row to say who holds it, at most 255
	// bytes. Empty means "hostname:pid".
	Holder string `json:"holder" yaml:"holder"`

	// Logger receives the log lines of SuppressAcquisitionErrors and of
	// background work (purges, keep-alive retries). Nil means
	// slog.Default().
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// DefaultConfig returns the configuration that the package-level Do uses:
// TTL DefaultTTL, Wait 0 (fail fast), everything else off.
func DefaultConfig() Config {
	ttl := DefaultTTL
	return Config{TTL: &ttl}
}

// Duration returns a pointer to d, for setting Config.TTL in one expression:
// Config{TTL: gormmutex.Duration(time.Minute)}.
func Duration(d time.Duration) *time.Duration { return &d }

func (c Config) validate() error {
	switch {
	case c.TTL != nil && *c.TTL <= 0:
		return fmt.Errorf("%w: TTL %v is not positive (use nil for never)", ErrInvalidConfig, *c.TTL)
	case c.Wait < 0:
		return fmt.Errorf("%w: negative Wait %v", ErrInvalidConfig, c.Wait)
	case c.MinHold < 0:
		return fmt.Errorf("%w: negative MinHold %v", ErrInvalidConfig, c.MinHold)
	case c.KeepAlive && c.TTL == nil:
		return fmt.Errorf("%w: KeepAlive needs a TTL", ErrInvalidConfig)
	case len(c.Holder) > MaxLockIDLen || !validText(c.Holder):
		return fmt.Errorf("%w: Holder must be at most %d bytes of UTF-8 without NUL", ErrInvalidConfig, MaxLockIDLen)
	}
	return nil
}

// UnmarshalJSON reads a Config written as JSON. Durations are strings such
// as "30m" (or numbers of nanoseconds); "ttl": null means the lock never
// expires. Keys that are absent keep the Config's current values, so
// decoding into DefaultConfig() keeps its defaults.
func (c *Config) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	return c.apply(m)
}

// UnmarshalYAML reads a Config written as YAML, with the same rules as
// UnmarshalJSON. It has the signature that gopkg.in/yaml.v2, yaml.v3 and
// goccy/go-yaml call, so gormmutex needs no YAML library of its own.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		return err
	}
	return c.apply(m)
}

// apply sets the fields whose keys m holds. A map, not a struct, because
// only a map tells "ttl: null" (never expires) from a missing ttl (keep).
// c is changed only if every value is valid.
func (c *Config) apply(m map[string]any) error {
	out := *c
	for key, v := range m {
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
		case "holder":
			s, ok := v.(string)
			if !ok {
				err = fmt.Errorf("want a string, got %v", v)
			}
			out.Holder = s
		}
		if err != nil {
			return fmt.Errorf("gormmutex: config key %q: %w", key, err)
		}
	}
	*c = out
	return nil
}

func parseDuration(v any) (time.Duration, error) {
	switch v := v.(type) {
	case string:
		return time.ParseDuration(v)
	case float64:
		return time.Duration(v), nil
	case int:
		return time.Duration(v), nil
	case int64:
		return time.Duration(v), nil
	case uint64:
		return time.Duration(v), nil
	}
	return 0, fmt.Errorf("want a duration such as \"30m\", got %v", v)
}

func parseBool(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("want true or false, got %v", v)
	}
	return b, nil
}

// MarshalJSON writes the Config the way UnmarshalJSON reads it, with
// durations as strings.
func (c Config) MarshalJSON() ([]byte, error) {
	var ttl *string
	if c.TTL != nil {
		s := c.TTL.String()
		ttl = &s
	}
	return json.Marshal(struct {
		TTL                       *string `json:"ttl"`
		Wait                      string  `json:"wait"`
		SuppressAcquisitionErrors bool    `json:"suppress_acquisition_errors"`
		KeepAlive                 bool    `json:"keep_alive"`
		MinHold                   string  `json:"min_hold"`
		AsyncCommit               bool    `json:"async_commit,omitempty"`
		Holder                    string  `json:"holder,omitempty"`
	}{ttl, c.Wait.String(), c.SuppressAcquisitionErrors, c.KeepAlive, c.MinHold.String(), c.AsyncCommit, c.Holder})
}
