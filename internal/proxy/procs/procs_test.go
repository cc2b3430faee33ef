package procs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder keeps the thread counts a Controller applied.
type recorder struct {
	mu  sync.Mutex
	set []int
}

func (r *recorder) Set(n int) {
	r.mu.Lock()
	r.set = append(r.set, n)
	r.mu.Unlock()
}

func (r *recorder) last() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[len(r.set)-1]
}

// TestObserve walks a controller through a load that rises, holds and
// falls, as the bench's runs do: a latency run at a few percent of a CPU,
// a capacity run at about half a CPU per sidecar.
func TestObserve(t *testing.T) {
	var rec recorder
	c := New(Options{Max: 3, Set: rec.Set})
	if got := rec.last(); got != 1 {
		t.Fatalf("New set %d threads, want 1", got)
	}
	const tick = 250 * time.Millisecond
	steps := []struct {
		what string
		busy float64
		n    int // intervals
		want int
	}{
		{"a latency run (4 % of a CPU) stays on one thread", 0.04, 20, 1},
		{"a busy proxy (47 %) takes a second thread at once", 0.47, 1, 2},
		{"and keeps it while busy (53 % on two)", 0.53, 20, 2},
		{"more than 0.3 per thread takes a third", 0.65, 1, 3},
		{"never more than Max", 2.0, 4, 3},
		{"a lull shorter than DownAfter keeps them", 0.1, 7, 3},
		{"load between the thresholds keeps them", 0.45, 20, 3},
		{"a long lull gives one back", 0.1, 8, 2},
		{"and, still idle, the next", 0.1, 8, 1},
		{"never fewer than one", 0, 20, 1},
	}
	for _, s := range steps {
		for range s.n {
			c.Observe(s.busy, tick)
		}
		if got := c.Threads(); got != s.want {
			t.Fatalf("%s: %d threads, want %d", s.what, got, s.want)
		}
		if got := rec.last(); got != s.want {
			t.Fatalf("%s: GOMAXPROCS set to %d, want %d", s.what, got, s.want)
		}
	}
	// Each change was applied once: 1, 2, 3, 2, 1.
	if want := []int{1, 2, 3, 2, 1}; len(rec.set) != len(want) {
		t.Errorf("applied %v, want %v", rec.set, want)
	}
}

// TestObserveSteadyLoadDoesNotFlap: a load just above the point that
// added the second thread keeps two threads, and one just under it keeps
// one, over many intervals.
func TestObserveSteadyLoadDoesNotFlap(t *testing.T) {
	var rec recorder
	c := New(Options{Max: 2, Set: rec.Set})
	for range 100 {
		c.Observe(0.29, DefaultInterval)
	}
	c.Observe(0.31, DefaultInterval)
	for range 100 {
		// Two threads spin a little, and the same work may read as
		// anything from half to all of what it cost on one.
		c.Observe(0.16, DefaultInterval)
	}
	if len(rec.set) != 2 {
		t.Errorf("applied %v, want [1 2]", rec.set)
	}
}

// TestRun: Run turns the CPU time it samples into thread counts, and
// stops when its context ends.
func TestRun(t *testing.T) {
	var rec recorder
	var busy atomic.Int64 // CPU per wall second, in thousandths
	var cpu time.Duration
	last := time.Now()
	var mu sync.Mutex
	cpuTime := func() (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		cpu += now.Sub(last) * time.Duration(busy.Load()) / 1000
		last = now
		return cpu, true
	}
	c := New(Options{Max: 2, Interval: 5 * time.Millisecond, DownAfter: 20 * time.Millisecond, Set: rec.Set, CPUTime: cpuTime})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for rec.last() != want {
			if time.Now().After(deadline) {
				t.Fatalf("threads stayed at %d, want %d", rec.last(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	busy.Store(900)
	waitFor(2)
	busy.Store(10)
	waitFor(1)
	cancel()
	<-done
}

// TestRunWithoutCPUTime: where the CPU time cannot be read, the process
// stays on one thread and Run returns.
func TestRunWithoutCPUTime(t *testing.T) {
	var rec recorder
	c := New(Options{Max: 4, Set: rec.Set, CPUTime: func() (time.Duration, bool) { return 0, false }})
	c.Run(context.Background())
	if len(rec.set) != 1 || rec.set[0] != 1 {
		t.Errorf("applied %v, want [1]", rec.set)
	}
}
