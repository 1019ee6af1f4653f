package dbopen

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Tuning says how [Target.Tune] adjusts a DSN that a person wrote.
type Tuning struct {
	// ConnectTimeout, when positive, bounds the dial and handshake of
	// PostgreSQL and MySQL: a DSN's own timeout stays if it is shorter.
	ConnectTimeout time.Duration
	// MustExist makes a SQLite file that does not exist an error instead
	// of a new, empty database: a path is checked at once, a file: URI
	// gets mode=rw unless it sets a mode.
	MustExist bool
	// MissingHint, if set, follows the error about a SQLite file that
	// does not exist: "run migrate to create it".
	MissingHint string
	// WAL puts a SQLite database named by its path (not a file: URI) in
	// WAL mode, so that several pools and processes can share the file.
	WAL bool
}

// Tune adds to t the settings that the lock table wants and that a person
// should not have to write:
//
//   - MySQL: parseTime=true and loc=UTC, whatever the DSN says (the table's
//     times are DATETIME(6) in UTC, read into time.Time), and
//     interpolateParams=true unless the DSN sets it (one round trip per
//     statement instead of three; if the driver refuses it for the DSN's
//     collation, Open goes without);
//   - SQLite: _busy_timeout=5000 unless the DSN sets a busy timeout, so
//     that a writer waits for another process's write instead of failing;
//     with MustExist and WAL, as the Tuning says;
//   - PostgreSQL and MySQL: the ConnectTimeout.
func (t *Target) Tune(o Tuning) error {
	switch t.Kind {
	case Postgres:
		if o.ConnectTimeout > 0 && (t.pg.ConnectTimeout == 0 || t.pg.ConnectTimeout > o.ConnectTimeout) {
			t.pg.ConnectTimeout = o.ConnectTimeout
		}
	case MySQL:
		if !t.myParams.Has("interpolateParams") && !t.my.InterpolateParams {
			t.my.InterpolateParams = true
			t.interpolateFallback = true
		}
		t.my.ParseTime = true
		t.my.Loc = time.UTC
		if o.ConnectTimeout > 0 && (t.my.Timeout == 0 || t.my.Timeout > o.ConnectTimeout) {
			t.my.Timeout = o.ConnectTimeout
		}
	case SQLite:
		return t.tuneSQLite(o)
	}
	return nil
}

func (t *Target) tuneSQLite(o Tuning) error {
	isURI := strings.HasPrefix(strings.ToLower(t.sqlite), "file:")
	path, query, _ := strings.Cut(t.sqlite, "?")
	hint := ""
	if o.MissingHint != "" {
		hint = " (" + o.MissingHint + ")"
	}
	if o.MustExist {
		switch {
		case isURI:
			// Let SQLite refuse a missing file rather than create it.
			if !strings.Contains(query, "mode=") {
				query = addParam(query, "mode=rw")
				t.hint = hint
			}
		case path != ":memory:":
			if _, err := os.Stat(path); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("%s does not exist%s", t.Desc, hint)
				}
				return fmt.Errorf("%s: %w", t.Desc, err)
			}
		}
	}
	if o.WAL && !isURI && !strings.Contains(query, "_journal_mode=") && !strings.Contains(query, "_journal=") {
		query = addParam(query, "_journal_mode=WAL")
	}
	if !strings.Contains(query, "_busy_timeout=") && !strings.Contains(query, "_timeout=") {
		query = addParam(query, "_busy_timeout=5000")
	}
	t.sqlite = path + "?" + query
	return nil
}

func addParam(query, kv string) string {
	if query == "" {
		return kv
	}
	return query + "&" + kv
}
