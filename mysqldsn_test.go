package gormmutex_test

import (
	"context"
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // America/New_York where the system has no zoneinfo

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
	"github.com/gormmutex/gormmutex/internal/testdb"
)

// TestMySQLDSNTimeOptions: every operation works, and reads the same times,
// whatever the MySQL DSN says of parseTime and loc: with parseTime=true,
// without it (the driver then returns DATETIME columns as bytes), and with
// a loc far from UTC, where the driver would read the table's UTC times
// as that zone's. Each read is compared with one through the suite's own
// DSN (parseTime=true, loc=UTC), and the times with the local clock. loc=Local
// is New York's time only when the test runs with TZ set so; the
// America/New_York variant is the same case whatever TZ says.
func TestMySQLDSNTimeOptions(t *testing.T) {
	t.Parallel()
	newYork, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	variants := []struct {
		name string
		set  func(cfg *gomysql.Config)
	}{
		{"parseTime", func(cfg *gomysql.Config) { cfg.ParseTime, cfg.Loc = true, time.UTC }},
		{"no parseTime", func(cfg *gomysql.Config) { cfg.ParseTime = false }},
		// Statements with arguments are prepared: the binary protocol.
		{"no parseTime, prepared", func(cfg *gomysql.Config) { cfg.ParseTime, cfg.InterpolateParams = false, false }},
		{"loc=Local", func(cfg *gomysql.Config) { cfg.ParseTime, cfg.Loc = true, time.Local }},
		{"loc=America/New_York", func(cfg *gomysql.Config) { cfg.ParseTime, cfg.Loc = true, newYork }},
		{"loc=America/New_York, session time zone +09:00", func(cfg *gomysql.Config) {
			cfg.ParseTime, cfg.Loc = true, newYork
			if cfg.Params == nil {
				cfg.Params = map[string]string{}
			}
			cfg.Params["time_zone"] = "'+09:00'"
		}},
	}
	testdb.Each(t, func(t *testing.T, b *testdb.Backend) {
		testdb.Need(t, b.Name == "mysql", "only a MySQL DSN has parseTime and loc")
		for _, v := range variants {
			t.Run(v.name, func(t *testing.T) {
				t.Parallel()
				everyOperation(t, b, b.WithMySQLConfig(t, v.set))
			})
		}
	})
}

// everyOperation runs each operation on a pool of backend v, and reads the
// rows back through ref as well.
func everyOperation(t *testing.T, ref, v *testdb.Backend) {
	ctx := context.Background()
	db := v.Pool(t)
	refLocker := newLocker(t, ref.Pool(t), gormmutex.DefaultConfig())
	a := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Holder: "A"})
	other := newLocker(t, db, gormmutex.Config{TTL: gormmutex.Duration(time.Minute), Holder: "B"})

	// sameRow checks that v reads lockID's row as ref does, and that its
	// times are the database's now, in UTC, not shifted by a time zone.
	sameRow := func(what string, got gormmutex.DBMutex, lockID string) {
		t.Helper()
		want, ok, err := refLocker.Lookup(ctx, lockID)
		require.NoError(t, err, "%s: Lookup through the suite's DSN", what)
		require.True(t, ok, "%s: no live row through the suite's DSN", what)
		assert.Equal(t, want.ID, got.ID, "%s: id", what)
		assert.Equal(t, want.Holder, got.Holder, "%s: holder", what)
		assert.Equal(t, want.Version, got.Version, "%s: version", what)
		assert.True(t, want.CreatedAt.Equal(got.CreatedAt), "%s: created_at %v, want %v", what, got.CreatedAt, want.CreatedAt)
		require.NotNil(t, got.ExpiresAt, "%s: expires_at", what)
		require.NotNil(t, want.ExpiresAt, "%s: expires_at through the suite's DSN", what)
		assert.True(t, want.ExpiresAt.Equal(*got.ExpiresAt), "%s: expires_at %v, want %v", what, *got.ExpiresAt, *want.ExpiresAt)
		d := time.Since(got.CreatedAt)
		assert.True(t, d > -2*time.Second && d < 10*time.Second, "%s: created_at %v is %v from now", what, got.CreatedAt, d)
		left := time.Until(*got.ExpiresAt)
		assert.True(t, left > time.Minute-10*time.Second && left < time.Minute+2*time.Second,
			"%s: expires_at %v is %v from now, want about the TTL (1m)", what, *got.ExpiresAt, left)
	}

	require.NoError(t, gormmutex.AutoMigrate(db), "AutoMigrate")

	// Do.
	ran := false
	require.NoError(t, a.Do(ctx, testdb.LockID(t), func(context.Context) error { ran = true; return nil }))
	require.True(t, ran, "Do did not run fn")

	// ErrLocked says who holds the lock; Lookup and List read its row.
	id := testdb.LockID(t)
	lk := mustAcquire(t, a, id)
	releaseAtEnd(t, lk)
	_, err := other.Acquire(ctx, id)
	require.ErrorIs(t, err, gormmutex.ErrLocked)
	var held *gormmutex.HeldError
	require.True(t, errors.As(err, &held), "ErrLocked without a *HeldError: %v", err)
	assert.Equal(t, withHostPID("A"), held.Holder)
	assert.Equal(t, lk.Token(), held.Token)
	sameRow("HeldError", gormmutex.DBMutex{ID: held.Token, Holder: held.Holder, CreatedAt: held.Since, ExpiresAt: &held.Until}, id)
	assert.Equal(t, time.Minute, held.Until.Sub(held.Since), "HeldError: Until - Since")

	require.NoError(t, lk.Refresh(ctx))
	row, ok, err := a.Lookup(ctx, id)
	require.NoError(t, err, "Lookup")
	require.True(t, ok, "Lookup found no live row")
	assert.Equal(t, int64(1), row.Version, "version after one Refresh")
	rows, err := a.List(ctx)
	require.NoError(t, err, "List")
	found := false
	for _, r := range rows {
		if r.LockID == id {
			found = true
			sameRow("List", r, id)
		}
	}
	assert.True(t, found, "List left out %q", id)
	// Lookup's expiry moved with the Refresh, so compare it now.
	row, _, err = a.Lookup(ctx, id)
	require.NoError(t, err)
	sameRow("Lookup", row, id)

	// A semaphore of two permits.
	sem := newSemaphore(t, a, testdb.LockID(t), 2)
	p1, err := sem.Acquire(ctx)
	require.NoError(t, err, "first permit")
	p2, err := sem.Acquire(ctx)
	require.NoError(t, err, "second permit")
	_, err = newSemaphore(t, other, sem.Name(), 2).Acquire(ctx)
	require.ErrorIs(t, err, gormmutex.ErrLocked, "third permit")
	require.NoError(t, p1.Release(ctx))
	require.NoError(t, p2.Release(ctx))

	// Expiry, takeover and purge.
	expiring := testdb.LockID(t)
	short := newLocker(t, db, ttl(time.Second))
	old := mustAcquire(t, short, expiring)
	_, err = other.Acquire(ctx, expiring)
	require.ErrorIs(t, err, gormmutex.ErrLocked, "Acquire before the expiry")
	time.Sleep(1500 * time.Millisecond)
	taken := mustAcquire(t, short, expiring)
	assert.Greater(t, taken.Token(), old.Token(), "the takeover's token")
	require.ErrorIs(t, old.Release(ctx), gormmutex.ErrTimeout, "the expired holder's Release")
	require.NoError(t, taken.Refresh(ctx))
	time.Sleep(1500 * time.Millisecond)
	_, ok, err = a.Lookup(ctx, expiring)
	require.NoError(t, err)
	assert.False(t, ok, "Lookup found the expired lock live")
	_, err = a.Purge(ctx)
	require.NoError(t, err, "Purge")
	assert.Zero(t, countRows(t, ref.Pool(t), "SELECT COUNT(*) FROM "+gormmutex.TableName+" WHERE lock_id = ?", expiring), "the expired row after Purge")

	electEveryStep(t, db, refLocker)
}

