package dbopen

import (
	"regexp"
	"strings"
)

// A Kind is the database a DSN names.
type Kind string

// The kinds of database. Their values are the names that messages, the
// test suites' backends and the example programs use.
const (
	Postgres Kind = "postgres"
	MySQL    Kind = "mysql"
	SQLite   Kind = "sqlite"
	// Unknown is a DSN with a URL scheme that no driver here takes.
	Unknown Kind = ""
)

// Accepted names the forms of DSN that [Parse] takes, for messages.
const Accepted = "postgres:// or postgresql:// URLs, key=value PostgreSQL DSNs (host=... dbname=...), " +
	"mysql:// or mariadb:// URLs, MySQL DSNs (user@tcp(host:3306)/db), " +
	"and SQLite file paths, file: URIs or sqlite:// names"

// Classify says which database s names, by its shape alone:
//
//   - "postgres://..." or "postgresql://..." is a PostgreSQL URL;
//   - "mysql://..." or "mariadb://..." is a MySQL URL;
//   - "file:..." or "sqlite:..." is SQLite;
//   - "key=value ..." with "host=" or "dbname=" is a PostgreSQL key=value
//     DSN (even if its password holds "@tcp(");
//   - anything with "@tcp(", "@unix(" or "@/" (the default address), or
//     starting with "tcp(" or "unix(", is a MySQL DSN in the form of
//     go-sql-driver/mysql;
//   - anything else with "host=" or "dbname=" is a PostgreSQL DSN too;
//   - anything else that starts with a URL scheme ("foo://") is Unknown:
//     such a string is never taken for a file name;
//   - anything else, the empty string included, is the path of a SQLite
//     file.
//
// The schemes and prefixes are matched without regard to case.
func Classify(s string) Kind {
	lower := strings.ToLower(s)
	pgKV := strings.Contains(s, "host=") || strings.Contains(s, "dbname=")
	switch scheme(lower) {
	case "postgres", "postgresql":
		return Postgres
	case "mysql", "mariadb":
		return MySQL
	case "sqlite", "file":
		return SQLite
	}
	switch {
	case strings.HasPrefix(lower, "file:"), strings.HasPrefix(lower, "sqlite:"):
		return SQLite
	case pgKV && leadingKey.MatchString(s):
		return Postgres
	case strings.Contains(s, "@tcp("), strings.Contains(s, "@unix("), strings.Contains(s, "@/"),
		strings.HasPrefix(s, "tcp("), strings.HasPrefix(s, "unix("):
		return MySQL
	case pgKV:
		return Postgres
	case scheme(lower) != "":
		return Unknown
	default:
		return SQLite
	}
}

// scheme returns the URL scheme that s starts with ("foo" of "foo://"),
// or "" if s does not start with one.
func scheme(s string) string {
	m := schemeRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

var (
	// schemeRE matches a URL scheme and "://", as RFC 3986 spells a
	// scheme.
	schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
	// leadingKey matches the start of a key=value DSN.
	leadingKey = regexp.MustCompile(`^\s*[a-z_]+\s*=`)
)

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
