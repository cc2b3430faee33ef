package xdsserver

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// wireCache is the ADS cache behind go-control-plane's server, for both
// state-of-the-world and incremental (delta) streams. It answers the same
// requests with the same resources as go-control-plane's snapshot cache in
// ADS mode, but from wireSnapshots:
// resources serialized once per push and shared by every proxy, so a
// response costs one copy of its bytes (gRPC's encoding) instead of a
// marshal of every resource in it.
//
// Like the snapshot cache, it answers a request at once when the proxy's
// version differs from the snapshot's, or when the proxy subscribes to a
// resource it has not been sent; otherwise it keeps the request as a watch
// and answers it when a snapshot with another version arrives. A request
// that names resources (EDS, RDS) is answered only once it names every
// resource of the snapshot, so a proxy learns of a new cluster's endpoints
// after it has the cluster and asks for them.
//
// A delta stream is sent only what it lacks: the resources it subscribes to
// whose version differs from the one it was last sent (or reported on
// connecting), and the names of those that are gone. Every delta response
// carries the type's version as system_version_info, which is what the
// server's status records; a snapshot that changes the type's version but
// none of the stream's resources is answered with an empty response, so
// the record still follows. The REST fetch is not served.
type wireCache struct {
	log *slog.Logger

	mu     sync.Mutex
	lastID int64
	nodes  map[string]*wireNode // by node ID
}

// groupDiff is what changed from one group to another: the indexes, in
// the new group, of the resources added or changed, and the names removed.
type groupDiff struct {
	changed []int
	removed []string
}

var _ cachev3.Cache = (*wireCache)(nil)

// wireNode is the state of one node ID: its snapshot and its open watches.
type wireNode struct {
	snap    *wireSnapshot
	watches map[int64]wireWatch
	// nacked holds the types whose last delta response the node rejected
	// and that have not been sent again since.
	nacked map[string]bool
}

// wireWatch is a request waiting for a snapshot with another version: a
// state-of-the-world request (req, out) or an incremental one (dreq, dout).
type wireWatch struct {
	typeURL string
	sub     cachev3.Subscription
	req     *cachev3.Request
	out     chan cachev3.Response
	dreq    *cachev3.DeltaRequest
	dout    chan cachev3.DeltaResponse
}

// versionKey is the key, in a delta stream's map of the versions it was
// sent, of the type's version (system_version_info) it was last sent. No
// resource name holds a NUL byte.
const versionKey = "\x00version"

func newWireCache(log *slog.Logger) *wireCache {
	return &wireCache{log: log, nodes: map[string]*wireNode{}}
}

func (c *wireCache) node(id string) *wireNode {
	n := c.nodes[id]
	if n == nil {
		n = &wireNode{watches: map[int64]wireWatch{}, nacked: map[string]bool{}}
		c.nodes[id] = n
	}
	return n
}

// SetSnapshot makes snap the node's configuration and answers the node's
// watches whose version it changes, in ADS order (CDS, EDS, LDS, RDS).
func (c *wireCache) SetSnapshot(id string, snap *wireSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	prev := n.snap
	n.snap = snap
	ids := make([]int64, 0, len(n.watches))
	for wid := range n.watches {
		ids = append(ids, wid)
	}
	slices.SortFunc(ids, func(a, b int64) int {
		ta, tb := typeIndex(n.watches[a].typeURL), typeIndex(n.watches[b].typeURL)
		if ta != tb {
			return ta - tb
		}
		return int(a - b)
	})
	for _, wid := range ids {
		w := n.watches[wid]
		g := snap.group(w.typeURL)
		if g == nil {
			continue
		}
		if w.dreq != nil {
			var from *wireGroup
			if prev != nil {
				from = prev.group(w.typeURL)
			}
			if c.respondDelta(n, w, g, from) {
				delete(n.watches, wid)
			}
			continue
		}
		if g.version == w.req.GetVersionInfo() {
			continue
		}
		c.respond(w, g)
		delete(n.watches, wid) // answered, or dropped until the proxy asks again
	}
}

// ClearSnapshot forgets a node.
func (c *wireCache) ClearSnapshot(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, id)
}

// CreateWatch answers req from the node's snapshot, or keeps it until a
// snapshot can answer it.
func (c *wireCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	id := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	w := wireWatch{typeURL: req.GetTypeUrl(), req: req, sub: sub, out: out}
	if n.snap != nil {
		if g := n.snap.group(req.GetTypeUrl()); g != nil && (req.GetVersionInfo() != g.version || unreturned(sub, g)) {
			c.respond(w, g)
			return func() {}, nil
		}
	}
	return c.keep(id, n, w), nil
}

// CreateDeltaWatch answers req with what the stream lacks of the node's
// snapshot, or keeps it until a snapshot changes something it subscribes
// to.
func (c *wireCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	id := req.GetNode().GetId()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	w := wireWatch{typeURL: req.GetTypeUrl(), sub: sub, dreq: req, dout: out}
	if req.GetErrorDetail() != nil {
		n.nacked[w.typeURL] = true
	}
	if n.snap != nil {
		if g := n.snap.group(req.GetTypeUrl()); g != nil && c.respondDelta(n, w, g, nil) {
			return func() {}, nil
		}
	}
	return c.keep(id, n, w), nil
}

