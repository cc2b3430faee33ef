//go:build linux

package evloop

import (
	"math"
	"slices"
	"syscall"
	"testing"
	"time"
)

// run starts l and returns a function that closes it and waits for Run.
func run(t *testing.T, l *Loop) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	t.Cleanup(func() {
		l.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// running returns a new loop that runs until the test ends.
func running(t *testing.T) *Loop {
	t.Helper()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	return l
}

// socketpair returns a pair of connected non-blocking sockets; the test's
// end closes the second (the first is the loop's to close).
func socketpair(t *testing.T) [2]int {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[1]) })
	return [2]int{fds[0], fds[1]}
}

// on runs fn on the loop and waits for it.
func on(t *testing.T, l *Loop, fn func()) {
	t.Helper()
	done := make(chan struct{})
	if !l.Post(func() { fn(); close(done) }) {
		t.Fatal("Post refused on a running loop")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a posted function did not run")
	}
}

type readHandler struct {
	fd  int
	got chan string
}

func (h *readHandler) Ready(ev uint32) {
	if ev&In == 0 {
		return
	}
	var b [64]byte
	for {
		n, errno := Read(h.fd, b[:])
		if errno != 0 || n == 0 {
			return
		}
		h.got <- string(b[:n])
	}
}

func TestReadinessReachesTheHandler(t *testing.T) {
	l := running(t)
	fds := socketpair(t)
	h := &readHandler{fd: fds[0], got: make(chan string, 8)}
	on(t, l, func() {
		if err := l.Add(fds[0], h); err != nil {
			t.Error(err)
		}
	})
	for _, msg := range []string{"one", "two"} {
		if _, errno := Write(fds[1], []byte(msg)); errno != 0 {
			t.Fatal(errno)
		}
		select {
		case got := <-h.got:
			if got != msg {
				t.Fatalf("handler read %q, want %q", got, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no readiness for %q", msg)
		}
	}
	on(t, l, func() { l.Remove(fds[0]); syscall.Close(fds[0]) })
}

func TestTimersFireInOrderAndStop(t *testing.T) {
	l := running(t)
	fired := make(chan string, 8)
	mk := func(name string) *Timer { return &Timer{F: func() { fired <- name }} }
	a, b, c, d := mk("a"), mk("b"), mk("c"), mk("d")
	on(t, l, func() {
		l.Schedule(c, 30*time.Millisecond)
		l.Schedule(a, 10*time.Millisecond)
		l.Schedule(b, 20*time.Millisecond)
		l.Schedule(d, 5*time.Millisecond)
		l.Stop(d)                          // never fires
		l.Schedule(b, 40*time.Millisecond) // re-armed later than c
		if d.Scheduled() || !b.Scheduled() {
			t.Error("Scheduled does not follow Stop and Schedule")
		}
	})
	start := time.Now()
	var got []string
	for range 3 {
		select {
		case name := <-fired:
			got = append(got, name)
		case <-time.After(10 * time.Second):
			t.Fatalf("timers fired %v, then nothing", got)
		}
	}
	if want := []string{"a", "c", "b"}; !slices.Equal(got, want) {
		t.Errorf("timers fired in the order %v, want %v", got, want)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("the last timer fired after %v, before its 40ms", el)
	}
	select {
	case name := <-fired:
		t.Errorf("stopped timer %s fired", name)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestTimerHeapStaysOrdered(t *testing.T) {
	var h timerHeap
	ts := make([]*Timer, 200)
	for i := range ts {
		ts[i] = &Timer{}
		ts[i].when = int64((i * 7919) % 211)
		h.push(ts[i])
	}
	for i := 0; i < len(ts); i += 3 {
		h.remove(ts[i].idx - 1)
	}
	for i := 1; i < len(ts); i += 5 {
		if ts[i].idx > 0 {
			ts[i].when = int64(300 - i)
			h.fix(ts[i].idx - 1)
		}
	}
	last := int64(-1)
	for len(h) > 0 {
		top := h[0]
		if top.when < last {
			t.Fatalf("popped %d after %d", top.when, last)
		}
		last = top.when
		h.remove(0)
		if top.idx != 0 {
			t.Fatal("a removed timer still has a heap index")
		}
	}
}

func TestPostAfterCloseIsRefused(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- l.Run() }()
	ran := make(chan struct{})
	l.Post(func() { close(ran) })
	l.Close()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-ran:
	default:
		t.Error("a function posted before Close did not run")
	}
	if l.Post(func() {}) {
		t.Error("Post after Close was accepted")
	}
}

// An idle loop must not wake: a proxy with nothing to do should use no CPU.
// (A loop that waited as a raw system call all the time looked to the
// runtime like a goroutine that never stops running, and was sent a
// preemption signal every 10 ms.)
func TestIdleLoopSleeps(t *testing.T) {
	l := running(t)
	wakeups := func() int {
		var n int
		on(t, l, func() { n = l.wakeups })
		return n
	}
	wakeups()
	time.Sleep(50 * time.Millisecond) // long enough to stop counting as busy
	before := wakeups()
	time.Sleep(500 * time.Millisecond)
	// Reading the count wakes the loop once; the runtime may interrupt
	// the wait once more before it takes the idle loop's P back.
	if n := wakeups() - before; n > 3 {
		t.Errorf("an idle loop woke %d times in half a second; want at most 3 (the reads of the count, and one preemption request)", n)
	}
}

// A timer armed for longer than the clock can count never fires (it
// overflowed to the past, and fired at once).
func TestFarTimerNeverFires(t *testing.T) {
	l := running(t)
	fired := make(chan struct{}, 1)
	tm := &Timer{F: func() { fired <- struct{}{} }}
	on(t, l, func() { l.Schedule(tm, math.MaxInt64) })
	select {
	case <-fired:
		t.Fatal("a timer armed for math.MaxInt64 fired")
	case <-time.After(50 * time.Millisecond):
	}
	on(t, l, func() {
		if !tm.Scheduled() {
			t.Error("the far timer is no longer scheduled")
		}
	})
}

// A timer that re-arms itself to fire at once must not hold the loop: the
// loop's sockets are still served between its firings.
func TestTimerReArmedAtOnceLetsSocketsIn(t *testing.T) {
	l := running(t)
	stop := false
	fires := 0
	var tm Timer
	tm.F = func() {
		fires++
		if !stop {
			l.Schedule(&tm, 0)
		}
	}
	fds := socketpair(t)
	h := &readHandler{fd: fds[0], got: make(chan string, 8)}
	on(t, l, func() {
		if err := l.Add(fds[0], h); err != nil {
			t.Error(err)
		}
		l.Schedule(&tm, 0)
	})
	if _, errno := Write(fds[1], []byte("hello")); errno != 0 {
		t.Fatal(errno)
	}
	select {
	case got := <-h.got:
		if got != "hello" {
			t.Errorf("read %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a timer re-armed at once kept the loop from its socket")
	}
	done := make(chan int)
	// Post runs between passes too, which a timer that never let go of
	// the loop would have stopped.
	if !l.Post(func() { stop = true; done <- fires }) {
		t.Fatal("Post refused")
	}
	select {
	case n := <-done:
		if n == 0 {
			t.Error("the timer never fired")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a posted function did not run")
	}
}

// A timer stopped by an earlier timer of the same pass does not fire.
func TestTimerStoppedInItsPass(t *testing.T) {
	l := running(t)
	var a, b Timer
	fired := make(chan string, 2)
	a.F = func() { fired <- "a"; l.Stop(&b) }
	b.F = func() { fired <- "b" }
	on(t, l, func() {
		l.Schedule(&a, 0)
		l.Schedule(&b, time.Nanosecond) // due in the same pass, after a
	})
	time.Sleep(20 * time.Millisecond)
	on(t, l, func() {})
	close(fired)
	var got []string
	for f := range fired {
		got = append(got, f)
	}
	if !slices.Equal(got, []string{"a"}) {
		t.Errorf("fired %v, want [a]: b was stopped", got)
	}
}
