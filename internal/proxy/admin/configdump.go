package admin

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/xdsapi"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"

	// Registered so that config dumps can print the typed_config of the
	// router filter, the HTTP inspector and the previous-hosts retry
	// predicate, which weft-proxy recognises by type URL alone.
	_ "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/router/v3"
	_ "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/retry/host/previous_hosts/v3"
)

// The /config_dump envelope is Envoy's envoy.admin.v3.ConfigDump, written
// here with encoding/json instead of built from go-control-plane's
// envoy/admin/v3 types: importing those links their whole proto dependency
// tree into weft-proxy, and every MB of binary is most of a MB of resident
// memory per sidecar. The structs below list the fields in the order
// protojson prints them (field number order); a field left empty is
// omitted, as protojson omits proto3 defaults. Every value, strings and
// times included, is printed by protojson, so escaping, the timestamp
// format and the errors on bad input are protojson's.

// Type URLs of the four ConfigDump sections, in Envoy's order.
const (
	clustersDumpType  = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
	listenersDumpType = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
	routesDumpType    = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
	endpointsDumpType = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
)

// configDump is envoy.admin.v3.ConfigDump.
type configDump struct {
	Configs []configSection `json:"configs"`
}

// configSection is one of ClustersConfigDump, ListenersConfigDump,
// RoutesConfigDump and EndpointsConfigDump as an Any: only the fields of
// its own type are set.
type configSection struct {
	Type                   string            `json:"@type"`
	VersionInfo            json.RawMessage   `json:"version_info,omitempty"`
	DynamicActiveClusters  []dynamicConfig   `json:"dynamic_active_clusters,omitempty"`
	DynamicListeners       []dynamicListener `json:"dynamic_listeners,omitempty"`
	DynamicRouteConfigs    []dynamicConfig   `json:"dynamic_route_configs,omitempty"`
	DynamicEndpointConfigs []dynamicConfig   `json:"dynamic_endpoint_configs,omitempty"`
}

// dynamicConfig is ClustersConfigDump.DynamicCluster,
// ListenersConfigDump.DynamicListenerState,
// RoutesConfigDump.DynamicRouteConfig or
// EndpointsConfigDump.DynamicEndpointConfig: exactly one of the resource
// fields is set.
type dynamicConfig struct {
	VersionInfo    json.RawMessage `json:"version_info,omitempty"`
	Cluster        json.RawMessage `json:"cluster,omitempty"`
	Listener       json.RawMessage `json:"listener,omitempty"`
	RouteConfig    json.RawMessage `json:"route_config,omitempty"`
	EndpointConfig json.RawMessage `json:"endpoint_config,omitempty"`
	LastUpdated    json.RawMessage `json:"last_updated"`
}

// dynamicListener is ListenersConfigDump.DynamicListener.
type dynamicListener struct {
	Name        json.RawMessage `json:"name,omitempty"`
	ActiveState dynamicConfig   `json:"active_state"`
}

// protoJSON prints m with proto field names.
func protoJSON(m proto.Message) (json.RawMessage, error) {
	return protojson.MarshalOptions{UseProtoNames: true, Resolver: xdsapi.Types}.Marshal(m)
}

// jsonString prints s as protojson prints a string field; "" is nil, an
// omitted field.
func jsonString(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	return protoJSON(wrapperspb.String(s))
}

// dumpEntry prints one resource: its version, body (nil if it has none)
// and update time.
func dumpEntry(r model.Resource) (version, body, updated json.RawMessage, err error) {
	if version, err = jsonString(r.Version); err != nil {
		return nil, nil, nil, fmt.Errorf("version_info: %w", err)
	}
	if r.Any != nil {
		if body, err = protoJSON(r.Any); err != nil {
			return nil, nil, nil, err
		}
	}
	if updated, err = protoJSON(timestamppb.New(r.Updated)); err != nil {
		return nil, nil, nil, fmt.Errorf("last_updated: %w", err)
	}
	return version, body, updated, nil
}

// dumpConfigs prints each resource as a dynamicConfig with the body in the
// field set by put.
func dumpConfigs(kind string, rs []model.Resource, put func(*dynamicConfig, json.RawMessage)) ([]dynamicConfig, error) {
	out := make([]dynamicConfig, 0, len(rs))
	for _, r := range rs {
		v, body, ts, err := dumpEntry(r)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", kind, r.Name, err)
		}
		c := dynamicConfig{VersionInfo: v, LastUpdated: ts}
		put(&c, body)
		out = append(out, c)
	}
	return out, nil
}

// ConfigDumpJSON renders the accepted resources as Envoy's ConfigDump
// (envoy.admin.v3.ConfigDump) in JSON with proto field names, indented by
// two spaces and ending in a newline: sections for clusters, listeners,
// routes and endpoints, in that order, each resource with its version and
// last update time. It fails if a resource cannot be printed (a type not
// linked into the binary, bytes that do not decode, a name or version
// that is not UTF-8).
func ConfigDumpJSON(rs model.Resources) ([]byte, error) {
	clusterVersion, err := jsonString(rs.Versions[xdsclient.TypeCluster])
	if err != nil {
		return nil, fmt.Errorf("config dump: cluster version_info: %w", err)
	}
	listenerVersion, err := jsonString(rs.Versions[xdsclient.TypeListener])
	if err != nil {
		return nil, fmt.Errorf("config dump: listener version_info: %w", err)
	}
	clusters, err := dumpConfigs("cluster", rs.Clusters, func(c *dynamicConfig, b json.RawMessage) { c.Cluster = b })
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	listenerStates, err := dumpConfigs("listener", rs.Listeners, func(c *dynamicConfig, b json.RawMessage) { c.Listener = b })
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	listeners := make([]dynamicListener, len(rs.Listeners))
	for i, r := range rs.Listeners {
		name, err := jsonString(r.Name)
		if err != nil {
			return nil, fmt.Errorf("config dump: listener %q: name: %w", r.Name, err)
		}
		listeners[i] = dynamicListener{Name: name, ActiveState: listenerStates[i]}
	}
	routes, err := dumpConfigs("route", rs.Routes, func(c *dynamicConfig, b json.RawMessage) { c.RouteConfig = b })
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	endpoints, err := dumpConfigs("endpoints", rs.Endpoints, func(c *dynamicConfig, b json.RawMessage) { c.EndpointConfig = b })
	if err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	cd := configDump{Configs: []configSection{
		{Type: clustersDumpType, VersionInfo: clusterVersion, DynamicActiveClusters: clusters},
		{Type: listenersDumpType, VersionInfo: listenerVersion, DynamicListeners: listeners},
		{Type: routesDumpType, DynamicRouteConfigs: routes},
		{Type: endpointsDumpType, DynamicEndpointConfigs: endpoints},
	}}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	// protojson does not escape <, > and &; neither may the envelope.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cd); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	return out.Bytes(), nil
}
