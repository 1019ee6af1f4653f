package gormmutex_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gormmutex/gormmutex"
)

// service is how an application embeds Config in its own settings.
type service struct {
	Name string           `json:"name" yaml:"name"`
	Lock gormmutex.Config `json:"lock" yaml:"lock"`
}

// decoders are the ways applications read their configuration: plain and
// strict, JSON and YAML.
var decoders = []struct {
	name   string
	yaml   bool
	decode func(in string, v any) error
}{
	{"json", false, func(in string, v any) error { return json.Unmarshal([]byte(in), v) }},
	{"json-strict", false, func(in string, v any) error {
		d := json.NewDecoder(bytes.NewReader([]byte(in)))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}},
	{"yaml", true, func(in string, v any) error { return yaml.Unmarshal([]byte(in), v) }},
	{"yaml-strict", true, func(in string, v any) error {
		d := yaml.NewDecoder(bytes.NewReader([]byte(in)))
		d.KnownFields(true)
		return d.Decode(v)
	}},
}

// TestConfigRejects: each of these decoded without error before, and
// turned the lock off (a TTL of nanoseconds) or failed only at the first
// lock. Now decoding fails with an error that names the key, matches
// ErrInvalidConfig, says what would be accepted, and leaves the Config as
// it was.
func TestConfigRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		json, yaml string
		// want are fragments the message must hold.
		want []string
	}{
		{"bare ttl", `{"ttl": 30}`, "ttl: 30", []string{`"ttl"`, "bare number", `"30s"`, `"1800s"`, "null"}},
		{"django seconds", `{"ttl": 1800}`, "ttl: 1800", []string{`"ttl"`, "bare number (1800)", `"1800s"`}},
		{"bare wait", `{"ttl": "30m", "wait": 5}`, "ttl: 30m\nwait: 5", []string{`"wait"`, "bare number (5)", `"5s"`}},
		{"bare min_hold", `{"min_hold": 2.5}`, "min_hold: 2.5", []string{`"min_hold"`, "bare number"}},
		{"unitless string", `{"ttl": "30"}`, `ttl: "30"`, []string{`"ttl"`, "unit", `"30m"`}},
		{"zero ttl", `{"ttl": "0s"}`, "ttl: 0s", []string{"TTL (ttl) 0s is not positive", "null"}},
		{"bare zero ttl", `{"ttl": 0}`, "ttl: 0", []string{"TTL (ttl) 0s is not positive"}},
		{"negative ttl", `{"ttl": "-1s"}`, "ttl: -1s", []string{"TTL (ttl) -1s is not positive"}},
		{"nanosecond ttl", `{"ttl": "30ns"}`, "ttl: 30ns", []string{"TTL (ttl) 30ns is below the minimum 10ms"}},
		{"negative wait", `{"wait": "-5s"}`, "wait: -5s", []string{"Wait (wait) -5s is negative"}},
		{"keep_alive without ttl", `{"ttl": null, "keep_alive": true}`, "ttl: null\nkeep_alive: true", []string{"KeepAlive (keep_alive) needs a TTL"}},
		{"misspelled key", `{"keepalive": true}`, "keepalive: true", []string{`unknown config key "keepalive"`, `did you mean "keep_alive"?`}},
		{"camel case key", `{"minHold": "1s"}`, "minHold: 1s", []string{`unknown config key "minHold"`, `did you mean "min_hold"?`}},
		{"unknown key", `{"retries": 3}`, "retries: 3", []string{`unknown config key "retries"`, "ttl, wait, keep_alive"}},
		{"wrong type", `{"keep_alive": "yes"}`, "keep_alive: [1]", []string{`"keep_alive"`, "true or false"}},
	}
	for _, d := range decoders {
		for _, c := range cases {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				in := `{"name": "svc", "lock": ` + c.json + `}`
				if d.yaml {
					in = "name: svc\nlock:\n  " + indent(c.yaml) + "\n"
				}
				got := service{Lock: gormmutex.DefaultConfig()}
				err := d.decode(in, &got)
				require.Error(t, err, "decoding %q", in)
				require.ErrorIs(t, err, gormmutex.ErrInvalidConfig)
				for _, frag := range c.want {
					assert.Contains(t, err.Error(), frag)
				}
				assert.NotContains(t, err.Error(), "\n", "the message is one line")
				assert.Equal(t, gormmutex.DefaultConfig(), got.Lock, "a failed decode leaves the Config as it was")
			})
		}
	}
}

