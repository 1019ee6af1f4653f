// Command gormmutex inspects and manages the lock table (db_mutexes) of
// github.com/gormmutex/gormmutex, and runs commands under a lock: a
// flock(1) across machines, for crontabs and scripts.
//
// Usage:
//
//	gormmutex [flags] command [arguments]
//
// The commands are:
//
//	list             list the live locks, with their age and time left
//	run LOCK_ID -- COMMAND [ARGS...]
//	                 take the lock, run COMMAND, release the lock when
//	                 COMMAND exits, and exit with COMMAND's status
//	release LOCK_ID  force-release the live lock LOCK_ID, whoever holds it;
//	                 its holder learns at its next renewal or release
//	purge            delete the expired lock rows and print how many
//	migrate          create the lock table and its indexes if missing
//	help             print the usage
//
// Flags may come anywhere: before the command, after it, or after its
// arguments ("gormmutex release reindex -json" works). A "--" ends the
// flags: every argument after it is an argument, never a flag; pass a lock
// id that starts with "-" after it (gormmutex release -- -odd-id;
// gormmutex run -- -odd-id -- COMMAND). In run, everything after the "--"
// that follows LOCK_ID belongs to COMMAND.
//
// Flags of every command:
//
//	-dsn DSN
//		the database (default $GORMMUTEX_DSN)
//	-json
//		print JSON for scripts instead of a table or a sentence, and
//		errors as JSON too
//	-connect-timeout DURATION
//		give up connecting after this long (default 5s)
//	-timeout DURATION
//		give up on the whole command after this long (default 1m; 0:
//		never); run does not take it: -wait bounds its wait for the lock,
//		and COMMAND runs as long as it runs
//	-table NAME
//		the lock table (default db_mutexes), as the application's
//		Config.Table names it: an application whose GORM NamingStrategy
//		has a TablePrefix uses the prefixed name (app_db_mutexes);
//		migrate creates that table
//
// Flags of list:
//
//	-older-than DURATION
//		mark the locks acquired longer ago than this (column OLD; "old"
//		in JSON)
//
// Flags of run:
//
//	-wait DURATION
//		wait this long for a lock that is held (default 0: fail at once)
//	-ttl DURATION
//		the lock's lease (default 30m): if gormmutex dies, the lock frees
//		itself this long after it was taken or last renewed
//	-keepalive
//		renew the lease about every TTL/3 while COMMAND runs
//	-min-hold DURATION
//		keep the lock taken at least this long after it was acquired,
//		even when COMMAND ends sooner, so that schedules which drift apart
//		on different machines do not run a short job twice
//	-conflict-exit-code N
//		the exit status when the lock is held (default 1, like flock -E)
//	-kill-after DURATION
//		when the lease is lost, the time between SIGTERM and SIGKILL
//		(default 10s; 0: SIGKILL at once)
//	-quiet
//		say nothing when the lock is held
//	-holder NAME
//		the holder's name in the lock table, which list shows as
//		"NAME (host:pid)" (default: host:pid alone)
//	-permits N
//		take one of N permits of the semaphore LOCK_ID instead of the
//		lock LOCK_ID: at most N such commands run at once, across every
//		machine on the database; every run of LOCK_ID must give the same
//		N (default 0: the lock)
//
// # run
//
// run takes the lock LOCK_ID (failing at once, or after -wait, when it is
// held), starts COMMAND with GORMMUTEX_LOCK_ID and GORMMUTEX_TOKEN (the
// lock's fencing token) added to its environment, waits for it to exit,
// releases the lock and exits with COMMAND's status. COMMAND is looked up
// in $PATH before the lock is taken.
//
// With -permits N, run takes one of N permits of the semaphore LOCK_ID
// (the library's Locker.Semaphore) instead of the lock: N commands may run
// at once, the next one fails (or waits, with -wait) until one ends. A
// permit is a lock on one of the semaphore's slots, so -ttl, -keepalive,
// -min-hold and the lost lease work as for a lock; GORMMUTEX_LOCK_ID is
// the slot's lock id, which list shows ("gormmutex/semaphore/LOCK_ID/N/I").
// The semaphore LOCK_ID and the lock LOCK_ID are unrelated: every run of
// one job must give the same -permits.
//
// The message of a lost lease names one cause, the same whichever part of
// run found it: it was force-released, or its lease expired before it
// could be renewed (the process was paused, or the database did not answer
// in time).
//
// COMMAND runs in a process group of its own, so that gormmutex can signal
// COMMAND and every process it started (a shell script's children too),
// and so that each signal reaches them exactly once: SIGINT, SIGTERM,
// SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to gormmutex, by kill, by
// systemd or cron stopping the job, or by Ctrl-C at a terminal, are passed
// to that group, and the lock is released once COMMAND has exited. Killing
// gormmutex's own process group (kill -- -PGID) does not reach COMMAND:
// signal gormmutex. The price of the group of its own is the terminal: a
// COMMAND that reads from the terminal is stopped by SIGTTIN, so run
// interactive programs with their input redirected, or not under run.
//
// If the lease is lost while COMMAND runs (with -keepalive, a renewal
// finds the lock force-released or expired, or cannot reach the database
// before the lease runs out), COMMAND's process group gets SIGTERM, then
// SIGKILL after -kill-after if any of it is still running, and gormmutex
// exits with status 122. Without -keepalive nothing is renewed and nothing
// is watched: if the lease ran out (or the lock was force-released) before
// COMMAND ended, the release finds out and gormmutex exits with status
// 123. Either way another holder may have run at the same time.
//
// If gormmutex itself is killed (SIGKILL, a crash, the machine going down),
// its lock stays until the lease runs out, like any crashed holder's, and
// COMMAND is not stopped. Choose -ttl with that in mind: long enough for
// the job, or short with -keepalive.
//
// Exit status of run:
//
//	COMMAND's    COMMAND ran and the lock was released in time; 128+N if
//	             COMMAND was killed by signal N
//	1            the lock is held (set by -conflict-exit-code)
//	2            usage error
//	122          the lease was lost while COMMAND ran, and COMMAND was
//	             stopped
//	123          the lease expired (or was force-released) before COMMAND
//	             ended; COMMAND's own status is in the message
//	125          gormmutex failed before COMMAND ran: database unreachable,
//	             lock table missing, statement failed
//	126          COMMAND cannot be executed
//	127          COMMAND was not found
//	128+N        gormmutex got signal N while waiting for the lock
//
// A release that fails after COMMAND ended (the database went away) is
// reported on standard error, and gormmutex exits with COMMAND's status:
// the lock then stays until its lease runs out.
//
// # DSNs
//
// The DSN's shape says which database it is:
//
//	postgres://user:pass@host:5432/db?sslmode=disable  PostgreSQL URL (or postgresql://)
//	host=db1 user=app dbname=app sslmode=disable        PostgreSQL key=value DSN
//	mysql://user:pass@db1:3306/app?tls=true             MySQL or MariaDB URL (or mariadb://)
//	user:pass@tcp(db1:3306)/app                         MySQL or MariaDB, go-sql-driver's DSN
//	/var/lib/app/locks.db, file:locks.db, sqlite:x.db   SQLite; a string without a scheme is a path
//
// A string with any other scheme (foo://...) is an error that names the
// forms accepted: it is never taken for a SQLite file. A mysql:// URL's
// user and password are percent-decoded, the port is 3306 unless given,
// a socket=PATH parameter names a Unix socket, and every other parameter
// is the driver's (as in its own DSN). A MySQL DSN gets parseTime=true and loc=UTC (the table holds UTC times),
// and interpolateParams=true unless it sets it. A SQLite DSN gets
// _busy_timeout=5000 unless it sets a busy timeout. A SQLite file must
// exist except for migrate, which creates it. Messages never show the
// DSN's password.
//
// # Output
//
// Times are printed in UTC, RFC 3339 with milliseconds. Ages and times
// left are measured on the database's clock. A lock id (or holder) that
// is empty, starts with a double quote, has leading or trailing space, or
// holds a control, format or other non-graphic character is printed as a
// Go quoted string.
//
// With -json, list prints an array of objects, one per live lock:
//
//	{
//	  "lock_id": "nightly-report",
//	  "holder": "host1:4242",
//	  "token": 17,
//	  "created_at": "2026-01-02T03:04:05.678Z",
//	  "expires_at": "2026-01-02T03:34:05.678Z",  (null: never expires)
//	  "age_seconds": 12.345,
//	  "expires_in_seconds": 1787.655,             (null: never expires)
//	  "old": false                                (true: past -older-than)
//	}
//
// release prints {"lock_id": ..., "released": true}, purge {"purged": N}
// and migrate {"migrated": true, "table": "db_mutexes"} (the table's name);
// run prints
// nothing of its own on standard output.
//
// Errors go to standard error, as one line of text, or with -json as one
// JSON object on one line:
//
//	{"error": "no live lock with id \"x\" ...", "kind": "not_held",
//	 "command": "release", "lock_id": "x", "exit_status": 1,
//	 "command_status": null}
//
// error is the message; kind is one of usage, error (any other failure of
// gormmutex: database, connection, timeout), not_held (release: no live
// lock), locked (run: the lock is held), interrupted (run: a signal while
// waiting for the lock), lease_lost, lease_expired, release_failed (run:
// the release after COMMAND failed), cannot_execute and not_found (run:
// COMMAND); command is the command's name ("" if there was none); lock_id
// is null where no lock is concerned; exit_status is gormmutex's exit
// status; command_status is COMMAND's exit status where run started it,
// else null. New kinds and keys may be added; the existing ones keep their
// meaning. run shares standard error with COMMAND, so there gormmutex's
// error is the last line, after whatever COMMAND wrote.
//
// Exit status of the other commands: 0 on success, 1 on an operational
// error (no live lock with that id, a database that cannot be reached, a
// failed statement) and 2 on a usage error (unknown command or flag,
// missing or extra argument).
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
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gormmutex/gormmutex"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex/internal/dbopen"
)

