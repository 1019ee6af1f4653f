package dbopen

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Options say how [Target.Open] makes the pool.
type Options struct {
	// Gorm is GORM's configuration; nil is GORM's defaults with its
	// logger off. Open does not change it.
	Gorm *gorm.Config
	// MaxConns, when positive, caps the pool's open connections (and its
	// idle ones, so that a busy pool keeps what it opened).
	MaxConns int
	// Wrap, if set, wraps the driver's connector: the tests count round
	// trips with it.
	Wrap func(driver.Connector) driver.Connector
	// PingTimeout, when positive, makes Open check the connection with a
	// ping bounded by it, whose failure names the database; otherwise
	// GORM pings as its configuration says.
	PingTimeout time.Duration
}

// Open connects to the database [Parse] reads in s, as [Target.Open] does,
// without tuning it.
func Open(ctx context.Context, s string, o Options) (*gorm.DB, error) {
	t, err := Parse(s)
	if err != nil {
		return nil, err
	}
	return t.Open(ctx, o)
}

// Open opens a pool on t and a *gorm.DB on the pool. An error names the
// database (Target.Desc) and never shows the password.
func (t *Target) Open(ctx context.Context, o Options) (*gorm.DB, error) {
	conn, err := t.connector()
	if err != nil {
		return nil, err
	}
	if o.Wrap != nil {
		conn = o.Wrap(conn)
	}
	sqlDB := sql.OpenDB(conn)
	if o.MaxConns > 0 {
		sqlDB.SetMaxOpenConns(o.MaxConns)
		sqlDB.SetMaxIdleConns(o.MaxConns)
	}
	cfg := &gorm.Config{Logger: logger.Discard}
	if o.Gorm != nil {
		c := *o.Gorm
		cfg = &c
	}
	if o.PingTimeout > 0 {
		pctx, cancel := context.WithTimeout(ctx, o.PingTimeout)
		err := sqlDB.PingContext(pctx)
		timedOut := pctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			sqlDB.Close()
			if timedOut {
				return nil, fmt.Errorf("cannot connect to %s: no answer within %v: %w", t.Desc, o.PingTimeout, err)
			}
			return nil, fmt.Errorf("cannot connect to %s: %w%s", t.Desc, err, t.hint)
		}
		cfg.DisableAutomaticPing = true
	}
	db, err := Gorm(t.Kind, sqlDB, cfg)
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("cannot connect to %s: %w%s", t.Desc, err, t.hint)
	}
	return db, nil
}

// connector returns the driver's connector for t. It does not connect.
func (t *Target) connector() (driver.Connector, error) {
	switch t.Kind {
	case Postgres:
		return stdlib.GetConnector(*t.pg), nil
	case MySQL:
		c, err := gomysql.NewConnector(t.my)
		if err != nil && t.interpolateFallback {
			// Some collations rule interpolation out; do without it.
			cfg := *t.my
			cfg.InterpolateParams = false
			c, err = gomysql.NewConnector(&cfg)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid MySQL DSN: %w", err)
		}
		return c, nil
	default:
		return sqliteConnector{t.sqlite}, nil
	}
}

// sqliteConnector opens go-sqlite3 connections on one name: the driver
// has no connector of its own.
type sqliteConnector struct{ name string }

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	return sqliteDriver.Open(c.name)
}

func (sqliteConnector) Driver() driver.Driver { return sqliteDriver }

var sqliteDriver = &sqlite3.SQLiteDriver{}

// Gorm opens a *gorm.DB of the database kind on sqlDB, with GORM's
// dialector for it: the one switch from a database to its dialector.
func Gorm(kind Kind, sqlDB *sql.DB, cfg *gorm.Config) (*gorm.DB, error) {
	var dial gorm.Dialector
	switch kind {
	case Postgres:
		dial = postgres.New(postgres.Config{Conn: sqlDB})
	case MySQL:
		dial = mysql.New(mysql.Config{Conn: sqlDB})
	case SQLite:
		dial = sqlite.New(sqlite.Config{Conn: sqlDB})
	default:
		return nil, fmt.Errorf("unknown database %q", string(kind))
	}
	if cfg == nil {
		cfg = &gorm.Config{Logger: logger.Discard}
	}
	return gorm.Open(dial, cfg)
}

// DSN returns the DSN that the driver gets, after Tune: to hand another
// process the same database. A MySQL password holding characters that
// go-sql-driver's DSN cannot spell is not supported here.
func (t *Target) DSN() string {
	switch t.Kind {
	case MySQL:
		return t.my.FormatDSN()
	case SQLite:
		return t.sqlite
	default:
		return t.src
	}
}
