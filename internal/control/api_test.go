package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/store"
	"github.com/weftmesh/weft/internal/xdsserver"
)

func newTestAPI(t *testing.T) *controlapi.Client {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(newAPI(apiOptions{log: discard(), store: st, xds: xdsserver.New(xdsserver.Options{})}))
	t.Cleanup(srv.Close)
	c := controlapi.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	return c
}

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`

func TestAPIApplyGetDelete(t *testing.T) {
	c := newTestAPI(t)
	ctx := context.Background()
	files := []controlapi.File{{Name: "vs.yaml", Content: reviewsVS}}

	resp, err := c.Apply(ctx, controlapi.ApplyRequest{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Action != "created" || resp.Revision == 0 {
		t.Errorf("first apply = %+v, want created at a new revision", resp)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `subset "v1"`) {
		t.Errorf("warnings = %q, want one about the undefined subset v1", resp.Warnings)
	}
	again, err := c.Apply(ctx, controlapi.ApplyRequest{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	if again.Results[0].Action != "unchanged" || again.Revision != resp.Revision {
		t.Errorf("second apply = %+v, want unchanged at revision %d", again, resp.Revision)
	}

	items, err := c.Get(ctx, "vs", "default", "")
	if err != nil || len(items) != 1 {
		t.Fatalf("get vs = %s, %v", items, err)
	}
	var got struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
	}
	if err := json.Unmarshal(items[0], &got); err != nil || got.Kind != "VirtualService" || got.Metadata.Name != "reviews" || got.Metadata.Namespace != "default" {
		t.Errorf("get vs = %s (%v)", items[0], err)
	}
	if _, err := c.Get(ctx, "pods", "", ""); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("get pods: err = %v, want unknown kind", err)
	}
	if _, err := c.Get(ctx, "vs", "default", "ratings"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("get missing: err = %v, want not found", err)
	}

	if _, err := c.Delete(ctx, controlapi.DeleteRequest{Kind: "virtualservice", Name: "nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("delete missing: err = %v, want one naming it", err)
	}
	del, err := c.Delete(ctx, controlapi.DeleteRequest{Files: files})
	if err != nil || len(del.Results) != 1 || del.Results[0].Action != "deleted" {
		t.Fatalf("delete = %+v, %v", del, err)
	}
}

func TestAPIRejectsInvalidConfig(t *testing.T) {
	c := newTestAPI(t)
	ctx := context.Background()
	bad := reviewsVS + "---\n" + strings.Replace(reviewsVS, "subset: v1}", "subset: v1}\n      wieght: 100", 1)
	_, err := c.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "bad.yaml", Content: bad}}})
	var inv *controlapi.InvalidError
	if !errors.As(err, &inv) || len(inv.Errors) != 1 {
		t.Fatalf("apply invalid: err = %v, want one InvalidError", err)
	}
	e := inv.Errors[0]
	if e.File != "bad.yaml" || e.Index != 1 || e.Name != "reviews" || !strings.Contains(e.Text, `unknown field "wieght"`) {
		t.Errorf("error = %+v", e)
	}
	if items, _ := c.Get(ctx, "vs", "", ""); len(items) != 0 {
		t.Errorf("an invalid apply stored %d resources; want none", len(items))
	}
	if _, err := c.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "empty.yaml", Content: "# nothing\n"}}}); err == nil {
		t.Error("applying a file with no resources succeeded")
	}
}

func TestAPIPprofOnlyWhenEnabled(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, tc := range []struct {
		pprof bool
		want  int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}} {
		srv := httptest.NewServer(newAPI(apiOptions{log: discard(), store: st, xds: xdsserver.New(xdsserver.Options{}), pprof: tc.pprof}))
		resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("pprof=%v: GET /debug/pprof/heap = %d, want %d", tc.pprof, resp.StatusCode, tc.want)
		}
	}
}

// TestAPIWorkloads lists the registry's proxies, sidecars and gateways, as
// weft analyze reads them.
func TestAPIWorkloads(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(registry.Options{Logger: discard()})
	srv := httptest.NewServer(newAPI(apiOptions{log: discard(), store: st, xds: xdsserver.New(xdsserver.Options{}), reg: reg}))
	t.Cleanup(srv.Close)
	c := controlapi.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	ctx := context.Background()

	got, err := c.Workloads(ctx)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty registry: workloads = %#v, %v; want an empty list", got, err)
	}

	reviews := nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "default", Service: "reviews",
		WorkloadName: "reviews-v2", IP: "10.0.0.2", Labels: map[string]string{"app": "reviews", "version": "v2"}}
	gw := nodemeta.Metadata{Type: nodemeta.TypeRouter, Namespace: "istio-system", WorkloadName: "ingressgateway",
		IP: "10.0.0.9", Labels: map[string]string{"istio": "ingressgateway"}}
	reg.Connect(reviews.ID(), reviews)
	reg.Connect(gw.ID(), gw)

	got, err = c.Workloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b controlapi.Workload) int { return strings.Compare(a.Name, b.Name) })
	want := []controlapi.Workload{
		{Type: "router", Namespace: "istio-system", Name: "ingressgateway", Labels: map[string]string{"istio": "ingressgateway"}},
		{Type: "sidecar", Namespace: "default", Name: "reviews-v2", Service: "reviews", Labels: map[string]string{"app": "reviews", "version": "v2"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("workloads = %+v\nwant %+v", got, want)
	}
}

func TestAPISyncWait(t *testing.T) {
	c := newTestAPI(t)
	// No proxy connected: done at once, waiting or not.
	rep, err := c.SyncWait(context.Background(), 1, 10*time.Second)
	if err != nil || !rep.Done || rep.Revision != 1 {
		t.Errorf("SyncWait with no proxies = %+v, %v; want done", rep, err)
	}
	for _, q := range []string{"revision=1&wait=banana", "revision=1&wait=2m", "revision=1&wait=-1s"} {
		resp, err := http.Get(c.Base + "/api/v1/sync?" + q)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "wait must be a duration from 0s to 1m0s") {
			t.Errorf("GET /api/v1/sync?%s = %d %s, want 400 naming wait", q, resp.StatusCode, body)
		}
	}
}
