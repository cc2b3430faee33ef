package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBookinfoRequestRouting follows Istio's request-routing task against a
// local mesh in explicit mode (apps use their sidecar through HTTP_PROXY):
// no rules, all to v1, jason to v2, weighted splits, and back.
func TestBookinfoRequestRouting(t *testing.T) {
	requestRouting(t, startMesh(t))
}

func requestRouting(t *testing.T, m *mesh) {
	anon := m.user()

	t.Run("no rules reach every version", func(t *testing.T) {
		got := anon.versions(60)
		for _, v := range []string{"v1", "v2", "v3"} {
			if got[v] == 0 {
				t.Errorf("reviews %s never answered in 60 requests: %v", v, got)
			}
		}
	})

	t.Run("all traffic to v1", func(t *testing.T) {
		m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
		if got := anon.versions(40); got["v1"] != 40 {
			t.Fatalf("versions = %v, want all 40 from v1", got)
		}
	})

	t.Run("jason goes to v2, everyone else to v1", func(t *testing.T) {
		m.applyWait("virtual-service-reviews-test-v2.yaml")
		jason := m.user()
		jason.login("jason")
		for i := 0; i < 20; i++ {
			r, err := jason.getReviews()
			if err != nil {
				t.Fatal(err)
			}
			if r.version() != "v2" {
				t.Fatalf("jason's request %d went to %s, want v2", i, r.version())
			}
			if len(r.Reviews) == 0 || r.Reviews[0].Rating == nil || r.Reviews[0].Rating.Color != "black" {
				t.Fatalf("jason's reviews lack v2's black stars: %+v", r)
			}
		}
		other := m.user()
		other.login("alice")
		if got := other.versions(20); got["v1"] != 20 {
			t.Errorf("alice's versions = %v, want all v1", got)
		}
		if got := anon.versions(20); got["v1"] != 20 {
			t.Errorf("anonymous versions = %v, want all v1", got)
		}
	})

	for _, tc := range []struct {
		file   string
		shares map[string]float64
	}{
		{"virtual-service-reviews-80-20.yaml", map[string]float64{"v1": 80, "v2": 20}},
		{"virtual-service-reviews-50-50.yaml", map[string]float64{"v1": 50, "v3": 50}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m.applyWait(tc.file)
			// With 1000 requests, ±8 points is five standard deviations
			// of a fair 50/50 split (400 made it 3.2, and a correct
			// split failed about once in a thousand runs).
			const n = 1000
			got := anon.versions(n)
			for v, want := range tc.shares {
				share := 100 * float64(got[v]) / n
				if math.Abs(share-want) > 8 {
					t.Errorf("%s got %.1f%% of %d requests, want %.0f%% ±8: %v", v, share, n, want, got)
				}
			}
			for v, c := range got {
				if _, ok := tc.shares[v]; !ok {
					t.Errorf("%s answered %d requests; it has no weight", v, c)
				}
			}
		})
	}

	t.Run("deleting the rules spreads traffic again", func(t *testing.T) {
		// Routes first, then the subsets they use, as Istio's task does.
		m.mustWeft("delete", "--wait", "-f", m.samples+"/virtual-service-all-v1.yaml")
		m.mustWeft("delete", "--wait", "-f", m.samples+"/destination-rule-all.yaml")
		got := waitForAll(t, anon, []string{"v1", "v2", "v3"})
		t.Logf("versions after delete: %v", got)
	})

	t.Run("the rules applied again route again", func(t *testing.T) {
		// The sidecars dropped the subsets' clusters and endpoints with
		// the rules; they must subscribe to them again.
		m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
		if got := anon.versions(40); got["v1"] != 40 {
			t.Fatalf("versions = %v, want all 40 from v1", got)
		}
	})
}

// waitForAll sends requests until every version has answered, in at most 90.
func waitForAll(t *testing.T, u *user, want []string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < 90; i++ {
		r, err := u.getReviews()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got[r.version()]++
		all := true
		for _, v := range want {
			all = all && got[v] > 0
		}
		if all && i >= 30 {
			return got
		}
	}
	t.Fatalf("not every version of %v answered in 90 requests: %v", want, got)
	return got
}

// TestExplicitProxyHosts uses a sidecar the way an app does, as its
// HTTP_PROXY: every name of a service reaches it and follows its routes,
// and an unknown host gets a 404 that names it.
func TestExplicitProxyHosts(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml")
	var outbound int
	for _, p := range readUpState(t, m.dataDir).Procs {
		if strings.HasPrefix(p.Name, "productpage-") {
			outbound = p.OutboundPort
		}
	}
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", outbound))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s through the sidecar: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"reviews:9080", "reviews.default:9080", "reviews.default.svc.cluster.local:9080"} {
		code, body := get("http://" + host + "/reviews/0")
		if code != http.StatusOK || !strings.Contains(body, `"podname":"reviews-v3-`) {
			t.Errorf("%s: %d %.80s; want reviews v3 as the VirtualService says", host, code, body)
		}
	}
	code, body := get("http://nosuch.example:9080/")
	if code != http.StatusNotFound || !strings.Contains(body, "nosuch.example:9080") {
		t.Errorf("unknown host: %d %q; want 404 naming the host", code, body)
	}
}

// TestDelegatedRoutes: a root VirtualService for reviews hands jason's
// requests to a delegate VirtualService in another namespace; changing
// only the delegate changes where they go.
func TestDelegatedRoutes(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml")
	const delegate = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-jason
  namespace: reviews-team
spec:
  http:
  - match:
    - uri:
        prefix: /reviews/
    route:
    - destination:
        host: reviews.default.svc.cluster.local
        subset: %s
`
	m.applyYAML(fmt.Sprintf(delegate, "v2") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    delegate:
      name: reviews-jason
      namespace: reviews-team
  - route:
    - destination:
        host: reviews
        subset: v1
`)
	jason := m.user()
	jason.login("jason")
	if got := jason.versions(20); got["v2"] != 20 {
		t.Fatalf("jason's versions = %v, want all v2 (the delegate's route)", got)
	}
	if got := m.user().versions(20); got["v1"] != 20 {
		t.Fatalf("anonymous versions = %v, want all v1 (the root's own route)", got)
	}
	m.applyYAML(fmt.Sprintf(delegate, "v3"))
	if got := jason.versions(20); got["v3"] != 20 {
		t.Fatalf("after the delegate changed, jason's versions = %v, want all v3", got)
	}
}
