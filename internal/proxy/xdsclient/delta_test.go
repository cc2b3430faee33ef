package xdsclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

func startDelta(t *testing.T, addr string, h Handler) *Client {
	t.Helper()
	c, err := New(Options{Address: addr, Node: node, Handler: h, Delta: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// lastCount is the number of resources the Handler got in its latest
// Apply of typeURL, as text, or "none".
func (h *fakeHandler) lastCount(typeURL string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.names[typeURL]
	if len(n) == 0 {
		return "none"
	}
	return n[len(n)-1]
}

// TestDeltaMergesChangesAndACKs checks the incremental client against
// go-control-plane's server: it subscribes, ACKs by nonce, and hands the
// Handler the whole set of a type though the server sends only changes.
func TestDeltaMergesChangesAndACKs(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "1", xdstest.Resources{
		Clusters:  []types.Resource{xdstest.EDSCluster("a")},
		Endpoints: []types.Resource{xdstest.CLA("a", "127.0.0.1:1")},
	})
	h := newFake()
	h.eds = []string{"a"}
	startDelta(t, xds.Addr, h)
	eventually(t, "EDS delivered after CDS", func() string {
		if c := h.lastCount(TypeEndpoint); c != "1" {
			return "EDS resources: " + c
		}
		return ""
	})
	reqs := xds.DeltaRequests()
	if reqs[0].GetNode().GetId() != node.Id || reqs[0].GetTypeUrl() != TypeCluster || len(reqs[0].GetResourceNamesSubscribe()) != 0 {
		t.Errorf("first request: type %s node %q names %v; want a wildcard CDS request with the node", reqs[0].GetTypeUrl(), reqs[0].GetNode().GetId(), reqs[0].GetResourceNamesSubscribe())
	}
	eventually(t, "ACKs", func() string {
		acked := map[string]bool{}
		for _, r := range xds.DeltaRequests() {
			if r.GetResponseNonce() != "" && r.GetErrorDetail() == nil {
				acked[r.GetTypeUrl()] = true
			}
		}
		for _, ty := range []string{TypeCluster, TypeListener, TypeEndpoint} {
			if !acked[ty] {
				return "no ACK for " + ty
			}
		}
		return ""
	})
	var edsSub []string
	for _, r := range xds.DeltaRequests() {
		if r.GetTypeUrl() == TypeEndpoint {
			edsSub = append(edsSub, r.GetResourceNamesSubscribe()...)
		}
	}
	if !slices.Equal(edsSub, []string{"a"}) {
		t.Errorf("EDS subscriptions %v, want [a]", edsSub)
	}

	// A second cluster: the server sends one, the Handler sees both.
	h.mu.Lock()
	h.eds = []string{"a", "b"}
	h.mu.Unlock()
	xds.Set(node.Id, "2", xdstest.Resources{
		Clusters:  []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("b")},
		Endpoints: []types.Resource{xdstest.CLA("a", "127.0.0.1:1"), xdstest.CLA("b", "127.0.0.1:2")},
	})
	eventually(t, "both clusters and load assignments applied", func() string {
		if c, e := h.lastCount(TypeCluster), h.lastCount(TypeEndpoint); c != "2" || e != "2" {
			return fmt.Sprintf("CDS %s, EDS %s resources", c, e)
		}
		return ""
	})
	var cdsSent []int
	for _, r := range xds.DeltaResponses() {
		if r.GetTypeUrl() == TypeCluster {
			cdsSent = append(cdsSent, len(r.GetResources()))
		}
	}
	if !slices.Equal(cdsSent, []int{1, 1}) {
		t.Errorf("CDS responses carried %v clusters, want [1 1]: the second only the added one", cdsSent)
	}

	// a goes: the server names it removed; the Handler is left with b,
	// and the client unsubscribes from a's load assignment.
	h.mu.Lock()
	h.eds = []string{"b"}
	h.mu.Unlock()
	xds.Set(node.Id, "3", xdstest.Resources{
		Clusters:  []types.Resource{xdstest.EDSCluster("b")},
		Endpoints: []types.Resource{xdstest.CLA("b", "127.0.0.1:2")},
	})
	eventually(t, "a removed", func() string {
		if c := h.lastCount(TypeCluster); c != "1" {
			return "CDS resources: " + c
		}
		for _, r := range xds.DeltaRequests() {
			if r.GetTypeUrl() == TypeEndpoint && slices.Equal(r.GetResourceNamesUnsubscribe(), []string{"a"}) {
				return ""
			}
		}
		return "no EDS unsubscription from a"
	})
}

// TestDeltaNACK checks that a rejected response is NACKed with the
// Handler's message and leaves the accepted set as it was.
func TestDeltaNACK(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "1", xdstest.Resources{Listeners: []types.Resource{xdstest.RDSListener("good", "127.0.0.1:1", "x")}})
	h := newFake()
	startDelta(t, xds.Addr, h)
	eventually(t, "LDS v1 accepted", func() string {
		if c := h.lastCount(TypeListener); c != "1" {
			return "LDS resources: " + c
		}
		return ""
	})
	h.mu.Lock()
	h.reject[TypeListener] = true
	h.mu.Unlock()
	xds.Set(node.Id, "2", xdstest.Resources{Listeners: []types.Resource{
		xdstest.RDSListener("good", "127.0.0.1:1", "x"), xdstest.RDSListener("bad", "127.0.0.1:2", "x")}})
	eventually(t, "NACK", func() string {
		for _, r := range xds.DeltaRequests() {
			if r.GetTypeUrl() == TypeListener && strings.Contains(r.GetErrorDetail().GetMessage(), `listener "bad"`) && r.GetResponseNonce() != "" {
				return ""
			}
		}
		return "no NACK with the message"
	})
	// The next accepted change is merged into what was accepted before
	// the NACK, not into the rejected set.
	h.mu.Lock()
	h.reject[TypeListener] = false
	h.mu.Unlock()
	xds.Set(node.Id, "3", xdstest.Resources{Listeners: []types.Resource{xdstest.RDSListener("good", "127.0.0.1:1", "y")}})
	eventually(t, "v3 accepted", func() string {
		if v := h.versions(TypeListener); v[len(v)-1] != "3" {
			return "last LDS version " + v[len(v)-1]
		}
		if c := h.lastCount(TypeListener); c != "1" {
			return "LDS resources: " + c
		}
		return ""
	})
}

