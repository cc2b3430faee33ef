package registry

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/nodemeta"
)

// Services builds the mesh's services from the connected workloads and the
// ServiceEntry and WorkloadEntry resources. It is a pure function.
//
// Sidecars form the service named by their WEFT_SERVICE in their namespace,
// as pods behind a Kubernetes Service do. Each host of a ServiceEntry is a
// service of its own; its endpoints are its inline endpoints plus the
// WorkloadEntries in its namespace that its workloadSelector selects. A
// WorkloadEntry that no ServiceEntry selects joins the service named by its
// `app` label in its namespace, the way a Kubernetes Service selects pods.
func Services(workloads []Workload, serviceEntries, workloadEntries []*config.Resource) []*Service {
	byHost := map[string]*Service{}
	for _, w := range workloads {
		m := w.Meta
		if m.Type != nodemeta.TypeSidecar || m.Service == "" {
			continue
		}
		host := Hostname(m.Service, m.Namespace)
		svc := byHost[host]
		if svc == nil {
			svc = &Service{Hostname: host, Name: m.Service, Namespace: m.Namespace, Resolution: "STATIC"}
			byHost[host] = svc
		}
		ep := Endpoint{
			Address: m.IP, Ports: map[uint32]uint32{}, Labels: m.Labels,
			ServiceAccount: m.ServiceAccount, Workload: m.WorkloadName, Sidecar: true,
		}
		for _, p := range m.Ports {
			addPort(svc, Port{Name: p.Name, Number: p.Port, Protocol: ProtocolFromName(p.Name)})
			dial := p.ListenPort
			if dial == 0 {
				dial = p.Port
			}
			ep.Ports[p.Port] = dial
		}
		svc.Endpoints = append(svc.Endpoints, ep)
	}

	selected := map[*config.Resource]bool{}
	for _, r := range serviceEntries {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, host := range se.GetHosts() {
			svc := &Service{
				Hostname:     host,
				Name:         host,
				Namespace:    r.Namespace,
				MeshExternal: se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL,
				Resolution:   se.GetResolution().String(),
			}
			if addrs := se.GetAddresses(); len(addrs) > 0 {
				if a, err := netip.ParseAddr(addrs[0]); err == nil {
					svc.VIP = a.String()
				}
			}
			for _, p := range se.GetPorts() {
				proto := strings.ToUpper(p.GetProtocol())
				if proto == "" {
					proto = ProtocolFromName(p.GetName())
				}
				addPort(svc, Port{Name: p.GetName(), Number: p.GetNumber(), Protocol: proto, TargetPort: p.GetTargetPort()})
			}
			for i, we := range se.GetEndpoints() {
				svc.Endpoints = append(svc.Endpoints, entryEndpoint(svc, we, fmt.Sprintf("%s/%s#%d", r.Namespace, r.Name, i)))
			}
			if dnsHostEndpoint(se, host) {
				// As Istio: a DNS entry without endpoints reaches the host
				// itself, resolved when a connection is made.
				svc.Endpoints = append(svc.Endpoints, entryEndpoint(svc, &networking.WorkloadEntry{Address: host}, fmt.Sprintf("%s/%s#%s", r.Namespace, r.Name, host)))
			}
			if sel := se.GetWorkloadSelector().GetLabels(); len(sel) > 0 {
				for _, wr := range workloadEntries {
					we, ok := wr.Spec.(*networking.WorkloadEntry)
					if !ok || wr.Namespace != r.Namespace || !labelsMatch(sel, we.GetLabels()) {
						continue
					}
					selected[wr] = true
					svc.Endpoints = append(svc.Endpoints, entryEndpoint(svc, we, wr.Namespace+"/"+wr.Name))
				}
			}
			byHost[host] = svc
		}
	}

	for _, wr := range workloadEntries {
		we, ok := wr.Spec.(*networking.WorkloadEntry)
		if !ok || selected[wr] {
			continue
		}
		app := we.GetLabels()["app"]
		if app == "" {
			continue
		}
		svc := byHost[Hostname(app, wr.Namespace)]
		if svc == nil {
			continue // no sidecar defines the service's ports yet
		}
		svc.Endpoints = append(svc.Endpoints, entryEndpoint(svc, we, wr.Namespace+"/"+wr.Name))
	}

	out := make([]*Service, 0, len(byHost))
	for _, svc := range byHost {
		sort.Slice(svc.Endpoints, func(i, j int) bool {
			a, b := svc.Endpoints[i], svc.Endpoints[j]
			if a.Address != b.Address {
				return a.Address < b.Address
			}
			return a.Workload < b.Workload
		})
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out
}

// entryEndpoint turns a WorkloadEntry (standalone or inline in a
// ServiceEntry) into an endpoint of svc. Its ports map names service ports to
// the ports to dial; a port it does not name is dialled at the service
// port's targetPort, or the service port.
func entryEndpoint(svc *Service, we *networking.WorkloadEntry, name string) Endpoint {
	ep := Endpoint{
		Address: we.GetAddress(), Ports: map[uint32]uint32{}, Labels: we.GetLabels(),
		ServiceAccount: we.GetServiceAccount(), Workload: name,
		Weight: we.GetWeight(), Locality: we.GetLocality(),
		Sidecar: we.GetLabels()[TLSModeLabel] == "istio",
	}
	for _, p := range svc.Ports {
		switch n, ok := we.GetPorts()[p.Name]; {
		case ok && n != 0:
			ep.Ports[p.Number] = n
		case p.TargetPort != 0:
			ep.Ports[p.Number] = p.TargetPort
		default:
			ep.Ports[p.Number] = p.Number
		}
	}
	return ep
}

// dnsHostEndpoint reports whether host of the ServiceEntry se is its own
// endpoint: se resolves by DNS and lists no endpoints, nor selects
// workloads, and host is a name, not a wildcard.
func dnsHostEndpoint(se *networking.ServiceEntry, host string) bool {
	res := se.GetResolution()
	return (res == networking.ServiceEntry_DNS || res == networking.ServiceEntry_DNS_ROUND_ROBIN) &&
		len(se.GetEndpoints()) == 0 && len(se.GetWorkloadSelector().GetLabels()) == 0 && !strings.HasPrefix(host, "*")
}

func addPort(svc *Service, p Port) {
	if svc.Port(p.Number) != nil {
		return
	}
	svc.Ports = append(svc.Ports, p)
	sort.Slice(svc.Ports, func(i, j int) bool { return svc.Ports[i].Number < svc.Ports[j].Number })
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ProtocolFromName derives a port's protocol from its name the way Istio
// does: "http", "http-web" and "http2-api" name HTTP and HTTP2 ports,
// "tcp-db" a TCP port. An unrecognised name declares nothing: the proxy
// detects HTTP on such a port by sniffing, and returns "".
func ProtocolFromName(name string) string {
	name = strings.ToLower(name)
	if strings.HasPrefix(name, "grpc-web") {
		return "GRPC-WEB"
	}
	prefix, _, _ := strings.Cut(name, "-")
	switch prefix {
	case "http", "http2", "https", "grpc", "tcp", "tls", "mongo", "mysql", "redis", "udp":
		return strings.ToUpper(prefix)
	}
	return ""
}