// keep registers w as a watch of node id and returns its cancel function.
// The caller holds c.mu.
func (c *wireCache) keep(id string, n *wireNode, w wireWatch) func() {
	c.lastID++
	wid := c.lastID
	n.watches[wid] = w
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := c.nodes[id]; n != nil {
			delete(n.watches, wid)
		}
	}
}

// unreturned reports whether the stream subscribes to resources of g that
// it has not been sent on this stream. Every answer for g carries all of g
// (see respond), so a stream that has been answered at g's version has
// every resource of g; a proxy that reports g's version on a new stream
// got it on an earlier one, and is sent it again, as go-control-plane
// does.
func unreturned(sub cachev3.Subscription, g *wireGroup) bool {
	if len(g.names) == 0 || len(sub.ReturnedResources()) > 0 {
		return false
	}
	if sub.IsWildcard() {
		return true
	}
	for name := range sub.SubscribedResources() {
		if _, ok := g.byName[name]; ok {
			return true
		}
	}
	return false
}

// respond sends w all of g. A request that names resources is answered
// only when it names all of g's (see wireCache); the names it asks for
// that g does not have are left out, as they no longer exist.
func (c *wireCache) respond(w wireWatch, g *wireGroup) {
	if names := w.req.GetResourceNames(); len(names) > 0 {
		if !slices.IsSorted(names) {
			names = slices.Sorted(slices.Values(names))
		}
		// Both lists are sorted: walk them together.
		i := 0
		for _, name := range g.names {
			for i < len(names) && names[i] < name {
				i++
			}
			if i == len(names) || names[i] != name {
				c.log.Debug("not answering a request that misses resources", "type", shortType(w.req.GetTypeUrl()),
					"node", w.req.GetNode().GetId(), "missing", name)
				return
			}
		}
	}
	// What the stream records as sent; unreturned only asks whether it
	// is empty, so one name stands for all of g.
	returned := map[string]string{}
	if len(g.names) > 0 {
		returned[g.names[0]] = g.version
	}
	// The channel has room for one response per type; the stream reads it
	// before it asks for that type again.
	w.out <- &cachev3.PassthroughResponse{
		Request: w.req,
		DiscoveryResponse: &discoverygrpc.DiscoveryResponse{
			VersionInfo: g.version,
			Resources:   g.all, // shared, read-only
			TypeUrl:     w.req.GetTypeUrl(),
		},
		ReturnedResources: returned,
	}
}

// respondDelta sends w, a watch of node n, the resources of g it
// subscribes to and lacks, and the names of those it was sent that g no
// longer has. It sends nothing, and returns false, when the stream lacks
// nothing and was already told g's version.
//
// A stream that was told a group's version (or its partial form) holds
// every resource of that group it subscribed to. So when it was told g's
// own version, only the names its request newly subscribes to can be
// missing (an ACK subscribes to none); when it was told prev's, only what
// changed from prev to g (worked out once for every stream). Otherwise,
// on a stream's first request, every resource is compared with what the
// stream reports. The cache's lock is held, and a push reaches every
// stream, so the common cases must not cost in proportion to the config
// (but for subscribesAll, a set lookup per name of g on each response
// actually sent).
//
// The exception is a stream that rejected its last response of the type:
// go-control-plane's server records what it sent, rejected or not, so the
// record is not what the proxy holds. Its next response (at the next
// change, or when it subscribes to more) carries every resource it
// subscribes to, which the proxy either accepts whole or rejects again.
func (c *wireCache) respondDelta(n *wireNode, w wireWatch, g, prev *wireGroup) bool {
	sent := w.sub.ReturnedResources()
	wildcard, subscribed := w.sub.IsWildcard(), w.sub.SubscribedResources()
	wants := func(name string) bool {
		_, ok := subscribed[name]
		return wildcard || ok
	}
	var resources []*discoverygrpc.Resource
	var removed []string
	lacks := func(i int) {
		if v, ok := sent[g.names[i]]; (!ok || v != g.versions[i]) && wants(g.names[i]) {
			resources = append(resources, g.resources[i])
		}
	}
	subscribe := w.dreq.GetResourceNamesSubscribe()
	// told is the version the stream was last sent; base is the group
	// version it names, also when told was partial: either way the stream
	// holds every resource of that group it subscribed to.
	told := sent[versionKey]
	base := fullVersion(told)
	// A wildcard stream that unsubscribes a name keeps it with no
	// version, to be sent again; only a full comparison finds those.
	fast := base == g.version && !slices.Contains(subscribe, "*") && !(wildcard && len(w.dreq.GetResourceNamesUnsubscribe()) > 0)
	switch {
	case n.nacked[w.typeURL] && (base != g.version || len(subscribe) > 0):
		for i, name := range g.names {
			if wants(name) {
				resources = append(resources, g.resources[i])
			}
		}
		removed = gone(sent, g)
	case n.nacked[w.typeURL]:
		return false // nothing new since the rejection: wait for a change
	case fast:
		for _, name := range subscribe {
			if i, ok := slices.BinarySearch(g.names, name); ok {
				lacks(i)
			}
		}
	case prev != nil && base == prev.version:
		d := c.diff(prev, g)
		for _, i := range d.changed {
			lacks(i)
		}
		for _, name := range d.removed {
			if _, ok := sent[name]; ok {
				removed = append(removed, name)
			}
		}
	default:
		for i := range g.names {
			lacks(i)
		}
		removed = gone(sent, g)
	}
	// The proxy holds g's version only once it holds every resource of
	// g: a response that leaves out names the stream has not subscribed
	// to yet (the load assignment of a cluster the proxy is about to
	// learn of) says so, so that its ACK does not count as the proxy
	// having g (see partialVersion). The stream is told the full version
	// once it subscribes to the rest, even with nothing left to send (a
	// proxy that reported holding them when it connected).
	version := g.version
	if !wildcard && !subscribesAll(subscribed, g) {
		version = partialVersion(g.version)
	}
	if len(resources) == 0 && len(removed) == 0 && told == version {
		return false
	}
	delete(n.nacked, w.typeURL)
	next := make(map[string]string, len(sent)+len(resources)+1)
	for name, v := range sent {
		next[name] = v
	}
	for _, r := range resources {
		next[r.Name] = r.Version
	}
	for _, name := range removed {
		delete(next, name)
	}
	next[versionKey] = version
	// The stream's channel has room for a response per type, and a type
	// has one watch at a time.
	w.dout <- &cachev3.DeltaPassthroughResponse{
		DeltaRequest:   w.dreq,
		NextVersionMap: next,
		DeltaDiscoveryResponse: &discoverygrpc.DeltaDiscoveryResponse{
			SystemVersionInfo: version,
			Resources:         resources, // shared, read-only
			RemovedResources:  removed,
			TypeUrl:           w.typeURL,
		},
	}
	return true
}

