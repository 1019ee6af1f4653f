package gormmutex

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// An engine is the machinery that [Locker], [Semaphore] and [Election]
// share: the database's dialect and its statements (dialect.go and the
// database's file), the statement runner (exec.go), what this process keeps
// per connection pool (pool.go), the waker (wake.go) and the Config. Each
// of the three asks it for locks with an explicit [request] (acquire.go);
// none of them configures another.
type engine struct {
	db    *gorm.DB         // a clean session on the caller's handle; never modified
	pool  gorm.ConnPool    // db's connection pool, which the lock statements use directly
	state *poolState       // what this process keeps for the pool (pool.go); nil without a *sql.DB
	log   logger.Interface // db's logger, quiet about retried conflicts
	cfg   Config
	d     *dialect // the database's dialect for the lock table; a variant may replace it per pool (dialectOn)
	// holder is what the rows of this engine's locks say of their holder.
	holder string
	// purges is the background purge's schedule of the engine's table on
	// the pool; nil without a *sql.DB.
	purges *purgeState
	// stmts are the statements prepared on the pool, where the dialect
	// prepares and the pool is a plain *sql.DB; nil otherwise.
	stmts *prepared
}

// newEngine checks db and cfg and returns the engine for them. It does not
// touch the database.
func newEngine(db *gorm.DB, cfg Config) (*engine, error) {
	e := new(engine)
	if err := e.init(db, cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// init checks db and cfg and sets e up for them, as newEngine does; a
// [Locker] holds its engine by value and sets it up in place.
func (e *engine) init(db *gorm.DB, cfg Config) error {
	d, err := dialectFor(db, cfg.Table)
	if err != nil {
		return err
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		return ErrInTransaction
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.AsyncCommit && !d.asyncCommit() {
		return fmt.Errorf("%w: AsyncCommit is for PostgreSQL only, not %s", ErrInvalidConfig, d.name)
	}
	if cfg.Fair && d.insertFair == "" {
		return fmt.Errorf("%w: Fair is not supported on %s", ErrInvalidConfig, d.name)
	}
	*e = engine{cfg: cfg, d: d}
	e.db = db.Session(&gorm.Session{NewDB: true, Initialized: true})
	e.pool = e.db.Statement.ConnPool
	if pool, ok := e.pool.(*sql.DB); ok {
		e.state = stateOf(pool)
		e.purges = e.state.purgeOf(d.table)
		if d.prepare {
			e.stmts = e.state.statements()
		}
	}
	// Conflicts that retry absorbs are not errors the application should
	// see in its GORM log.
	e.log = quietTransient{e.db.Logger, d}
	e.db.Logger = e.log
	e.holder = holderOf(cfg.Holder)
	return nil
}

// dialectOn returns the dialect for the engine's pool: the database's, or
// the variant that the database's variant check found on this pool (a
// Galera cluster, say), checked once per pool and process; for an
// announcing request (an election's), its announcing copy where it has one.
func (e *engine) dialectOn(ctx context.Context, announce bool) (*dialect, error) {
	d := e.d
	if d.variant != nil && e.state != nil {
		var err error
		if d, err = e.state.variant(ctx, d); err != nil {
			return nil, err
		}
	}
	if announce && d.announcing != nil {
		d = d.announcing
	}
	return d, nil
}

// logger returns Config.Logger, or slog.Default().
func (e *engine) logger() *slog.Logger {
	if e.cfg.Logger != nil {
		return e.cfg.Logger
	}
	return slog.Default()
}
