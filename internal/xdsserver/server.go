package xdsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
	"github.com/weftmesh/weft/internal/translate"
)

// Options configures a Server.
type Options struct {
	Logger *slog.Logger
	// Registry learns of every proxy that connects and forgets it a grace
	// period after its stream closes.
	Registry *registry.Registry
	// MaxInflight bounds how many proxies a push has sent a change to
	// that have not yet ACKed or NACKed it; default 100. Every change in
	// flight holds its encoded responses in memory until the proxy has
	// read them, so pushing to every proxy at once costs memory in
	// proportion to the mesh, for no gain in speed.
	MaxInflight int
	// InflightTimeout is how long a push waits for one proxy's answer
	// before it counts the proxy as done; default 5s. It keeps a proxy
	// that stopped reading from holding up the rest.
	InflightTimeout time.Duration
}

// Server is the ADS server.
type Server struct {
	log   *slog.Logger
	reg   *registry.Registry
	cache *wireCache
	xds   serverv3.Server
	// slots holds a token for each proxy with a change in flight.
	slots           chan struct{}
	inflightTimeout time.Duration

	mu      sync.Mutex
	seq     int64 // of the latest push
	current *push
	streams map[streamKey]string // -> proxy ID
	proxies map[string]*proxyState
	// syncWake, while a WaitSync waits, is closed at the next change to
	// a proxy's push record or answers.
	syncWake chan struct{}
}

// New returns a Server; call Serve to accept streams.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 100
	}
	if opts.InflightTimeout <= 0 {
		opts.InflightTimeout = 5 * time.Second
	}
	s := &Server{
		log:             opts.Logger,
		reg:             opts.Registry,
		slots:           make(chan struct{}, opts.MaxInflight),
		inflightTimeout: opts.InflightTimeout,
		cache:           newWireCache(opts.Logger),
		streams:         map[streamKey]string{},
		proxies:         map[string]*proxyState{},
	}
	s.xds = serverv3.NewServer(context.Background(), s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc:       s.onStreamRequest,
		StreamResponseFunc:      s.onStreamResponse,
		StreamClosedFunc:        func(id int64, _ *corev3.Node) { s.onStreamClosed(streamKey{id: id}) },
		StreamDeltaRequestFunc:  s.onDeltaRequest,
		StreamDeltaResponseFunc: s.onDeltaResponse,
		DeltaStreamClosedFunc:   func(id int64, _ *corev3.Node) { s.onStreamClosed(streamKey{id: id, delta: true}) },
	})
	return s
}

// Serve accepts ADS streams on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	g := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	go func() {
		<-ctx.Done()
		g.Stop()
	}()
	if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve xDS on %s: %w", l.Addr(), err)
	}
	return nil
}

// push is one snapshot with what its proxies share: the translation of
// the common resources, their encodings, and the cache's index of each
// distinct set of resources of a type.
type push struct {
	seq    int64 // orders pushes; a proxy never goes back to an older one
	snap   *snapshot.Snapshot
	shared *translate.Shared

	mu      sync.Mutex
	wires   map[types.Resource]*wireResource
	groups  map[groupKey]*wireGroup
	checked map[[4]string]bool // version sets already checked for consistency
}

// groupKey names one version of one type's resources.
type groupKey struct{ typ, version string }

