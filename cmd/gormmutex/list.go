package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

// listOptions are list's own flags.
type listOptions struct {
	// olderThan marks the locks acquired longer ago; 0 marks none.
	olderThan time.Duration
}

func listFlags(o *options, fs *flag.FlagSet) {
	fs.DurationVar(&o.list.olderThan, "older-than", o.list.olderThan, "")
}

func checkList(o *options) error {
	if o.list.olderThan < 0 {
		return usagef("-older-than must not be negative")
	}
	return nil
}

// lockJSON is one lock in list -json. Its keys are a stable interface,
// documented in the package doc: add keys, never change or remove one.
type lockJSON struct {
	LockID    string  `json:"lock_id"`
	Holder    string  `json:"holder"`
	Token     int64   `json:"token"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	// AgeSeconds is how long ago the lock was acquired.
	AgeSeconds float64 `json:"age_seconds"`
	// ExpiresInSeconds is how long the lease has left; nil for never.
	ExpiresInSeconds *float64 `json:"expires_in_seconds"`
	// Old says that -older-than is set and the lock is older.
	Old bool `json:"old"`
}

func cmdList(ctx context.Context, e *env, _ []string) error {
	rows, err := e.locker.List(ctx)
	if err != nil {
		return err
	}
	// Ages are measured on the clock that stamped the rows.
	now, err := dbNow(ctx, e.db, e.kind)
	if err != nil {
		return fmt.Errorf("read the database's clock: %w", err)
	}
	olderThan := e.opts.list.olderThan
	if e.json {
		out := make([]lockJSON, 0, len(rows))
		for _, r := range rows {
			age := max(now.Sub(r.CreatedAt), 0)
			j := lockJSON{
				LockID: r.LockID, Holder: r.Holder, Token: r.ID, CreatedAt: formatTime(r.CreatedAt),
				AgeSeconds: seconds(age),
				Old:        olderThan > 0 && age > olderThan,
			}
			if r.ExpiresAt != nil {
				s := formatTime(*r.ExpiresAt)
				left := seconds(max(r.ExpiresAt.Sub(now), 0))
				j.ExpiresAt, j.ExpiresInSeconds = &s, &left
			}
			out = append(out, j)
		}
		return e.writeJSON(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	header := "LOCK_ID\tHOLDER\tTOKEN\tACQUIRED\tAGE\tEXPIRES\tLEFT"
	if olderThan > 0 {
		header += "\tOLD"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		age := max(now.Sub(r.CreatedAt), 0)
		expires, left := "never", "never"
		if r.ExpiresAt != nil {
			expires, left = formatTime(*r.ExpiresAt), formatDuration(r.ExpiresAt.Sub(now))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s", display(r.LockID), display(r.Holder), r.ID,
			formatTime(r.CreatedAt), formatDuration(age), expires, left)
		if olderThan > 0 {
			old := "no"
			if age > olderThan {
				old = "yes"
			}
			fmt.Fprintf(tw, "\t%s", old)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// seconds returns d in seconds, to the millisecond.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}

// formatDuration prints an age or a time left for people: to the tenth of
// a second below ten seconds, to the second above; never negative.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// dbNow reads the database's clock, in the form the lock table's times
// are written.
func dbNow(ctx context.Context, db *gorm.DB, kind dbopen.Kind) (time.Time, error) {
	db = db.WithContext(ctx)
	switch kind {
	case dbopen.Postgres:
		var t time.Time
		err := db.Raw("SELECT now()").Row().Scan(&t)
		return t, err
	case dbopen.MySQL:
		// The table holds UTC; the connection parses times as UTC.
		var t time.Time
		err := db.Raw("SELECT UTC_TIMESTAMP(6)").Row().Scan(&t)
		return t, err
	default:
		// Text in UTC, to the millisecond, as the library writes it.
		var s string
		if err := db.Raw("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").Row().Scan(&s); err != nil {
			return time.Time{}, err
		}
		return time.Parse("2006-01-02 15:04:05.000", s)
	}
}
