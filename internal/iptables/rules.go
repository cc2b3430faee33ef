// Package iptables builds and applies the nat rules that make a sidecar
// transparent, the equivalent of Istio's istio-init (istio-iptables).
//
// Build is pure: it turns Options into Rules, which render as
// iptables-restore input. An Applier installs Rules in the current network
// namespace with whichever of iptables-nft, iptables-legacy or plain
// iptables is present and usable, touching only Weft's own chains (named
// WEFT_*) and the jumps to them, so running it twice is harmless and
// Cleanup leaves other rules alone. Main is the `weft-proxy iptables`
// command line.
package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Weft's chains, all in the nat table.
const (
	// ChainInbound sees inbound TCP (from PREROUTING) and picks what to capture.
	ChainInbound = "WEFT_INBOUND"
	// ChainInRedirect redirects to the inbound port.
	ChainInRedirect = "WEFT_IN_REDIRECT"
	// ChainOutput sees outbound TCP (from OUTPUT) and picks what to capture.
	ChainOutput = "WEFT_OUTPUT"
	// ChainRedirect redirects to the outbound port.
	ChainRedirect = "WEFT_REDIRECT"
	// ChainOutputDNS redirects DNS (UDP and TCP port 53) to the DNS proxy.
	ChainOutputDNS = "WEFT_OUTPUT_DNS"

	// ChainPrefix starts the name of every chain Weft owns.
	ChainPrefix = "WEFT_"
)

// Defaults, Istio's port numbers and proxy uid/gid.
const (
	DefaultProxyID      = 1337
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
	DefaultDNSPort      = 15053
)

// Options says what to capture. The zero value captures all inbound and
// outbound TCP, except the traffic of uid and gid 1337 (the proxy).
type Options struct {
	// ProxyUIDs and ProxyGIDs own the proxy's sockets: their traffic is
	// not captured. ProxyMark, when not 0, exempts packets with that mark
	// too. When all three are empty, uid and gid 1337 are used.
	ProxyUIDs []uint32
	ProxyGIDs []uint32
	ProxyMark uint32

	// OutboundPort and InboundPort are where captured TCP is redirected
	// (default 15001 and 15006).
	OutboundPort uint16
	InboundPort  uint16

	// CaptureDNS redirects UDP and TCP to port 53 (any address) to
	// DNSPort (default 15053) on the loopback address: 127.0.0.1 for
	// IPv4, ::1 for IPv6.
	CaptureDNS bool
	DNSPort    uint16

	// InboundPortsInclude, when not empty, captures only these inbound
	// ports; otherwise every inbound port except InboundPortsExclude is
	// captured. DisableInbound captures no inbound traffic (Istio's
	// --inbound-ports-include "").
	InboundPortsInclude []uint16
	InboundPortsExclude []uint16
	DisableInbound      bool

	// OutboundPortsExclude are destination ports never captured.
	OutboundPortsExclude []uint16
	// OutboundCIDRsInclude, when not empty, captures only outbound
	// traffic to these ranges; OutboundCIDRsExclude are never captured.
	// DisableOutbound captures no outbound traffic (Istio's
	// --outbound-cidrs-include ""). Each family's rules use that family's
	// ranges.
	OutboundCIDRsInclude []netip.Prefix
	OutboundCIDRsExclude []netip.Prefix
	DisableOutbound      bool

	// IPv6 also builds ip6tables rules.
	IPv6 bool
}

// Rule is one iptables rule: `-A Chain Args...` in the nat table.
type Rule struct {
	Chain string
	Args  []string
}

// String is the rule as iptables-restore reads it.
func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// Ruleset is one address family's nat rules: the chains Weft owns and the
// rules to append, in order, including the jumps from built-in chains.
type Ruleset struct {
	Chains []string
	Rules  []Rule
}

