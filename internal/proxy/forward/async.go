package forward

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// ErrAttemptTimeout is the error an AsyncIO gives an attempt that its
// timeout (the route's per-try timeout) ended.
var ErrAttemptTimeout = upstream.ErrAttemptTimeout

// The timers of an asynchronous request.
const (
	TimerDeadline = iota // the route's timeout
	TimerBackoff         // the wait before a retry
)

// AsyncIO is what ServeAsync needs from the event loop that serves the
// request's downstream connection: one upstream exchange at a time, and two
// timers. Every call, and every call back into the Async, is on the loop's
// goroutine.
type AsyncIO interface {
	// Send sends req to ep and later calls the Async's Done with the whole
	// response (its body in memory, so that reading it never waits) or
	// the error that ended the attempt; with ErrAttemptTimeout when
	// timeout (when positive) passed first. Cancel abandons it: Done is
	// not called then.
	Send(ep *upstream.Endpoint, req *http.Request, timeout time.Duration)
	Cancel()
	// SetTimer arms timer (TimerDeadline or TimerBackoff) to call the
	// Async's Timer after d, replacing an earlier arming; StopTimer
	// disarms it.
	SetTimer(timer int, d time.Duration)
	StopTimer(timer int)
	// Finish is called once, when the request ends: answered (its
	// response written to the exchange's ResponseWriter), or abandoned
	// with nothing more written (Abort, or a panic while its body
	// streamed), after which the connection is to be closed.
	Finish(answered bool)
}

// Async is a request forwarded from an event loop: the same attempts as
// Serve's, each one's exchange sent and waited for by the loop (AsyncIO)
// instead of on a goroutine of the request's own.
type Async struct {
	a  *attempts
	io AsyncIO
	// ep is the endpoint of the attempt in flight, nil between attempts.
	ep *upstream.Endpoint
}

// ServeAsync serves x as Serve would, driven by io. It returns the request
// in flight, on which io calls Done and Timer, or nil when it answered x at
// once. It never calls io.Finish (nor anything of io's that would call
// back into the Async) before it returns. ok is false, and nothing was
// done, when the request's cluster is one supports says io cannot reach:
// the caller serves it some other way.
//
// Only requests without a body are for ServeAsync.
func (f *Forwarder) ServeAsync(x *chain.Exchange, io AsyncIO, supports func(*upstream.Cluster) bool) (s *Async, ok bool) {
	if r := x.Route; r != nil {
		// A weighted route is served here only if every cluster it may
		// pick is: picked here, and served elsewhere, the request would
		// be picked for again, and the split skewed.
		for i := range r.Weighted {
			if cl := f.clusters[r.Weighted[i].Name]; cl != nil && !supports(cl) {
				return nil, false
			}
		}
	}
	a := f.plan(x)
	if a == nil {
		return nil, true
	}
	if !supports(a.cl) {
		a.end()
		return nil, false
	}
	s = &a.o.async
	*s = Async{a: a, io: io}
	if a.route.Timeout > 0 {
		io.SetTimer(TimerDeadline, a.route.Timeout)
	}
	if !a.begin() || !s.start() {
		// Answered at once: without io.Finish, which ServeAsync never
		// calls before it returns.
		s.drop()
		return nil, true
	}
	return s, true
}

// attempt starts the next attempt, or answers the request when none can
// start.
func (s *Async) attempt() {
	if !s.start() {
		s.finish()
	}
}

// start starts the next attempt; false when none can start, and the
// request was answered.
func (s *Async) start() bool {
	ep, out, ok := s.a.next(s.a.r.Context())
	if !ok {
		return false
	}
	s.ep = ep
	s.io.Send(ep, out, s.a.pol.perTry)
	return true
}

// Done takes the outcome of the attempt in flight: an error, or a whole
// response.
func (s *Async) Done(resp *http.Response, err error) {
	a, ep := s.a, s.ep
	if err != nil {
		s.ep = nil
		ep.EndRequest()
		if a.failed(ep, err, errors.Is(err, ErrAttemptTimeout), false) {
			s.io.SetTimer(TimerBackoff, backoff(a.attempt, a.pol))
			return
		}
		s.finish()
		return
	}
	if !s.Head(resp) {
		s.Body(resp)
	}
}

// Head takes the head of the attempt's response: it is reported, and
// retried when the policy says so (Head then returns true, the back-off
// armed; the caller disposes of the body). Else the caller passes the
// response to Body: at once when its body is in memory, or from a
// goroutine of its own when the body is a stream still to be read.
func (s *Async) Head(resp *http.Response) (retry bool) {
	a, ep := s.a, s.ep
	if !a.retryHead(ep, resp) {
		return false
	}
	s.ep = nil
	ep.EndRequest()
	s.io.SetTimer(TimerBackoff, backoff(a.attempt, a.pol))
	return true
}

// Body sends resp, whose head Head took, and ends the request. It reads
// the body to its end, so it blocks on a body that is still arriving; a
// failure while it streams panics with http.ErrAbortHandler (as Serve),
// after the request has ended.
func (s *Async) Body(resp *http.Response) {
	a, ep := s.a, s.ep
	s.ep = nil
	defer func() {
		ep.EndRequest()
		if p := recover(); p != nil {
			s.release()
			panic(p)
		}
		s.finish()
	}()
	a.cl.Stats().Observe(resp.StatusCode)
	a.f.respond(a.r.Context(), a.w, resp, a.route, a.wc, a.setCookie)
}

// Timer takes the firing of timer.
func (s *Async) Timer(timer int) {
	if timer == TimerBackoff {
		s.attempt()
		return
	}
	// The route's deadline passed.
	a := s.a
	if ep := s.ep; ep != nil {
		s.io.Cancel()
		s.ep = nil
		ep.EndRequest()
		a.failed(ep, context.DeadlineExceeded, false, true)
	} else {
		a.f.timedOut(a.w, a.grpc, a.cl, a.route, a.wc)
	}
	s.finish()
}

// Abort abandons the request without an answer (its client went away, or
// the connection fails): nothing more is written.
func (s *Async) Abort() {
	if ep := s.ep; ep != nil {
		s.io.Cancel()
		s.ep = nil
		ep.EndRequest()
	}
	s.release()
}

// finish ends the request, answered.
func (s *Async) finish() {
	io := s.io
	s.drop()
	io.Finish(true)
}

// release ends the request, abandoned.
func (s *Async) release() {
	io := s.io
	s.drop()
	io.Finish(false)
}

// drop ends the request without telling io. s, in the request's outbound
// state, is not to be used after.
func (s *Async) drop() {
	io := s.io
	io.StopTimer(TimerDeadline)
	io.StopTimer(TimerBackoff)
	s.a.end()
}
