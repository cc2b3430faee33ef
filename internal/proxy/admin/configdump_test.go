package admin

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	// The reference dump is built from go-control-plane's full types.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/xdsapi"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// referenceConfigDumpJSON is the config dump built from go-control-plane's
// envoy/admin/v3 types, as weft-proxy did before it wrote the envelope
// itself. ConfigDumpJSON must produce the same bytes and fail on the same
// inputs; it lives in a test so that admin/v3 stays out of the binary.
// known re-encodes a with only the fields weft-proxy's xDS types know,
// recursing into nested Anys: the dump shows those (a field weft-proxy does
// not know stays unknown, and protojson prints no unknown fields), and
// admin/v3's must match it on them. Bytes that do not decode are left for
// both to reject.
func known(a *anypb.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	mt, err := xdsapi.Types.FindMessageByURL(a.GetTypeUrl())
	if err != nil {
		return a
	}
	m := mt.New()
	if err := proto.Unmarshal(a.GetValue(), m.Interface()); err != nil {
		return a
	}
	knownFields(m)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	if err != nil {
		return a
	}
	return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: b}
}

// knownFields drops m's unknown fields, and those of the messages and Anys
// in it.
func knownFields(m protoreflect.Message) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		a.Value = known(a).GetValue()
		return
	}
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					knownFields(mv.Message())
					return true
				})
			}
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				knownFields(v.List().Get(i).Message())
			}
		default:
			knownFields(v.Message())
		}
		return true
	})
}

