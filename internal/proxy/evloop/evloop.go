//go:build linux

// Package evloop runs an event loop for weft-proxy's data path: one
// goroutine that waits for its sockets in its own epoll set and calls a
// handler for each that is ready, with timers and a queue of functions
// other goroutines post to it.
//
// Why not goroutines on Go's netpoller: each wait for a socket parks a
// goroutine and each readiness wakes one through the scheduler, about a
// fifth of a sidecar's CPU per request at its maximum rate (docs/
// performance-log.md, rounds 15 and 17). A loop serves every connection
// it owns from one call stack: a ready socket costs a method call.
//
// A busy loop waits in epoll_pwait as a raw system call, so that its
// thread keeps its P while it waits and no other thread is woken to take
// the P over. Such a goroutine is no safe point, so the loop yields to the
// scheduler whenever the wait is interrupted by a signal: the runtime's
// preemption requests (sysmon every 10 ms, and every stop-the-world) are
// such signals. It follows that a process running loops needs one P for
// each loop and one more for the rest of its goroutines, and must not run
// with GODEBUG=asyncpreemptoff=1. A loop that has waited 10 ms or more
// waits next as an ordinary system call, which the runtime leaves alone:
// an idle proxy wakes for nothing.
//
// Everything a Loop owns (its handlers and timers) is touched only on the
// loop's goroutine, without locks; Post is the way in from other
// goroutines.
package evloop

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Events a Handler is told about (epoll's).
const (
	In    = syscall.EPOLLIN
	Out   = syscall.EPOLLOUT
	Err   = syscall.EPOLLERR
	Hup   = syscall.EPOLLHUP
	RDHup = syscall.EPOLLRDHUP

	edgeTriggered = 1 << 31 // EPOLLET, which package syscall declares negative
)

// Handler is told when its descriptor is ready. Registration is
// edge-triggered: Ready is called when the socket becomes readable or
// writable (or fails), and not again for the same state, so a handler reads
// until a read comes back short or with EAGAIN, and writes until done or
// EAGAIN (after which it is told when the socket can take more).
type Handler interface {
	Ready(events uint32)
}

// Loop is one event loop. Create it with New, run it with Run on a
// goroutine of its own, stop it with Close.
type Loop struct {
	epfd int
	wake int // an eventfd that Post writes to wake the loop

	// handlers is indexed by descriptor, and gens holds each
	// descriptor's registration generation.
	handlers []Handler
	gens     []int32
	timers   timerHeap
	due      []*Timer  // runTimers' batch, kept for its capacity
	base     time.Time // the loop's clock counts from here (monotonic)
	now      int64     // nanoseconds since base, as of the last wake-up

	mu     sync.Mutex
	posted []func()
	spare  []func()
	// asleep says the loop waits (or is about to) with nothing posted:
	// Post must wake it.
	asleep atomic.Bool
	closed atomic.Bool
	// wakeups counts the waits that ended (tests read it on the loop).
	wakeups int
	done    chan struct{}
}

// New returns a loop that is not running yet.
func New() (*Loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	wake, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("event loop: eventfd: %w", errno)
	}
	l := &Loop{epfd: epfd, wake: int(wake), base: time.Now(), done: make(chan struct{})}
	ev := syscall.EpollEvent{Events: In, Fd: int32(wake)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(wake), &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(int(wake))
		return nil, fmt.Errorf("event loop: watching its eventfd: %w", err)
	}
	return l, nil
}

// Add registers fd, a non-blocking descriptor, for reads, writes and
// hang-ups, edge-triggered, with h to be told. It is called on the loop's
// goroutine (from a handler, a timer or a posted function).
func (l *Loop) Add(fd int, h Handler) error {
	if fd < 0 {
		return fmt.Errorf("event loop: bad descriptor %d", fd)
	}
	if fd >= len(l.handlers) {
		l.handlers = append(l.handlers, make([]Handler, fd+1-len(l.handlers)+16)...)
	}
	if fd >= len(l.gens) {
		l.gens = append(l.gens, make([]int32, fd+1-len(l.gens)+16)...)
	}
	// The registration's generation travels with its events, so that an
	// event for a descriptor closed and reused within one batch of events
	// does not reach the new handler (see Run).
	l.gens[fd]++
	ev := syscall.EpollEvent{Events: In | Out | RDHup | edgeTriggered, Fd: int32(fd), Pad: l.gens[fd]}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("event loop: watching descriptor %d: %w", fd, err)
	}
	l.handlers[fd] = h
	return nil
}

