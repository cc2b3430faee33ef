package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testCase is one directory under testdata/ holding input.yaml.
type testCase struct {
	name  string
	snap  *snapshot.Snapshot
	proxy nodemeta.Metadata
}

// loadCases reads every testdata/<case>/input.yaml.
func loadCases(t *testing.T) []testCase {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*", "input.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no test cases under testdata/ (err %v)", err)
	}
	var out []testCase
	for _, in := range inputs {
		snap, proxy := loadInput(t, in)
		out = append(out, testCase{name: filepath.Base(filepath.Dir(in)), snap: snap, proxy: proxy})
	}
	return out
}

// loadInput parses a multi-document YAML file: Istio resources, one
// TestProxy document (nodemeta.Metadata fields), TestServices documents
// (registry.Service fields under "services") and an optional TestMesh
// document (snapshot.Mesh fields).
func loadInput(t *testing.T, path string) (*snapshot.Snapshot, nodemeta.Metadata) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		proxy     nodemeta.Metadata
		haveProxy bool
		resources []*config.Resource
		services  []*registry.Service
		mesh      snapshot.Mesh
	)
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		var head struct {
			APIVersion string          `json:"apiVersion"`
			Kind       string          `json:"kind"`
			Metadata   config.Meta     `json:"metadata"`
			Spec       json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		switch head.Kind {
		case "TestProxy":
			if err := strictJSON(js, &struct {
				Kind string `json:"kind"`
				*nodemeta.Metadata
			}{Metadata: &proxy}); err != nil {
				t.Fatalf("%s: TestProxy: %v", path, err)
			}
			haveProxy = true
		case "TestMesh":
			if err := strictJSON(js, &struct {
				Kind string `json:"kind"`
				*snapshot.Mesh
			}{Mesh: &mesh}); err != nil {
				t.Fatalf("%s: TestMesh: %v", path, err)
			}
		case "TestServices":
			var doc struct {
				Kind     string              `json:"kind"`
				Services []*registry.Service `json:"services"`
			}
			if err := strictJSON(js, &doc); err != nil {
				t.Fatalf("%s: TestServices: %v", path, err)
			}
			for _, s := range doc.Services {
				if s.Hostname == "" {
					s.Hostname = registry.Hostname(s.Name, s.Namespace)
				}
			}
			services = append(services, doc.Services...)
		default:
			var spec proto.Message
			switch config.Kind(head.Kind) {
			case config.KindVirtualService:
				spec = &v1alpha3.VirtualService{}
			case config.KindDestinationRule:
				spec = &v1alpha3.DestinationRule{}
			case config.KindGateway:
				spec = &v1alpha3.Gateway{}
			default:
				t.Fatalf("%s: document %d: unknown kind %q", path, i, head.Kind)
			}
			if err := protojson.Unmarshal(head.Spec, spec); err != nil {
				t.Fatalf("%s: %s %s: %v", path, head.Kind, head.Metadata.Name, err)
			}
			if head.Metadata.Namespace == "" {
				head.Metadata.Namespace = "default"
			}
			resources = append(resources, &config.Resource{
				APIVersion: head.APIVersion, Kind: config.Kind(head.Kind), Meta: head.Metadata, Spec: spec,
			})
		}
	}
	if !haveProxy {
		t.Fatalf("%s: no TestProxy document", path)
	}
	snap := snapshot.New(1, 1, resources, services)
	snap.Mesh = mesh
	return snap, proxy
}

// strictJSON decodes js into v, rejecting unknown fields so typos in test
// inputs fail loudly.
func strictJSON(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// TestGolden compares ForProxy's output for each testdata case with its
// golden files; -update rewrites them.
func TestGolden(t *testing.T) {
	for _, tc := range loadCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			res := ForProxy(tc.snap, tc.proxy)
			files := map[string][]proto.Message{
				"listeners.json": messages(res.Listeners),
				"routes.json":    messages(res.Routes),
				"clusters.json":  messages(res.Clusters),
				"endpoints.json": messages(res.Endpoints),
			}
			for file, msgs := range files {
				got := render(t, msgs)
				path := filepath.Join("testdata", tc.name, file)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/translate -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the golden file (rerun with -update and review the diff):\n%s", path, lineDiff(string(want), string(got)))
				}
			}
		})
	}
}

