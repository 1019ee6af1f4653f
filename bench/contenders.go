package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/gormmutex/gormmutex/observe"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	goredislib "github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"

	"github.com/gormmutex/gormmutex/internal/sqlcount"
)

// errLocked is what a worker's do returns when the lock was held elsewhere
// (and, when waiting, stayed held until the measurement ended).
var errLocked = errors.New("bench: lock held elsewhere")

// A contender is one locking implementation on one store.
type contender interface {
	// newWorker returns a worker that runs cs inside every critical section.
	newWorker(ctx context.Context, cs func()) (worker, error)
	// counts returns the calls made so far (nil counter: no count).
	counts() sqlcount.Counts
	// table is the SQL table holding its locks, for clean-up ("" for none).
	table() string
	close()
}

// A worker takes locks for one goroutine.
type worker interface {
	// do takes key, runs the worker's cs and releases key. Without wait it
	// returns errLocked at once when key is held; with wait it retries until
	// ctx ends (then returning errLocked or ctx's error).
	do(ctx context.Context, key string, wait bool) error
	close()
}

// waitFor bounds every wait for a lock in the bench (a safety net: each
// measurement ends waits through its context long before this).
const waitFor = 30 * time.Second

// pollDelay is the delay before retry number try (1, 2, ...) for the
// contenders that have no wait of their own (the django baseline and
// redsync): the same capped, jittered exponential backoff that gormmutex's
// Config.Wait uses (5 ms doubling to 250 ms, each sleep between half and all
// of that), so that polling policy is equal and only statement cost differs.
func pollDelay(try int) time.Duration {
	const lo, hi = 5 * time.Millisecond, 250 * time.Millisecond
	cur := hi
	if try < 7 {
		cur = min(lo<<(try-1), hi)
	}
	return cur/2 + rand.N(cur/2+1)
}

