package config

import (
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// CodeNotSupported is Weft's code for a field it accepts, as Istio does,
// but does not act on yet.
const CodeNotSupported = "WEFT0001"

// Unsupported warns about every field of r that Weft stores but does not
// yet apply to traffic, so that applying, say, Istio's fault injection
// example says so instead of silently doing nothing.
func Unsupported(r *Resource) []Warning {
	var out []Warning
	warn := func(path, what string) {
		out = append(out, Warning{
			Code: CodeNotSupported, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Path: path,
			Message: what + " is not supported by Weft yet: it is stored but has no effect",
		})
	}
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		for i, h := range spec.GetHttp() {
			p := index("spec.http", i)
			for _, f := range []struct {
				set  bool
				name string
			}{
				{h.GetFault() != nil, "fault"},
				{h.GetMirror() != nil || len(h.GetMirrors()) > 0, "mirror"},
				{h.GetRewrite() != nil, "rewrite"},
				{h.GetRedirect() != nil, "redirect"},
				{h.GetDirectResponse() != nil, "directResponse"},
				{h.GetHeaders() != nil, "headers"},
				{h.GetCorsPolicy() != nil, "corsPolicy"},
				{h.GetDelegate() != nil, "delegate"},
			} {
				if f.set {
					warn(p+"."+f.name, "HTTP "+f.name)
				}
			}
		}
		if len(spec.GetTcp()) > 0 {
			warn("spec.tcp", "TCP routing by VirtualService")
		}
		if len(spec.GetTls()) > 0 {
			warn("spec.tls", "TLS routing by VirtualService")
		}
		if len(spec.GetExportTo()) > 0 {
			warn("spec.exportTo", "exportTo")
		}
	case *networking.DestinationRule:
		policy := func(path string, tp *networking.TrafficPolicy) {
			if tp == nil {
				return
			}
			if tp.GetConnectionPool() != nil {
				warn(path+".connectionPool", "connectionPool")
			}
			if tp.GetOutlierDetection() != nil {
				warn(path+".outlierDetection", "outlierDetection")
			}
			if tp.GetTls() != nil {
				warn(path+".tls", "client TLS settings")
			}
			if tp.GetLoadBalancer().GetConsistentHash() != nil {
				warn(path+".loadBalancer.consistentHash", "consistent-hash load balancing")
			}
		}
		policy("spec.trafficPolicy", spec.GetTrafficPolicy())
		for i, s := range spec.GetSubsets() {
			policy(index("spec.subsets", i)+".trafficPolicy", s.GetTrafficPolicy())
		}
		if len(spec.GetExportTo()) > 0 {
			warn("spec.exportTo", "exportTo")
		}
	case *networking.Gateway:
		for i, s := range spec.GetServers() {
			switch strings.ToUpper(s.GetPort().GetProtocol()) {
			case "HTTP", "HTTP2", "GRPC":
			default:
				warn(index("spec.servers", i)+".port.protocol", "a "+s.GetPort().GetProtocol()+" gateway server")
			}
		}
	}
	return out
}
