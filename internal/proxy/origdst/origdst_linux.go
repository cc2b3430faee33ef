//go:build linux

package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSOOriginalDst = 80

// Get returns the destination the client of c originally connected to,
// before iptables redirected the connection. For a connection that was
// not redirected it returns c's local address when conntrack tracks it,
// and an error wrapping ErrNoEntry when it does not. The
// address family is the connection's: an IPv4 connection accepted on a
// dual-stack socket still gives an IPv4 address.
func Get(c syscall.Conn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	v4 := true
	if nc, ok := c.(net.Conn); ok {
		if ta, ok := nc.LocalAddr().(*net.TCPAddr); ok && ta.IP.To4() == nil {
			v4 = false
		}
	}
	var (
		dst  netip.AddrPort
		oerr error
	)
	if err := raw.Control(func(fd uintptr) { dst, oerr = get(int(fd), v4) }); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if errors.Is(oerr, unix.ENOENT) {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", ErrNoEntry)
	}
	if oerr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: getsockopt SO_ORIGINAL_DST: %w", oerr)
	}
	return dst, nil
}

// get reads the option. x/sys has no getter for a sockaddr, so this uses
// getters of structs at least as large as sockaddr_in (IPv6Mreq, 20
// bytes) and sockaddr_in6 (IPv6MTUInfo, 32 bytes), as other Go proxies do.
func get(fd int, v4 bool) (netip.AddrPort, error) {
	if v4 {
		m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return netip.AddrPort{}, err
		}
		b := (*[unsafe.Sizeof(*m)]byte)(unsafe.Pointer(m))
		// sockaddr_in: family (host order), port (network order), address.
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	}
	info, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, ip6tSOOriginalDst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	sa := info.Addr
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), nil
}
