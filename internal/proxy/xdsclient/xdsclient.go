// Package xdsclient is weft-proxy's ADS client: one AggregatedDiscoveryService
// stream to the control plane, incremental (delta) or state of the world,
// reconnected forever with jittered exponential backoff.
//
// The client subscribes to clusters and listeners with a wildcard, then to
// the endpoints and route configurations its Handler asks for. Every
// response goes to the Handler; the client ACKs it (version_info and
// response_nonce) when the Handler accepts it and NACKs it (error_detail and
// the last accepted version_info) when the Handler returns an error. A
// disconnect only starts a reconnect: the Handler's accepted state, and with
// it the proxy's configuration, stays as it is.
//
// Concurrency: Run owns the stream; it receives, calls the Handler and sends
// on one goroutine, so the Handler is never called concurrently and must not
// block for long. Status may be called from any goroutine.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/grpcstream"
	"github.com/weftmesh/weft/internal/proxy/h2"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	discoveryv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/service/discovery/v3"
)

// Type URLs of the resources weft-proxy consumes.
const (
	TypeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	TypeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// order is the subscription order: wildcard types first, then the types
// whose names come from them.
var order = []string{TypeCluster, TypeListener, TypeEndpoint, TypeRoute}

func wildcard(typeURL string) bool { return typeURL == TypeCluster || typeURL == TypeListener }

// Handler consumes discovery responses.
type Handler interface {
	// Apply handles one response. A non-nil error NACKs it; its text is the
	// NACK message, so it should name the resource and field at fault.
	Apply(typeURL, version string, resources []*anypb.Any) error
	// Names returns the resource names wanted for a non-wildcard type
	// (TypeEndpoint, TypeRoute), sorted. It is called after every Apply.
	Names(typeURL string) []string
}

// Options configures a Client.
type Options struct {
	// Address is the control plane's host:port.
	Address string
	// Node is sent on the first request of every stream.
	Node *corev3.Node
	// Handler receives the responses.
	Handler Handler
	Logger  *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// after each failed attempt and is jittered by ±50%. Defaults 100ms, 5s.
	MinBackoff, MaxBackoff time.Duration
	// Delta selects incremental xDS (DeltaAggregatedResources): a change
	// sends the proxy only the resources it changes. Otherwise, or when the
	// control plane answers that it does not implement it, the client uses
	// state of the world, where every change of a type resends all of the
	// type's resources.
	Delta bool
}

// Status is the connection state, for readiness messages.
type Status struct {
	// Connected is true while a stream is open and has received a response.
	Connected bool
	// LastError is why the last attempt failed, in a form fit for a log
	// line ("connection refused"); empty if none.
	LastError string
	// Responses counts responses received over the client's lifetime.
	Responses int
}

// Client is an ADS client.
type Client struct {
	opts Options
	log  *slog.Logger

	// state is touched only by the Run goroutine.
	state map[string]*typeState

	mu     sync.Mutex
	status Status
}

type typeState struct {
	version string   // last accepted version_info (delta: system_version_info)
	nonce   string   // last response nonce on the current stream
	names   []string // current subscription, non-wildcard types only
	sent    bool     // a request for this type went out on the current stream

	// Delta only, by name: what the Handler accepted, and what the current
	// stream has received, accepted or not (nil: the same as held).
	held, received map[string]held

	// rejected is the version_info of the last NACKed response and
	// nackDelay how long the next NACK of that same version waits (see
	// stream).
	rejected  string
	nackDelay time.Duration
	nackTimer *time.Timer
}

// New validates the options and returns a client; call Run to start it.
func New(o Options) (*Client, error) {
	if o.Address == "" {
		return nil, errors.New("xdsclient: Address is required")
	}
	if o.Node == nil {
		return nil, errors.New("xdsclient: Node is required")
	}
	if o.Handler == nil {
		return nil, errors.New("xdsclient: Handler is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	c := &Client{opts: o, log: o.Logger.With("xds", o.Address), state: map[string]*typeState{}}
	for _, t := range order {
		c.state[t] = &typeState{}
	}
	return c, nil
}

// Status returns the current connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Client) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// Run keeps a stream open until ctx is done, then returns nil.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.opts.MinBackoff
	failures := 0
	delta := c.opts.Delta
	for {
		var got bool
		var err error
		if delta {
			got, err = c.deltaStream(ctx)
		} else {
			got, err = c.stream(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case delta && !got && grpcstream.CodeOf(err) == grpcstream.Unimplemented:
			// A control plane that serves only state of the world. The
			// versions held came from incremental responses; start over.
			c.log.Warn("the control plane does not serve incremental xDS; using state of the world", "err", describe(err))
			delta = false
			for _, st := range c.state {
				st.version, st.held = "", nil
			}
			continue
		case !delta && got:
			// Try incremental again on the next connection: the control
			// plane may have been upgraded meanwhile.
			delta = c.opts.Delta
		}
		reason := describe(err)
		c.setStatus(func(s *Status) { s.Connected = false; s.LastError = reason })
		if got {
			backoff = c.opts.MinBackoff
		}
		delay := jitter(backoff)
		if got || failures == 0 {
			// The first failure of a streak is worth a warning; the
			// readiness log and Status say the rest.
			c.log.Warn("xDS stream failed, retrying", "err", reason, "retry_in", delay.Round(time.Millisecond))
			failures = 0
		} else {
			c.log.Debug("xDS stream failed, retrying", "err", reason, "retry_in", delay.Round(time.Millisecond))
		}
		failures++
		backoff = min(backoff*2, c.opts.MaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// arrived records a response's arrival on a stream of kind api; the first
// of the stream is logged, and got set.
func (c *Client) arrived(got *bool, api string) {
	if !*got {
		*got = true
		c.log.Info("connected to control plane", "api", api)
	}
	c.setStatus(func(s *Status) { s.Connected = true; s.LastError = ""; s.Responses++ })
}

// sendError is why a send on a stream failed: a stream the server ended
// fails a send with io.EOF, and gives its status on the next receive.
func sendError(err error, s *grpcstream.Stream, m proto.Message) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if rerr := s.Recv(m); rerr != nil && rerr != io.EOF {
		return rerr
	}
	return err
}

// jitter spreads d uniformly over [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// describe turns a stream error into a short reason, for logs and the
// readiness message ("waiting for config from ADDR: connection refused").
func describe(err error) string {
	var st *grpcstream.Status
	var errno syscall.Errno
	var dns *net.DNSError
	var reset h2.StreamError
	var ne net.Error
	switch {
	case err == nil || err == io.EOF:
		return "stream closed"
	case errors.As(err, &st):
		return st.Error()
	case errors.As(err, &errno):
		// "dial tcp 127.0.0.1:15010: connect: connection refused" → the
		// last part.
		return errno.Error()
	case errors.As(err, &dns):
		return dns.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out connecting"
	case errors.Is(err, h2.ErrNotProcessed):
		return "the control plane refused the stream (going away)"
	case errors.As(err, &reset):
		return "the control plane reset the stream (" + reset.Code.String() + ")"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the control plane"
	}
	return err.Error()
}

// The ADS method. weft-proxy's xDS types are messages only, so the stream is
// opened here rather than through generated service code.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

// open dials the control plane and opens method on a new connection. The
// stream ends with ctx, or when it is closed, which also closes the
// connection.
func (c *Client) open(ctx context.Context, method string) (*grpcstream.Stream, error) {
	s, err := grpcstream.Open(ctx, grpcstream.Options{Address: c.opts.Address, Method: method, UserAgent: "weft-proxy"})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.opts.Address, err)
	}
	return s, nil
}

// stream runs one connection and stream; got reports whether any response
// arrived.
func (c *Client) stream(ctx context.Context) (got bool, err error) {
	s, err := c.open(ctx, adsMethod)
	if err != nil {
		return false, err
	}
	defer s.Close()
	for _, st := range c.state {
		st.nonce, st.sent, st.rejected, st.nackDelay = "", false, "", 0
	}
	// The Run goroutine sends, and so do delayed NACK timers, until the
	// stream is done.
	var sendMu sync.Mutex
	done := false
	defer func() {
		sendMu.Lock()
		defer sendMu.Unlock()
		done = true
		for _, st := range c.state {
			if st.nackTimer != nil {
				st.nackTimer.Stop()
				st.nackTimer = nil
			}
		}
	}()
	first := true
	send := func(typeURL string, nack error, delay time.Duration) error {
		st := c.state[typeURL]
		req := &discoveryv3.DiscoveryRequest{
			VersionInfo:   st.version,
			ResourceNames: st.names,
			TypeUrl:       typeURL,
			ResponseNonce: st.nonce,
		}
		if first {
			req.Node = c.opts.Node
			first = false
		}
		if nack != nil {
			req.ErrorDetail = &statuspb.Status{Code: int32(grpcstream.InvalidArgument), Message: nack.Error()}
		}
		st.sent = true
		sendMu.Lock()
		defer sendMu.Unlock()
		if st.nackTimer != nil {
			// A newer request supersedes a NACK still waiting.
			st.nackTimer.Stop()
			st.nackTimer = nil
		}
		if delay > 0 {
			st.nackTimer = time.AfterFunc(delay, func() {
				sendMu.Lock()
				defer sendMu.Unlock()
				if !done {
					s.Send(req)
				}
			})
			return nil
		}
		if err := s.Send(req); err != nil {
			return fmt.Errorf("send %s request: %w", short(typeURL), sendError(err, s, new(discoveryv3.DiscoveryResponse)))
		}
		return nil
	}
	// Subscribe: wildcard types always; the others only with names, since an
	// empty first request would mean "everything".
	for _, t := range order {
		if wildcard(t) || len(c.state[t].names) > 0 {
			if err := send(t, nil, 0); err != nil {
				return false, err
			}
		}
	}
	for {
		resp := new(discoveryv3.DiscoveryResponse)
		if err := s.Recv(resp); err != nil {
			return got, err
		}
		c.arrived(&got, "sotw")
		t := resp.GetTypeUrl()
		st, ok := c.state[t]
		if !ok {
			// Not something we asked for; there is no subscription to
			// NACK against, so just say so.
			c.log.Warn("ignoring response of a type weft-proxy did not subscribe to", "type", t)
			continue
		}
		st.nonce = resp.GetNonce()
		aerr := c.opts.Handler.Apply(t, resp.GetVersionInfo(), resp.GetResources())
		var delay time.Duration
		if aerr == nil {
			st.version, st.rejected, st.nackDelay = resp.GetVersionInfo(), "", 0
			c.log.Debug("ACK", "type", short(t), "version", st.version, "resources", len(resp.GetResources()))
		} else if resp.GetVersionInfo() == st.rejected {
			// Some servers (go-control-plane's snapshot cache) answer a
			// NACK by resending the same version at once. Slow that loop
			// down instead of spinning: each repeat waits twice as long.
			st.nackDelay = min(max(2*st.nackDelay, c.opts.MinBackoff), c.opts.MaxBackoff)
			delay = st.nackDelay
			c.log.Debug("NACK again", "type", short(t), "version", resp.GetVersionInfo(), "delay", delay)
		} else {
			st.rejected, st.nackDelay = resp.GetVersionInfo(), 0
			c.log.Warn("NACK", "type", short(t), "version", resp.GetVersionInfo(), "err", aerr)
		}
		if err := send(t, aerr, delay); err != nil {
			return got, err
		}
		for _, nt := range order {
			if wildcard(nt) {
				continue
			}
			ns := c.state[nt]
			names := c.opts.Handler.Names(nt)
			if slices.Equal(names, ns.names) {
				continue
			}
			ns.names = slices.Clone(names)
			if len(names) == 0 && !ns.sent {
				continue
			}
			if err := send(nt, nil, 0); err != nil {
				return got, err
			}
		}
	}
}

func short(typeURL string) string {
	switch typeURL {
	case TypeCluster:
		return "CDS"
	case TypeListener:
		return "LDS"
	case TypeEndpoint:
		return "EDS"
	case TypeRoute:
		return "RDS"
	}
	return typeURL
}
