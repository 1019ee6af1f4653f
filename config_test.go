package gormmutex_test

import (
	"bytes"
	"encoding/json"
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
