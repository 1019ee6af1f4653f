// Command gormmutex inspects and manages the lock table (db_mutexes) of
// github.com/gormmutex/gormmutex, for operators.
//
// Usage:
//
//	gormmutex [flags] command [arguments]
//
// The commands are:
//
//	list             list the live locks: LOCK_ID, HOLDER, TOKEN,
//	                 ACQUIRED and EXPIRES ("never" for no expiry)
//	release LOCK_ID  force-release the live lock LOCK_ID, whoever holds it;
//	                 its holder learns at its next refresh or release
//	purge            delete the expired lock rows and print how many
//	migrate          create the lock table and its indexes if missing
//	help             print the usage
//
// The flags may come before or after the command:
//
//	-dsn DSN
//		the database (default $GORMMUTEX_DSN)
//	-json
//		print JSON for scripts instead of a table or a sentence
//	-connect-timeout DURATION
//		give up connecting after this long (default 5s)
//	-timeout DURATION
//		give up on the whole command after this long (default 1m; 0: never)
//
// The DSN's shape says which database it is:
//
//	postgres://user:pass@host:5432/db?sslmode=disable  PostgreSQL URL (or postgresql://)
//	host=db1 user=app dbname=app sslmode=disable        PostgreSQL key=value DSN
//	user:pass@tcp(db1:3306)/app                         MySQL or MariaDB
//	/var/lib/app/locks.db, file:locks.db, sqlite:x.db   SQLite; anything else is a path
//
// A MySQL DSN gets parseTime=true and loc=UTC (the table holds UTC times),
// and interpolateParams=true unless it sets it. A SQLite DSN gets
// _busy_timeout=5000 unless it sets a busy timeout. A SQLite file must
// exist except for migrate, which creates it. Messages never show the
// DSN's password.
//
// Times are printed in UTC, RFC 3339 with milliseconds. A lock id (or
// holder) that is empty, starts with a double quote, has leading or
// trailing space, or holds a control, format or other non-graphic
// character is printed as a Go quoted string. Pass an id that starts with
// "-" after "--": gormmutex release -- -odd-id.
//
// With -json, list prints an array of objects with lock_id, holder, token,
// created_at and expires_at (null for never); release prints
// {"lock_id": ..., "released": true}, purge {"purged": N} and migrate
// {"migrated": true, "table": "db_mutexes"}. Errors always go to standard
// error as text.
//
// The exit status is 0 on success, 1 on an operational error (no live lock
// with that id, a database that cannot be reached, a failed statement) and
// 2 on a usage error (unknown command or flag, missing or extra argument).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gormmutex/gormmutex"
	"gorm.io/gorm"
)