// indent puts a YAML mapping's later lines under the first.
func indent(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte("\n  ")))
}

// TestConfigAccepts: the accepted forms, on every decoder.
func TestConfigAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		json, yaml string
		want       gormmutex.Config
	}{
		{`{"ttl": "30m", "wait": "5s"}`, "ttl: 30m\nwait: 5s", gormmutex.Config{TTL: gormmutex.Duration(30 * time.Minute), Wait: 5 * time.Second}},
		{`{"ttl": "1800s"}`, "ttl: 1800s", gormmutex.Config{TTL: gormmutex.Duration(30 * time.Minute)}},
		{`{"ttl": null}`, "ttl: null", gormmutex.Config{}},
		{`{"ttl": "10ms", "wait": 0, "min_hold": 0}`, "ttl: 10ms\nwait: 0\nmin_hold: 0", gormmutex.Config{TTL: gormmutex.Duration(gormmutex.MinTTL)}},
		{`{"keep_alive": true, "holder": "replica-2"}`, "keep_alive: true\nholder: replica-2",
			gormmutex.Config{TTL: gormmutex.Duration(gormmutex.DefaultTTL), KeepAlive: true, Holder: "replica-2"}},
	}
	for _, d := range decoders {
		for _, c := range cases {
			in := `{"name": "svc", "lock": ` + c.json + `}`
			if d.yaml {
				in = "name: svc\nlock:\n  " + indent(c.yaml) + "\n"
			}
			got := service{Lock: gormmutex.DefaultConfig()}
			require.NoError(t, d.decode(in, &got), "%s %q", d.name, in)
			assert.Equal(t, c.want, got.Lock, "%s %q", d.name, in)
		}
	}
}

// TestConfigYAMLRoundTrip: a Config written with yaml.Marshal reads back
// the same (before MarshalYAML, the TTL was written as a bare number of
// nanoseconds, which decoding now rejects).
func TestConfigYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	for _, cfg := range []gormmutex.Config{gormmutex.DefaultConfig(), {}, {TTL: gormmutex.Duration(time.Second), Wait: time.Minute, KeepAlive: true, MinHold: time.Second, Holder: "h"}} {
		b, err := yaml.Marshal(service{Name: "svc", Lock: cfg})
		require.NoError(t, err)
		var back service
		require.NoError(t, yaml.Unmarshal(b, &back), "%s", b)
		assert.Equal(t, cfg, back.Lock, "%s", b)
	}
}

// TestConfigValidate: Validate catches in code what the decoders catch in
// files, and New reports the same error from every method.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	bad := map[string]gormmutex.Config{
		"zero TTL":               {TTL: gormmutex.Duration(0)},
		"30ns TTL":               {TTL: gormmutex.Duration(30)},
		"9ms TTL":                {TTL: gormmutex.Duration(9 * time.Millisecond)},
		"negative Wait":          {Wait: -time.Second},
		"negative MinHold":       {MinHold: -time.Second},
		"KeepAlive without TTL":  {KeepAlive: true},
		"Holder too long":        {Holder: string(bytes.Repeat([]byte("h"), 201))},
		"Holder not UTF-8":       {Holder: "bad\xff"},
		"Holder with a NUL byte": {Holder: "a\x00b"},
	}
	for name, cfg := range bad {
		assert.ErrorIs(t, cfg.Validate(), gormmutex.ErrInvalidConfig, name)
	}
	for _, cfg := range []gormmutex.Config{{}, gormmutex.DefaultConfig(), {TTL: gormmutex.Duration(gormmutex.MinTTL), KeepAlive: true, Wait: time.Hour, MinHold: time.Hour}} {
		assert.NoError(t, cfg.Validate(), "%+v", cfg)
	}
}

