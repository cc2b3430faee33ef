package forward

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// DefaultMaxMirrors bounds the shadow requests a Forwarder has in flight;
// beyond it shadows are dropped (and counted), so that a slow mirror
// cluster cannot pile up goroutines and connections.
const DefaultMaxMirrors = 64

// DefaultMirrorTimeout bounds a shadow request of a route without a
// timeout (Envoy gives a shadow the route's timeout, which may be none).
const DefaultMirrorTimeout = 30 * time.Second

// maxShadowDrain is how much of a shadow's response body is read (and
// discarded) so that its connection can be reused; a longer body is cut.
const maxShadowDrain = 1 << 20

// MirrorStats counts the Forwarder's shadow requests.
type MirrorStats struct {
	// Sent counts shadows that got a response (of any status).
	Sent uint64
	// Failed counts shadows sent that got no response (connection error,
	// timeout).
	Failed uint64
	// Dropped counts shadows not sent: the in-flight limit was reached,
	// the mirror cluster is unknown or has no endpoints, or the request
	// body was streamed rather than buffered.
	Dropped uint64
	// InFlight is the number of shadows in progress.
	InFlight int64
}

// MirrorCounters count shadow requests; they are safe for concurrent use
// and outlive a configuration version: the Forwarders of successive
// versions share them (Options.Mirrors), and with them the in-flight
// limit.
type MirrorCounters struct {
	inFlight              atomic.Int64
	sent, failed, dropped atomic.Uint64
}

// Stats returns the counts.
func (m *MirrorCounters) Stats() MirrorStats {
	return MirrorStats{Sent: m.sent.Load(), Failed: m.failed.Load(), Dropped: m.dropped.Load(), InFlight: m.inFlight.Load()}
}

// MirrorStats returns the shadow request counters.
func (f *Forwarder) MirrorStats() MirrorStats { return f.mirrors.Stats() }

// shadow is what a shadow request copies out of the request being
// forwarded: nothing in it points into the Exchange or its request, which
// are recycled once the chain returns.
type shadow struct {
	method, host, path, rawPath, query string
	header                             http.Header
	body                               []byte
	timeout                            time.Duration
}

// mirror starts a shadow request to each of the route's mirror clusters
// that the request falls in the share of. h, host, path and rawPath are the
// request as it is sent upstream (after header mutations and rewrites);
// buffered says its body, body, is complete (nil for an empty one). It
// never blocks: each shadow runs on its own goroutine.
func (f *Forwarder) mirror(r *http.Request, route *router.Route, h http.Header, host, path, rawPath string, body []byte, buffered bool) {
	m := f.mirrors
	for i := range route.Mirrors {
		mp := &route.Mirrors[i]
		if !router.InShare(mp.Percent, rand.Uint64) {
			continue
		}
		cl := f.clusters[mp.Cluster]
		if !buffered || cl == nil || cl.OriginalDst() || len(cl.Endpoints()) == 0 {
			m.dropped.Add(1)
			if f.log.Enabled(r.Context(), slog.LevelDebug) {
				f.log.Debug("request not mirrored", "cluster", mp.Cluster, "body_buffered", buffered, "cluster_known", cl != nil)
			}
			continue
		}
		if m.inFlight.Add(1) > f.maxMirrors {
			m.inFlight.Add(-1)
			m.dropped.Add(1)
			continue
		}
		timeout := route.Timeout
		if timeout <= 0 {
			timeout = f.mirrorTimeout
		}
		go f.sendShadow(cl, newShadow(r, mp, h, host, path, rawPath, body, timeout))
	}
}

// newShadow copies out of the request what a shadow request needs: the
// header map and its value slices are new, the strings (immutable) and the
// buffered body (never written after it is read) are shared.
func newShadow(r *http.Request, mp *router.Mirror, h http.Header, host, path, rawPath string, body []byte, timeout time.Duration) *shadow {
	s := &shadow{method: r.Method, host: host, path: path, rawPath: rawPath, query: r.URL.RawQuery,
		header: h.Clone(), body: body, timeout: timeout}
	if !mp.KeepHost {
		s.host = router.ShadowHost(host)
	}
	return s
}

// sendShadow sends one shadow request and discards the response.
func (f *Forwarder) sendShadow(cl *upstream.Cluster, s *shadow) {
	m := f.mirrors
	defer m.inFlight.Add(-1)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	ep := cl.Pick(nil)
	if ep == nil {
		m.dropped.Add(1)
		return
	}
	req := (&http.Request{
		Method:     s.method,
		URL:        &url.URL{Scheme: "http", Host: ep.Address(), Path: s.path, RawPath: s.rawPath, RawQuery: s.query},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     s.header,
		Host:       s.host,
	}).WithContext(ctx)
	if len(s.body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(s.body))
		req.ContentLength = int64(len(s.body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(s.body)), nil }
	}
	if err := ep.BeginRequest(); err != nil {
		m.dropped.Add(1) // the cluster's max_requests are in flight
		return
	}
	defer ep.EndRequest()
	resp, err := ep.RoundTrip(req)
	if err != nil {
		m.failed.Add(1)
		f.log.Debug("shadow request failed", "cluster", cl.Name(), "endpoint", ep.Address(), "err", classify(err).reason)
		return
	}
	cl.Stats().Observe(resp.StatusCode) // (before Close: the upstream may reuse resp after it)
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxShadowDrain))
	resp.Body.Close()
	m.sent.Add(1)
}
