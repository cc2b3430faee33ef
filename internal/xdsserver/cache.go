package xdsserver

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// wireCache is the state-of-the-world ADS cache behind go-control-plane's
// server. It answers the same requests with the same resources as
// go-control-plane's snapshot cache in ADS mode, but from wireSnapshots:
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
// Incremental (delta) xDS and the REST fetch are not served.
type wireCache struct {
	log *slog.Logger

	mu     sync.Mutex
	lastID int64
	nodes  map[string]*wireNode // by node ID
}

var _ cachev3.Cache = (*wireCache)(nil)

// wireNode is the state of one node ID: its snapshot and its open watches.
type wireNode struct {
	snap    *wireSnapshot
	watches map[int64]wireWatch
}

// wireWatch is a request waiting for a snapshot with another version.
type wireWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	out chan cachev3.Response
}

func newWireCache(log *slog.Logger) *wireCache {
	return &wireCache{log: log, nodes: map[string]*wireNode{}}
}

func (c *wireCache) node(id string) *wireNode {
	n := c.nodes[id]
	if n == nil {
		n = &wireNode{watches: map[int64]wireWatch{}}
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
	n.snap = snap
	ids := make([]int64, 0, len(n.watches))
	for wid := range n.watches {
		ids = append(ids, wid)
	}
	slices.SortFunc(ids, func(a, b int64) int {
		ta, tb := typeIndex(n.watches[a].req.GetTypeUrl()), typeIndex(n.watches[b].req.GetTypeUrl())
		if ta != tb {
			return ta - tb
		}
		return int(a - b)
	})
	for _, wid := range ids {
		w := n.watches[wid]
		g := snap.group(w.req.GetTypeUrl())
		if g == nil || g.version == w.req.GetVersionInfo() {
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
	w := wireWatch{req: req, sub: sub, out: out}
	if n.snap != nil {
		if g := n.snap.group(req.GetTypeUrl()); g != nil && (req.GetVersionInfo() != g.version || unreturned(sub, g)) {
			c.respond(w, g)
			return func() {}, nil
		}
	}
	c.lastID++
	wid := c.lastID
	n.watches[wid] = w
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := c.nodes[id]; n != nil {
			delete(n.watches, wid)
		}
	}, nil
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

// errNotServed answers the xDS variants Weft does not serve.
var errNotServed = errors.New("weft serves state-of-the-world ADS only; incremental xDS and REST are not served")

// CreateDeltaWatch refuses incremental xDS.
func (c *wireCache) CreateDeltaWatch(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errNotServed
}

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
