package upstream

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/sockio"
)

// sockopts reads the TCP keepalive options of the endpoint's idle pooled
// connection.
func sockopts(t *testing.T, ep *Endpoint) (on, idle, intvl, probes int) {
	t.Helper()
	ep.h1.mu.Lock()
	defer ep.h1.mu.Unlock()
	if len(ep.h1.idle) != 1 {
		t.Fatalf("%d idle connections, want 1", len(ep.h1.idle))
	}
	rc, err := ep.h1.idle[0].c.(*sockio.Conn).Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		for _, o := range []struct {
			level, name int
			dst         *int
		}{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, &on},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, &idle},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, &intvl},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, &probes},
		} {
			if *o.dst, err = syscall.GetsockoptInt(int(fd), o.level, o.name); err != nil {
				t.Fatal(err)
			}
		}
	})
	return
}

// A cluster's TCPKeepalive reaches its connections' sockets; a setting
// left at 0 keeps the system's.
func TestTCPKeepaliveReachesTheSocket(t *testing.T) {
	s, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	addr := s.Listener.Addr().String()
	// The system's defaults.
	sysctl := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	sysIdle, sysProbes := sysctl("tcp_keepalive_time"), sysctl("tcp_keepalive_probes")
	for _, tc := range []struct {
		name                  string
		ka                    *TCPKeepalive
		on, idle, intvl, cnts int
	}{
		{"all set", &TCPKeepalive{Probes: 4, Idle: 7 * time.Second, Interval: 3 * time.Second}, 1, 7, 3, 4},
		{"only interval", &TCPKeepalive{Interval: 2 * time.Second}, 1, sysIdle, 2, sysProbes},
		{"none: Go's default", nil, 1, 30, 15, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPools(PoolsOptions{})
			defer p.Close()
			ep := p.Build([]ClusterSpec{{Name: "c", TCPKeepalive: tc.ka, Endpoints: []EndpointSpec{{Address: addr}}}})["c"].Pick(nil)
			get(t, ep, "GET", "/", nil)
			on, idle, intvl, probes := sockopts(t, ep)
			if on != tc.on || idle != tc.idle || intvl != tc.intvl || probes != tc.cnts {
				t.Errorf("SO_KEEPALIVE %d, idle %ds, interval %ds, probes %d; want %d, %ds, %ds, %d",
					on, idle, intvl, probes, tc.on, tc.idle, tc.intvl, tc.cnts)
			}
		})
	}
}
