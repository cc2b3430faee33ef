package harness

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The bench's ADS clients stand in for many proxies on the bench's own two
// cores, so they read only the names they need straight from the wire: a
// full decode of every resource cost them several times the control
// plane's CPU and made the control-plane figures measure the clients.
// Field numbers come from Envoy's descriptors, so they cannot drift.
var (
	clusterName        = fieldNum(&clusterv3.Cluster{}, "name")
	clusterType        = fieldNum(&clusterv3.Cluster{}, "type")
	clusterEDSConfig   = fieldNum(&clusterv3.Cluster{}, "eds_cluster_config")
	edsServiceName     = fieldNum(&clusterv3.Cluster_EdsClusterConfig{}, "service_name")
	listenerName       = fieldNum(&listenerv3.Listener{}, "name")
	listenerChains     = fieldNum(&listenerv3.Listener{}, "filter_chains")
	chainFilters       = fieldNum(&listenerv3.FilterChain{}, "filters")
	filterTypedConfig  = fieldNum(&listenerv3.Filter{}, "typed_config")
	anyTypeURL         = fieldNum(&anypb.Any{}, "type_url")
	anyValue           = fieldNum(&anypb.Any{}, "value")
	hcmRds             = fieldNum(&hcmv3.HttpConnectionManager{}, "rds")
	rdsRouteConfigName = fieldNum(&hcmv3.Rds{}, "route_config_name")
	claClusterName     = fieldNum(&endpointv3.ClusterLoadAssignment{}, "cluster_name")
	routeConfigName    = fieldNum(&routev3.RouteConfiguration{}, "name")
	routeConfigVHosts  = fieldNum(&routev3.RouteConfiguration{}, "virtual_hosts")
	vhostName          = fieldNum(&routev3.VirtualHost{}, "name")

	hcmTypeURL = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())
)

func fieldNum(m proto.Message, name protoreflect.Name) protowire.Number {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("%s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return fd.Number()
}

// eachField calls fn with the value of every occurrence of field n in the
// message b: the bytes of a length-delimited field, or a varint.
func eachField(b []byte, n protowire.Number, fn func(v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			u, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if num == n && (typ == protowire.BytesType || typ == protowire.VarintType) {
			if err := fn(v, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// lastString is the last value of string field n in b (proto3: the last
// occurrence wins), or "".
func lastString(b []byte, n protowire.Number) (string, error) {
	var s string
	err := eachField(b, n, func(v []byte, _ uint64) error { s = string(v); return nil })
	return s, err
}

// clusterNames reads a Cluster's name and, for an EDS cluster, the name
// its endpoints are requested by.
func clusterNames(b []byte) (name, eds string, err error) {
	if name, err = lastString(b, clusterName); err != nil {
		return "", "", err
	}
	var typ uint64
	if err := eachField(b, clusterType, func(_ []byte, u uint64) error { typ = u; return nil }); err != nil {
		return "", "", err
	}
	if clusterv3.Cluster_DiscoveryType(typ) != clusterv3.Cluster_EDS {
		return name, "", nil
	}
	err = eachField(b, clusterEDSConfig, func(v []byte, _ uint64) error {
		eds, err = lastString(v, edsServiceName)
		return err
	})
	if eds == "" {
		eds = name
	}
	return name, eds, err
}

// listenerRoutes appends the RDS route configuration names of a
// Listener's HTTP connection managers to rds.
func listenerRoutes(b []byte, rds []string) ([]string, error) {
	err := eachField(b, listenerChains, func(chain []byte, _ uint64) error {
		return eachField(chain, chainFilters, func(filter []byte, _ uint64) error {
			return eachField(filter, filterTypedConfig, func(a []byte, _ uint64) error {
				url, err := lastString(a, anyTypeURL)
				if err != nil || url != hcmTypeURL {
					return err
				}
				return eachField(a, anyValue, func(hcm []byte, _ uint64) error {
					return eachField(hcm, hcmRds, func(r []byte, _ uint64) error {
						n, err := lastString(r, rdsRouteConfigName)
						if n != "" {
							rds = append(rds, n)
						}
						return err
					})
				})
			})
		})
	})
	return rds, err
}

// routeNames reads a RouteConfiguration's name and its virtual hosts'.
func routeNames(b []byte) (name string, vhosts []string, err error) {
	if name, err = lastString(b, routeConfigName); err != nil {
		return "", nil, err
	}
	err = eachField(b, routeConfigVHosts, func(vh []byte, _ uint64) error {
		n, err := lastString(vh, vhostName)
		vhosts = append(vhosts, n)
		return err
	})
	return name, vhosts, err
}
