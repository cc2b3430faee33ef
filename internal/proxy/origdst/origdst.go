// Package origdst recovers the original destination of a TCP connection
// that iptables REDIRECT (or DNAT) sent to the proxy, with the
// SO_ORIGINAL_DST socket option (Linux only, IPv4 and IPv6).
package origdst

import "errors"

// ErrUnsupported is returned on systems without SO_ORIGINAL_DST.
var ErrUnsupported = errors.New("SO_ORIGINAL_DST is only available on Linux")

// ErrNoEntry means conntrack has no entry for the connection: it was not
// redirected, and nothing else in its network namespace makes conntrack
// track it.
var ErrNoEntry = errors.New("no conntrack entry: the connection was not redirected by iptables")
