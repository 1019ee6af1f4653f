package topology

import (
	"fmt"
	"sort"
	"strings"
)

// The environment variables through which the root package's behavioural
// suite learns which topology it runs on and how to reach it. DSN variables
// may hold several DSNs separated by "|"; the suite's pools take them in
// turn.
const (
	TopologyEnv = "GORMMUTEX_TOPOLOGY"
	OnlyEnv     = "GORMMUTEX_ONLY"
	PostgresEnv = "GORMMUTEX_POSTGRES_DSN"
	MySQLEnv    = "GORMMUTEX_MYSQL_DSN"
)

// PgBouncerTransactionDSNOptions is what pgx needs through a transaction
// pooler that does not support prepared statements (PgBouncer before 1.21):
// no named prepared statements.
const PgBouncerTransactionDSNOptions = "default_query_exec_mode=exec"

// Running is a topology started by StartNamed.
type Running struct {
	Name string
	// Env holds KEY=VALUE pairs for the suite: the topology's name, the
	// backends to run, and the DSNs.
	Env   []string
	stack Stack
}

// Stop stops every server of the topology.
func (r *Running) Stop() error { return r.stack.Stop() }

var named = map[string]func(r *Running) error{
	"pgbouncer-transaction": func(r *Running) error { return startBouncer(r, TransactionPooling) },
	"pgbouncer-session":     func(r *Running) error { return startBouncer(r, SessionPooling) },
	"postgres18": func(r *Running) error {
		pg, err := StartPostgres(PostgresConfig{BinDir: Postgres18BinDir()})
		if err != nil {
			return err
		}
		r.stack.Push(pg)
		r.Env = append(r.Env, OnlyEnv+"=postgres", PostgresEnv+"="+pg.DSN(""))
		return nil
	},
	"galera": func(r *Running) error {
		g, err := StartGalera(3)
		if err != nil {
			return err
		}
		r.stack.Push(g)
		r.Env = append(r.Env, OnlyEnv+"=mysql", MySQLEnv+"="+strings.Join(g.DSNs(), "|"))
		return nil
	},
}

// startBouncer starts a private PostgreSQL 15, so that the suite run
// through the pooler shares no tables with anything else, and PgBouncer in
// front of it.
func startBouncer(r *Running, mode string) error {
	pg, err := StartPostgres(PostgresConfig{})
	if err != nil {
		return err
	}
	r.stack.Push(pg)
	// A session pooler gives each client connection a server connection of
	// its own for as long as it is open. The core suite runs many pools
	// at once, as a fleet of processes would, and with PgBouncer's usual
	// 20 per pool its clients queued for a server connection until
	// query_wait_timeout (120 s) failed them (TestContention, one CI run);
	// that is the pooler's sizing, not the lock's. The private server
	// takes 200 connections (postgres.go).
	poolSize := 0
	if mode == SessionPooling {
		poolSize = 150
	}
	b, err := StartPgBouncer(PgBouncerConfig{Mode: mode, UpstreamPort: pg.Port, PoolSize: poolSize})
	if err != nil {
		return err
	}
	r.stack.Push(b)
	extra := ""
	if mode == TransactionPooling {
		extra = PgBouncerTransactionDSNOptions
	}
	r.Env = append(r.Env, OnlyEnv+"=postgres", PostgresEnv+"="+b.DSN(extra))
	return nil
}

// Names lists the topologies StartNamed knows.
func Names() []string {
	var n []string
	for k := range named {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// StartNamed starts the topology called name (one of Names). On error
// nothing is left running.
func StartNamed(name string) (*Running, error) {
	start, ok := named[name]
	if !ok {
		return nil, fmt.Errorf("topology: unknown topology %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	r := &Running{Name: name, Env: []string{TopologyEnv + "=" + name}}
	if err := start(r); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}
