// Package nodemeta is the contract between weft-proxy and the control plane
// about who a proxy is. A proxy describes itself in the xDS Node it sends on
// its ADS stream: the node ID and a metadata Struct whose keys follow Istio's
// names where Istio has one (NAMESPACE, LABELS, SERVICE_ACCOUNT,
// WORKLOAD_NAME, INSTANCE_IPS) and WEFT_* otherwise.
//
// Both binaries import this package, so it must stay tiny: it depends only on
// structpb, and works with the Node type of either side (go-control-plane's
// in the control plane, weft-proxy's own trimmed one in the proxy).
package nodemeta

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// Proxy types, as the first field of an Istio-style node ID.
const (
	TypeSidecar = "sidecar"
	TypeRouter  = "router" // gateways
)

// Metadata keys.
const (
	KeyNamespace      = "NAMESPACE"
	KeyLabels         = "LABELS"
	KeyServiceAccount = "SERVICE_ACCOUNT"
	KeyWorkloadName   = "WORKLOAD_NAME"
	KeyInstanceIPs    = "INSTANCE_IPS"
	KeyService        = "WEFT_SERVICE"
	KeyPorts          = "WEFT_PORTS"
	KeyOutboundPort   = "WEFT_OUTBOUND_PORT"
	KeyPortMap        = "WEFT_PORT_MAP"
	KeyInterception   = "INTERCEPTION_MODE"
)

// InterceptionRedirect is Istio's INTERCEPTION_MODE for a proxy whose
// workload's traffic iptables redirects to it (transparent mode). Without
// it the proxy is explicit: applications use it through HTTP_PROXY.
const InterceptionRedirect = "REDIRECT"

// Port is one port of the workload's service.
type Port struct {
	// Name is the service port name, e.g. "http". Istio derives the protocol
	// from it (http, http2, grpc, tcp, ...).
	Name string
	// Port is the service port other workloads call, e.g. 9080.
	Port uint32
	// TargetPort is where the application itself listens.
	TargetPort uint32
	// ListenPort is where this proxy accepts inbound mesh traffic for Port.
	// Other proxies send to IP:ListenPort. Equal to Port when each workload
	// has its own IP (network namespaces), distinct per workload when many
	// share 127.0.0.1.
	ListenPort uint32
}

// Metadata is everything a proxy tells the control plane about itself.
type Metadata struct {
	Type           string // TypeSidecar or TypeRouter
	Namespace      string
	Service        string // the service this workload belongs to; empty for gateways
	WorkloadName   string // pod-like name, e.g. reviews-v2-7f9c4
	ServiceAccount string
	IP             string // the address other proxies use to reach this one
	Labels         map[string]string
	Ports          []Port
	// OutboundPort is the sidecar's explicit outbound (HTTP_PROXY) port.
	OutboundPort uint32
	// PortMap rebinds listener ports locally: a gateway server on port 80
	// is served on PortMap[80] when set.
	PortMap map[uint32]uint32
	// InterceptionMode is InterceptionRedirect in transparent mode, empty
	// in explicit mode.
	InterceptionMode string
}

// ID is the Istio-style node ID: type~ip~workload.namespace~namespace.svc.cluster.local.
func (m Metadata) ID() string {
	return fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", m.Type, m.IP, m.WorkloadName, m.Namespace, m.Namespace)
}

// UserAgent is the user_agent_name of weft-proxy's xDS node.
const UserAgent = "weft-proxy"

// Node is what the control plane reads of an xDS envoy.config.core.v3.Node.
type Node interface {
	GetId() string
	GetMetadata() *structpb.Struct
}