// partialVersion is the system_version_info of a delta response for g
// sent to a stream that does not subscribe to all of g's resources yet.
// The proxy's record (proxy-status, apply --wait) compares what a proxy
// ACKed with g's version, so an ACK of a partial response leaves the type
// STALE until the proxy subscribes to the rest and is sent it, as it does
// once it has the clusters or listeners that name them. Without this,
// `weft apply --wait` could return while a proxy still waited for the
// endpoints of a new cluster, serving the previous config.
func partialVersion(v string) string { return v + partialSuffix }

// fullVersion is the group version a sent version names, partial or not.
func fullVersion(v string) string { return strings.TrimSuffix(v, partialSuffix) }

const partialSuffix = "-partial"

// subscribesAll reports whether every resource of g is among subscribed.
func subscribesAll(subscribed map[string]struct{}, g *wireGroup) bool {
	if len(subscribed) < len(g.names) {
		return false
	}
	for _, name := range g.names {
		if _, ok := subscribed[name]; !ok {
			return false
		}
	}
	return true
}

// gone returns, sorted, the names a stream was sent that g does not have.
func gone(sent map[string]string, g *wireGroup) []string {
	var removed []string
	for name := range sent {
		if _, ok := g.byName[name]; !ok && name != versionKey {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return removed
}

// diff returns what changed from group a to group b, computing it once.
// The caller holds c.mu.
func (c *wireCache) diff(a, b *wireGroup) *groupDiff {
	if d, ok := b.diffs[a.version]; ok {
		return d
	}
	d := &groupDiff{}
	i, j := 0, 0
	for i < len(a.names) || j < len(b.names) {
		switch {
		case j == len(b.names) || (i < len(a.names) && a.names[i] < b.names[j]):
			d.removed = append(d.removed, a.names[i])
			i++
		case i == len(a.names) || b.names[j] < a.names[i]:
			d.changed = append(d.changed, j)
			j++
		default:
			if a.versions[i] != b.versions[j] {
				d.changed = append(d.changed, j)
			}
			i++
			j++
		}
	}
	if b.diffs == nil || len(b.diffs) >= 16 {
		// Streams come to b from the group before it, or from a few
		// older ones; keyed by version, no older group stays alive.
		b.diffs = map[string]*groupDiff{}
	}
	b.diffs[a.version] = d
	return d
}

// errNotServed answers the xDS variant Weft does not serve.
var errNotServed = errors.New("weft serves ADS over gRPC (state of the world or incremental); the REST variant is not served")

// Fetch refuses the REST variant of xDS.
func (c *wireCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errNotServed
}

// typeIndex is the index of typeURL in pushTypes, or len(pushTypes).
func typeIndex(typeURL string) int {
	for i, typ := range pushTypes {
		if typ == typeURL {
			return i
		}
	}
	return len(pushTypes)
}
