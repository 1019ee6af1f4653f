package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormmutex/gormmutex/internal/dsn"
)

// A target is a parsed DSN, ready to connect.
type target struct {
	kind dsn.Kind
	// desc names the database for messages, without any password.
	desc string
	// hint follows a failure to connect.
	hint string
	// secrets are strings that must never appear in a message: the
	// password, in the forms it may take.
	secrets []string
	// connect opens the pool; it does not talk to the server.
	connect func() (*sql.DB, gorm.Dialector, error)
}

// parseDSN parses dsn. create says whether a missing SQLite file may be
// created (migrate) or is an error (every other command). connectTimeout
// bounds the dial and handshake where the driver takes such a setting.
func parseDSN(s string, create bool, connectTimeout time.Duration) (*target, error) {
	t := &target{kind: dsn.Classify(s), secrets: dsnSecrets(s)}
	var err error
	switch t.kind {
	case dsn.Postgres:
		err = t.postgres(s, connectTimeout)
	case dsn.MySQL:
		err = t.mysql(s, connectTimeout)
	default:
		err = t.sqlite(s, create)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *target) postgres(dsn string, connectTimeout time.Duration) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password itself; redact() below checks again.
		return fmt.Errorf("invalid PostgreSQL DSN: %w", err)
	}
	if cfg.Password != "" {
		t.secrets = append(t.secrets, cfg.Password)
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	t.desc = fmt.Sprintf("PostgreSQL database %q on %s as user %q", cfg.Database, hostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.User)
	t.connect = func() (*sql.DB, gorm.Dialector, error) {
		db := stdlib.OpenDB(*cfg)
		return db, postgres.New(postgres.Config{Conn: db}), nil
	}
	return nil
}

func (t *target) mysql(dsn string, connectTimeout time.Duration) error {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("invalid MySQL DSN: %w", err)
	}
	if cfg.Passwd != "" {
		t.secrets = append(t.secrets, cfg.Passwd)
	}
	if !strings.Contains(dsn, "interpolateParams=") {
		// One round trip per statement instead of prepare, execute, close.
		cfg.InterpolateParams = true
	}
	// The lock table's times are DATETIME(6) columns holding UTC: the
	// command needs them parsed, and parsed as UTC.
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Timeout == 0 || cfg.Timeout > connectTimeout {
		cfg.Timeout = connectTimeout
	}
	t.desc = fmt.Sprintf("MySQL database %q on %s as user %q", cfg.DBName, cfg.Addr, cfg.User)
	t.connect = func() (*sql.DB, gorm.Dialector, error) {
		conn, err := gomysql.NewConnector(cfg)
		if err != nil && cfg.InterpolateParams && !strings.Contains(dsn, "interpolateParams=") {
			// Some collations rule interpolation out; do without it.
			cfg.InterpolateParams = false
			conn, err = gomysql.NewConnector(cfg)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("invalid MySQL DSN: %w", err)
		}
		db := sql.OpenDB(conn)
		return db, mysql.New(mysql.Config{Conn: db}), nil
	}
	return nil
}

func (t *target) sqlite(s string, create bool) error {
	s = dsn.SQLiteName(s)
	if s == "" {
		return errors.New("empty SQLite path")
	}
	isURI := strings.HasPrefix(strings.ToLower(s), "file:")
	path, query, _ := strings.Cut(s, "?")
	t.desc = fmt.Sprintf("SQLite database %s", path)
	if !create {
		if isURI {
			// Let SQLite refuse a missing file rather than create it.
			if !strings.Contains(query, "mode=") {
				query = addParam(query, "mode=rw")
				t.hint = " (run migrate to create a new database)"
			}
		} else if path != ":memory:" {
			if _, err := os.Stat(path); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("SQLite database %s does not exist (run migrate to create it)", path)
				}
				return fmt.Errorf("SQLite database %s: %w", path, err)
			}
		}
	}
	if !strings.Contains(query, "_busy_timeout=") && !strings.Contains(query, "_timeout=") {
		// Wait for other processes' writes rather than fail at once.
		query = addParam(query, "_busy_timeout=5000")
	}
	full := path + "?" + query
	t.connect = func() (*sql.DB, gorm.Dialector, error) {
		db, err := sql.Open(sqlite.DriverName, full)
		if err != nil {
			return nil, nil, err
		}
		return db, sqlite.New(sqlite.Config{Conn: db}), nil
	}
	return nil
}

func addParam(query, kv string) string {
	if query == "" {
		return kv
	}
	return query + "&" + kv
}

func hostPort(host, port string) string {
	if host == "" {
		return "(default host)"
	}
	if strings.HasPrefix(host, "/") || port == "" || port == "0" {
		return host // a Unix socket directory
	}
	return host + ":" + port
}

// open connects to t and checks the connection with a ping, all within
// connectTimeout, so that a wrong address or a silent server fails fast.
// The pool opens at most conns connections.
func (t *target) open(ctx context.Context, connectTimeout time.Duration, conns int) (*gorm.DB, error) {
	sqlDB, dial, err := t.connect()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(conns)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := sqlDB.PingContext(pctx); err != nil {
		sqlDB.Close()
		if pctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("cannot connect to %s: no answer within %v: %w", t.desc, connectTimeout, err)
		}
		return nil, fmt.Errorf("cannot connect to %s: %w%s", t.desc, err, t.hint)
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard, DisableAutomaticPing: true})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("cannot connect to %s: %w", t.desc, err)
	}
	return db, nil
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
