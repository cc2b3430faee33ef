package xdsclient

import (
	"context"
	"fmt"
	"maps"
	"slices"

	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/grpcstream"
	discoveryv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/service/discovery/v3"
)

// The incremental ADS method.
const deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

// held is a resource the Handler accepted, with the version the control
// plane gave it.
type held struct {
	version string
	any     *anypb.Any
}

// deltaStream runs one connection and incremental stream; got reports
// whether any response arrived.
//
// The client keeps, per type, what the stream has received: every
// response merged in (its resources added or replaced, its removed names
// dropped), accepted or not, since a control plane sends the next change
// as a difference from what it sent. The Handler gets that whole set, as
// it would from a state-of-the-world response, and the response is ACKed
// with its nonce, or NACKed with error_detail. A rejected resource thus
// stays in the set, and every later response is rejected too, until the
// control plane replaces or removes it: the proxy keeps its last accepted
// config meanwhile and says why, as it does over state of the world. On
// reconnecting, the client reports the versions it accepted
// (initial_resource_versions), so the control plane sends only what
// differs from them.
func (c *Client) deltaStream(ctx context.Context) (got bool, err error) {
	s, err := c.open(ctx, deltaMethod)
	if err != nil {
		return false, err
	}
	defer s.Close()
	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if first {
			req.Node = c.opts.Node
			first = false
		}
		c.state[req.TypeUrl].sent = true
		if err := s.Send(req); err != nil {
			return fmt.Errorf("send %s request: %w", short(req.TypeUrl), sendError(err, s, new(discoveryv3.DeltaDiscoveryResponse)))
		}
		return nil
	}
	for _, st := range c.state {
		st.sent, st.received = false, nil
	}
	// Subscribe: wildcard types with an empty first request (Envoy's
	// legacy wildcard, which every control plane understands); the others
	// only once they have names, since an empty first request would mean
	// "everything".
	for _, t := range order {
		st := c.state[t]
		if !wildcard(t) && len(st.names) == 0 {
			continue
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, InitialResourceVersions: st.versions()}
		if !wildcard(t) {
			req.ResourceNamesSubscribe = st.names
		}
		if err := send(req); err != nil {
			return false, err
		}
	}
	for {
		resp := new(discoveryv3.DeltaDiscoveryResponse)
		if err := s.Recv(resp); err != nil {
			return got, err
		}
		c.arrived(&got, "delta")
		t := resp.GetTypeUrl()
		st, ok := c.state[t]
		if !ok {
			c.log.Warn("ignoring response of a type weft-proxy did not subscribe to", "type", t)
			continue
		}
		next := st.merge(t, resp)
		st.received = next
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
		if aerr := c.opts.Handler.Apply(t, resp.GetSystemVersionInfo(), sortedAnys(next)); aerr != nil {
			ack.ErrorDetail = &statuspb.Status{Code: int32(grpcstream.InvalidArgument), Message: aerr.Error()}
			c.log.Warn("NACK", "type", short(t), "version", resp.GetSystemVersionInfo(), "err", aerr)
		} else {
			st.held, st.version = next, resp.GetSystemVersionInfo()
			c.log.Debug("ACK", "type", short(t), "version", st.version, "changed", len(resp.GetResources()),
				"removed", len(resp.GetRemovedResources()), "resources", len(next))
		}
		if err := send(ack); err != nil {
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
			sub, unsub := diffSorted(ns.names, names)
			ns.names = slices.Clone(names)
			for _, name := range unsub {
				// The control plane sends no removal for a name the
				// proxy unsubscribes from.
				delete(ns.held, name)
				delete(ns.received, name)
			}
			if !ns.sent && len(sub) == 0 {
				continue
			}
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: nt, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}
			if !ns.sent {
				req.InitialResourceVersions = ns.versions()
			}
			if err := send(req); err != nil {
				return got, err
			}
		}
	}
}

// merge returns what the stream received of the type with resp applied. A
// non-wildcard type keeps only the names it subscribes to: the control
// plane may still answer a subscription the proxy has just dropped.
func (st *typeState) merge(typeURL string, resp *discoveryv3.DeltaDiscoveryResponse) map[string]held {
	base := st.received
	if base == nil {
		base = st.held // a new stream starts from what was accepted
	}
	next := maps.Clone(base)
	if next == nil {
		next = map[string]held{}
	}
	for _, name := range resp.GetRemovedResources() {
		delete(next, name)
	}
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			continue // a name without a resource only answers an alias or TTL
		}
		if !wildcard(typeURL) {
			if _, ok := slices.BinarySearch(st.names, r.GetName()); !ok {
				continue
			}
		}
		next[r.GetName()] = held{version: r.GetVersion(), any: r.GetResource()}
	}
	return next
}

// versions returns the versions of the resources the type holds, for
// initial_resource_versions; nil when it holds none.
func (st *typeState) versions() map[string]string {
	if len(st.held) == 0 {
		return nil
	}
	out := make(map[string]string, len(st.held))
	for name, h := range st.held {
		out[name] = h.version
	}
	return out
}

// sortedAnys returns the resources of m ordered by name.
func sortedAnys(m map[string]held) []*anypb.Any {
	out := make([]*anypb.Any, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[name].any)
	}
	return out
}

// diffSorted returns the names of b not in a, and of a not in b; both are
// sorted.
func diffSorted(a, b []string) (added, removed []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			removed = append(removed, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			added = append(added, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}
