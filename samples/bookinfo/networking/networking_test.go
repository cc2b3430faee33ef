package networking

import (
	"encoding/json"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

type document struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeFile splits a multi-document YAML file and decodes every spec into
// its Istio type, rejecting unknown fields.
func decodeFile(t *testing.T, name string) ([]document, []proto.Message) {
	t.Helper()
	raw, err := fs.ReadFile(FS, name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	var docs []document
	var specs []proto.Message
	for i, part := range docSeparator.Split(string(raw), -1) {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var d document
		if err := yaml.UnmarshalStrict([]byte(part), &d); err != nil {
			t.Fatalf("%s document %d: %v", name, i, err)
		}
		if d.APIVersion != "networking.istio.io/v1" {
			t.Errorf("%s document %d: apiVersion %q, want networking.istio.io/v1", name, i, d.APIVersion)
		}
		if d.Metadata.Name == "" {
			t.Errorf("%s document %d: no metadata.name", name, i)
		}
		var spec proto.Message
		switch d.Kind {
		case "Gateway":
			spec = &networkingv1.Gateway{}
		case "VirtualService":
			spec = &networkingv1.VirtualService{}
		case "DestinationRule":
			spec = &networkingv1.DestinationRule{}
		default:
			t.Fatalf("%s document %d: unexpected kind %q", name, i, d.Kind)
		}
		if err := protojson.Unmarshal(d.Spec, spec); err != nil {
			t.Fatalf("%s document %d (%s %s): spec: %v", name, i, d.Kind, d.Metadata.Name, err)
		}
		docs = append(docs, d)
		specs = append(specs, spec)
	}
	return docs, specs
}

func TestEveryFileIsIstioNetworkingV1(t *testing.T) {
	names, err := fs.Glob(FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bookinfo-gateway.yaml", "destination-rule-all.yaml", "virtual-service-all-v1.yaml",
		"virtual-service-reviews-test-v2.yaml", "virtual-service-reviews-50-50.yaml",
		"virtual-service-reviews-80-20.yaml", "virtual-service-reviews-90-10.yaml",
		"virtual-service-reviews-v3.yaml", "virtual-service-reviews-jason-v2-v3.yaml",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("missing %s", want)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if docs, _ := decodeFile(t, name); len(docs) == 0 {
				t.Errorf("no documents")
			}
		})
	}
}

// routes lists "host/subset=weight" of every route of a VirtualService's
// HTTP rule, with "jason:" before the rules that match end-user jason.
func routes(vs *networkingv1.VirtualService) []string {
	var out []string
	for _, h := range vs.GetHttp() {
		prefix := ""
		for _, m := range h.GetMatch() {
			if m.GetHeaders()["end-user"].GetExact() == "jason" {
				prefix = "jason:"
			}
		}
		for _, r := range h.GetRoute() {
			s := prefix + r.GetDestination().GetHost() + "/" + r.GetDestination().GetSubset()
			if r.GetWeight() != 0 {
				s += "=" + strconv.Itoa(int(r.GetWeight()))
			}
			out = append(out, s)
		}
	}
	return out
}

func TestReviewsRouting(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"virtual-service-reviews-test-v2.yaml", []string{"jason:reviews/v2", "reviews/v1"}},
		{"virtual-service-reviews-jason-v2-v3.yaml", []string{"jason:reviews/v2", "reviews/v3"}},
		{"virtual-service-reviews-50-50.yaml", []string{"reviews/v1=50", "reviews/v3=50"}},
		{"virtual-service-reviews-80-20.yaml", []string{"reviews/v1=80", "reviews/v2=20"}},
		{"virtual-service-reviews-90-10.yaml", []string{"reviews/v1=90", "reviews/v2=10"}},
		{"virtual-service-reviews-v3.yaml", []string{"reviews/v3"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			docs, specs := decodeFile(t, tt.file)
			if len(docs) != 1 || docs[0].Kind != "VirtualService" || docs[0].Metadata.Name != "reviews" {
				t.Fatalf("want one VirtualService reviews, got %+v", docs)
			}
			vs := specs[0].(*networkingv1.VirtualService)
			if !slices.Equal(vs.GetHosts(), []string{"reviews"}) {
				t.Errorf("hosts = %v, want [reviews]", vs.GetHosts())
			}
			if got := routes(vs); !slices.Equal(got, tt.want) {
				t.Errorf("routes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGatewayRoutesProductpagePaths(t *testing.T) {
	docs, specs := decodeFile(t, "bookinfo-gateway.yaml")
	if len(docs) != 2 {
		t.Fatalf("want a Gateway and a VirtualService, got %d documents", len(docs))
	}
	gw := specs[0].(*networkingv1.Gateway)
	if docs[0].Metadata.Name != "bookinfo-gateway" || gw.GetSelector()["istio"] != "ingressgateway" {
		t.Errorf("gateway %q selector %v", docs[0].Metadata.Name, gw.GetSelector())
	}
	if p := gw.GetServers()[0].GetPort(); p.GetNumber() != 80 || p.GetProtocol() != "HTTP" {
		t.Errorf("gateway port %v, want 80 HTTP", p)
	}
	vs := specs[1].(*networkingv1.VirtualService)
	if !slices.Equal(vs.GetGateways(), []string{"bookinfo-gateway"}) {
		t.Errorf("gateways = %v", vs.GetGateways())
	}
	var uris []string
	for _, m := range vs.GetHttp()[0].GetMatch() {
		if e := m.GetUri().GetExact(); e != "" {
			uris = append(uris, "exact "+e)
		} else {
			uris = append(uris, "prefix "+m.GetUri().GetPrefix())
		}
	}
	want := []string{"exact /productpage", "prefix /static", "exact /login", "exact /logout", "prefix /api/v1/products"}
	if !slices.Equal(uris, want) {
		t.Errorf("uri matches = %v, want %v", uris, want)
	}
	d := vs.GetHttp()[0].GetRoute()[0].GetDestination()
	if d.GetHost() != "productpage" || d.GetPort().GetNumber() != 9080 {
		t.Errorf("destination = %v, want productpage:9080", d)
	}
}

func TestDestinationRuleSubsets(t *testing.T) {
	docs, specs := decodeFile(t, "destination-rule-all.yaml")
	got := map[string][]string{}
	for i, d := range docs {
		dr := specs[i].(*networkingv1.DestinationRule)
		if dr.GetHost() != d.Metadata.Name {
			t.Errorf("DestinationRule %s has host %s", d.Metadata.Name, dr.GetHost())
		}
		for _, s := range dr.GetSubsets() {
			if s.GetLabels()["version"] != s.GetName() {
				t.Errorf("%s subset %s selects version %q", d.Metadata.Name, s.GetName(), s.GetLabels()["version"])
			}
			got[d.Metadata.Name] = append(got[d.Metadata.Name], s.GetName())
		}
	}
	want := map[string][]string{
		"productpage": {"v1"},
		"reviews":     {"v1", "v2", "v3"},
		"ratings":     {"v1", "v2", "v2-mysql", "v2-mysql-vm"},
		"details":     {"v1", "v2"},
	}
	for svc, w := range want {
		if !slices.Equal(got[svc], w) {
			t.Errorf("%s subsets = %v, want %v", svc, got[svc], w)
		}
	}
}
