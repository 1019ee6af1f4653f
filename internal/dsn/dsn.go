// Package dsn says which database a data source name is for, by its shape
// alone, so that the operators' command and the example programs agree on
// what a -dsn flag means. It imports nothing but the standard library and
// never connects.
package dsn

import (
	"regexp"
	"strings"
)

// A Kind is the database a DSN names.
type Kind string

// The kinds of database. Their values are the names that messages and the
// example programs print.
const (
	Postgres Kind = "postgres"
	MySQL    Kind = "mysql"
	SQLite   Kind = "sqlite"
)

// Classify says which database dsn names:
//
//   - "file:..." or "sqlite:..." is SQLite;
//   - "postgres://..." or "postgresql://..." is a PostgreSQL URL;
//   - "key=value ..." with "host=" or "dbname=" is a PostgreSQL key=value
//     DSN (even if its password holds "@tcp(");
//   - anything with "@tcp(" or "@unix(", or starting with "tcp(" or
//     "unix(", is a MySQL DSN;
//   - anything else with "host=" or "dbname=" is a PostgreSQL DSN too;
//   - anything else, the empty string included, is the path of a SQLite
//     file.
//
// The prefixes are matched without regard to case.
func Classify(dsn string) Kind {
	lower := strings.ToLower(dsn)
	pgKV := strings.Contains(dsn, "host=") || strings.Contains(dsn, "dbname=")
	switch {
	case strings.HasPrefix(lower, "file:"), strings.HasPrefix(lower, "sqlite:"):
		return SQLite
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return Postgres
	case pgKV && leadingKey.MatchString(dsn):
		return Postgres
	case strings.Contains(dsn, "@tcp("), strings.Contains(dsn, "@unix("),
		strings.HasPrefix(dsn, "tcp("), strings.HasPrefix(dsn, "unix("):
		return MySQL
	case pgKV:
		return Postgres
	default:
		return SQLite
	}
}

// leadingKey matches the start of a key=value DSN.
var leadingKey = regexp.MustCompile(`^\s*[a-z_]+\s*=`)

// SQLiteName returns what the SQLite driver should open for a DSN that
// Classify calls SQLite: the DSN without a "sqlite:" prefix (so
// "sqlite:x.db", "sqlite://relative/x.db" and "sqlite:///abs/x.db" name the
// files x.db, relative/x.db and /abs/x.db), and any other DSN, a plain path
// or a "file:" URI, as it is.
func SQLiteName(dsn string) string {
	if len(dsn) >= len("sqlite:") && strings.EqualFold(dsn[:len("sqlite:")], "sqlite:") {
		return strings.TrimPrefix(dsn[len("sqlite:"):], "//")
	}
	return dsn
}