// String renders the ruleset as input for `iptables-restore --noflush`
// into a table without Weft's chains. (An Applier also removes old ones.)
func (rs Ruleset) String() string {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, r := range rs.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Rules are the IPv4 rules and, when Options.IPv6 was set, the IPv6 rules.
type Rules struct {
	IPv4 Ruleset
	IPv6 *Ruleset
}

// String renders both families, each headed by a comment naming the
// command that reads it.
func (r Rules) String() string {
	s := "# IPv4: iptables-restore --noflush\n" + r.IPv4.String()
	if r.IPv6 != nil {
		s += "# IPv6: ip6tables-restore --noflush\n" + r.IPv6.String()
	}
	return s
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if len(o.ProxyUIDs) == 0 && len(o.ProxyGIDs) == 0 && o.ProxyMark == 0 {
		o.ProxyUIDs = []uint32{DefaultProxyID}
		o.ProxyGIDs = []uint32{DefaultProxyID}
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	if o.InboundPort == 0 {
		o.InboundPort = DefaultInboundPort
	}
	if o.DNSPort == 0 {
		o.DNSPort = DefaultDNSPort
	}
	return o
}

// Build turns options into rules. It does no I/O.
func Build(o Options) Rules {
	o = o.withDefaults()
	r := Rules{IPv4: build(o, false)}
	if o.IPv6 {
		v6 := build(o, true)
		r.IPv6 = &v6
	}
	return r
}

// owner is a match on the proxy's traffic, positive and negated.
type owner struct{ is, not []string }

func owners(o Options) []owner {
	var out []owner
	for _, uid := range o.ProxyUIDs {
		u := strconv.FormatUint(uint64(uid), 10)
		out = append(out, owner{[]string{"-m", "owner", "--uid-owner", u}, []string{"-m", "owner", "!", "--uid-owner", u}})
	}
	for _, gid := range o.ProxyGIDs {
		g := strconv.FormatUint(uint64(gid), 10)
		out = append(out, owner{[]string{"-m", "owner", "--gid-owner", g}, []string{"-m", "owner", "!", "--gid-owner", g}})
	}
	if o.ProxyMark != 0 {
		m := strconv.FormatUint(uint64(o.ProxyMark), 10)
		out = append(out, owner{[]string{"-m", "mark", "--mark", m}, []string{"-m", "mark", "!", "--mark", m}})
	}
	return out
}

func port(p uint16) string { return strconv.FormatUint(uint64(p), 10) }

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func build(o Options, v6 bool) Ruleset {
	loopback := "127.0.0.1/32"
	if v6 {
		loopback = "::1/128"
	}
	var rs Ruleset
	add := func(chain string, a ...string) { rs.Rules = append(rs.Rules, Rule{chain, a}) }
	rs.Chains = []string{ChainInbound, ChainInRedirect, ChainOutput, ChainRedirect}
	if o.CaptureDNS {
		rs.Chains = append(rs.Chains, ChainOutputDNS)
	}
	owns := owners(o)

	// Jumps from the built-in chains; DNS goes first so that a resolver on
	// loopback (127.0.0.53) is still captured.
	if !o.DisableInbound {
		add("PREROUTING", "-p", "tcp", "-j", ChainInbound)
	}
	if o.CaptureDNS {
		add("OUTPUT", "-p", "udp", "--dport", "53", "-j", ChainOutputDNS)
		add("OUTPUT", "-p", "tcp", "--dport", "53", "-j", ChainOutputDNS)
	}
	add("OUTPUT", "-p", "tcp", "-j", ChainOutput)

	add(ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(o.InboundPort))
	add(ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(o.OutboundPort))

	if !o.DisableInbound {
		if len(o.InboundPortsInclude) > 0 {
			for _, p := range o.InboundPortsInclude {
				add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", ChainInRedirect)
			}
		} else {
			for _, p := range o.InboundPortsExclude {
				add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", "RETURN")
			}
			add(ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
		}
	}

	if o.CaptureDNS {
		for _, ow := range owns {
			add(ChainOutputDNS, args(ow.is, []string{"-j", "RETURN"})...)
		}
		add(ChainOutputDNS, "-p", "udp", "-j", "REDIRECT", "--to-ports", port(o.DNSPort))
		add(ChainOutputDNS, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(o.DNSPort))
	}

	for _, p := range o.OutboundPortsExclude {
		add(ChainOutput, "-p", "tcp", "--dport", port(p), "-j", "RETURN")
	}
	for _, ow := range owns {
		// The proxy calling its own workload's address goes out on lo and
		// never passes PREROUTING: treat it as inbound.
		if !o.DisableInbound {
			add(ChainOutput, args([]string{"!", "-d", loopback, "-o", "lo", "-p", "tcp"}, ow.is, []string{"-j", ChainInRedirect})...)
		}
		// The application calling anything on lo is left alone.
		add(ChainOutput, args([]string{"-o", "lo"}, ow.not, []string{"-j", "RETURN"})...)
		// Everything else the proxy sends is left alone.
		add(ChainOutput, args(ow.is, []string{"-j", "RETURN"})...)
	}
	add(ChainOutput, "-d", loopback, "-j", "RETURN")
	for _, c := range family(o.OutboundCIDRsExclude, v6) {
		add(ChainOutput, "-d", c.String(), "-j", "RETURN")
	}
	switch {
	case o.DisableOutbound:
	case len(o.OutboundCIDRsInclude) > 0:
		for _, c := range family(o.OutboundCIDRsInclude, v6) {
			add(ChainOutput, "-d", c.String(), "-j", ChainRedirect)
		}
	default:
		add(ChainOutput, "-j", ChainRedirect)
	}
	return rs
}

// family keeps the prefixes of one address family, masked.
func family(ps []netip.Prefix, v6 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() != v6 {
			out = append(out, p.Masked())
		}
	}
	return out
}