// electEveryStep runs an election on db: Observe, a campaign, renewals and
// a resignation.
func electEveryStep(t *testing.T, db *gorm.DB, refLocker *gormmutex.Locker) {
	ctx := context.Background()
	name := electionName(t)
	const lease = 2 * time.Second
	observer := newElection(t, db, name, gormmutex.Config{TTL: gormmutex.Duration(lease)}, gormmutex.WithRetryPeriod(100*time.Millisecond))
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	observed := observer.Observe(octx)
	next := func(what string) gormmutex.Leader {
		t.Helper()
		select {
		case ld, ok := <-observed:
			require.True(t, ok, "Observe's channel closed before %s", what)
			return ld
		case <-time.After(10 * time.Second):
			require.FailNow(t, "Observe did not report "+what)
			return gormmutex.Leader{}
		}
	}
	assert.Zero(t, next("that nobody leads").Term, "Observe's first report")

	leader := startRunner(t, newElection(t, db, name, gormmutex.Config{TTL: gormmutex.Duration(lease), Holder: "L"},
		gormmutex.WithRetryPeriod(200*time.Millisecond)))
	term := leader.waitLead(t, 30*time.Second)
	ld := next("the leader")
	assert.Equal(t, term, ld.Term, "Observe's leader")
	assert.Equal(t, "L", ld.Holder)
	got, ok, err := observer.Leader(ctx)
	require.NoError(t, err, "Leader")
	require.True(t, ok, "Leader found nobody")
	want, ok, err := refLocker.Lookup(ctx, name)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, want.CreatedAt.Equal(got.Since), "Leader's since %v, want %v", got.Since, want.CreatedAt)

	// The leader renews its lease: it is still the leader after three
	// leases, with the same term.
	time.Sleep(3 * lease)
	require.True(t, leader.e.IsLeader(), "the leader lost its lease")
	row, ok, err := refLocker.Lookup(ctx, name)
	require.NoError(t, err)
	require.True(t, ok, "the leader's lease is not live")
	assert.Equal(t, term, row.ID, "the leader's term after its renewals")
	assert.Positive(t, row.Version, "the leader's renewals")

	require.NoError(t, leader.e.Resign(ctx), "Resign")
	assert.Zero(t, next("that nobody leads after the resignation").Term, "Observe after Resign")
}
