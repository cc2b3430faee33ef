// Package procs fits the number of threads that run the proxy's Go code
// (GOMAXPROCS) to its load: one while one is enough, more while the proxy
// is busy.
//
// One thread costs a sidecar the least CPU per request and gives it the
// shortest tail at the rates most sidecars carry: a second thread is woken
// to look for work on nearly every request and mostly finds none. At high
// rates one thread is the wrong shape, though not because it runs out of
// CPU: a single-threaded proxy goes wherever the kernel wakes it, which
// for data arriving on a socket is the sender's CPU, so a client and a
// server sidecar end up taking turns on one CPU while another idles. On two
// CPUs and 64 connections the bench's sidecar pair used 47 % of a CPU each
// and left 11 % of the machine idle; with two threads each, 6 %, and the
// pair carried 17 % more (docs/performance-log.md, round 11).
//
// A Controller samples the process's CPU time. When the CPUs it used over
// an interval exceed Up times the threads it has, it takes one more (up to
// Max); when they stay under Down times one thread fewer for DownAfter, it
// gives one back. The two thresholds are far apart so that a steady load
// does not flap between two counts.
//
// A Controller belongs to the one goroutine that runs Run (or, in tests,
// calls Observe); it takes no locks. The thread count it sets is the
// runtime's, read anywhere with runtime.GOMAXPROCS(0).
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Options configures a Controller. Zero fields take the defaults below.
type Options struct {
	Logger *slog.Logger
	// Max is the most threads (default: GOMAXPROCS when Run starts, the
	// CPUs the process may use).
	Max int
	// Interval is how often CPU time is sampled (default 250ms).
	Interval time.Duration
	// Up is the CPU use, in CPUs per thread, above which a thread is
	// added (default 0.3).
	Up float64
	// Down is the CPU use, in CPUs per thread of the count one lower,
	// under which a thread is removed once it has held for DownAfter
	// (default 0.15 and 2s).
	Down      float64
	DownAfter time.Duration
	// CPUTime returns the process's CPU time (user and system) so far,
	// and false when the platform cannot tell (default: getrusage).
	CPUTime func() (time.Duration, bool)
	// Set applies a thread count (default runtime.GOMAXPROCS).
	Set func(int)
}

// Defaults for Options.
const (
	DefaultInterval  = 250 * time.Millisecond
	DefaultUp        = 0.3
	DefaultDown      = 0.15
	DefaultDownAfter = 2 * time.Second
)

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Max <= 0 {
		o.Max = runtime.GOMAXPROCS(0)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Up <= 0 {
		o.Up = DefaultUp
	}
	if o.Down <= 0 {
		o.Down = DefaultDown
	}
	if o.DownAfter <= 0 {
		o.DownAfter = DefaultDownAfter
	}
	if o.CPUTime == nil {
		o.CPUTime = cpuTime
	}
	if o.Set == nil {
		o.Set = func(n int) { runtime.GOMAXPROCS(n) }
	}
}

// Controller holds the thread count and what it was decided on.
type Controller struct {
	o     Options
	procs int
	// low is how long the CPU use has stayed under the Down threshold.
	low time.Duration
}

// New returns a Controller that starts the process on one thread.
func New(o Options) *Controller {
	o.defaults()
	c := &Controller{o: o, procs: 1}
	o.Set(1)
	return c
}

// Max returns the most threads the Controller takes.
func (c *Controller) Max() int { return c.o.Max }

// Threads returns the current thread count.
func (c *Controller) Threads() int { return c.procs }

// Observe takes the CPUs used over the last d (CPU time over wall time)
// and changes the thread count if that calls for it. It returns the count.
func (c *Controller) Observe(busy float64, d time.Duration) int {
	o := &c.o
	switch {
	case c.procs < o.Max && busy > o.Up*float64(c.procs):
		c.procs++
		c.low = 0
		o.Logger.Debug("more threads", "threads", c.procs, "cpus_used", busy)
		o.Set(c.procs)
	case c.procs > 1 && busy < o.Down*float64(c.procs-1):
		c.low += d
		if c.low >= o.DownAfter {
			c.procs--
			c.low = 0
			o.Logger.Debug("fewer threads", "threads", c.procs, "cpus_used", busy)
			o.Set(c.procs)
		}
	default:
		c.low = 0
	}
	return c.procs
}

// Run samples the process's CPU time every Interval and observes it, until
// ctx ends. On a platform that cannot tell its CPU time, the process stays
// on one thread.
func (c *Controller) Run(ctx context.Context) {
	o := &c.o
	last, ok := o.CPUTime()
	if !ok {
		o.Logger.Info("cannot read the process's CPU time here: running on one thread")
		return
	}
	at := time.Now()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cpu, ok := o.CPUTime()
		now := time.Now()
		wall := now.Sub(at)
		if !ok || wall <= 0 {
			continue
		}
		c.Observe(float64(cpu-last)/float64(wall), wall)
		last, at = cpu, now
	}
}