// app is an application's own configuration with a Config nested in it,
// and several lock blocks.
type app struct {
	Name  string                      `json:"name" yaml:"name"`
	Lock  gormmutex.Config            `json:"lock" yaml:"lock"`
	Locks map[string]gormmutex.Config `json:"locks" yaml:"locks"`
	Jobs  []gormmutex.Config          `json:"jobs" yaml:"jobs"`
}

// TestConfigAbsentTTL: a decoded Config that leaves ttl out gets
// DefaultTTL, on every decoder, nested in an application's struct, in a
// map and in a list of lock blocks; an explicit null means never; a Go
// literal Config{} keeps nil. Before, a block without ttl decoded into a
// zero Config never expired.
func TestConfigAbsentTTL(t *testing.T) {
	t.Parallel()
	def := gormmutex.Duration(gormmutex.DefaultTTL)
	assert.Nil(t, gormmutex.Config{}.TTL, "a literal Config{} never expires")
	for _, d := range decoders {
		in := `{"name": "svc", "lock": {"wait": "1s"}, "locks": {"a": {"wait": "2s"}, "b": {"ttl": null}, "c": {"ttl": "5m"}},
			"jobs": [{"min_hold": "1s"}, {"ttl": null, "wait": "3s"}, {}]}`
		if d.yaml {
			in = "name: svc\nlock:\n  wait: 1s\nlocks:\n  a:\n    wait: 2s\n  b:\n    ttl: null\n  c:\n    ttl: 5m\n" +
				"jobs:\n  - min_hold: 1s\n  - ttl: ~\n    wait: 3s\n  - {}\n"
		}
		var got app
		require.NoError(t, d.decode(in, &got), d.name)
		assert.Equal(t, gormmutex.Config{TTL: def, Wait: time.Second}, got.Lock, "%s: lock", d.name)
		assert.Equal(t, gormmutex.Config{TTL: def, Wait: 2 * time.Second}, got.Locks["a"], "%s: locks.a", d.name)
		assert.Equal(t, gormmutex.Config{}, got.Locks["b"], "%s: locks.b (ttl: null)", d.name)
		assert.Equal(t, gormmutex.Config{TTL: gormmutex.Duration(5 * time.Minute)}, got.Locks["c"], "%s: locks.c", d.name)
		require.Len(t, got.Jobs, 3, d.name)
		assert.Equal(t, gormmutex.Config{TTL: def, MinHold: time.Second}, got.Jobs[0], "%s: jobs[0]", d.name)
		assert.Equal(t, gormmutex.Config{Wait: 3 * time.Second}, got.Jobs[1], "%s: jobs[1] (ttl: null)", d.name)
		assert.Equal(t, gormmutex.Config{TTL: def}, got.Jobs[2], "%s: jobs[2] (empty block)", d.name)

		// A Config that already has a TTL keeps it when ttl is left out.
		s := service{Lock: gormmutex.Config{TTL: gormmutex.Duration(time.Minute)}}
		in = `{"lock": {"wait": "1s"}}`
		if d.yaml {
			in = "lock:\n  wait: 1s\n"
		}
		require.NoError(t, d.decode(in, &s), d.name)
		assert.Equal(t, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Wait: time.Second}, s.Lock, "%s: a TTL already set", d.name)
	}
}

