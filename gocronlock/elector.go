package gocronlock

import (
	"context"
	"errors"
	"sync"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/gorm"

	"github.com/gormmutex/gormmutex"
)

// ErrNotLeader is what Elector.IsLeader returns while this scheduler does
// not lead, so gocron skips the run here.
var ErrNotLeader = errors.New("gocronlock: this scheduler is not the leader")

var _ gocron.Elector = (*Elector)(nil)

// Elector is a gocron.Elector on a gormmutex.Election: of all the
// schedulers that use an Elector with the same name on one database, only
// the leader runs jobs. Unlike a Locker, which decides each run on its own
// and needs MinHold when the schedulers' timers do not fire together, an
// Elector gives each tick of the leader's schedule exactly one run however
// the schedulers' start times and clocks differ: the others do not run
// jobs at all. When the leader stops or dies, another scheduler takes over
// within the lease (Config.TTL) and a retry period, and its runs follow its
// own schedule from then on.
//
// An Elector campaigns from NewElector until Close. It is safe for
// concurrent use.
type Elector struct {
	e      *gormmutex.Election
	cancel context.CancelFunc
	done   chan struct{} // closed when the campaign has ended

	mu  sync.Mutex
	err error // the campaign's configuration error, if any
}

// NewElector returns an Elector that campaigns, in the background from
// now on, for the leadership named name on db; pass it to
// gocron.WithDistributedElector. cfg.TTL is the lease and is required;
// cfg.Holder names this scheduler in gormmutex.Election.Leader. opts set
// the renew deadline and retry period (gormmutex.NewElection has the
// rules). A bad db, name or cfg is NewElector's error, as
// gormmutex.NewElection returns it, and nothing is started. Call Close
// when the scheduler shuts down, so that another one takes over at once.
func NewElector(db *gorm.DB, name string, cfg gormmutex.Config, opts ...gormmutex.ElectionOption) (*Elector, error) {
	e, err := gormmutex.NewElection(db, name, cfg, opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	el := &Elector{e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(el.done)
		err := el.e.Run(ctx, func(ctx context.Context) error {
			<-ctx.Done() // jobs run while IsLeader says so
			return nil
		})
		if ctx.Err() == nil {
			el.mu.Lock()
			el.err = err
			el.mu.Unlock()
		}
	}()
	return el, nil
}

// IsLeader returns nil while this scheduler leads, by the election's
// conservative estimate of its lease, and otherwise ErrNotLeader, or the
// configuration error that stopped the campaign. gocron calls it before
// each run and skips the run on an error.
func (el *Elector) IsLeader(context.Context) error {
	if el.e.IsLeader() {
		return nil
	}
	el.mu.Lock()
	defer el.mu.Unlock()
	if el.err != nil {
		return el.err
	}
	return ErrNotLeader
}

// Election returns the election, for reading the current leader
// (Election.Leader) or observing changes.
func (el *Elector) Election() *gormmutex.Election { return el.e }

// Close stops campaigning and gives the leadership up if this scheduler
// holds it, so another scheduler takes over without waiting for the lease.
// It returns once that is done; later calls return at once.
func (el *Elector) Close() error {
	el.cancel()
	<-el.done
	return nil
}
