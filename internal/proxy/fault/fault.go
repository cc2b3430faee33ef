// Package fault is weft-proxy's fault injection filter, Envoy's
// envoy.filters.http.fault: it delays a share of requests by a fixed time
// and answers a share of them itself with an error, as the route's
// router.Fault (its typed_per_filter_config) says, or the filter's own
// configuration for routes without one.
//
// Order and semantics follow Envoy: when max_active_faults is set and that
// many faults are in progress, the request passes untouched (counted as an
// overflow); otherwise the delay is rolled and served first (a client that
// goes away meanwhile ends the request), then the abort is rolled. An HTTP
// abort answers its status with a text/plain body ("fault filter abort"
// unless configured); a gRPC abort is a trailers-only gRPC response: HTTP
// 200, content-type application/grpc, grpc-status and grpc-message in the
// headers, no body. A fault stays active until the request ends.
//
// A Filter is immutable but for its counters (atomics), safe for concurrent
// use, and built once per configuration version. A request whose route has
// no fault costs a pointer check and no allocation.
package fault

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/grpcreply"
	"github.com/weftmesh/weft/internal/proxy/router"
)

// Options configures a Filter.
type Options struct {
	// Next is the handler requests go on to. Required.
	Next chain.Handler
	// Default is the filter's own configuration (the HTTPFault of its
	// http_filters entry), used for requests whose route has no fault
	// configuration of its own; nil injects nothing.
	Default *router.Fault
	// Counters receive the filter's counts. They outlive a configuration
	// version: the filter of every version of one connection manager
	// counts into the same Counters. Defaults to counters of its own.
	Counters *Counters
	// Rand returns uniformly distributed numbers; it must be safe for
	// concurrent use. Defaults to math/rand/v2's Uint64.
	Rand func() uint64
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Filter is the fault injection chain.Handler.
type Filter struct {
	next chain.Handler
	dflt *router.Fault
	rand func() uint64
	log  *slog.Logger
	c    *Counters
}

// Counters are the counts of fault filters, safe for concurrent use.
type Counters struct {
	delays, aborts, overflows atomic.Uint64
	active                    atomic.Int64
}

// Stats returns the counts.
func (c *Counters) Stats() Stats {
	return Stats{
		DelaysInjected: c.delays.Load(),
		AbortsInjected: c.aborts.Load(),
		FaultsOverflow: c.overflows.Load(),
		ActiveFaults:   c.active.Load(),
	}
}

var _ chain.Handler = (*Filter)(nil)

// Stats are a Filter's counters, with Envoy's stat names.
type Stats struct {
	// DelaysInjected is fault.delays_injected, AbortsInjected
	// fault.aborts_injected.
	DelaysInjected, AbortsInjected uint64
	// FaultsOverflow counts requests left alone because max_active_faults
	// faults were in progress (fault.faults_overflow).
	FaultsOverflow uint64
	// ActiveFaults is the gauge fault.active_faults.
	ActiveFaults int64
}

// New returns a Filter in front of o.Next.
func New(o Options) *Filter {
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Counters == nil {
		o.Counters = new(Counters)
	}
	return &Filter{next: o.Next, dflt: o.Default, rand: o.Rand, log: o.Logger, c: o.Counters}
}

// Stats returns the counters.
func (f *Filter) Stats() Stats { return f.c.Stats() }

// Serve injects the route's faults, if any, and passes the request on
// unless it aborted it or the client went away during the delay.
func (f *Filter) Serve(x *chain.Exchange) {
	ft := f.dflt
	if x.Route != nil && x.Route.Fault != nil {
		ft = x.Route.Fault
	}
	if ft == nil || (ft.Delay == nil && ft.Abort == nil) {
		f.next.Serve(x)
		return
	}
	f.inject(x, ft)
}

func (f *Filter) inject(x *chain.Exchange, ft *router.Fault) {
	if ft.LimitActive && f.c.active.Load() >= int64(ft.MaxActive) {
		f.c.overflows.Add(1)
		f.next.Serve(x)
		return
	}
	started := false
	start := func() {
		if !started {
			started = true
			f.c.active.Add(1)
		}
	}
	defer func() {
		if started {
			f.c.active.Add(-1)
		}
	}()
	if d := ft.Delay; d != nil && f.roll(d.Percent) {
		start()
		f.c.delays.Add(1)
		t := time.NewTimer(d.Duration)
		select {
		case <-x.R.Context().Done():
			t.Stop()
			f.log.Debug("client went away during an injected delay", "route", routeName(x))
			return
		case <-t.C:
		}
	}
	if a := ft.Abort; a != nil && f.roll(a.Percent) {
		start()
		f.c.aborts.Add(1)
		abort(x.W, a)
		return
	}
	f.next.Serve(x)
}

// roll reports whether a request falls in a share of p millionths.
func (f *Filter) roll(p uint32) bool { return router.InShare(p, f.rand) }

// Header values of aborts, shared by every response: a handler changing
// a header replaces its value slice (see package chain).
var valTextPlain = []string{"text/plain"}

func abort(w http.ResponseWriter, a *router.FaultAbort) {
	h := w.Header()
	if a.GRPC {
		grpcreply.SetHeader(h, a.GRPCStatus, a.Body)
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = valTextPlain
	w.WriteHeader(a.HTTPStatus)
	io.WriteString(w, a.Body)
}

func routeName(x *chain.Exchange) string {
	if x.Route == nil {
		return ""
	}
	return x.Route.Name
}