// TestConfigErrorMessages: the messages of a bad configuration say
// "gormmutex:" once, suggest the key an unknown key is a misspelling of
// (by edit distance, and none for a key like no other), say where the bad
// value is (the YAML line; for JSON, the block), and give advice that
// fits the key. Before, the prefix was doubled, "tll" got no suggestion,
// there was no location, and "wait: 10" got advice about a TTL.
func TestConfigErrorMessages(t *testing.T) {
	t.Parallel()
	decode := func(t *testing.T, yml bool, in string) string {
		t.Helper()
		var got app
		var err error
		if yml {
			err = yaml.Unmarshal([]byte(in), &got)
		} else {
			err = json.Unmarshal([]byte(in), &got)
		}
		require.ErrorIs(t, err, gormmutex.ErrInvalidConfig, in)
		msg := err.Error()
		assert.Equal(t, 1, strings.Count(msg, "gormmutex:"), "one prefix: %s", msg)
		assert.NotContains(t, msg, "\n", "one line: %s", msg)
		return msg
	}
	for _, yml := range []bool{false, true} {
		for key, want := range map[string]string{"tll": "ttl", "keepalive": "keep_alive", "wiat": "wait",
			"min-hold": "min_hold", "hodler": "holder", "transaction_pool": "transaction_pooling"} {
			in := `{"lock": {"` + key + `": 1}}`
			if yml {
				in = "lock:\n  " + key + ": 1\n"
			}
			msg := decode(t, yml, in)
			assert.Contains(t, msg, fmt.Sprintf(`unknown config key %q (did you mean %q?)`, key, want), msg)
		}
		for _, key := range []string{"retries", "xyz", "database", "t"} {
			in := `{"lock": {"` + key + `": 1}}`
			if yml {
				in = "lock:\n  " + key + ": 1\n"
			}
			msg := decode(t, yml, in)
			assert.Contains(t, msg, fmt.Sprintf(`unknown config key %q`, key), msg)
			assert.NotContains(t, msg, "did you mean", msg)
		}
	}

	// Three lock blocks: the message says which one.
	msg := decode(t, true, "name: svc\nlocks:\n  a:\n    ttl: 1m\n  b:\n    ttl: 2m\n    wait: 1s\n  c:\n    ttl: 1\n")
	assert.Contains(t, msg, `line 9: config key "ttl"`, msg)
	msg = decode(t, true, "jobs:\n  - ttl: 1m\n  - wait: 1s\n  - wait: 3s\n    tll: 1m\n")
	assert.Contains(t, msg, `line 5: unknown config key "tll"`, msg)
	msg = decode(t, false, `{"locks": {"a": {"ttl": "1m"}, "b": {"holder": "export", "ttl": 1}}}`)
	assert.Contains(t, msg, `config key "ttl" in {"holder": "export", "ttl": 1}`, msg)

	// The advice fits the key.
	for _, yml := range []bool{false, true} {
		in := `{"lock": {"wait": 10}}`
		if yml {
			in = "lock:\n  wait: 10\n"
		}
		msg := decode(t, yml, in)
		assert.Contains(t, msg, `"10s"`, msg)
		for _, wrong := range []string{"TTL", "django", "null", "never"} {
			assert.NotContains(t, msg, wrong, "advice for wait: %s", msg)
		}
		in = `{"lock": {"min_hold": 5}}`
		if yml {
			in = "lock:\n  min_hold: 5\n"
		}
		msg = decode(t, yml, in)
		assert.Contains(t, msg, `"5s"`, msg)
		for _, wrong := range []string{"TTL", "django", "null", "never"} {
			assert.NotContains(t, msg, wrong, "advice for min_hold: %s", msg)
		}
		in = `{"lock": {"ttl": 1800}}`
		if yml {
			in = "lock:\n  ttl: 1800\n"
		}
		msg = decode(t, yml, in)
		for _, want := range []string{`"1800s"`, "django-db-mutex", "null"} {
			assert.Contains(t, msg, want, "advice for ttl: %s", msg)
		}
		in = `{"lock": {"wait": "10"}}`
		if yml {
			in = "lock:\n  wait: \"10\"\n"
		}
		msg = decode(t, yml, in)
		assert.Contains(t, msg, `"10s"`, msg)
		assert.NotContains(t, msg, "1800s", msg)
	}
}