const usage = `Usage: gormmutex [flags] command [arguments]

Inspect and manage the lock table (db_mutexes) of github.com/gormmutex/gormmutex.

Commands:
  list             list the live locks
  release LOCK_ID  force-release the live lock LOCK_ID, whoever holds it
  purge            delete the expired lock rows and print how many
  migrate          create the lock table and its indexes if missing
  help             print this help

Flags (before or after the command):
  -dsn DSN                   the database (default $GORMMUTEX_DSN)
  -json                      print JSON instead of a table or a sentence
  -connect-timeout DURATION  give up connecting after this long (default 5s)
  -timeout DURATION          give up on the whole command after this long
                             (default 1m; 0: never)

DSN forms:
  postgres://user:pass@host:5432/db?sslmode=disable  PostgreSQL (or postgresql://)
  host=db1 user=app dbname=app sslmode=disable        PostgreSQL key=value
  user:pass@tcp(db1:3306)/app                         MySQL or MariaDB
  /path/locks.db, file:locks.db, sqlite:locks.db      SQLite (anything else too)

Exit status: 0 ok, 1 operational error, 2 usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags, which every command shares.
type options struct {
	dsn            string
	json           bool
	connectTimeout time.Duration
	timeout        time.Duration
}

// flagSet registers the flags on a new FlagSet, their defaults being o's
// current values, so that flags after the command override those before.
func (o *options) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	fs.StringVar(&o.dsn, "dsn", o.dsn, "")
	fs.BoolVar(&o.json, "json", o.json, "")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", o.connectTimeout, "")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "")
	return fs
}

// A command is one subcommand.
type command struct {
	args   []string // names of the positional arguments, all required
	create bool     // may create a missing SQLite file
	run    func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]command{
	"list":    {run: cmdList},
	"release": {args: []string{"LOCK_ID"}, run: cmdRelease},
	"purge":   {run: cmdPurge},
	"migrate": {create: true, run: cmdMigrate},
}

// env is what a command works with.
type env struct {
	db     *gorm.DB
	locker *gormmutex.Locker
	json   bool
	stdout io.Writer
}

// usageError is the caller's mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := options{connectTimeout: 5 * time.Second, timeout: time.Minute}
	name, cmd, rest, err := parseArgs(&o, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "gormmutex: %v\n\n%s", err, usage)
		return 2
	}

	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	t, err := parseDSN(o.dsn, cmd.create, o.connectTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "gormmutex: %s\n", redact(err.Error(), dsnSecrets(o.dsn)))
		return 1
	}
	fail := func(err error) int {
		msg := err.Error()
		if ctx.Err() != nil && o.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg += fmt.Sprintf(" (gave up after -timeout %v)", o.timeout)
		}
		fmt.Fprintf(stderr, "gormmutex: %s: %s\n", name, redact(msg, t.secrets))
		return 1
	}
	db, err := t.open(ctx, o.connectTimeout)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	}()
	e := &env{
		db:     db,
		locker: gormmutex.New(db, gormmutex.Config{}),
		json:   o.json,
		stdout: stdout,
	}
	if err := cmd.run(ctx, e, rest); err != nil {
		return fail(e.explain(ctx, err))
	}
	return 0
}

// parseArgs parses the flags before the command, the command, and the
// flags and arguments after it. An error other than flag.ErrHelp is a usage
// error.
func parseArgs(o *options, args []string) (string, command, []string, error) {
	global := o.flagSet("gormmutex")
	if err := global.Parse(args); err != nil {
		return "", command{}, nil, err
	}
	args = global.Args()
	if len(args) == 0 {
		return "", command{}, nil, usagef("missing command")
	}
	name := args[0]
	if name == "help" {
		return name, command{}, nil, flag.ErrHelp
	}
	cmd, ok := commands[name]
	if !ok {
		return name, cmd, nil, usagef("unknown command %s", strconv.Quote(name))
	}
	fs := o.flagSet("gormmutex " + name)
	if err := fs.Parse(args[1:]); err != nil {
		return name, cmd, nil, err
	}
	rest := fs.Args()
	switch {
	case len(rest) < len(cmd.args):
		return name, cmd, nil, usagef("%s: missing %s", name, strings.Join(cmd.args[len(rest):], " "))
	case len(rest) > len(cmd.args):
		return name, cmd, nil, usagef("%s: unexpected argument %s (flags go before the arguments)", name, strconv.Quote(rest[len(cmd.args)]))
	}
	if name == "release" {
		if err := checkLockID(rest[0]); err != nil {
			return name, cmd, nil, usagef("release: %v", err)
		}
	}
	if o.dsn == "" {
		o.dsn = os.Getenv("GORMMUTEX_DSN")
	}
	switch {
	case o.dsn == "":
		return name, cmd, nil, usagef("no database: set -dsn or GORMMUTEX_DSN")
	case o.connectTimeout <= 0:
		return name, cmd, nil, usagef("-connect-timeout must be positive")
	case o.timeout < 0:
		return name, cmd, nil, usagef("-timeout must not be negative")
	}
	return name, cmd, rest, nil
}

// checkLockID applies the library's rule for lock ids, so that a bad one
// is a usage error and no SQL runs.
func checkLockID(id string) error {
	if err := gormmutex.ValidateLockID(id); err != nil {
		return fmt.Errorf("LOCK_ID: %w", err)
	}
	return nil
}

// explain adds a hint to err when the lock table is missing.
func (e *env) explain(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if !e.db.WithContext(hctx).Migrator().HasTable(gormmutex.TableName) && hctx.Err() == nil {
		return fmt.Errorf("%w (table %s does not exist: run the migrate command first)", err, gormmutex.TableName)
	}
	return err
}

// timeFormat is RFC 3339 with milliseconds; times are printed in UTC.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// lockJSON is one lock in list -json.
type lockJSON struct {
	LockID    string  `json:"lock_id"`
	Holder    string  `json:"holder"`
	Token     int64   `json:"token"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
}

