package gormmutex_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/gormmutex/gormmutex"
	"gorm.io/gorm"
)

// errStaleHolder says that a holder with a newer fencing token has written
// the guarded row: this holder lost its lock and must stop.
var errStaleHolder = errors.New("a newer lock holder has written this row")

// fencedWrite updates the guarded row runID only if no newer holder has
// written it: the row's fence column holds the largest token that wrote it,
// and the write is refused for a token below that. "<=" lets one holder
// write several times with its token (progress, then the result).
func fencedWrite(ctx context.Context, db *gorm.DB, lk *gormmutex.Lock, runID int64, state string) error {
	res := db.WithContext(ctx).Exec(
		`UPDATE invoice_runs SET state = ?, fence = ? WHERE id = ? AND fence <= ?`,
		state, lk.Token(), runID, lk.Token())
	if res.Error != nil {
		return res.Error // the database failed: not a verdict on the token
	}
	if res.RowsAffected == 0 {
		return errStaleHolder // the row exists (see below), so the fence refused the write
	}
	return nil
}

// The fencing token makes a write safe even when its holder lost the lock
// without noticing (paused past its TTL, or force-released): the guarded
// row remembers the largest token that wrote it and refuses older ones.
func ExampleLock_Token() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()

	// The guarded row must exist, with a fence column, before any holder
	// writes: an UPDATE of a missing row also affects no rows, and would be
	// taken for a refusal.
	if err := db.Exec(`CREATE TABLE invoice_runs (
		id INTEGER PRIMARY KEY, state TEXT NOT NULL, fence BIGINT NOT NULL DEFAULT 0)`).Error; err != nil {
		log.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO invoice_runs (id, state) VALUES (1, 'pending')`).Error; err != nil {
		log.Fatal(err)
	}

	locker, err := gormmutex.New(db, gormmutex.DefaultConfig())
	if err != nil {
		panic(err)
	}

	// Holder A takes the lock and writes progress.
	a, err := locker.Acquire(ctx, "invoice-run")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("A writes progress:", fencedWrite(ctx, db, a, 1, "running"))

	// A stalls; meanwhile its lock is lost (here an operator force-releases
	// it) and holder B takes it, with a larger token.
	if err := locker.ForceRelease(ctx, "invoice-run"); err != nil {
		log.Fatal(err)
	}
	b, err := locker.Acquire(ctx, "invoice-run")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("B's token is larger:", b.Token() > a.Token())
	fmt.Println("B writes progress:", fencedWrite(ctx, db, b, 1, "running"))
	fmt.Println("B writes again with its token:", fencedWrite(ctx, db, b, 1, "done"))

	// A wakes up and writes with its old token: refused.
	err = fencedWrite(ctx, db, a, 1, "done by A")
	fmt.Println("A, stale:", err, errors.Is(err, errStaleHolder))
	fmt.Println("A's release:", errors.Is(a.Release(ctx), gormmutex.ErrTimeout))
	if err := b.Release(ctx); err != nil {
		log.Fatal(err)
	}

	var state string
	db.Raw(`SELECT state FROM invoice_runs WHERE id = 1`).Scan(&state)
	fmt.Println("state:", state)

	// Output:
	// A writes progress: <nil>
	// B's token is larger: true
	// B writes progress: <nil>
	// B writes again with its token: <nil>
	// A, stale: a newer lock holder has written this row true
	// A's release: true
	// state: done
}