// Struct builds the metadata of the xDS node a proxy sends; the node's id
// is ID, its cluster the service and its user_agent_name UserAgent.
func (m Metadata) Struct() *structpb.Struct {
	labels := map[string]any{}
	for k, v := range m.Labels {
		labels[k] = v
	}
	ports := make([]any, 0, len(m.Ports))
	for _, p := range m.Ports {
		ports = append(ports, map[string]any{
			"name": p.Name, "port": float64(p.Port),
			"targetPort": float64(p.TargetPort), "listenPort": float64(p.ListenPort),
		})
	}
	pm := map[string]any{}
	for k, v := range m.PortMap {
		pm[strconv.FormatUint(uint64(k), 10)] = float64(v)
	}
	fields := map[string]any{
		KeyNamespace:      m.Namespace,
		KeyLabels:         labels,
		KeyServiceAccount: m.ServiceAccount,
		KeyWorkloadName:   m.WorkloadName,
		KeyInstanceIPs:    m.IP,
		KeyService:        m.Service,
		KeyPorts:          ports,
		KeyOutboundPort:   float64(m.OutboundPort),
		KeyPortMap:        pm,
		KeyInterception:   m.InterceptionMode,
	}
	st, err := structpb.NewStruct(fields)
	if err != nil {
		// Only strings, numbers, lists and maps go in above.
		panic(fmt.Sprintf("nodemeta: building struct: %v", err))
	}
	return st
}

// FromNode reads the metadata a proxy sent. Missing keys stay zero; a node
// ID that is not type~ip~name~domain is an error.
func FromNode(n Node) (Metadata, error) {
	var m Metadata
	// A nil *Node in n reads as empty.
	if n == nil || n.GetId() == "" && n.GetMetadata() == nil {
		return m, fmt.Errorf("node is missing from the first discovery request")
	}
	parts := strings.Split(n.GetId(), "~")
	if len(parts) != 4 {
		return m, fmt.Errorf("node id %q: want type~ip~workload.namespace~namespace.svc.cluster.local", n.GetId())
	}
	m.Type = parts[0]
	if m.Type != TypeSidecar && m.Type != TypeRouter {
		return m, fmt.Errorf("node id %q: type %q is neither %q nor %q", n.GetId(), m.Type, TypeSidecar, TypeRouter)
	}
	f := n.GetMetadata().GetFields()
	str := func(k string) string { return f[k].GetStringValue() }
	m.Namespace = str(KeyNamespace)
	m.Service = str(KeyService)
	m.WorkloadName = str(KeyWorkloadName)
	m.ServiceAccount = str(KeyServiceAccount)
	m.IP = str(KeyInstanceIPs)
	if m.IP == "" {
		m.IP = parts[1]
	}
	if m.Namespace == "" {
		m.Namespace = "default"
	}
	if ls := f[KeyLabels].GetStructValue().GetFields(); len(ls) > 0 {
		m.Labels = make(map[string]string, len(ls))
		for k, v := range ls {
			m.Labels[k] = v.GetStringValue()
		}
	}
	for i, v := range f[KeyPorts].GetListValue().GetValues() {
		pf := v.GetStructValue().GetFields()
		p := Port{
			Name:       pf["name"].GetStringValue(),
			Port:       uint32(pf["port"].GetNumberValue()),
			TargetPort: uint32(pf["targetPort"].GetNumberValue()),
			ListenPort: uint32(pf["listenPort"].GetNumberValue()),
		}
		if p.Port == 0 {
			return m, fmt.Errorf("node %s: %s[%d]: port is missing", n.GetId(), KeyPorts, i)
		}
		m.Ports = append(m.Ports, p)
	}
	sort.Slice(m.Ports, func(i, j int) bool { return m.Ports[i].Port < m.Ports[j].Port })
	m.OutboundPort = uint32(f[KeyOutboundPort].GetNumberValue())
	m.InterceptionMode = str(KeyInterception)
	if m.InterceptionMode != "" && m.InterceptionMode != InterceptionRedirect {
		return m, fmt.Errorf("node %s: %s %q: want %q or nothing", n.GetId(), KeyInterception, m.InterceptionMode, InterceptionRedirect)
	}
	if pm := f[KeyPortMap].GetStructValue().GetFields(); len(pm) > 0 {
		m.PortMap = make(map[uint32]uint32, len(pm))
		for k, v := range pm {
			from, err := strconv.ParseUint(k, 10, 32)
			if err != nil {
				return m, fmt.Errorf("node %s: %s key %q is not a port", n.GetId(), KeyPortMap, k)
			}
			m.PortMap[uint32(from)] = uint32(v.GetNumberValue())
		}
	}
	return m, nil
}
