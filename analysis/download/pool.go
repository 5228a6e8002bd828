package download

// The pool runs the fetches in parallel: at most Workers at a time, at
// most PerHost at a time for one server, from a bounded queue, so that a
// slow server holds one worker and not the run, and no server gets more
// than PerHost connections from the downloader.

import (
	"context"
	"strings"
	"sync"
)

// Defaults of the pool.
const (
	DefaultWorkers = 4
	DefaultPerHost = 1
	// QueuePerWorker is how many Targets wait per worker; Submit blocks
	// when the queue is full, so the input is read no faster than it is
	// fetched.
	QueuePerWorker = 64
)

// Pool runs a function over Targets on up to Workers goroutines.
type Pool struct {
	fn       func(context.Context, Target) error
	workers  int
	perHost  int
	maxQueue int

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []job
	active int
	hosts  map[string]int // servers with fetches running; at most workers keys
	err    error
}

type job struct {
	ctx  context.Context
	t    Target
	done func(error)
}

// NewPool returns a pool that calls fn with each submitted Target, at most
// workers at a time and at most perHost at a time for one server (the
// URL's host as written, case-folded; a redirect to another host counts
// for the first). Zero or negative values mean the defaults. fn's first
// error stops the pool: the queued Targets are dropped and Submit and
// Wait return it.
func NewPool(workers, perHost int, fn func(context.Context, Target) error) *Pool {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if perHost <= 0 {
		perHost = DefaultPerHost
	}
	p := &Pool{fn: fn, workers: workers, perHost: perHost, maxQueue: workers * QueuePerWorker, hosts: map[string]int{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Submit queues t, blocking while the queue is full. done, if not nil, is
// called with fn's error when t is finished (or dropped). It returns the
// pool's error once there is one.
func (p *Pool) Submit(ctx context.Context, t Target, done func(error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) >= p.maxQueue && p.err == nil {
		p.cond.Wait()
	}
	if p.err != nil {
		return p.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.queue = append(p.queue, job{ctx, t, done})
	p.dispatch()
	return nil
}

// Wait blocks until every submitted Target is finished and returns the
// pool's error.
func (p *Pool) Wait() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.active > 0 || len(p.queue) > 0 {
		p.cond.Wait()
	}
	return p.err
}

func hostKey(t Target) string { return strings.ToLower(t.Server) }

// dispatch starts the first queued jobs whose servers are below perHost,
// while workers are free. p.mu is held.
func (p *Pool) dispatch() {
	for p.active < p.workers {
		i := -1
		for k, j := range p.queue {
			if p.hosts[hostKey(j.t)] < p.perHost {
				i = k
				break
			}
		}
		if i < 0 {
			return
		}
		j := p.queue[i]
		p.queue = append(p.queue[:i], p.queue[i+1:]...)
		p.active++
		p.hosts[hostKey(j.t)]++
		go p.run(j)
	}
}

func (p *Pool) run(j job) {
	err := j.ctx.Err()
	if err == nil {
		err = p.fn(j.ctx, j.t)
	}
	if j.done != nil {
		j.done(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	k := hostKey(j.t)
	if p.hosts[k]--; p.hosts[k] <= 0 {
		delete(p.hosts, k)
	}
	if err != nil && p.err == nil {
		p.err = err
		for _, q := range p.queue {
			if q.done != nil {
				q.done(err)
			}
		}
		p.queue = nil
	}
	p.dispatch()
	p.cond.Broadcast()
}
