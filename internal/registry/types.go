package registry

// DomainSuffix is the cluster domain used to build service host names.
const DomainSuffix = "svc.cluster.local"

// Hostname returns the fully qualified host name of a service:
// reviews in default is reviews.default.svc.cluster.local.
func Hostname(name, namespace string) string {
	return name + "." + namespace + "." + DomainSuffix
}

// Port is a service port.
type Port struct {
	Name   string // e.g. http, http-web, tcp-db
	Number uint32 // the port clients call, e.g. 9080
	// Protocol is derived from the name or declared (HTTP, HTTP2, GRPC, TCP, ...).
	Protocol string
	// TargetPort is a ServiceEntry port's targetPort: the port its
	// endpoints are dialled at when they do not name one (0: Number).
	TargetPort uint32
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string // IP (or host name for DNS-resolved ServiceEntries)
	// Ports maps a service port number to the port to dial on Address.
	Ports          map[uint32]uint32
	Labels         map[string]string
	ServiceAccount string
	// Workload names the instance: the proxy's workload name or the
	// WorkloadEntry's namespace/name.
	Workload string
	Weight   uint32 // 0 means 1
	Locality string
	// Sidecar is true when a mesh proxy serves the endpoint's inbound
	// traffic: it registered itself, or (a WorkloadEntry) its labels say
	// so as Istio's do (security.istio.io/tlsMode: istio).
	Sidecar bool
}

// TLSModeLabel marks a WorkloadEntry whose workload has a mesh proxy,
// as Istio labels its workloads.
const TLSModeLabel = "security.istio.io/tlsMode"

// Service is a named set of endpoints behind one host name.
type Service struct {
	Hostname  string // reviews.default.svc.cluster.local, or a ServiceEntry host
	Name      string // reviews (for mesh services), the host for ServiceEntries
	Namespace string
	Ports     []Port // sorted by Number
	// MeshExternal is true for ServiceEntries with location MESH_EXTERNAL.
	MeshExternal bool
	// Resolution is STATIC (endpoints are IPs) or DNS (endpoints are names).
	Resolution string
	// VIP is the service's virtual IP: the ServiceEntry's first address,
	// or one the control plane allocated. Transparent proxies route
	// connections to VIP:port and their DNS proxy answers with it.
	VIP       string
	Endpoints []Endpoint // sorted by Address, then Workload
}

// Port returns the service port with the given number, or nil.
func (s *Service) Port(n uint32) *Port {
	for i := range s.Ports {
		if s.Ports[i].Number == n {
			return &s.Ports[i]
		}
	}
	return nil
}
