//go:build !linux

package origdst

import (
	"net/netip"
	"syscall"
)

// Get returns ErrUnsupported: only Linux has SO_ORIGINAL_DST.
func Get(c syscall.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, ErrUnsupported }
