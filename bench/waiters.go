package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// ---------------------------------------------------------------------------
// The waiters scenario: many waiters on one key (8, 64, 256) and 256
// waiters over 16 keys, every contender, waiting. Per handoff it reports
// the statements all waiters together sent, the connections the
// contender's pools held, the handoff's p50 and p99, the share that went
// to another worker, and the longest wait; no waiter may starve, so the
// longest wait includes the waits the window's end cut off, and the
// waiters that never got in are counted.
//
// The contenders that share a pool (gormmutex, django, redsync) keep their
// pool of poolConns connections, as an application would: 256 waiters of
// one process share it. The native locks wait in the server on a
// connection each, so they get a pool of waiters+1 connections for the
// window, and run only where that fits in the server's max_connections
// with -conn-reserve left over for everyone else (the other contenders'
// idle connections are closed first, to make room).

// A waiterScenario is one window of the waiters scenario: workers waiters
// over keys keys.
type waiterScenario struct {
	name          string
	workers, keys int
}

// waiterScenarios are the waiters scenario's windows.
var waiterScenarios = []waiterScenario{{"q8", 8, 1}, {"q64", 64, 1}, {"q256", 256, 1}, {"q256k16", 256, 16}}

// isWaiters says whether scenario is one of the waiters scenario's.
func isWaiters(scenario string) bool {
	for _, w := range waiterScenarios {
		if w.name == scenario {
			return true
		}
	}
	return false
}

// connPerWaiter says whether the contender name holds a connection for
// every waiter (a server-side wait).
func connPerWaiter(name string) bool { return name == "pg-advisory" || name == "mysql-get_lock" }

// sqlPools lists a contender's database/sql pools, so that their idle
// connections can be closed while a native lock needs the room.
func sqlPools(c contender) []*sql.DB {
	var out []*sql.DB
	add := func(db interface{ DB() (*sql.DB, error) }) {
		if s, err := db.DB(); err == nil {
			out = append(out, s)
		}
	}
	switch c := c.(type) {
	case *gmContender:
		for _, p := range c.pools {
			add(p.db)
		}
	case *djangoContender:
		add(c.db)
	case *semContender:
		add(c.db)
	case *nativeContender:
		out = append(out, c.db)
	case *floorContender:
		out = append(out, c.db)
	}
	return out
}

// waitersRound runs one round of the waiters scenario on store: every
// window, every contender, in an order that rotates with the round.
func (r *runner) waitersRound(ctx context.Context, store string, round int, conts map[[2]string]contender, names []string) error {
	for _, ws := range waiterScenarios {
		if !r.cfg.scenarios.has("waiters") && !r.cfg.scenarios[ws.name] {
			continue
		}
		for _, n := range rotate(names, round) {
			sp := spec{backend: store, scenario: ws.name, contender: n, workers: ws.workers, keys: ws.keys,
				sameKey: ws.keys == 1, wait: true, dur: r.cfg.dur, warm: r.cfg.warm}
			c := conts[[2]string{store, n}]
			if !connPerWaiter(n) {
				if _, err := r.run(ctx, c, sp, round); err != nil {
					return err
				}
				continue
			}
			if err := r.nativeWaiters(ctx, store, n, sp, round, conts); err != nil {
				return err
			}
		}
	}
	return nil
}

// nativeWaiters runs one waiters window of a native lock on a pool of its
// own, one connection per waiter, if the server has the room.
func (r *runner) nativeWaiters(ctx context.Context, store, name string, sp spec, round int, conts map[[2]string]contender) error {
	b := r.backend(store)
	if b == nil {
		return nil
	}
	// Make room: the other pools of this store close their idle
	// connections (they reopen them in their next warm-up).
	var trimmed []*sql.DB
	for k, c := range conts {
		if k[0] == store {
			for _, db := range sqlPools(c) {
				db.SetMaxIdleConns(0)
				trimmed = append(trimmed, db)
			}
		}
	}
	defer func() {
		for _, db := range trimmed {
			db.SetMaxIdleConns(poolConns)
		}
	}()
	need := sp.workers + 1
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	room, maxConns, used, err := b.connRoom(cctx, r.cfg.connReserve)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: counting connections: %w", store, err)
	}
	if room >= 0 && need > room {
		if round == 0 {
			r.note(store, sp.scenario, name, fmt.Sprintf("%s skipped: its %d waiters need %d connections, the server has %d of max_connections %d in use and -conn-reserve is %d",
				name, sp.workers, need, used, maxConns, r.cfg.connReserve))
		}
		return nil
	}
	c, err := r.newContender(b, name, poolOpts{maxConns: need})
	if err != nil {
		return fmt.Errorf("%s %s: %w", store, name, err)
	}
	defer c.close()
	_, err = r.run(ctx, c, sp, round)
	return err
}
