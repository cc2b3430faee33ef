package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/proxy/h2"
	"github.com/weftmesh/weft/internal/proxy/sockio"
)

// Protocol is the HTTP version a cluster speaks to its endpoints, as the
// cluster's upstream HTTP protocol options choose it.
type Protocol uint8

const (
	// HTTP1 is HTTP/1.1 (explicit_http_config.http_protocol_options, or
	// no options).
	HTTP1 Protocol = iota
	// HTTP2 is HTTP/2 over cleartext with prior knowledge
	// (explicit_http_config.http2_protocol_options).
	HTTP2
	// Downstream is the version the request came in with
	// (use_downstream_protocol_config).
	Downstream
)

func (p Protocol) String() string {
	switch p {
	case HTTP2:
		return "HTTP/2"
	case Downstream:
		return "the downstream's"
	}
	return "HTTP/1.1"
}

// useH2 reports whether req goes to the endpoint over HTTP/2. A request
// that asks to switch protocols (Upgrade, as WebSocket does) or a CONNECT
// keeps HTTP/1.1: HTTP/2 cannot carry either as such. An endpoint a mesh
// proxy serves takes either, and with PoolsOptions.H2WhenBusy gets HTTP/2
// only while it is busy, whatever its cluster speaks (but for a request
// that takes trailers on an HTTP/2 cluster).
func (e *Endpoint) useH2(req *http.Request) bool {
	switch e.set.protocol {
	case HTTP2:
		// A request that takes trailers (gRPC's "TE: trailers") stays on
		// HTTP/2: the HTTP/1.1 writers send no trailers.
		if e.set.sidecar && !e.busy() && leanOK(req) && len(req.Header["Te"]) == 0 {
			return false
		}
	case HTTP1:
		if !e.set.sidecar || !e.busy() {
			return false
		}
	case Downstream:
		if req.ProtoMajor != 2 {
			return false
		}
	default:
		return false
	}
	return req.Method != http.MethodConnect && len(req.Header["Upgrade"]) == 0
}

// busy reports whether more than PoolsOptions.H2WhenBusy requests are in
// flight to the endpoint (the count includes the caller's own when it
// called BeginRequest).
func (e *Endpoint) busy() bool { return e.inflight.Load() > e.h2WhenBusy }

// h2Pool holds an endpoint's HTTP/2 connections. Requests share a
// connection up to the server's limit on concurrent streams; another one
// is dialed (one at a time) when every connection is full.
type h2Pool struct {
	e *Endpoint

	mu      sync.Mutex
	conns   []*h2.ClientConn
	dialing *h2Dial // the dial in progress, if any
	closed  bool
}

// roundTrip sends req over one of the pool's connections. A request the
// server did not process (its connection was going away) and that has no
// body to resend goes once more, on another connection.
func (p *h2Pool) roundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		cc, err := p.get(req.Context())
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		resp, err := cc.RoundTrip(req)
		if err != nil && attempt == 0 && errors.Is(err, h2.ErrNotProcessed) && (req.Body == nil || req.Body == http.NoBody) {
			continue
		}
		return resp, err
	}
}

// get returns a connection with a stream reserved for the caller.
func (p *h2Pool) get(ctx context.Context) (*h2.ClientConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errEndpointClosed
		}
		for _, cc := range p.conns {
			if cc.Reserve() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		if d := p.dialing; d != nil {
			p.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil && !d.abandoned {
					// Those who waited for a dial that failed fail with
					// it, rather than each dialing in turn.
					return nil, d.err
				}
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
			}
		}
		d := &h2Dial{done: make(chan struct{})}
		p.dialing = d
		p.mu.Unlock()
		cc, err := p.dial(ctx)
		p.mu.Lock()
		p.dialing = nil
		d.err, d.abandoned = err, ctx.Err() != nil
		close(d.done)
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.closed {
			p.mu.Unlock()
			cc.Close()
			return nil, errEndpointClosed
		}
		p.conns = append(p.conns, cc)
		p.mu.Unlock()
		var age *time.Timer
		if d := p.e.set.maxAge; d > 0 {
			age = time.AfterFunc(d, cc.Retire)
		}
		go p.forgetWhenDone(cc, age)
	}
}

// h2Dial is a dial in progress: done is closed when it ends, with err
// set if it failed.
type h2Dial struct {
	done      chan struct{}
	err       error
	abandoned bool // the dialing request's context ended: not the endpoint's fault
}

// dial opens a connection and waits for the server's settings, so that
// the requests waiting for it are held to the server's limit on
// concurrent streams rather than refused beyond it.
func (p *h2Pool) dial(ctx context.Context) (*h2.ClientConn, error) {
	// (The pool holds the connection to its maximum age, not the dial.)
	// (Over TLS, the dial offers ALPN h2: most servers speak HTTP/2 over
	// TLS only when asked by name.)
	nc, err := p.e.h1.dialForTransport(withH2(ctx), p.e.set.connectTimeout, 0)
	if err != nil {
		return nil, err
	}
	// Raw socket I/O, as the lean HTTP/1.1 path's: through net.Conn,
	// every read and write wakes sysmon (see package sockio).
	cc := h2.NewClientConn(sockio.New(nc))
	cc.SetMaxUses(p.e.set.maxUses)
	if d := p.e.set.idleTimeout; d < math.MaxInt64 {
		cc.SetIdleTimeout(d)
	}
	cc.SetMaxConcurrentStreams(p.e.set.http2.MaxConcurrentStreams)
	cc.SetKeepalive(p.e.set.http2.PingInterval, p.e.set.http2.PingTimeout)
	p.e.cb.stats.cxHTTP2.Add(1)
	t := time.NewTimer(p.e.set.connectTimeout)
	defer t.Stop()
	select {
	case <-cc.Settled():
		if cc.Usable() {
			return cc, nil
		}
		err = fmt.Errorf("the HTTP/2 connection to %s ended before the server's settings", p.e.addr)
	case <-t.C:
		err = fmt.Errorf("no HTTP/2 SETTINGS from %s within the connect timeout (%v): is it an HTTP/2 server?", p.e.addr, p.e.set.connectTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	cc.Close()
	return nil, err
}

var errEndpointClosed = errors.New("the endpoint is no longer in use")

// forgetWhenDone drops cc from the pool once it has ended, and stops its
// maximum age's timer, if it has one.
func (p *h2Pool) forgetWhenDone(cc *h2.ClientConn, age *time.Timer) {
	<-cc.Done()
	if age != nil {
		age.Stop()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.conns {
		if c == cc {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}

// closeIdle closes the connections that carry no stream; final also stops
// the pool taking new requests.
func (p *h2Pool) closeIdle(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if final {
		p.closed = true
	}
	for _, cc := range p.conns {
		switch {
		case final:
			cc.Retire() // closes as its last stream ends
		case cc.Active() == 0:
			cc.Close()
		}
	}
}