const usage = `Usage: gormmutex [flags] command [arguments]

Inspect and manage the lock table (db_mutexes, or -table) of github.com/gormmutex/gormmutex,
and run commands under a lock.

Commands:
  list             list the live locks, with their age and time left
  run LOCK_ID -- COMMAND [ARGS...]
                   take the lock, run COMMAND, release the lock when it
                   exits, and exit with its status
  release LOCK_ID  force-release the live lock LOCK_ID, whoever holds it
  purge            delete the expired lock rows and print how many
  migrate          create the lock table and its indexes if missing
  help             print this help

Flags (anywhere before a "--"):
  -dsn DSN                   the database (default $GORMMUTEX_DSN)
  -json                      print JSON instead of a table or a sentence,
                             and errors as JSON on stderr
  -connect-timeout DURATION  give up connecting after this long (default 5s)
  -timeout DURATION          give up on the whole command after this long
                             (default 1m; 0: never; not for run)
  -table NAME                the lock table (default db_mutexes), as the
                             application's Config.Table names it

Flags of list:
  -older-than DURATION       mark the locks acquired longer ago than this

Flags of run:
  -wait DURATION             wait this long for a held lock (default 0)
  -ttl DURATION              the lock's lease (default 30m)
  -keepalive                 renew the lease while COMMAND runs
  -min-hold DURATION         keep the lock at least this long
  -conflict-exit-code N      exit status when the lock is held (default 1)
  -kill-after DURATION       SIGTERM to SIGKILL when the lease is lost
                             (default 10s)
  -quiet                     say nothing when the lock is held
  -holder NAME               the holder list shows: "NAME (host:pid)"
  -permits N                 take one of N permits of the semaphore LOCK_ID:
                             at most N such commands at once (default 0: a lock)

run exit status: COMMAND's (128+N if killed by signal N); 1 lock held
(-conflict-exit-code); 122 lease lost, COMMAND stopped; 123 lease expired
before COMMAND ended; 125 gormmutex failed; 126 COMMAND cannot be executed;
127 COMMAND not found. Signals to gormmutex go to COMMAND's process group.

DSN forms:
  postgres://user:pass@host:5432/db?sslmode=disable  PostgreSQL (or postgresql://)
  host=db1 user=app dbname=app sslmode=disable        PostgreSQL key=value
  mysql://user:pass@db1:3306/app?tls=true             MySQL or MariaDB (or mariadb://)
  user:pass@tcp(db1:3306)/app                         MySQL or MariaDB
  /path/locks.db, file:locks.db, sqlite:locks.db      SQLite (a path without a scheme)
  Any other scheme (foo://) is an error.

Exit status of the other commands: 0 ok, 1 operational error, 2 usage error.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags.
type options struct {
	// Every command's.
	dsn            string
	json           bool
	connectTimeout time.Duration
	timeout        time.Duration
	timeoutSet     bool   // -timeout was given
	table          string // -table: Config.Table of every command

	list listOptions
	run  runOptions
}

func defaultOptions() options {
	return options{
		connectTimeout: 5 * time.Second,
		timeout:        time.Minute,
		run:            defaultRunOptions(),
	}
}

// flagSet returns a FlagSet with every command's flags, and cmd's own
// when cmd is not nil.
func (o *options) flagSet(cmd *command) *flag.FlagSet {
	name := "gormmutex"
	if cmd != nil {
		name += " " + cmd.name
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage itself
	fs.StringVar(&o.dsn, "dsn", o.dsn, "")
	fs.BoolVar(&o.json, "json", o.json, "")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", o.connectTimeout, "")
	fs.StringVar(&o.table, "table", o.table, "")
	fs.Func("timeout", "", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("parse error")
		}
		o.timeout, o.timeoutSet = d, true
		return nil
	})
	if cmd != nil && cmd.flags != nil {
		cmd.flags(o, fs)
	}
	return fs
}

// A command is one subcommand.
type command struct {
	name string
	args []string // names of the positional arguments, all required
	// flags registers the command's own flags.
	flags func(o *options, fs *flag.FlagSet)
	// check reports a usage error in the command's own options.
	check  func(o *options) error
	create bool // may create a missing SQLite file
	// long commands (run) handle signals themselves and take no -timeout.
	long bool
	// conns is how many connections the pool may open.
	conns int
	// failStatus is the exit status of an operational error.
	failStatus int
	run        func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]*command{}

func init() {
	for _, c := range []*command{
		{name: "list", flags: listFlags, check: checkList, run: cmdList},
		{name: "run", args: []string{"LOCK_ID", "COMMAND"}, flags: runFlags, check: checkRun, long: true,
			// A waiting acquire on PostgreSQL keeps one connection
			// listening for releases, and a renewal may overlap it.
			conns: 4, failStatus: exitRunFailed, run: cmdRun},
		{name: "release", args: []string{"LOCK_ID"}, run: cmdRelease},
		{name: "purge", run: cmdPurge},
		{name: "migrate", create: true, run: cmdMigrate},
	} {
		if c.conns == 0 {
			c.conns = 1 // one statement at a time
		}
		if c.failStatus == 0 {
			c.failStatus = 1
		}
		commands[c.name] = c
	}
}

// env is what a command works with.
type env struct {
	db     *gorm.DB
	kind   dbopen.Kind
	locker *gormmutex.Locker
	opts   *options
	json   bool
	stdout io.Writer
	stderr io.Writer
}

// usageError is the caller's mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// A failure is an error with the exit status and kind it reports (see the
// package doc for the kinds). A failure with a nil err prints nothing: run
// uses it to pass COMMAND's status on.
type failure struct {
	status int
	kind   string
	lockID *string
	// commandStatus is COMMAND's exit status, where run started it.
	commandStatus *int
	err           error
}

func (f *failure) Error() string {
	if f.err == nil {
		return fmt.Sprintf("exit status %d", f.status)
	}
	return f.err.Error()
}

func (f *failure) Unwrap() error { return f.err }

// errorJSON is an error under -json; see the package doc.
type errorJSON struct {
	Error         string  `json:"error"`
	Kind          string  `json:"kind"`
	Command       string  `json:"command"`
	LockID        *string `json:"lock_id"`
	ExitStatus    int     `json:"exit_status"`
	CommandStatus *int    `json:"command_status"`
}

// reporter prints errors, as text or JSON.
type reporter struct {
	json    bool
	command string
	stderr  io.Writer
	secrets []string
}

// report prints f, unless it has nothing to say, and returns its status.
func (r *reporter) report(f *failure) int {
	if f.err == nil {
		return f.status
	}
	msg := redact(f.err.Error(), r.secrets)
	if r.json {
		b, _ := json.Marshal(errorJSON{
			Error: msg, Kind: f.kind, Command: r.command, LockID: f.lockID,
			ExitStatus: f.status, CommandStatus: f.commandStatus,
		})
		fmt.Fprintf(r.stderr, "%s\n", b)
		return f.status
	}
	prefix := "gormmutex: "
	if r.command != "" {
		prefix += r.command + ": "
	}
	fmt.Fprintf(r.stderr, "%s%s\n", prefix, msg)
	if f.kind == "usage" {
		fmt.Fprintf(r.stderr, "\n%s", usage)
	}
	return f.status
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := defaultOptions()
	cmd, rest, err := parseArgs(&o, args)
	rep := &reporter{json: o.json, stderr: stderr, secrets: dsnSecrets(o.dsn)}
	if cmd != nil {
		rep.command = cmd.name
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	case err != nil:
		rep.json = rep.json || jsonWanted(args)
		return rep.report(&failure{status: 2, kind: "usage", err: err})
	}

	if !cmd.long {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		if o.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
		}
	}
	fail := func(err error) int {
		var f *failure
		if !errors.As(err, &f) {
			msg := err.Error()
			if !cmd.long && o.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				msg += fmt.Sprintf(" (gave up after -timeout %v)", o.timeout)
			}
			f = &failure{status: cmd.failStatus, kind: "error", err: errors.New(msg)}
		}
		return rep.report(f)
	}
	t, err := parseDSN(o.dsn, cmd.create, o.connectTimeout)
	if err != nil {
		return fail(err)
	}
	rep.secrets = append(rep.secrets, t.Secrets...)
	db, err := openDB(ctx, t, o.connectTimeout, cmd.conns)
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
		kind:   t.Kind,
		opts:   &o,
		json:   o.json,
		stdout: stdout,
		stderr: stderr,
	}
	if cmd.name != "run" {
		if e.locker, err = gormmutex.New(db, gormmutex.Config{Table: o.table}); err != nil {
			return fail(err)
		}
	}
	if err := cmd.run(ctx, e, rest); err != nil {
		var f *failure
		if !errors.As(err, &f) {
			err = e.explain(ctx, err)
		}
		return fail(err)
	}
	return 0
}

// parseArgs parses the flags, the command and its arguments. An error
// other than flag.ErrHelp is a usage error. The command is returned when
// it is known, even with an error.
func parseArgs(o *options, args []string) (*command, []string, error) {
	// The flags before the command are parsed with the command's, once it
	// is known; to find it, skip them, with their values.
	lead := leadingFlags(args)
	args = args[len(lead):]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "help" {
		// No command to check the flags against: report a bad one, or
		// -h, before the missing command.
		if _, _, _, err := scanArgs(allFlags(o), lead); err != nil {
			return nil, nil, err
		}
		if len(args) == 0 {
			return nil, nil, usagef("missing command")
		}
		return nil, nil, flag.ErrHelp
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		return nil, nil, usagef("unknown command %s", strconv.Quote(name))
	}
	before, after, dash, err := scanArgs(o.flagSet(cmd), append(lead, args[1:]...))
	if err != nil {
		return cmd, nil, err
	}
	var rest []string
	if name == "run" {
		if rest, err = runArgs(before, after, dash); err != nil {
			return cmd, nil, err
		}
	} else {
		rest = append(before, after...)
		switch {
		case len(rest) < len(cmd.args):
			return cmd, nil, usagef("missing %s", strings.Join(cmd.args[len(rest):], " "))
		case len(rest) > len(cmd.args):
			return cmd, nil, usagef("unexpected argument %s", strconv.Quote(rest[len(cmd.args)]))
		}
	}
	if len(cmd.args) > 0 && cmd.args[0] == "LOCK_ID" {
		if err := checkLockID(rest[0]); err != nil {
			return cmd, nil, usageError{err.Error()}
		}
	}
	if name == "run" && o.run.permits > 0 {
		if err := checkSemaphoreName(rest[0]); err != nil {
			return cmd, nil, err
		}
	}
	if o.dsn == "" {
		o.dsn = os.Getenv("GORMMUTEX_DSN")
	}
	switch {
	case o.dsn == "":
		return cmd, nil, usagef("no database: set -dsn or GORMMUTEX_DSN")
	case o.connectTimeout <= 0:
		return cmd, nil, usagef("-connect-timeout must be positive")
	case o.timeout < 0:
		return cmd, nil, usagef("-timeout must not be negative")
	case (gormmutex.Config{Table: o.table}).Validate() != nil:
		return cmd, nil, usagef("-table: %v", (gormmutex.Config{Table: o.table}).Validate())
	case cmd.long && o.timeoutSet:
		return cmd, nil, usagef("-timeout does not apply to %s (-wait bounds the wait for the lock)", name)
	}
	if cmd.check != nil {
		if err := cmd.check(o); err != nil {
			return cmd, nil, err
		}
	}
	return cmd, rest, nil
}

// leadingFlags returns the flags at the start of args, with their values:
// a flag takes the next argument as its value if some command has a flag
// of that name that is not boolean.
func leadingFlags(args []string) []string {
	var scratch options
	all := allFlags(&scratch)
	i := 0
	for i < len(args) && isFlag(args[i]) {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		i++
		if f := all.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && i < len(args) {
			i++
		}
	}
	return args[:i:i]
}

// allFlags returns a FlagSet with the flags of every command, on o.
func allFlags(o *options) *flag.FlagSet {
	fs := o.flagSet(nil)
	for _, c := range commands {
		if c.flags != nil {
			c.flags(o, fs)
		}
	}
	return fs
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
	table := e.opts.table
	if table == "" {
		table = gormmutex.TableName
	}
	if !e.db.WithContext(hctx).Migrator().HasTable(table) && hctx.Err() == nil {
		return fmt.Errorf("%w (table %s does not exist: run the migrate command first)", err, table)
	}
	return err
}

// timeFormat is RFC 3339 with milliseconds; times are printed in UTC.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func cmdRelease(ctx context.Context, e *env, args []string) error {
	id := args[0]
	if err := e.locker.ForceRelease(ctx, id); err != nil {
		if errors.Is(err, gormmutex.ErrNotHeld) {
			return &failure{status: 1, kind: "not_held", lockID: &id,
				err: fmt.Errorf("no live lock with id %s (never taken, already released, or expired)", strconv.Quote(id))}
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
	if err := e.locker.AutoMigrate(ctx); err != nil {
		return err
	}
	if e.json {
		return e.writeJSON(struct {
			Migrated bool   `json:"migrated"`
			Table    string `json:"table"`
		}{true, e.locker.Table()})
	}
	_, err := fmt.Fprintf(e.stdout, "table %s is ready\n", e.locker.Table())
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
