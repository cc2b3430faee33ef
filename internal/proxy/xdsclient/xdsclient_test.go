package xdsclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/grpcstream"
	"github.com/weftmesh/weft/internal/proxy/h2"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// fakeHandler accepts everything except the types in reject, and wants the
// EDS names in eds once it has seen clusters.
type fakeHandler struct {
	mu      sync.Mutex
	applied map[string][]string // type → versions applied
	names   map[string][]string // type → resource count per apply, as text
	reject  map[string]bool
	// rejectNamed rejects any set holding a resource whose encoding
	// contains it (a resource name, in the tests).
	rejectNamed string
	eds         []string
	gotCDS      bool
}

func newFake() *fakeHandler {
	return &fakeHandler{applied: map[string][]string{}, names: map[string][]string{}, reject: map[string]bool{}}
}

func (h *fakeHandler) Apply(typeURL, version string, res []*anypb.Any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied[typeURL] = append(h.applied[typeURL], version)
	h.names[typeURL] = append(h.names[typeURL], fmt.Sprint(len(res)))
	if h.reject[typeURL] {
		return errors.New("listener \"bad\": nope")
	}
	for _, a := range res {
		if h.rejectNamed != "" && bytes.Contains(a.GetValue(), []byte(h.rejectNamed)) {
			return fmt.Errorf("resource %q: nope", h.rejectNamed)
		}
	}
	if typeURL == TypeCluster {
		h.gotCDS = true
	}
	return nil
}

func (h *fakeHandler) Names(typeURL string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if typeURL == TypeEndpoint && h.gotCDS {
		return h.eds
	}
	return nil
}

func (h *fakeHandler) versions(typeURL string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.applied[typeURL]...)
}

func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if last = f(); last == "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %s", what, last)
}

var node = &corev3.Node{Id: "sidecar~127.0.0.1~t.default~default.svc.cluster.local"}

