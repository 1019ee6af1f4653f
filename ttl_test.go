package gormmutex

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.TTL == nil || *cfg.TTL != DefaultTTL || DefaultTTL != 30*time.Minute || cfg.Wait != 0 || cfg.KeepAlive || cfg.MinHold != 0 {
		t.Fatalf("DefaultConfig() = %+v, want TTL 30m and everything else off", cfg)
	}
}

// appConfig is how an application embeds Config in its own settings.
type appConfig struct {
	Name string `json:"name" yaml:"name"`
	Lock Config `json:"lock" yaml:"lock"`
}

func TestConfigDecode(t *testing.T) {
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
		want       Config
	}{
		{`{"lock": {"ttl": "30m"}}`, "lock:\n  ttl: 30m\n", Config{TTL: Duration(30 * time.Minute)}},
		{`{"lock": {"ttl": null}}`, "lock:\n  ttl: null\n", Config{}},
		{`{"lock": {}}`, "lock: {}\n", Config{TTL: Duration(DefaultTTL)}},
		{`{"lock": {"ttl": "1.5s", "wait": "10s", "keep_alive": true, "min_hold": "2s", "suppress_acquisition_errors": true, "holder": "w1"}}`,
			"lock:\n  ttl: 1.5s\n  wait: 10s\n  keep_alive: true\n  min_hold: 2s\n  suppress_acquisition_errors: true\n  holder: w1\n",
			Config{TTL: Duration(1500 * time.Millisecond), Wait: 10 * time.Second, KeepAlive: true, MinHold: 2 * time.Second, SuppressAcquisitionErrors: true, Holder: "w1"}},
		{`{"lock": {"wait": 0}}`, "lock:\n  wait: 0\n", Config{TTL: Duration(DefaultTTL)}},
	}
	for _, d := range decoders {
		for _, c := range cases {
			in := c.json
			if d.name == "yaml" {
				in = c.yaml
			}
			got := appConfig{Lock: DefaultConfig()}
			if err := d.decode(in, &got); err != nil {
				t.Fatalf("%s %q: %v", d.name, in, err)
			}
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
			got := appConfig{Lock: DefaultConfig()}
			if err := d.decode(in, &got); err == nil {
				t.Errorf("%s %q decoded without error", d.name, in)
			} else if !equalConfig(got.Lock, DefaultConfig()) {
				t.Errorf("%s %q: a failed decode changed the config to %s", d.name, in, show(got.Lock))
			}
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	for _, cfg := range []Config{DefaultConfig(), {}, {TTL: Duration(time.Second), Wait: time.Minute, KeepAlive: true, Holder: "h"}} {
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !equalConfig(back, cfg) {
			t.Errorf("JSON round trip of %s gave %s (%s)", show(cfg), show(back), b)
		}
	}
	b, _ := json.Marshal(Config{})
	var m map[string]any
	json.Unmarshal(b, &m)
	if v, ok := m["ttl"]; !ok || v != nil {
		t.Errorf("Config{} marshals ttl as %v, want null", v)
	}
}

func equalConfig(a, b Config) bool {
	if (a.TTL == nil) != (b.TTL == nil) || (a.TTL != nil && *a.TTL != *b.TTL) {
		return false
	}
	a.TTL, b.TTL = nil, nil
	return a == b
}

func show(c Config) string {
	b, _ := json.Marshal(c)
	return string(b)
}

func TestErrorsMatch(t *testing.T) {
	err := lockErr("acquire", "job", ErrLocked)
	var le *LockError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.LockID != "job" || le.Op != "acquire" {
		t.Fatalf("lockErr = %#v", err)
	}
	if got := err.Error(); got != `gormmutex: lock is held by another holder (op acquire, lock "job")` {
		t.Errorf("message = %q", got)
	}
}
