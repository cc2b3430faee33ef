//go:build !unix

package upstream

import "net"

// peerClosed cannot peek here; a stale connection is detected when the
// request fails instead.
func peerClosed(net.Conn) bool { return false }