// TestDeltaReconnectReportsHeldVersions checks that a reconnecting client
// tells the control plane what it holds, so only changes are resent.
func TestDeltaReconnectReportsHeldVersions(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "7", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a")}})
	h := newFake()
	c := startDelta(t, xds.Addr, h)
	eventually(t, "connected", func() string {
		if c.Status().Responses == 0 {
			return "no response"
		}
		return ""
	})
	xds.Stop()
	eventually(t, "disconnect noticed", func() string {
		if st := c.Status(); st.Connected {
			return fmt.Sprintf("status %+v", st)
		}
		return ""
	})
	xds2 := xdstest.Start(t, xds.Addr, nil)
	xds2.Set(node.Id, "8", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("b")}})
	eventually(t, "reconnected", func() string {
		if c := h.lastCount(TypeCluster); c != "2" || h.versions(TypeCluster)[len(h.versions(TypeCluster))-1] != "8" {
			return "CDS resources: " + c
		}
		return ""
	})
	first := xds2.DeltaRequests()[0]
	if first.GetNode().GetId() != node.Id || first.GetInitialResourceVersions()["a"] == "" || len(first.GetInitialResourceVersions()) != 1 {
		t.Errorf("first request after reconnect: node %q, initial versions %v; want the node and cluster a's version", first.GetNode().GetId(), first.GetInitialResourceVersions())
	}
}