func start(t *testing.T, addr string, h Handler) *Client {
	t.Helper()
	c, err := New(Options{Address: addr, Node: node, Handler: h, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func TestSubscribesAndACKs(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "1", xdstest.Resources{
		Clusters:  []types.Resource{xdstest.EDSCluster("a")},
		Endpoints: []types.Resource{xdstest.CLA("a", "127.0.0.1:1")},
	})
	h := newFake()
	h.eds = []string{"a"}
	start(t, xds.Addr, h)
	eventually(t, "EDS delivered after CDS", func() string {
		if v := h.versions(TypeEndpoint); len(v) == 0 {
			return "no EDS response"
		}
		return ""
	})
	// The first request carries the node; every type is ACKed with the
	// version and the nonce it answers.
	reqs := xds.Requests()
	if reqs[0].GetNode().GetId() != node.Id || reqs[0].GetTypeUrl() != TypeCluster {
		t.Errorf("first request: type %s node %q; want CDS with the node", reqs[0].GetTypeUrl(), reqs[0].GetNode().GetId())
	}
	eventually(t, "ACKs", func() string {
		acked := map[string]bool{}
		for _, r := range xds.ACKs() {
			if r.GetVersionInfo() == "1" && r.GetResponseNonce() != "" {
				acked[r.GetTypeUrl()] = true
			}
		}
		for _, ty := range []string{TypeCluster, TypeListener, TypeEndpoint} {
			if !acked[ty] {
				return "no ACK of version 1 for " + ty
			}
		}
		return ""
	})
	for _, r := range xds.Requests() {
		if r.GetTypeUrl() == TypeEndpoint && (len(r.GetResourceNames()) != 1 || r.GetResourceNames()[0] != "a") {
			t.Errorf("EDS request for %v, want [a]", r.GetResourceNames())
		}
	}
}

func TestNACKCarriesErrorAndLastVersionWithoutSpinning(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "1", xdstest.Resources{})
	h := newFake()
	start(t, xds.Addr, h)
	eventually(t, "LDS v1 accepted", func() string {
		if len(h.versions(TypeListener)) == 0 {
			return "not yet"
		}
		return ""
	})
	h.mu.Lock()
	h.reject[TypeListener] = true
	h.mu.Unlock()
	xds.Set(node.Id, "2", xdstest.Resources{Listeners: []types.Resource{xdstest.RDSListener("bad", "127.0.0.1:1", "x")}})
	eventually(t, "NACK", func() string {
		for _, n := range xds.NACKs() {
			if n.GetVersionInfo() == "1" && strings.Contains(n.GetErrorDetail().GetMessage(), `listener "bad"`) {
				return ""
			}
		}
		return fmt.Sprintf("no NACK with version 1 and the message: %v", xds.NACKs())
	})
	// go-control-plane resends a NACKed version at once; the client must
	// slow that loop down rather than spin.
	time.Sleep(400 * time.Millisecond)
	if n := len(h.versions(TypeListener)); n > 12 {
		t.Errorf("%d LDS responses in 400ms: the NACK loop is not throttled", n)
	}
	// A fixed version is accepted promptly.
	h.mu.Lock()
	h.reject[TypeListener] = false
	h.mu.Unlock()
	xds.Set(node.Id, "3", xdstest.Resources{})
	eventually(t, "v3 accepted", func() string {
		v := h.versions(TypeListener)
		if v[len(v)-1] != "3" {
			return "last LDS version " + v[len(v)-1]
		}
		return ""
	})
}

func TestReconnectResendsVersions(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(node.Id, "7", xdstest.Resources{})
	h := newFake()
	c := start(t, xds.Addr, h)
	eventually(t, "connected", func() string {
		if !c.Status().Connected {
			return "not connected"
		}
		return ""
	})
	xds.Stop()
	eventually(t, "disconnect noticed", func() string {
		if st := c.Status(); st.Connected || st.LastError == "" {
			return fmt.Sprintf("status %+v", st)
		}
		return ""
	})
	if st := c.Status(); !strings.Contains(st.LastError, "refused") && !strings.Contains(st.LastError, "closed") {
		t.Errorf("LastError = %q, want a short reason", st.LastError)
	}
	xds2 := xdstest.Start(t, xds.Addr, nil)
	xds2.Set(node.Id, "8", xdstest.Resources{})
	eventually(t, "reconnected", func() string {
		if v := h.versions(TypeCluster); v[len(v)-1] != "8" {
			return "no v8"
		}
		return ""
	})
	first := xds2.Requests()[0]
	if first.GetVersionInfo() != "7" || first.GetNode().GetId() != node.Id {
		t.Errorf("first request after reconnect: version %q node %q; want the last accepted version 7 and the node", first.GetVersionInfo(), first.GetNode().GetId())
	}
}

// timeoutErr is the error of a dial whose deadline has passed.
func timeoutErr(t *testing.T) error {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	var d net.Dialer
	_, err := d.DialContext(ctx, "tcp", "127.0.0.1:1")
	if err == nil {
		t.Fatal("a dial past its deadline succeeded")
	}
	return err
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		in   error
		want string
	}{
		{nil, "stream closed"},
		{io.EOF, "stream closed"},
		{errors.New("plain"), "plain"},
		{fmt.Errorf("dial 127.0.0.1:15010: %w", &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}), "connection refused"},
		{fmt.Errorf("grpc: reading a message: %w", fmt.Errorf("http2: connection ended: %w", io.EOF)), "connection closed by the control plane"},
		{&grpcstream.Status{Code: grpcstream.Unimplemented, Message: "unknown service"}, "Unimplemented: unknown service"},
		{fmt.Errorf("dial x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "cp.invalid", IsNotFound: true}}), "lookup cp.invalid: no such host"},
		{fmt.Errorf("dial x: %w", timeoutErr(t)), "timed out connecting"},
		{fmt.Errorf("x: %w", h2.StreamError{StreamID: 1, Code: h2.ErrCodeCancel, Remote: true}), "the control plane reset the stream (CANCEL)"},
		{fmt.Errorf("%w: the connection is closing", h2.ErrNotProcessed), "the control plane refused the stream (going away)"},
	}
	for _, tc := range tests {
		if got := describe(tc.in); got != tc.want {
			t.Errorf("describe(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