// Remove stops watching fd; call it before closing fd, or before handing
// it to anything else. On the loop's goroutine.
func (l *Loop) Remove(fd int) {
	if fd < 0 || fd >= len(l.handlers) || l.handlers[fd] == nil {
		return
	}
	l.handlers[fd] = nil
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// Post runs fn on the loop's goroutine, soon. It may be called from any
// goroutine. It returns false, and fn never runs, once the loop is closed.
func (l *Loop) Post(fn func()) bool {
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return false
	}
	first := len(l.posted) == 0
	l.posted = append(l.posted, fn)
	if first && l.asleep.Load() {
		l.wakeLocked()
	}
	l.mu.Unlock()
	return true
}

// wakeLocked wakes the loop's wait; with mu held, so that Run cannot have
// closed the eventfd.
func (l *Loop) wakeLocked() {
	var one = [8]byte{1}
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.wake), uintptr(unsafe.Pointer(&one[0])), 8)
}

// Now is the loop's clock: the time of its latest wake-up.
func (l *Loop) Now() time.Time { return l.base.Add(time.Duration(l.now)) }

// Close stops the loop: Run returns after the functions posted so far have
// run. Descriptors still registered are not closed; their owners close
// them (from a function posted before Close, for instance).
func (l *Loop) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Swap(true) {
		return
	}
	l.wakeLocked()
}

// Done is closed once Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }

// Run runs the loop until Close, and releases its descriptors. It returns
// nil after Close, or the error that stopped it.
func (l *Loop) Run() error {
	defer close(l.done)
	defer func() {
		// Under mu: Post and Close write to the eventfd only while the
		// loop is open, and check that under mu.
		l.mu.Lock()
		l.closed.Store(true)
		syscall.Close(l.wake)
		l.mu.Unlock()
	}()
	defer syscall.Close(l.epfd)
	var events [128]syscall.EpollEvent
	hot := false
	for {
		l.now = int64(time.Since(l.base))
		l.runTimers()
		l.runPosted()
		if l.closed.Load() {
			l.runPosted()
			return nil
		}
		timeout := -1
		if len(l.timers) > 0 {
			// Round up: epoll's timeout is in milliseconds, and a timer
			// must not fire early. A far one is looked at again in an
			// hour.
			d := min(l.timers[0].when-l.now, int64(time.Hour))
			timeout = int(max(0, (d+int64(time.Millisecond)-1)/int64(time.Millisecond)))
		}
		l.asleep.Store(true)
		l.mu.Lock()
		if len(l.posted) > 0 {
			timeout = 0
		}
		l.mu.Unlock()
		before := l.now
		r, errno := l.wait(events[:], timeout, hot)
		l.asleep.Store(false)
		l.wakeups++
		l.now = int64(time.Since(l.base))
		hot = l.now-before < int64(hotWait)
		if errno == syscall.EINTR {
			// A signal, most likely the runtime asking this goroutine to
			// stop at a safe point: yield.
			runtime.Gosched()
			continue
		}
		if errno != 0 {
			return fmt.Errorf("event loop: epoll_pwait: %w", errno)
		}
		for _, ev := range events[:r] {
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				syscall.RawSyscall(syscall.SYS_READ, uintptr(l.wake), uintptr(unsafe.Pointer(&b[0])), 8)
				continue
			}
			if fd < len(l.handlers) && ev.Pad == l.gens[fd] {
				if h := l.handlers[fd]; h != nil {
					h.Ready(ev.Events)
				}
			}
		}
	}
}

// hotWait is how soon a wait must end for the loop to count as busy (see
// wait): the runtime's own time slice, after which it asks a goroutine
// that has not yielded to stop. Shorter, and a loop at a modest rate
// (a thousand requests a second, say) often waits as an ordinary system
// call, which costs more than it looks: at 1 ms, a quarter more context
// switches per request (docs/performance-log.md, round 19).
const hotWait = 10 * time.Millisecond

