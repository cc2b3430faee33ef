package xdsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

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
}

// Server is the ADS server.
type Server struct {
	log   *slog.Logger
	reg   *registry.Registry
	cache cachev3.SnapshotCache
	xds   serverv3.Server

	mu      sync.Mutex
	current *push
	streams map[int64]string // stream ID -> proxy ID
	proxies map[string]*proxyState
}

// New returns a Server; call Serve to accept streams.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:     opts.Logger,
		reg:     opts.Registry,
		cache:   cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		streams: map[int64]string{},
		proxies: map[string]*proxyState{},
	}
	s.xds = serverv3.NewServer(context.Background(), s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc:  s.onStreamRequest,
		StreamResponseFunc: s.onStreamResponse,
		StreamClosedFunc:   s.onStreamClosed,
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
// the common resources, and the hash of every resource already hashed.
type push struct {
	snap   *snapshot.Snapshot
	shared *translate.Shared
	hashes sync.Map // types.Resource -> uint64
}

// Push makes snap the current state and sends every connected proxy its
// configuration computed from it.
func (s *Server) Push(snap *snapshot.Snapshot) {
	cur := &push{snap: snap, shared: translate.NewShared(snap)}
	s.mu.Lock()
	s.current = cur
	ids := make([]string, 0, len(s.proxies))
	for id := range s.proxies {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Strings(ids)
	start := time.Now()
	for _, id := range ids {
		s.pushTo(id, cur)
	}
	s.log.Debug("pushed", "proxies", len(ids), "config_revision", snap.ConfigRevision,
		"registry_revision", snap.RegistryRevision, "took", time.Since(start))
}

// pushTo translates the push for one proxy and hands it to the cache.
func (s *Server) pushTo(id string, cur *push) {
	s.mu.Lock()
	p := s.proxies[id]
	s.mu.Unlock()
	if p == nil || cur == nil {
		return
	}
	snap := cur.snap
	res := cur.shared.ForProxy(p.meta)
	byType := map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: toResources(res.Listeners),
		resourcev3.RouteType:    toResources(res.Routes),
		resourcev3.ClusterType:  toResources(res.Clusters),
		resourcev3.EndpointType: toResources(res.Endpoints),
	}
	cs := &cachev3.Snapshot{}
	versions := map[string]string{}
	for typ, items := range byType {
		v := cur.version(items)
		versions[typ] = v
		cs.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(v, items)
	}
	if err := cs.Consistent(); err != nil {
		// A translation bug; push anyway so the proxy sees what it can,
		// and say so loudly.
		s.log.Error("inconsistent snapshot", "proxy", id, "err", err)
	}
	s.mu.Lock()
	if cur := s.proxies[id]; cur == p {
		p.push = pushRecord{configRevision: snap.ConfigRevision, versions: versions, at: time.Now()}
	}
	s.mu.Unlock()
	if err := s.cache.SetSnapshot(context.Background(), id, cs); err != nil {
		s.log.Error("set snapshot", "proxy", id, "err", err)
	}
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}

// version names a set of resources by a hash of their content, so a push
// that does not change a type does not resend it. Resources shared by many
// proxies are hashed once per push.
func (cur *push) version(items []types.Resource) string {
	h := fnv.New64a()
	var buf [8]byte
	for _, r := range items {
		binary.LittleEndian.PutUint64(buf[:], cur.hash(r))
		h.Write(buf[:])
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

func (cur *push) hash(r types.Resource) uint64 {
	if v, ok := cur.hashes.Load(r); ok {
		return v.(uint64)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		// Marshal fails only for invalid UTF-8 in a string field; fall
		// back to the name so the version still changes.
		b = []byte(cachev3.GetResourceName(r))
	}
	h := fnv.New64a()
	h.Write(b)
	v := h.Sum64()
	cur.hashes.Store(r, v)
	return v
}

func (s *Server) onStreamRequest(stream int64, req *discoverygrpc.DiscoveryRequest) error {
	s.mu.Lock()
	id, known := s.streams[stream]
	s.mu.Unlock()
	if !known {
		var err error
		if id, err = s.register(stream, req.GetNode()); err != nil {
			s.log.Warn("rejecting xDS stream", "stream", stream, "err", err)
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[id]
	if p == nil {
		return nil
	}
	ts := p.typeState(req.GetTypeUrl())
	ts.subscribed = true
	if req.GetResponseNonce() == "" {
		return nil // initial request, or a resubscription after reconnect
	}
	sentVersion, ok := ts.nonces[req.GetResponseNonce()]
	if !ok {
		return nil // a nonce from before a reconnect or long superseded
	}
	if d := req.GetErrorDetail(); d != nil {
		ts.nack, ts.nackVersion, ts.nackAt = d.GetMessage(), sentVersion, time.Now()
		s.log.Warn("proxy rejected config", "proxy", id, "type", shortType(req.GetTypeUrl()),
			"version", sentVersion, "error", d.GetMessage())
		// The cache answers any request whose version differs from its
		// own at once, so it would resend the rejected config in a loop.
		// Like Istio, send nothing more until the config changes: the
		// request names the rejected version as the one the proxy holds.
		req.VersionInfo = sentVersion
		return nil
	}
	ts.acked, ts.ackedAt = req.GetVersionInfo(), time.Now()
	if ts.acked == ts.nackVersion || ts.acked == sentVersion {
		ts.nack, ts.nackVersion = "", ""
	}
	return nil
}

// register records the proxy behind a new stream and pushes it its config.
func (s *Server) register(stream int64, node *corev3.Node) (string, error) {
	meta, err := nodemeta.FromNode(node)
	if err != nil {
		return "", fmt.Errorf("register proxy: %w", err)
	}
	id := node.GetId()
	s.mu.Lock()
	s.streams[stream] = id
	p := s.proxies[id]
	if p == nil {
		p = &proxyState{id: id, types: map[string]*typeState{}}
		s.proxies[id] = p
	}
	p.meta, p.connectedAt, p.streams = meta, time.Now(), p.streams+1
	cur := s.current
	s.mu.Unlock()
	if s.reg != nil {
		s.reg.Connect(id, meta)
	}
	s.log.Info("proxy connected", "proxy", id, "stream", stream)
	s.pushTo(id, cur)
	return id, nil
}

func (s *Server) onStreamResponse(_ context.Context, stream int64, req *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[s.streams[stream]]
	if p == nil {
		return
	}
	ts := p.typeState(resp.GetTypeUrl())
	ts.sent, ts.sentAt = resp.GetVersionInfo(), time.Now()
	if len(ts.nonces) > 16 {
		clear(ts.nonces) // only the latest few nonces can still be answered
	}
	ts.nonces[resp.GetNonce()] = resp.GetVersionInfo()
}

func (s *Server) onStreamClosed(stream int64, _ *corev3.Node) {
	s.mu.Lock()
	id, ok := s.streams[stream]
	delete(s.streams, stream)
	if ok {
		if p := s.proxies[id]; p != nil {
			if p.streams--; p.streams <= 0 {
				delete(s.proxies, id)
				s.cache.ClearSnapshot(id)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		s.log.Info("proxy disconnected", "proxy", id, "stream", stream)
		if s.reg != nil {
			s.reg.Disconnect(id)
		}
	}
}
