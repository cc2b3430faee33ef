//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// peerClosed reports whether the peer of an idle connection has closed it
// (or sent something unsolicited), with one non-blocking peek, so that a
// request whose body cannot be sent twice is not written to a dead
// connection.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	dead := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		dead = n > 0 || (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true
	})
	return dead
}