func referenceConfigDumpJSON(rs model.Resources) ([]byte, error) {
	ts := timestamppb.New
	var (
		clusters  = &adminv3.ClustersConfigDump{VersionInfo: rs.Versions[xdsclient.TypeCluster]}
		listeners = &adminv3.ListenersConfigDump{VersionInfo: rs.Versions[xdsclient.TypeListener]}
		routes    = &adminv3.RoutesConfigDump{}
		endpoints = &adminv3.EndpointsConfigDump{}
	)
	for _, r := range rs.Clusters {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: r.Version, Cluster: known(r.Any), LastUpdated: ts(r.Updated)})
	}
	for _, r := range rs.Listeners {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: r.Name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: known(r.Any), LastUpdated: ts(r.Updated)},
		})
	}
	for _, r := range rs.Routes {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: r.Version, RouteConfig: known(r.Any), LastUpdated: ts(r.Updated)})
	}
	for _, r := range rs.Endpoints {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: r.Version, EndpointConfig: known(r.Any), LastUpdated: ts(r.Updated)})
	}
	cd := &adminv3.ConfigDump{}
	for _, m := range []proto.Message{clusters, listeners, routes, endpoints} {
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		cd.Configs = append(cd.Configs, a)
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(cd)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// configDumpCases are the inputs whose dumps are committed under
// testdata/config_dump/.
func configDumpCases(t testing.TB) map[string]model.Resources {
	t.Helper()
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rc := xdstest.RouteConfig("http_proxy",
		xdstest.VirtualHost("reviews:9080", []string{"reviews:9080", "reviews"}, xdstest.PrefixRoute("/", "outbound|9080||reviews.default.svc.cluster.local")),
		xdstest.VirtualHost("regex", []string{"*"}, xdstest.RegexRoute("/x/[0-9]+", "b")))
	odd := "a<b>&c\u2028\u2029\x01\t\"\\é😀"
	return map[string]model.Resources{
		"empty": {},
		"mesh": {
			Versions: map[string]string{xdsclient.TypeCluster: "c1", xdsclient.TypeListener: "l1",
				xdsclient.TypeRoute: "r1", xdsclient.TypeEndpoint: "e1"},
			Clusters: []model.Resource{
				{Name: "inbound|9080||", Version: "c1", Updated: t0, Any: mustAny(t, xdstest.StaticCluster("inbound|9080||", "127.0.0.1:9080"))},
				{Name: "outbound|9080||reviews.default.svc.cluster.local", Version: "c1", Updated: t0.Add(time.Millisecond),
					Any: mustAny(t, xdstest.EDSCluster("outbound|9080||reviews.default.svc.cluster.local"))},
			},
			Listeners: []model.Resource{
				{Name: "inbound|9080", Version: "l1", Updated: t0.Add(time.Microsecond),
					Any: mustAny(t, xdstest.WithHTTPInspector(xdstest.InlineListener("inbound|9080", "127.0.0.1:15006", rc), 100*time.Millisecond))},
				{Name: "outbound", Version: "l1", Updated: t0.Add(time.Nanosecond), Any: mustAny(t, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy"))},
			},
			Routes: []model.Resource{{Name: "http_proxy", Version: "r1", Updated: t0.Add(123456789), Any: mustAny(t, rc)}},
			Endpoints: []model.Resource{{Name: "outbound|9080||reviews.default.svc.cluster.local", Version: "e1", Updated: t0,
				Any: mustAny(t, xdstest.CLA("outbound|9080||reviews.default.svc.cluster.local", "10.0.0.1:15006", "10.0.0.2:15006"))}},
		},
		// Characters that JSON encoders escape differently, empty fields
		// (omitted), a resource without a body, times in other zones and
		// the zero time.
		"odd": {
			Versions: map[string]string{xdsclient.TypeCluster: odd},
			Clusters: []model.Resource{{Name: odd, Version: odd, Updated: t0.In(time.FixedZone("X", -7*3600)),
				Any: mustAny(t, xdstest.EDSCluster(odd))}},
			Listeners: []model.Resource{{}, {Name: "<nil>", Version: "1", Updated: t0.Add(-time.Nanosecond)}},
			Routes:    []model.Resource{{Name: "r", Any: mustAny(t, xdstest.RouteConfig(odd))}},
			Endpoints: []model.Resource{{Version: "e", Any: mustAny(t, xdstest.CLA(odd))}},
		},
	}
}

func TestConfigDumpJSONGolden(t *testing.T) {
	for name, rs := range configDumpCases(t) {
		t.Run(name, func(t *testing.T) {
			got, err := ConfigDumpJSON(rs)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "config_dump", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestConfigDumpJSONGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("config dump differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
			ref, err := referenceConfigDumpJSON(rs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ref) {
				t.Errorf("config dump differs from admin/v3's:\n--- got\n%s\n--- admin/v3\n%s", got, ref)
			}
			// Envoy's tools read it back as a ConfigDump.
			if err := (protojson.UnmarshalOptions{}).Unmarshal(got, &adminv3.ConfigDump{}); err != nil {
				t.Errorf("not a ConfigDump: %v", err)
			}
		})
	}
}

func TestConfigDumpJSONErrors(t *testing.T) {
	good := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		rs   model.Resources
		want string
	}{
		"unknown resource type": {
			rs:   model.Resources{Clusters: []model.Resource{{Name: "c", Updated: good, Any: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}}},
			want: "no.such.Type",
		},
		"undecodable resource": {
			rs:   model.Resources{Routes: []model.Resource{{Name: "r", Updated: good, Any: &anypb.Any{TypeUrl: xdsclient.TypeRoute, Value: []byte{0xff}}}}},
			want: `route "r"`,
		},
		"invalid UTF-8 version": {
			rs:   model.Resources{Endpoints: []model.Resource{{Name: "e", Version: "\xff", Updated: good}}},
			want: "UTF-8",
		},
		"invalid UTF-8 listener name": {
			rs:   model.Resources{Listeners: []model.Resource{{Name: "\xffl", Updated: good}}},
			want: "UTF-8",
		},
		"invalid UTF-8 type version": {
			rs:   model.Resources{Versions: map[string]string{xdsclient.TypeListener: "\xc0"}},
			want: "UTF-8",
		},
		"time past year 9999": {
			rs:   model.Resources{Clusters: []model.Resource{{Name: "c", Updated: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
			want: `cluster "c"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := referenceConfigDumpJSON(tc.rs); err == nil {
				t.Fatal("admin/v3's config dump accepts this input; the case tests nothing")
			}
			b, err := ConfigDumpJSON(tc.rs)
			if err == nil {
				t.Fatalf("no error; dump:\n%s", b)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestConfigDumpHandler(t *testing.T) {
	rs := configDumpCases(t)["mesh"]
	h := New(Options{Resources: func() model.Resources { return rs }}).Handler()
	code, body := get(t, h, "/config_dump")
	want, _ := ConfigDumpJSON(rs)
	if code != 200 || body != string(want) {
		t.Errorf("/config_dump: %d\n%s\nwant 200 and\n%s", code, body, want)
	}
	bad := model.Resources{Clusters: []model.Resource{{Name: "c", Any: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}}}
	h = New(Options{Resources: func() model.Resources { return bad }}).Handler()
	if code, body := get(t, h, "/config_dump"); code != 500 || !strings.Contains(body, "no.such.Type") {
		t.Errorf("/config_dump of an unprintable resource: %d %q, want 500 naming the type", code, body)
	}
}

// TestWriteConfigDumpFuzzCorpus regenerates the committed seed corpus with
// -update.
func TestWriteConfigDumpFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzConfigDumpJSON")
	seeds := []struct {
		name, version string
		unixNano      int64
		body          []byte
	}{
		{"outbound", "v1", 1772600767000000000, mustMarshal(t, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy"))},
		{"a<b>&c\u2028\x01", "\u2029\x7f", 1772600767000001000, mustMarshal(t, xdstest.EDSCluster("a<b>&c"))},
		{"", "", 0, nil},
		{"\xff", "1", 5, []byte{0xff}},
	}
	if !*update {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(seeds) {
			t.Fatalf("seed corpus missing in %s (run go test -run TestWriteConfigDumpFuzzCorpus -update): %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\nstring(%q)\nint64(%d)\n[]byte(%q)\n", s.name, s.version, s.unixNano, s.body)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzConfigDumpJSON checks, for arbitrary names, versions, times and
// resource bytes (all from the control plane), that the config dump is
// byte for byte admin/v3's on the fields weft-proxy's types know, or that
// both fail.
func FuzzConfigDumpJSON(f *testing.F) {
	types := []string{xdsclient.TypeListener, xdsclient.TypeRoute, xdsclient.TypeCluster, xdsclient.TypeEndpoint}
	f.Fuzz(func(t *testing.T, name, version string, unixNano int64, body []byte) {
		var a *anypb.Any
		if body != nil {
			a = &anypb.Any{TypeUrl: types[len(body)%len(types)], Value: body}
		}
		r := model.Resource{Name: name, Version: version, Updated: time.Unix(0, unixNano), Any: a}
		rs := model.Resources{
			Versions:  map[string]string{xdsclient.TypeCluster: version, xdsclient.TypeListener: name},
			Clusters:  []model.Resource{r},
			Listeners: []model.Resource{r, r},
			Routes:    []model.Resource{r},
			Endpoints: []model.Resource{r},
		}
		got, err := ConfigDumpJSON(rs)
		want, refErr := referenceConfigDumpJSON(rs)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("error %v, admin/v3's %v", err, refErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("config dump differs from admin/v3's:\n--- got\n%s\n--- admin/v3\n%s", got, want)
		}
	})
}