// TestDeltaFallsBackToStateOfTheWorld checks that a proxy pointed at a
// control plane that serves only state of the world gets its config
// anyway.
func TestDeltaFallsBackToStateOfTheWorld(t *testing.T) {
	xds := xdstest.StartStateOfTheWorldOnly(t, "127.0.0.1:0")
	xds.Set(node.Id, "1", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a")}})
	h := newFake()
	startDelta(t, xds.Addr, h)
	eventually(t, "config over state of the world", func() string {
		if c := h.lastCount(TypeCluster); c != "1" {
			return "CDS resources: " + c
		}
		return ""
	})
	eventually(t, "ACK", func() string {
		for _, r := range xds.ACKs() {
			if r.GetTypeUrl() == TypeCluster && r.GetVersionInfo() == "1" {
				return ""
			}
		}
		return "no state-of-the-world ACK of version 1"
	})
}

// TestDeltaNACKedResourceIsNotLost checks the sequence that would leave a
// proxy without a resource yet ACKed: a response is rejected, and the next
// change, sent as a difference from what the control plane sent, omits
// the rejected resource. The client must keep rejecting until the control
// plane replaces or removes it.
func TestDeltaNACKedResourceIsNotLost(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "1", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a")}})
	h := newFake()
	h.rejectNamed = "bad"
	startDelta(t, xds.Addr, h)
	eventually(t, "v1 accepted", func() string {
		if c := h.lastCount(TypeCluster); c != "1" {
			return "CDS resources: " + c
		}
		return ""
	})
	nacks := func() int {
		n := 0
		for _, r := range xds.DeltaRequests() {
			if r.GetTypeUrl() == TypeCluster && r.GetErrorDetail() != nil {
				n++
			}
		}
		return n
	}
	xds.Set(node.Id, "2", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("bad")}})
	eventually(t, "v2 NACKed", func() string {
		if nacks() == 0 {
			return "no NACK"
		}
		return ""
	})
	// v3 adds c; the server sends only c. The set still holds "bad".
	xds.Set(node.Id, "3", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("bad"), xdstest.EDSCluster("c")}})
	eventually(t, "v3 NACKed too", func() string {
		if n := nacks(); n < 2 {
			return fmt.Sprintf("%d NACKs", n)
		}
		return ""
	})
	for _, r := range xds.DeltaResponses() {
		if r.GetTypeUrl() == TypeCluster && r.GetSystemVersionInfo() == "3" && len(r.GetResources()) != 1 {
			t.Errorf("v3 carried %d clusters, want only the added one: the test needs a difference", len(r.GetResources()))
		}
	}
	// v4 removes "bad": accepted, with a and c.
	before := nacks()
	xds.Set(node.Id, "4", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("c")}})
	eventually(t, "v4 accepted", func() string {
		if v := h.versions(TypeCluster); v[len(v)-1] != "4" || h.lastCount(TypeCluster) != "2" {
			return fmt.Sprintf("last CDS version %s with %s clusters", v[len(v)-1], h.lastCount(TypeCluster))
		}
		return ""
	})
	if n := nacks(); n != before {
		t.Errorf("v4 was NACKed")
	}
}

// TestDeltaRetriedAfterFallback checks that a client that fell back to
// state of the world tries incremental again when it reconnects, as it
// would to a control plane upgraded meanwhile.
func TestDeltaRetriedAfterFallback(t *testing.T) {
	old := xdstest.StartStateOfTheWorldOnly(t, "127.0.0.1:0")
	old.Set(node.Id, "1", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a")}})
	h := newFake()
	startDelta(t, old.Addr, h)
	eventually(t, "config over state of the world", func() string {
		if len(old.ACKs()) == 0 {
			return "no ACK"
		}
		return ""
	})
	old.Stop()
	upgraded := xdstest.Start(t, old.Addr, nil)
	upgraded.Set(node.Id, "2", xdstest.Resources{Clusters: []types.Resource{xdstest.EDSCluster("a"), xdstest.EDSCluster("b")}})
	eventually(t, "config over incremental xDS", func() string {
		if len(upgraded.DeltaRequests()) == 0 || h.lastCount(TypeCluster) != "2" {
			return fmt.Sprintf("%d delta requests, %s clusters", len(upgraded.DeltaRequests()), h.lastCount(TypeCluster))
		}
		return ""
	})
}