// pushTypes are the types a push sends, in the order of a pushRecord's
// version array.
var pushTypes = [4]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// Push makes snap the current state and sends every connected proxy its
// configuration computed from it. It returns once every proxy's change is
// in flight, which, with more than MaxInflight proxies, is after all but
// the last MaxInflight of them have answered.
func (s *Server) Push(snap *snapshot.Snapshot) {
	s.mu.Lock()
	s.seq++
	cur := &push{
		seq: s.seq, snap: snap, shared: translate.NewShared(snap),
		wires: map[types.Resource]*wireResource{}, groups: map[groupKey]*wireGroup{}, checked: map[[4]string]bool{},
	}
	s.current = cur
	ids := make([]string, 0, len(s.proxies))
	for id := range s.proxies {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Strings(ids)
	start := time.Now()
	sent := 0
	for _, id := range ids {
		s.slots <- struct{}{}
		answered := s.pushTo(id, cur)
		if answered != nil {
			sent++
		}
		s.release(id, answered)
	}
	s.log.Debug("pushed", "proxies", len(ids), "changed", sent, "config_revision", snap.ConfigRevision,
		"registry_revision", snap.RegistryRevision, "took", time.Since(start))
}

// release gives back a slot taken for a push to proxy id once the proxy
// has answered (answered is closed, or nil when nothing was sent), or
// after InflightTimeout.
func (s *Server) release(id string, answered <-chan struct{}) {
	if answered == nil {
		<-s.slots
		return
	}
	go func() {
		t := time.NewTimer(s.inflightTimeout)
		defer t.Stop()
		select {
		case <-answered:
		case <-t.C:
			s.log.Debug("proxy slow to answer a push", "proxy", id)
		}
		<-s.slots
	}()
}

// pushTo translates the push for one proxy and hands it to the cache,
// unless the proxy already has exactly these resources. When the cache got
// a new snapshot it returns a channel that is closed once the proxy has
// answered every type it subscribes to (or has gone); otherwise nil.
func (s *Server) pushTo(id string, cur *push) <-chan struct{} {
	s.mu.Lock()
	p := s.proxies[id]
	s.mu.Unlock()
	if p == nil || cur == nil {
		return nil
	}
	res := cur.shared.ForProxy(p.meta)
	typed := [4][]types.Resource{
		toResources(res.Clusters), toResources(res.Endpoints), toResources(res.Listeners), toResources(res.Routes),
	}
	ws := &wireSnapshot{}
	var versions [4]string
	for i, typ := range pushTypes {
		ws[i] = cur.group(s.log, typ, typed[i])
		versions[i] = ws[i].version
	}
	if err := cur.consistent(versions, typed); err != nil {
		// A translation bug; push anyway so the proxy sees what it can,
		// and say so loudly.
		s.log.Error("inconsistent snapshot", "proxy", id, "err", err)
	}

	// One push at a time per proxy, so the record and the cache agree.
	p.pushMu.Lock()
	defer p.pushMu.Unlock()
	s.mu.Lock()
	if s.proxies[id] != p || p.push.seq > cur.seq {
		s.mu.Unlock()
		return nil // gone, or already given a newer push
	}
	unchanged := p.push.seq != 0 && p.push.versions == versions
	p.push = pushRecord{seq: cur.seq, configRevision: cur.snap.ConfigRevision,
		registryRevision: cur.snap.RegistryRevision, versions: versions, at: time.Now()}
	s.syncChanged()
	var answered chan struct{}
	if !unchanged {
		p.settle() // the previous change is superseded
		answered = make(chan struct{})
		p.answered = answered
		// A change only to types the proxy does not subscribe to
		// needs no answer.
		p.settleIfAnswered()
	}
	s.mu.Unlock()
	if unchanged {
		// The cache already holds these versions for the proxy; a new
		// snapshot would send nothing.
		return nil
	}
	s.cache.SetSnapshot(id, ws)
	return answered
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}

// group returns items, resources of type typ, serialized, serializing each
// resource and building each group once per push.
func (cur *push) group(log *slog.Logger, typ string, items []types.Resource) *wireGroup {
	wires := make([]*wireResource, 0, len(items))
	for _, r := range items {
		w, err := cur.wire(typ, r)
		if err != nil {
			// Marshal fails only for invalid UTF-8 in a string field,
			// which validation keeps out of the config.
			log.Error("dropping a resource that cannot be serialized", "err", err)
			continue
		}
		wires = append(wires, w)
	}
	k := groupKey{typ: typ, version: wireVersion(wires)}
	cur.mu.Lock()
	g, ok := cur.groups[k]
	cur.mu.Unlock()
	if ok {
		return g
	}
	g = newWireGroup(k.version, wires)
	cur.mu.Lock()
	if prev, ok := cur.groups[k]; ok {
		g = prev
	} else {
		cur.groups[k] = g
	}
	cur.mu.Unlock()
	return g
}

func (cur *push) wire(typ string, r types.Resource) (*wireResource, error) {
	cur.mu.Lock()
	w, ok := cur.wires[r]
	cur.mu.Unlock()
	if ok {
		return w, nil
	}
	w, err := newWireResource(typ, r)
	if err != nil {
		return nil, err
	}
	cur.mu.Lock()
	if prev, ok := cur.wires[r]; ok {
		w = prev
	} else {
		cur.wires[r] = w
	}
	cur.mu.Unlock()
	return w, nil
}

// consistent checks, once per push for each distinct set of versions, that
// every EDS cluster has its load assignment and every route configuration
// a listener names exists.
func (cur *push) consistent(versions [4]string, typed [4][]types.Resource) error {
	cur.mu.Lock()
	done := cur.checked[versions]
	cur.mu.Unlock()
	if done {
		return nil
	}
	byType := make(map[resourcev3.Type][]types.Resource, len(pushTypes))
	for i, typ := range pushTypes {
		byType[typ] = typed[i]
	}
	cs, err := cachev3.NewSnapshot("", byType)
	if err == nil {
		err = cs.Consistent()
	}
	cur.mu.Lock()
	cur.checked[versions] = true
	cur.mu.Unlock()
	return err
}

// streamKey names a stream: go-control-plane numbers state-of-the-world
// and incremental streams apart.
type streamKey struct {
	id    int64
	delta bool
}

// sentWith names a response by its stream and nonce: each stream numbers
// its nonces from 1, and a proxy's old and new streams may overlap while
// it reconnects.
type sentWith struct {
	stream streamKey
	nonce  string
}

// onStreamRequest records a state-of-the-world request: the proxy behind a
// new stream, and the ACK or NACK a request carries.
func (s *Server) onStreamRequest(stream int64, req *discoverygrpc.DiscoveryRequest) error {
	rejected, err := s.onRequest(streamKey{id: stream}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail(), req.GetVersionInfo())
	if rejected != "" {
		// The cache answers any request whose version differs from its
		// own at once, so it would resend the rejected config in a loop.
		// Like Istio, send nothing more until the config changes: the
		// request names the rejected version as the one the proxy holds.
		req.VersionInfo = rejected
	}
	return err
}

// onDeltaRequest records an incremental request. An ACK carries no
// version: it accepts the one sent with its nonce. A NACK needs no
// rewriting: the stream records what it was sent, so the cache does not
// send a rejected resource again until it changes.
func (s *Server) onDeltaRequest(stream int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
	_, err := s.onRequest(streamKey{id: stream, delta: true}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail(), "")
	return err
}

// onRequest registers the proxy behind a new stream and records what a
// request says of the response its nonce names: a NACK (nack is set), or an
// ACK of version held ("": of the version sent with the nonce). For a NACK
// it returns the rejected version.
func (s *Server) onRequest(key streamKey, node *corev3.Node, typeURL, nonce string, nack *statuspb.Status, held string) (rejected string, err error) {
	s.mu.Lock()
	id, known := s.streams[key]
	s.mu.Unlock()
	if !known {
		if id, err = s.register(key, node); err != nil {
			s.log.Warn("rejecting xDS stream", "stream", key.id, "delta", key.delta, "err", err)
			return "", err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[id]
	if p == nil {
		return "", nil
	}
	ts := p.typeState(typeURL)
	ts.subscribed = true
	s.syncChanged() // and for the ACK or NACK below: WaitSync looks once mu is released
	if nonce == "" {
		return "", nil // initial request, or a resubscription after reconnect
	}
	sentVersion, ok := ts.nonces[sentWith{key, nonce}]
	if !ok {
		return "", nil // a nonce from before a reconnect or long superseded
	}
	defer p.settleIfAnswered()
	if nack != nil {
		// A rejected partial response rejects the version it was part
		// of: the proxy's record compares NACKs with the full version.
		ts.nack, ts.nackVersion, ts.nackAt = nack.GetMessage(), fullVersion(sentVersion), time.Now()
		s.log.Warn("proxy rejected config", "proxy", id, "type", shortType(typeURL), "version", sentVersion, "error", nack.GetMessage())
		return sentVersion, nil
	}
	if held == "" {
		held = sentVersion
	}
	ts.acked, ts.ackedAt = held, time.Now()
	if ts.acked == ts.nackVersion || ts.acked == sentVersion {
		ts.nack, ts.nackVersion = "", ""
	}
	return "", nil
}

// register records the proxy behind a new stream and pushes it its config.
func (s *Server) register(key streamKey, node *corev3.Node) (string, error) {
	meta, err := nodemeta.FromNode(node)
	if err != nil {
		return "", fmt.Errorf("register proxy: %w", err)
	}
	id := node.GetId()
	s.mu.Lock()
	s.streams[key] = id
	p := s.proxies[id]
	if p == nil {
		p = &proxyState{id: id, types: map[string]*typeState{}}
		s.proxies[id] = p
	}
	p.meta, p.connectedAt, p.streams = meta, time.Now(), p.streams+1
	s.syncChanged()
	cur := s.current
	s.mu.Unlock()
	if s.reg != nil {
		s.reg.Connect(id, meta)
	}
	s.log.Info("proxy connected", "proxy", id, "stream", key.id, "delta", key.delta)
	// A proxy's first config takes a slot like a push does, so a crowd
	// connecting at once is served MaxInflight at a time.
	s.slots <- struct{}{}
	s.release(id, s.pushTo(id, cur))
	return id, nil
}

func (s *Server) onStreamResponse(_ context.Context, stream int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	s.onResponse(streamKey{id: stream}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (s *Server) onDeltaResponse(stream int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
	s.onResponse(streamKey{id: stream, delta: true}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// onResponse records that version of typeURL went out with nonce.
func (s *Server) onResponse(key streamKey, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[s.streams[key]]
	if p == nil {
		return
	}
	ts := p.typeState(typeURL)
	ts.sent, ts.sentAt = version, time.Now()
	s.syncChanged()
	if len(ts.nonces) > 16 {
		clear(ts.nonces) // only the latest few nonces can still be answered
	}
	ts.nonces[sentWith{key, nonce}] = version
}

func (s *Server) onStreamClosed(key streamKey) {
	s.mu.Lock()
	id, ok := s.streams[key]
	delete(s.streams, key)
	if ok {
		if p := s.proxies[id]; p != nil {
			if p.streams--; p.streams <= 0 {
				p.settle()
				delete(s.proxies, id)
				s.syncChanged()
				s.cache.ClearSnapshot(id)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		s.log.Info("proxy disconnected", "proxy", id, "stream", key.id, "delta", key.delta)
		if s.reg != nil {
			s.reg.Disconnect(id)
		}
	}
}
