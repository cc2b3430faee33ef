package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/controlapi"
)

// fakeControl serves the two read routes weft analyze uses: the stored
// resources (decoded from YAML) and the registry's workloads.
func fakeControl(t *testing.T, stored string, workloads []controlapi.Workload) string {
	t.Helper()
	var items []*config.Resource
	if stored != "" {
		rs, err := config.Decode("stored.yaml", []byte(stored))
		if err != nil {
			t.Fatal(err)
		}
		items = rs
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/resources", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(append([]*config.Resource{}, items...))
	})
	mux.HandleFunc("GET /api/v1/workloads", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(append([]controlapi.Workload{}, workloads...))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestAnalyzeCommand(t *testing.T) {
	const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
`
	typo := strings.Replace(reviewsVS, "{host: reviews}", "{host: reviewz}", 1)
	const gateway = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: web}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`
	workloads := []controlapi.Workload{
		{Type: "sidecar", Namespace: "default", Name: "reviews-v1", Service: "reviews", Labels: map[string]string{"app": "reviews", "version": "v1"}},
	}
	tests := []struct {
		name     string
		stored   string
		file     string // written to a file and passed with -f
		args     []string
		wantOut  string
		wantCode int
	}{
		{"nothing wrong", reviewsVS, "", nil,
			"✔ No validation issues found when analyzing namespace: default.\n", 0},
		{"stored typo", typo, "", nil,
			"Warning [IST0101] (VirtualService default/reviews) Referenced host not found: \"reviewz\"\n", 0},
		{"a file overrides the stored resource", typo, reviewsVS, nil,
			"✔ No validation issues found when analyzing namespace: default.\n", 0},
		{"a file brings the typo", reviewsVS, typo, nil,
			"Warning [IST0101] (VirtualService default/reviews) Referenced host not found: \"reviewz\"\n", 0},
		{"other namespaces are not reported", gateway, "", nil,
			"✔ No validation issues found when analyzing namespace: default.\n", 0},
		{"-n", gateway, "", []string{"-n", "web"},
			"Warning [IST0101] (Gateway web/bookinfo-gateway) Referenced selector not found: \"istio=ingressgateway\"\n", 0},
		{"-A", gateway + "---\n" + typo, "", []string{"-A"},
			"Warning [IST0101] (Gateway web/bookinfo-gateway) Referenced selector not found: \"istio=ingressgateway\"\n" +
				"Warning [IST0101] (VirtualService default/reviews) Referenced host not found: \"reviewz\"\n", 0},
		{"-A clean", reviewsVS, "", []string{"-A"},
			"✔ No validation issues found when analyzing all namespaces.\n", 0},
		{"invalid file", reviewsVS, strings.Replace(reviewsVS, "route:", "rout:", 1), nil,
			"Error [IST0106] (VirtualService default/reviews) Schema validation error: FILE document 1: spec.http[0].rout: unknown field \"rout\"\n" +
				"Error [IST0106] (VirtualService default/reviews) Schema validation error: FILE document 1: spec.http[0]: needs a route, redirect or directResponse\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"analyze", "--server", fakeControl(t, tt.stored, workloads)}, tt.args...)
			file := filepath.Join(t.TempDir(), "vs.yaml")
			if tt.file != "" {
				if err := os.WriteFile(file, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-f", file)
			}
			var out, errb bytes.Buffer
			code := run(args, &out, &errb)
			want := strings.ReplaceAll(tt.wantOut, "FILE", file)
			if code != tt.wantCode || out.String() != want {
				t.Errorf("weft %s: exit %d, stdout:\n%s\nstderr: %s\nwant exit %d, stdout:\n%s", strings.Join(args, " "), code, out.String(), errb.String(), tt.wantCode, want)
			}
		})
	}
}
