package iptables

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestBuildGolden(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"dns_ipv6", Options{CaptureDNS: true, IPv6: true}},
		{"include_exclude", Options{
			ProxyUIDs:            []uint32{1337},
			OutboundPort:         16001,
			InboundPort:          16006,
			InboundPortsInclude:  []uint16{9080, 9090},
			OutboundPortsExclude: []uint16{22, 3306},
			OutboundCIDRsInclude: prefixes("10.0.0.0/8", "fd00::/8"),
			OutboundCIDRsExclude: prefixes("10.96.0.1/32", "fd00::1/128"),
			IPv6:                 true,
		}},
		{"inbound_exclude_mark", Options{ProxyMark: 1337, InboundPortsExclude: []uint16{15090, 15021}}},
		{"inbound_only", Options{ProxyUIDs: []uint32{0}, DisableOutbound: true}},
		{"outbound_only", Options{ProxyGIDs: []uint32{1337}, DisableInbound: true, CaptureDNS: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Build(tt.opts).String()
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Build(%+v) differs from %s (go test -update rewrites it):\n%s", tt.opts, path, got)
			}
		})
	}
}

// TestBuildSemantics checks the properties every rule set must have,
// independently of the golden files.
func TestBuildSemantics(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		want     []string // rules that must be present (IPv4)
		wantNot  []string // substrings that must be absent (IPv4)
		want6    []string
		wantNot6 []string
	}{
		{
			name: "defaults exempt uid and gid 1337 and redirect to 15001/15006",
			opts: Options{},
			want: []string{
				"-A PREROUTING -p tcp -j WEFT_INBOUND",
				"-A OUTPUT -p tcp -j WEFT_OUTPUT",
				"-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN",
				"-A WEFT_OUTPUT -m owner --gid-owner 1337 -j RETURN",
				"-A WEFT_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
				"-A WEFT_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j WEFT_IN_REDIRECT",
				"-A WEFT_OUTPUT -d 127.0.0.1/32 -j RETURN",
				"-A WEFT_OUTPUT -j WEFT_REDIRECT",
				"-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
				"-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
			},
			wantNot: []string{"--dport 53", "WEFT_OUTPUT_DNS", "mark"},
		},
		{
			name:    "DNS capture exempts the proxy and redirects udp and tcp 53",
			opts:    Options{CaptureDNS: true, IPv6: true, ProxyUIDs: []uint32{7}},
			want:    []string{"-A OUTPUT -p udp --dport 53 -j WEFT_OUTPUT_DNS", "-A WEFT_OUTPUT_DNS -m owner --uid-owner 7 -j RETURN", "-A WEFT_OUTPUT_DNS -p udp -j REDIRECT --to-ports 15053"},
			wantNot: []string{"1337"},
			want6:   []string{"-A WEFT_OUTPUT -d ::1/128 -j RETURN", "-A WEFT_OUTPUT_DNS -p tcp -j REDIRECT --to-ports 15053"},
		},
		{
			name:     "CIDR lists are split by family",
			opts:     Options{OutboundCIDRsInclude: prefixes("10.1.2.3/8", "fd00::/8"), OutboundCIDRsExclude: prefixes("192.168.0.0/16"), IPv6: true},
			want:     []string{"-A WEFT_OUTPUT -d 10.0.0.0/8 -j WEFT_REDIRECT", "-A WEFT_OUTPUT -d 192.168.0.0/16 -j RETURN"},
			wantNot:  []string{"fd00", "-A WEFT_OUTPUT -j WEFT_REDIRECT"},
			want6:    []string{"-A WEFT_OUTPUT -d fd00::/8 -j WEFT_REDIRECT"},
			wantNot6: []string{"10.0.0.0", "192.168", "-A WEFT_OUTPUT -j WEFT_REDIRECT"},
		},
		{
			name:    "disabled inbound installs no PREROUTING jump",
			opts:    Options{DisableInbound: true},
			wantNot: []string{"PREROUTING", "-j WEFT_IN_REDIRECT"},
			want:    []string{"-A WEFT_OUTPUT -j WEFT_REDIRECT"},
		},
		{
			name:    "disabled outbound keeps inbound and redirects nothing outbound",
			opts:    Options{DisableOutbound: true},
			want:    []string{"-A PREROUTING -p tcp -j WEFT_INBOUND"},
			wantNot: []string{"-j WEFT_REDIRECT"},
		},
		{
			name:    "excluded outbound ports come before the owner rules",
			opts:    Options{OutboundPortsExclude: []uint16{22}},
			want:    []string{"-A WEFT_OUTPUT -p tcp --dport 22 -j RETURN"},
			wantNot: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Build(tt.opts)
			check := func(rs Ruleset, want, wantNot []string) {
				text := rs.String()
				lines := strings.Split(text, "\n")
				for _, w := range want {
					found := false
					for _, l := range lines {
						found = found || l == w
					}
					if !found {
						t.Errorf("missing rule %q in:\n%s", w, text)
					}
				}
				for _, w := range wantNot {
					if strings.Contains(text, w) {
						t.Errorf("unexpected %q in:\n%s", w, text)
					}
				}
			}
			check(r.IPv4, tt.want, tt.wantNot)
			if (r.IPv6 != nil) != tt.opts.IPv6 {
				t.Fatalf("IPv6 rules present = %v, want %v", r.IPv6 != nil, tt.opts.IPv6)
			}
			if r.IPv6 != nil {
				check(*r.IPv6, tt.want6, tt.wantNot6)
			}
		})
	}
}

// TestOutboundExcludeOrder: an excluded port is never captured, even the
// proxy's own calls to its workload's address.
func TestOutboundExcludeOrder(t *testing.T) {
	rs := Build(Options{OutboundPortsExclude: []uint16{22}}).IPv4
	first := -1
	for i, r := range rs.Rules {
		if r.Chain == ChainOutput {
			first = i
			break
		}
	}
	if first < 0 || !strings.Contains(rs.Rules[first].String(), "--dport 22 -j RETURN") {
		t.Fatalf("first WEFT_OUTPUT rule is not the port 22 exclusion:\n%s", rs)
	}
}