// wait waits up to timeout milliseconds (-1: until an event) for events.
//
// A busy loop (hot: its last wait ended within hotWait) waits as a raw
// system call, keeping its P. Any other wait is a system call the runtime
// knows about: an idle loop in a raw wait would look to the runtime like a
// goroutine running without end, and get a preemption signal every 10 ms.
// In a system call it is left alone, its P goes back to the scheduler after
// a while, and an idle proxy costs nothing. A busy loop that falls idle
// gets a signal or two before its waits are ordinary ones.
func (l *Loop) wait(events []syscall.EpollEvent, timeout int, hot bool) (int, syscall.Errno) {
	var r uintptr
	var errno syscall.Errno
	if hot {
		r, _, errno = syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(timeout), 0, 0)
	} else {
		r, _, errno = syscall.Syscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(timeout), 0, 0)
	}
	return int(r), errno
}

func (l *Loop) runPosted() {
	l.mu.Lock()
	fns := l.posted
	l.posted = l.spare[:0]
	l.mu.Unlock()
	for i, fn := range fns {
		fn()
		fns[i] = nil
	}
	l.mu.Lock()
	l.spare = fns[:0]
	l.mu.Unlock()
}

// Timer calls a function on the loop's goroutine at a time set with
// Loop.Schedule. Its zero value, with F set, is ready to use; a Timer
// belongs to one loop, and is re-armed without allocating.
type Timer struct {
	F    func()
	when int64
	// idx is the timer's index in the heap, plus one; 0: not scheduled;
	// due: taken from the heap to fire in this pass (see runTimers).
	idx int
}

const due = -1

// Scheduled reports whether t is waiting to fire.
func (t *Timer) Scheduled() bool { return t.idx != 0 }

// Schedule arms t to fire d from the loop's clock (Now), replacing any
// earlier arming; a d too long to count means never. On the loop's
// goroutine.
func (l *Loop) Schedule(t *Timer, d time.Duration) {
	when := l.now + int64(d)
	if int64(d) > math.MaxInt64-l.now {
		when = math.MaxInt64
	}
	if t.idx > 0 {
		t.when = when
		l.timers.fix(t.idx - 1)
		return
	}
	t.when = when
	l.timers.push(t)
}

// Stop disarms t. On the loop's goroutine.
func (l *Loop) Stop(t *Timer) {
	switch {
	case t.idx > 0:
		l.timers.remove(t.idx - 1)
	case t.idx == due:
		t.idx = 0
	}
}

// runTimers fires the timers due when the pass began. A timer a callback
// arms to fire at once fires in the next pass, after the loop has looked
// at its sockets: a connection that keeps re-arming one cannot hold the
// loop.
func (l *Loop) runTimers() {
	fire := l.due[:0]
	for len(l.timers) > 0 && l.timers[0].when <= l.now {
		t := l.timers[0]
		l.timers.remove(0)
		t.idx = due
		fire = append(fire, t)
	}
	for i, t := range fire {
		fire[i] = nil
		if t.idx == due { // not stopped or re-armed by an earlier callback
			t.idx = 0
			t.F()
		}
	}
	l.due = fire[:0]
}

// timerHeap is a binary min-heap of timers by when; each timer knows its
// index (plus one).
type timerHeap []*Timer

func (h *timerHeap) push(t *Timer) {
	*h = append(*h, t)
	t.idx = len(*h)
	h.up(len(*h) - 1)
}

func (h *timerHeap) remove(i int) {
	s := *h
	n := len(s) - 1
	s[i].idx = 0
	if i != n {
		s[i] = s[n]
		s[i].idx = i + 1
	}
	s[n] = nil
	*h = s[:n]
	if i != n {
		h.fix(i)
	}
}

func (h timerHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].when <= h[i].when {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && h[r].when < h[c].when {
			c = r
		}
		if h[i].when <= h[c].when {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i + 1
	h[j].idx = j + 1
}

// Read reads from fd without the runtime's system call bookkeeping (the
// descriptor is non-blocking: the call never waits).
func Read(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(n), 0
		}
	}
}

// Write writes to fd as Read reads.
func Write(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			if e != 0 {
				return 0, e
			}
			return int(n), 0
		}
	}
}