func cmdList(ctx context.Context, e *env, _ []string) error {
	rows, err := e.locker.List(ctx)
	if err != nil {
		return err
	}
	if e.json {
		out := make([]lockJSON, 0, len(rows))
		for _, r := range rows {
			j := lockJSON{LockID: r.LockID, Holder: r.Holder, Token: r.ID, CreatedAt: formatTime(r.CreatedAt)}
			if r.ExpiresAt != nil {
				s := formatTime(*r.ExpiresAt)
				j.ExpiresAt = &s
			}
			out = append(out, j)
		}
		return e.writeJSON(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCK_ID\tHOLDER\tTOKEN\tACQUIRED\tEXPIRES")
	for _, r := range rows {
		expires := "never"
		if r.ExpiresAt != nil {
			expires = formatTime(*r.ExpiresAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", display(r.LockID), display(r.Holder), r.ID, formatTime(r.CreatedAt), expires)
	}
	return tw.Flush()
}

func cmdRelease(ctx context.Context, e *env, args []string) error {
	id := args[0]
	if err := e.locker.ForceRelease(ctx, id); err != nil {
		if errors.Is(err, gormmutex.ErrNotHeld) {
			return fmt.Errorf("no live lock with id %s (never taken, already released, or expired)", strconv.Quote(id))
		}
		return err
	}
	if e.json {
		return e.writeJSON(struct {
			LockID   string `json:"lock_id"`
			Released bool   `json:"released"`
		}{id, true})
	}
	_, err := fmt.Fprintf(e.stdout, "released lock %s\n", strconv.Quote(id))
	return err
}

func cmdPurge(ctx context.Context, e *env, _ []string) error {
	n, err := e.locker.Purge(ctx)
	if err != nil {
		if n > 0 {
			return fmt.Errorf("purged %d expired locks, then: %w", n, err)
		}
		return err
	}
	if e.json {
		return e.writeJSON(struct {
			Purged int64 `json:"purged"`
		}{n})
	}
	noun := "locks"
	if n == 1 {
		noun = "lock"
	}
	_, err = fmt.Fprintf(e.stdout, "purged %d expired %s\n", n, noun)
	return err
}

func cmdMigrate(ctx context.Context, e *env, _ []string) error {
	if err := gormmutex.AutoMigrate(e.db.WithContext(ctx)); err != nil {
		return err
	}
	if e.json {
		return e.writeJSON(struct {
			Migrated bool   `json:"migrated"`
			Table    string `json:"table"`
		}{true, gormmutex.TableName})
	}
	_, err := fmt.Fprintf(e.stdout, "table %s is ready\n", gormmutex.TableName)
	return err
}

func (e *env) writeJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// display returns s as is, or quoted when printing it as is could mislead
// or mangle the terminal: empty, not UTF-8, starting with a double quote,
// with leading or trailing space, or holding a character that is not
// graphic (controls such as tab and newline, format characters such as
// bidirectional overrides, line separators).
func display(s string) string {
	if s == "" || !utf8.ValidString(s) || s[0] == '"' || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
