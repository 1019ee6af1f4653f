package gormmutex_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gormmutex/gormmutex"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	cfg := gormmutex.DefaultConfig()
	require.Equal(t, 30*time.Minute, gormmutex.DefaultTTL)
	require.NotNil(t, cfg.TTL, "DefaultConfig().TTL")
	assert.Equal(t, gormmutex.DefaultTTL, *cfg.TTL, "DefaultConfig().TTL")
	cfg.TTL = nil
	assert.Zero(t, cfg, "DefaultConfig() besides the TTL: want everything off")
}

// appConfig is how an application embeds Config in its own settings.
type appConfig struct {
	Name string           `json:"name" yaml:"name"`
	Lock gormmutex.Config `json:"lock" yaml:"lock"`
}

func TestConfigDecode(t *testing.T) {
	t.Parallel()
	type decoder struct {
		name   string
		decode func(string, any) error
	}
	decoders := []decoder{
		{"json", func(s string, v any) error { return json.Unmarshal([]byte(s), v) }},
		{"yaml", func(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }},
	}
	cases := []struct {
		json, yaml string
		want       gormmutex.Config
	}{
		{`{"lock": {"ttl": "30m"}}`, "lock:\n  ttl: 30m\n", gormmutex.Config{TTL: gormmutex.Duration(30 * time.Minute)}},
		{`{"lock": {"ttl": null}}`, "lock:\n  ttl: null\n", gormmutex.Config{}},
		{`{"lock": {}}`, "lock: {}\n", gormmutex.Config{TTL: gormmutex.Duration(gormmutex.DefaultTTL)}},
		{`{"lock": {"ttl": "1.5s", "wait": "10s", "keep_alive": true, "min_hold": "2s", "suppress_acquisition_errors": true, "holder": "w1"}}`,
			"lock:\n  ttl: 1.5s\n  wait: 10s\n  keep_alive: true\n  min_hold: 2s\n  suppress_acquisition_errors: true\n  holder: w1\n",
			gormmutex.Config{TTL: gormmutex.Duration(1500 * time.Millisecond), Wait: 10 * time.Second, KeepAlive: true, MinHold: 2 * time.Second, SuppressAcquisitionErrors: true, Holder: "w1"}},
		{`{"lock": {"wait": 0}}`, "lock:\n  wait: 0\n", gormmutex.Config{TTL: gormmutex.Duration(gormmutex.DefaultTTL)}},
	}
	for _, d := range decoders {
		for _, c := range cases {
			in := c.json
			if d.name == "yaml" {
				in = c.yaml
			}
			got := appConfig{Lock: gormmutex.DefaultConfig()}
			require.NoError(t, d.decode(in, &got))
			if !equalConfig(got.Lock, c.want) {
				t.Errorf("%s %q = %s, want %s", d.name, in, show(got.Lock), show(c.want))
			}
		}
		for _, bad := range []string{`{"lock": {"ttl": "soon"}}`, `{"lock": {"keep_alive": "yes"}}`, `{"lock": {"wait": []}}`} {
			in := bad
			if d.name == "yaml" {
				in = "lock:\n  " + map[string]string{
					`{"lock": {"ttl": "soon"}}`:       "ttl: soon",
					`{"lock": {"keep_alive": "yes"}}`: "keep_alive: maybe",
					`{"lock": {"wait": []}}`:          "wait: []",
				}[bad] + "\n"
			}
			got := appConfig{Lock: gormmutex.DefaultConfig()}
			if assert.Error(t, d.decode(in, &got), "%s %q", d.name, in) {
				assert.True(t, equalConfig(got.Lock, gormmutex.DefaultConfig()), "%s %q: a failed decode changed the config to %s", d.name, in, show(got.Lock))
			}
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, cfg := range []gormmutex.Config{gormmutex.DefaultConfig(), {}, {TTL: gormmutex.Duration(time.Second), Wait: time.Minute, KeepAlive: true, Holder: "h"}} {
		b, err := json.Marshal(cfg)
		require.NoError(t, err)
		var back gormmutex.Config
		require.NoError(t, json.Unmarshal(b, &back))
		assert.True(t, equalConfig(back, cfg), "JSON round trip of %s gave %s (%s)", show(cfg), show(back), b)
	}
	b, err := json.Marshal(gormmutex.Config{})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Contains(t, m, "ttl", "Config{} as JSON")
	assert.Nil(t, m["ttl"], "Config{} marshals ttl as null")
}

func equalConfig(a, b gormmutex.Config) bool {
	if (a.TTL == nil) != (b.TTL == nil) || (a.TTL != nil && *a.TTL != *b.TTL) {
		return false
	}
	a.TTL, b.TTL = nil, nil
	return a == b
}

func show(c gormmutex.Config) string {
	b, _ := json.Marshal(c)
	return string(b)
}
