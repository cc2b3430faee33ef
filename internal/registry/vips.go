package registry

import (
	"fmt"
	"net/netip"
	"sort"
)

// DefaultVIPRange is where service VIPs come from: the range Istio uses for
// auto-allocated addresses.
const DefaultVIPRange = "240.240.0.0/16"

// VIPs allocates a stable virtual IP to each service. A host keeps its VIP
// while the range has room, even while its service is gone, so that
// clients and DNS caches never see it change; only when every address is
// taken are the VIPs of hosts without a service given back for reuse. Save
// and the restore argument of NewVIPs carry the assignments across
// restarts. VIPs is not safe for concurrent use: the control plane's push
// loop owns it.
type VIPs struct {
	prefix   netip.Prefix
	byHost   map[string]netip.Addr
	used     map[netip.Addr]bool
	next     netip.Addr
	modified bool
}

// NewVIPs returns an allocator over prefix that keeps the assignments in
// restore that fall inside it.
func NewVIPs(prefix string, restore map[string]string) (*VIPs, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("VIP range %q: %w", prefix, err)
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("VIP range %q is too small", prefix)
	}
	v := &VIPs{prefix: p.Masked(), byHost: map[string]netip.Addr{}, used: map[netip.Addr]bool{}}
	v.next = v.prefix.Addr().Next() // skip the network address
	for host, s := range restore {
		a, err := netip.ParseAddr(s)
		if err != nil || !v.prefix.Contains(a) || v.used[a] {
			continue
		}
		v.byHost[host], v.used[a] = a, true
	}
	return v, nil
}

// Assign sets the VIP of every service that has none of its own, allocating
// for new hosts in host order so that the result does not depend on map
// order. When the range is full, it first takes back the VIPs of hosts that
// are not among services. It returns an error only when the services alone
// need more addresses than the range has; services past that point get no
// VIP.
func (v *VIPs) Assign(services []*Service) error {
	sorted := append([]*Service(nil), services...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Hostname < sorted[j].Hostname })
	reclaimed := false
	for _, svc := range sorted {
		if svc.VIP != "" {
			continue // a ServiceEntry address
		}
		a, ok := v.byHost[svc.Hostname]
		if !ok {
			var err error
			a, err = v.allocate()
			if err != nil && !reclaimed {
				v.reclaim(services)
				reclaimed = true
				a, err = v.allocate()
			}
			if err != nil {
				return fmt.Errorf("allocate a VIP for %s: %w", svc.Hostname, err)
			}
			v.byHost[svc.Hostname], v.used[a], v.modified = a, true, true
		}
		svc.VIP = a.String()
	}
	return nil
}

// reclaim frees the VIPs of hosts that no longer need one: those with no
// service among services, and those whose ServiceEntry now gives an
// address of its own. Assign has already set the VIPs of the services
// before the one it could not place, so a service needs its allocated VIP
// when its VIP is unset or is that allocated VIP.
func (v *VIPs) reclaim(services []*Service) {
	present := make(map[string]bool, len(services))
	for _, svc := range services {
		if a, ok := v.byHost[svc.Hostname]; svc.VIP == "" || ok && svc.VIP == a.String() {
			present[svc.Hostname] = true
		}
	}
	for h, a := range v.byHost {
		if !present[h] {
			delete(v.byHost, h)
			delete(v.used, a)
			v.modified = true
		}
	}
}

func (v *VIPs) allocate() (netip.Addr, error) {
	start := v.next
	for {
		a := v.next
		v.next = v.next.Next()
		if !v.prefix.Contains(v.next) {
			v.next = v.prefix.Addr().Next()
		}
		// Skip the broadcast-like last address and any address in use.
		if !v.used[a] && v.prefix.Contains(a.Next()) {
			return a, nil
		}
		if v.next == start {
			return netip.Addr{}, fmt.Errorf("every address of %s is taken", v.prefix)
		}
	}
}

// Save returns the assignments to persist, and whether they changed since
// the last call.
func (v *VIPs) Save() (map[string]string, bool) {
	changed := v.modified
	v.modified = false
	out := make(map[string]string, len(v.byHost))
	for h, a := range v.byHost {
		out[h] = a.String()
	}
	return out, changed
}
