package main

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

// parseDSN reads the -dsn flag with the one opener the project has
// (internal/dbopen) and tunes it for the command: create says whether a
// missing SQLite file may be created (migrate) or is an error (every other
// command); connectTimeout bounds the dial and handshake where the driver
// takes such a setting.
func parseDSN(s string, create bool, connectTimeout time.Duration) (*dbopen.Target, error) {
	t, err := dbopen.Parse(s)
	if err != nil {
		return nil, err
	}
	if err := t.Tune(dbopen.Tuning{
		ConnectTimeout: connectTimeout,
		MustExist:      !create,
		MissingHint:    "run migrate to create it",
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// openDB connects to t and checks the connection with a ping, all within
// connectTimeout, so that a wrong address or a silent server fails fast.
// The pool opens at most conns connections.
func openDB(ctx context.Context, t *dbopen.Target, connectTimeout time.Duration, conns int) (*gorm.DB, error) {
	return t.Open(ctx, dbopen.Options{MaxConns: conns, PingTimeout: connectTimeout})
}

// dsnSecrets guesses the password in dsn without trusting it to parse, so
// that even the error about a malformed DSN cannot show it.
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if u, err := url.PathUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
	}
	// key=value: password=secret or password='se cret'.
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := m[1]
		if strings.HasPrefix(v, "'") {
			v = strings.TrimSuffix(v[1:], "'")
			add(strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v))
		}
		add(v)
	}
	// URL and MySQL: user:password@..., the password running from the
	// first ':' of the user part to the last '@' before the query.
	s := dsn
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if _, pw, ok := strings.Cut(s[:at], ":"); ok {
			add(pw)
		}
	}
	// URL query: ?password=secret.
	if _, q, ok := strings.Cut(dsn, "?"); ok {
		if v, err := url.ParseQuery(q); err == nil {
			for _, pw := range v["password"] {
				add(pw)
			}
		}
	}
	return out
}

var kvPassword = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]*)`)

// redact replaces every secret in msg.
func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