// gormConns is the open connections of db's pool.
func gormConns(db *gorm.DB) int {
	s, err := db.DB()
	if err != nil {
		return 0
	}
	return s.Stats().OpenConnections
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---------------------------------------------------------------------------
// gormmutex: Locker.Do with DefaultConfig, plus Wait when asked to wait.
// gormmutex-async (PostgreSQL): the same with Config.AsyncCommit. With
// several -mysql DSNs it keeps a pool on each.

type gmContender struct {
	pools []gmPool
	c     *sqlcount.Counter // shared by the pools
	next  atomic.Uint64     // the pool the next worker takes, modulo len(pools)
}

// A gmPool is one connection pool of the gormmutex contender, with its two
// Lockers.
type gmPool struct {
	db         *gorm.DB
	fast, wait *gormmutex.Locker
}

// A gmVariant is a gormmutex contender with a Config of its own: a name,
// the stores it runs on (nil: every SQL store) and what it changes in
// [gormmutex.DefaultConfig] (nil: nothing). It runs in every scenario,
// next to the plain gormmutex.
type gmVariant struct {
	name   string
	stores []string
	set    func(*gormmutex.Config)
}

// gmVariants are the gormmutex contenders, in the tables' order. Adding a
// contender that is gormmutex with a different Config is one line here.
var gmVariants = []gmVariant{
	{name: "gormmutex"},
	{name: "gormmutex-async", stores: []string{"postgres"}, set: func(c *gormmutex.Config) { c.AsyncCommit = true }},
	{name: "gormmutex-fair", set: func(c *gormmutex.Config) { c.Fair = true }},
}

// gmVariantFor returns the variant named name.
func gmVariantFor(name string) (gmVariant, bool) {
	for _, v := range gmVariants {
		if v.name == name {
			return v, true
		}
	}
	return gmVariant{}, false
}

// runsOn says whether v runs on store.
func (v gmVariant) runsOn(store string) bool {
	return store != "redis" && (v.stores == nil || contains(v.stores, store))
}

// config is v's Config: DefaultConfig, then v's change, then the bench's
// flags and obs as Config.Observer (observer.go).
func (v gmVariant) config(obs observe.Observer) gormmutex.Config {
	cfg := gormmutex.DefaultConfig()
	if v.set != nil {
		v.set(&cfg)
	}
	cfg.Observer = obs
	cfg.TransactionPooling = transactionPooling
	return cfg
}

// newGM makes the gormmutex contender on one pool per server of dbs (a
// cluster's nodes; usually one), with cfg (and cfg with Wait set, for the
// waiting scenarios).
func newGM(dbs []*gorm.DB, c *sqlcount.Counter, cfg gormmutex.Config) *gmContender {
	wcfg := cfg
	wcfg.Wait = waitFor
	g := &gmContender{c: c}
	for _, db := range dbs {
		g.pools = append(g.pools, gmPool{db: db, fast: mustLocker(db, cfg), wait: mustLocker(db, wcfg)})
	}
	return g
}

// mustLocker is gormmutex.New for the bench's own configurations, which
// are valid: an error is a bug in the bench.
func mustLocker(db *gorm.DB, cfg gormmutex.Config) *gormmutex.Locker {
	l, err := gormmutex.New(db, cfg)
	if err != nil {
		panic(err)
	}
	return l
}

func (g *gmContender) counts() sqlcount.Counts { return g.c.Snapshot() }
func (g *gmContender) openConns() int {
	n := 0
	for _, p := range g.pools {
		n += gormConns(p.db)
	}
	return n
}
func (g *gmContender) table() string { return gormmutex.TableName }
func (g *gmContender) close() {
	for _, p := range g.pools {
		closeGorm(p.db)
	}
}

// newWorker gives each new worker the next pool in turn, so that the
// workers of a window spread over the nodes, and a one-worker scenario
// visits them window after window.
func (g *gmContender) newWorker(_ context.Context, cs func()) (worker, error) {
	p := &g.pools[(g.next.Add(1)-1)%uint64(len(g.pools))]
	return &gmWorker{p: p, fn: func(context.Context) error { cs(); return nil }}, nil
}

type gmWorker struct {
	p  *gmPool
	fn func(context.Context) error
}

func (w *gmWorker) do(ctx context.Context, key string, wait bool) error {
	l := w.p.fast
	if wait {
		l = w.p.wait
	}
	err := l.Do(ctx, key, w.fn)
	if err != nil && errors.Is(err, gormmutex.ErrLocked) {
		return errLocked
	}
	return err
}

func (w *gmWorker) close() {}

// ---------------------------------------------------------------------------
// The django-db-mutex v3.1.2 algorithm on GORM: the baseline gormmutex ports.
//
//	acquire: in a transaction, delete every expired row of every id (app
//	         clock, creation_time <= now - ttl); then, in a transaction of
//	         its own, INSERT the row; a unique violation means "held".
//	release: SELECT the row by primary key (gone: timeout error), DELETE it.
//
// On PostgreSQL that is BEGIN, DELETE, COMMIT, BEGIN, INSERT ... RETURNING,
// COMMIT, SELECT, DELETE: 8 round trips. django-db-mutex cannot wait for a
// lock; when asked to wait, the bench retries with pollDelay.

const djangoTable = "bench_django_mutex"

// djangoDDL is the table django-db-mutex's migration makes (lock_id is 255,
// not Django's 256, so that MySQL can index it; no index on creation_time,
// as in Django).
var djangoDDL = map[string]string{
	"postgres": `CREATE TABLE IF NOT EXISTS ` + djangoTable + ` (
	id BIGSERIAL PRIMARY KEY,
	lock_id VARCHAR(255) NOT NULL UNIQUE,
	creation_time TIMESTAMPTZ NOT NULL)`,
	"mysql": `CREATE TABLE IF NOT EXISTS ` + djangoTable + ` (
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	lock_id VARCHAR(255) NOT NULL UNIQUE,
	creation_time DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	"sqlite": `CREATE TABLE IF NOT EXISTS ` + djangoTable + ` (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	lock_id VARCHAR(255) NOT NULL UNIQUE,
	creation_time DATETIME NOT NULL)`,
}

type djangoMutex struct {
	ID           int64 `gorm:"primaryKey"`
	LockID       string
	CreationTime time.Time
}

func (djangoMutex) TableName() string { return djangoTable }

// errDjangoTimeout is DBMutexTimeoutError: the row was gone at release.
var errDjangoTimeout = errors.New("django: lock expired before function completed")

type djangoContender struct {
	db  *gorm.DB // TranslateError on, so a unique violation is gorm.ErrDuplicatedKey
	nt  *gorm.DB // the same pool without GORM's default transaction (Django's autocommit delete)
	c   *sqlcount.Counter
	ttl time.Duration
}

func newDjango(db *gorm.DB, c *sqlcount.Counter) *djangoContender {
	return &djangoContender{
		db: db, c: c, ttl: gormmutex.DefaultTTL,
		nt: db.Session(&gorm.Session{SkipDefaultTransaction: true}),
	}
}

func (d *djangoContender) counts() sqlcount.Counts { return d.c.Snapshot() }
func (d *djangoContender) openConns() int          { return gormConns(d.db) }
func (d *djangoContender) table() string           { return djangoTable }
func (d *djangoContender) close()                  { closeGorm(d.db) }

func (d *djangoContender) newWorker(_ context.Context, cs func()) (worker, error) {
	return &djangoWorker{d: d, cs: cs}, nil
}

type djangoWorker struct {
	d  *djangoContender
	cs func()
}

func (w *djangoWorker) do(ctx context.Context, key string, wait bool) error {
	var id int64
	var err error
	for try := 1; ; try++ {
		id, err = w.d.acquire(ctx, key)
		if !wait || !errors.Is(err, errLocked) {
			break
		}
		if sleepCtx(ctx, pollDelay(try)) != nil {
			return errLocked
		}
	}
	if err != nil {
		return err
	}
	w.cs()
	// Like gormmutex's Do, release even when ctx has ended meanwhile.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return w.d.release(rctx, id)
}

func (w *djangoWorker) close() {}

func (d *djangoContender) acquire(ctx context.Context, key string) (int64, error) {
	db := d.db.WithContext(ctx)
	cutoff := time.Now().UTC().Add(-d.ttl)
	if err := db.Transaction(func(tx *gorm.DB) error {
		return tx.Where("creation_time <= ?", cutoff).Delete(&djangoMutex{}).Error
	}); err != nil {
		return 0, err
	}
	m := djangoMutex{LockID: key, CreationTime: time.Now().UTC()}
	err := db.Transaction(func(tx *gorm.DB) error { return tx.Create(&m).Error })
	if err != nil {
		if isDuplicate(err) {
			return 0, errLocked
		}
		return 0, err
	}
	return m.ID, nil
}

func (d *djangoContender) release(ctx context.Context, id int64) error {
	var one []int
	if err := d.nt.WithContext(ctx).Raw("SELECT 1 AS a FROM "+djangoTable+" WHERE id = ? LIMIT 1", id).Scan(&one).Error; err != nil {
		return err
	}
	if len(one) == 0 {
		return errDjangoTimeout
	}
	return d.nt.WithContext(ctx).Delete(&djangoMutex{ID: id}).Error
}

func isDuplicate(err error) bool {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "Duplicate entry") ||
		strings.Contains(s, "SQLSTATE 23505")
}

// ---------------------------------------------------------------------------
// Native locks on a pinned connection: PostgreSQL advisory locks and MySQL's
// GET_LOCK. Fail-fast runs use the try form; waiting runs use the server's
// own blocking wait (the way these locks are used), bounded in time.

type nativeContender struct {
	kind string // "pg" or "mysql"
	db   *sql.DB
	c    *sqlcount.Counter
}

func (n *nativeContender) counts() sqlcount.Counts { return n.c.Snapshot() }
func (n *nativeContender) openConns() int          { return n.db.Stats().OpenConnections }
func (n *nativeContender) table() string           { return "" }
func (n *nativeContender) close()                  { n.db.Close() }

func (n *nativeContender) newWorker(ctx context.Context, cs func()) (worker, error) {
	conn, err := n.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &nativeWorker{n: n, conn: conn, cs: cs}, nil
}

type nativeWorker struct {
	n    *nativeContender
	conn *sql.Conn
	cs   func()
}

// pgKey hashes a lock id to the bigint key of an advisory lock.
func pgKey(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int64(h.Sum64())
}

func (w *nativeWorker) do(ctx context.Context, key string, wait bool) error {
	var got sql.NullInt64
	var err error
	switch w.n.kind {
	case "pg":
		k := pgKey(key)
		if wait {
			// The server queues waiters and wakes the next one on unlock.
			// Bounded; the measurement ends long before.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), waitFor)
			_, err = w.conn.ExecContext(wctx, "SELECT pg_advisory_lock($1)", k)
			cancel()
			got = sql.NullInt64{Int64: 1, Valid: err == nil}
		} else {
			var ok bool
			err = w.conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", k).Scan(&ok)
			if ok {
				got = sql.NullInt64{Int64: 1, Valid: true}
			}
		}
		if err != nil {
			return err
		}
		if got.Int64 != 1 {
			return errLocked
		}
		w.cs()
		var ok bool
		if err := w.conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", k).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("pg_advisory_unlock(%d) = false", k)
		}
		return nil
	default:
		if wait {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), waitFor)
			err = w.conn.QueryRowContext(wctx, "SELECT GET_LOCK(?, ?)", key, int(waitFor/time.Second)-1).Scan(&got)
			cancel()
		} else {
			err = w.conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", key).Scan(&got)
		}
		if err != nil {
			return err
		}
		if got.Int64 != 1 {
			return errLocked
		}
		w.cs()
		if err := w.conn.QueryRowContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", key).Scan(&got); err != nil {
			return err
		}
		if got.Int64 != 1 {
			return fmt.Errorf("RELEASE_LOCK(%q) = %v", key, got)
		}
		return nil
	}
}

func (w *nativeWorker) close() {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	q := "SELECT pg_advisory_unlock_all()"
	if w.n.kind != "pg" {
		q = "SELECT RELEASE_ALL_LOCKS()"
	}
	_, _ = w.conn.ExecContext(ctx, q)
	w.conn.Close()
}

// ---------------------------------------------------------------------------
// redsync on the local Redis, one node: SET NX PX to acquire, a Lua
// compare-and-delete (EVALSHA) to release. Its TTL is gormmutex's default.
// When asked to wait it retries with pollDelay (redsync's own default is 32
// tries 50 to 250 ms apart).

type redsyncContender struct {
	client *goredislib.Client
	rs     *redsync.Redsync
	c      *sqlcount.Counter
}

// redisHook counts every command sent (each one round trip).
type redisHook struct{ c *sqlcount.Counter }

func (h redisHook) DialHook(next goredislib.DialHook) goredislib.DialHook { return next }
func (h redisHook) ProcessHook(next goredislib.ProcessHook) goredislib.ProcessHook {
	return func(ctx context.Context, cmd goredislib.Cmder) error {
		h.c.Query.Add(1)
		return next(ctx, cmd)
	}
}
func (h redisHook) ProcessPipelineHook(next goredislib.ProcessPipelineHook) goredislib.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredislib.Cmder) error {
		h.c.Query.Add(1)
		return next(ctx, cmds)
	}
}

func newRedsync(ctx context.Context, addr string, poolSize int) (*redsyncContender, string, error) {
	client := goredislib.NewClient(&goredislib.Options{Addr: addr, PoolSize: poolSize, MinIdleConns: poolSize})
	info, err := client.Info(ctx, "server").Result()
	if err != nil {
		client.Close()
		return nil, "", err
	}
	version := ""
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			version = v
		}
	}
	c := &sqlcount.Counter{}
	client.AddHook(redisHook{c})
	return &redsyncContender{client: client, rs: redsync.New(goredis.NewPool(client)), c: c}, version, nil
}

func (r *redsyncContender) counts() sqlcount.Counts { return r.c.Snapshot() }
func (r *redsyncContender) openConns() int          { return int(r.client.PoolStats().TotalConns) }
func (r *redsyncContender) table() string           { return "" }
func (r *redsyncContender) close()                  { r.client.Close() }

func (r *redsyncContender) newWorker(_ context.Context, cs func()) (worker, error) {
	return &redsyncWorker{r: r, cs: cs}, nil
}

type redsyncWorker struct {
	r  *redsyncContender
	cs func()
}

func (w *redsyncWorker) do(ctx context.Context, key string, wait bool) error {
	m := w.r.rs.NewMutex(key, redsync.WithExpiry(gormmutex.DefaultTTL), redsync.WithTries(1))
	for try := 1; ; try++ {
		err := m.TryLockContext(ctx)
		if err == nil {
			break
		}
		var re *redsync.RedisError
		if errors.As(err, &re) {
			return err
		}
		if !wait || sleepCtx(ctx, pollDelay(try)) != nil {
			return errLocked
		}
	}
	w.cs()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	ok, err := m.UnlockContext(rctx)
	if err == nil && !ok {
		err = errors.New("redsync: unlock found the lock gone")
	}
	return err
}

func (w *redsyncWorker) close() {}