// TestDeterministic checks that translating the same input twice gives the
// same resources, byte for byte, whatever the map iteration order.
func TestDeterministic(t *testing.T) {
	for _, tc := range loadCases(t) {
		first := ForProxy(tc.snap, tc.proxy)
		for range 3 {
			again := ForProxy(tc.snap, tc.proxy)
			for _, pair := range [][2][]proto.Message{
				{messages(first.Listeners), messages(again.Listeners)},
				{messages(first.Routes), messages(again.Routes)},
				{messages(first.Clusters), messages(again.Clusters)},
				{messages(first.Endpoints), messages(again.Endpoints)},
			} {
				if a, b := render(t, pair[0]), render(t, pair[1]); !bytes.Equal(a, b) {
					t.Fatalf("%s: output changed between runs:\n%s", tc.name, lineDiff(string(a), string(b)))
				}
			}
		}
	}
}

// TestConsistentAndValid checks every case's output the way go-control-plane
// and Envoy would: the snapshot is consistent (every EDS cluster has its
// load assignment, every RDS name its route configuration) and every
// resource, including the connection managers packed in listeners, passes
// its proto validation rules.
func TestConsistentAndValid(t *testing.T) {
	for _, tc := range loadCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			res := ForProxy(tc.snap, tc.proxy)
			snap, err := cache.NewSnapshot("1", map[resource.Type][]types.Resource{
				resource.ListenerType: resources(res.Listeners),
				resource.RouteType:    resources(res.Routes),
				resource.ClusterType:  resources(res.Clusters),
				resource.EndpointType: resources(res.Endpoints),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				t.Errorf("snapshot is not consistent: %v", err)
			}
			type validator interface {
				proto.Message
				ValidateAll() error
			}
			var all []validator
			typed := func(l *listenerv3.Listener, a *anypb.Any) {
				m, err := a.UnmarshalNew()
				if err != nil {
					t.Fatalf("listener %s: %v", l.Name, err)
				}
				v, ok := m.(validator)
				if !ok {
					t.Fatalf("listener %s: %T has no validator", l.Name, m)
				}
				all = append(all, v)
			}
			for _, l := range res.Listeners {
				all = append(all, l)
				chains := l.GetFilterChains()
				if d := l.GetDefaultFilterChain(); d != nil {
					chains = append(chains, d)
				}
				for _, fc := range chains {
					for _, f := range fc.GetFilters() {
						typed(l, f.GetTypedConfig())
					}
				}
				for _, lf := range l.GetListenerFilters() {
					typed(l, lf.GetTypedConfig())
				}
			}
			for _, r := range res.Routes {
				all = append(all, r)
				for _, vh := range r.GetVirtualHosts() {
					for _, rt := range vh.GetRoutes() {
						for name, a := range rt.GetTypedPerFilterConfig() {
							m, err := a.UnmarshalNew()
							if err != nil {
								t.Fatalf("route %s/%s/%s: %s: %v", r.Name, vh.Name, rt.Name, name, err)
							}
							v, ok := m.(validator)
							if !ok {
								t.Fatalf("route %s/%s/%s: %s: %T has no validator", r.Name, vh.Name, rt.Name, name, m)
							}
							all = append(all, v)
						}
					}
				}
			}
			for _, c := range res.Clusters {
				all = append(all, c)
			}
			for _, e := range res.Endpoints {
				all = append(all, e)
			}
			for _, v := range all {
				if err := v.ValidateAll(); err != nil {
					t.Errorf("%T is invalid: %v", v, err)
				}
			}
		})
	}
}

func messages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func resources[M types.Resource](in []M) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// render prints messages as a stable, indented JSON array. protojson's
// whitespace is deliberately unstable, so it is normalized with json.Indent.
func render(t *testing.T, msgs []proto.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("[")
	for i, m := range msgs {
		if i > 0 {
			buf.WriteString(",")
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	buf.WriteString("]")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}

// lineDiff shows the first differing lines of two texts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return "(texts are equal)"
}
