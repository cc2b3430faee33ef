package origdst

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"testing"
)

// TestGetWithoutRedirect: on a connection iptables did not touch, Get
// gives the address the client dialed when conntrack tracks the
// connection, and ErrNoEntry when it does not, for both families. The redirected case is tested with real
// iptables in package iptables.
func TestGetWithoutRedirect(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatalf("listen %s: %v", addr, err)
			}
			defer ln.Close()
			c, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, err := Get(s.(*net.TCPConn))
			if runtime.GOOS != "linux" {
				if err != ErrUnsupported {
					t.Fatalf("Get on %s: %v, want ErrUnsupported", runtime.GOOS, err)
				}
				return
			}
			if errors.Is(err, ErrNoEntry) {
				return
			}
			if err != nil {
				t.Fatalf("Get: %v, want the dialed address or ErrNoEntry", err)
			}
			want := netip.MustParseAddrPort(ln.Addr().String())
			if got != want {
				t.Errorf("Get = %v, want %v", got, want)
			}
		})
	}
}
