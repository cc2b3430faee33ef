package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const invalidConfig = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ok
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: typo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      wieght: 100
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: weights
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 60
    - destination: {host: reviews, subset: v2}
      weight: 30
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: regex
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {regex: "/reviews/([0-9"}
    route:
    - destination: {host: reviews}
`

// TestInvalidConfigChangesNothing applies a file with one good and three bad
// documents: nothing is stored, and every error says where it is.
func TestInvalidConfigChangesNothing(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
	before := m.mustWeft("get", "virtualservices", "-o", "yaml")

	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte(invalidConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := m.weft("apply", "-f", file)
	if code == 0 {
		t.Fatalf("apply of an invalid file succeeded:\n%s", out)
	}
	for _, want := range []string{
		"bad.yaml: document 2 (VirtualService default/typo)", `unknown field "wieght"`,
		"bad.yaml: document 3 (VirtualService default/weights)", "spec.http[0].route", "100",
		"bad.yaml: document 4 (VirtualService default/regex)", "spec.http[0].match[0].uri.regex",
		"nothing was applied",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if after := m.mustWeft("get", "virtualservices", "-o", "yaml"); after != before {
		t.Errorf("the stored config changed after a rejected apply:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// Traffic still follows the last good config.
	if got := m.user().versions(10); got["v1"] != 10 {
		t.Errorf("versions after a rejected apply = %v, want all v1", got)
	}
}

// TestAnalyzeWarnsAboutMissingSubset applies a route to a subset that no
// DestinationRule defines: stored, with istioctl analyze's warning.
func TestAnalyzeWarnsAboutMissingSubset(t *testing.T) {
	m := startMesh(t)
	file := filepath.Join(t.TempDir(), "vs.yaml")
	os.WriteFile(file, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
`), 0o644)
	out := m.mustWeft("apply", "-f", file)
	if !strings.Contains(out, "IST0101") || !strings.Contains(out, `"v9"`) {
		t.Errorf("apply did not warn about the undefined subset v9:\n%s", out)
	}
	if !strings.Contains(out, "virtualservice/reviews created") {
		t.Errorf("apply did not store the resource:\n%s", out)
	}
}

// TestNackShowsInProxyStatus applies a route whose regex the control plane
// accepts but the proxies cannot compile (it is beyond the RE2 program size
// that Envoy and weft-proxy allow). apply --wait names the proxies and their
// error, proxy-status shows it, and the old routes keep serving.
func TestNackShowsInProxyStatus(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
	file := filepath.Join(t.TempDir(), "huge-regex.yaml")
	os.WriteFile(file, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        regex: "/reviews/[0-9]{1,100}"
    route:
    - destination: {host: reviews, subset: v3}
  - route:
    - destination: {host: reviews, subset: v1}
`), 0o644)
	out, code := m.weft("apply", "--wait", "--timeout", "20s", "-f", file)
	if code == 0 {
		t.Fatalf("apply --wait succeeded though the proxies reject the config:\n%s", out)
	}
	if !strings.Contains(out, "rejected") || !strings.Contains(out, "program size") {
		t.Errorf("apply --wait does not name the rejection:\n%s", out)
	}
	status := m.mustWeft("proxy-status")
	if !strings.Contains(status, "STALE") || !strings.Contains(status, "NACK") || !strings.Contains(status, "program size") {
		t.Errorf("proxy-status does not show the NACK:\n%s", status)
	}
	if got := m.user().versions(10); got["v1"] != 10 {
		t.Errorf("versions after a NACKed change = %v, want the old all-v1 routes", got)
	}
}

// TestProxyConfigShowsWhatWasSent reads a sidecar's routes, clusters and
// endpoints back from the control plane after a weighted split.
func TestProxyConfigShowsWhatWasSent(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-reviews-90-10.yaml")
	routes := m.mustWeft("proxy-config", "routes", "productpage")
	if !regexp.MustCompile(`outbound\|9080\|v1\|reviews\.default\.svc\.cluster\.local 90%, outbound\|9080\|v2\|reviews\.default\.svc\.cluster\.local 10%\s+reviews\.default\n`).MatchString(routes) {
		t.Errorf("proxy-config routes does not show the 90/10 split from VirtualService reviews.default:\n%s", routes)
	}
	if !regexp.MustCompile(`outbound\|9080\|\|ratings\.default\.svc\.cluster\.local\s+-\n`).MatchString(routes) {
		t.Errorf("proxy-config routes should show ratings' default route with no VirtualService:\n%s", routes)
	}
	clusters := m.mustWeft("proxy-config", "clusters", "productpage")
	if !regexp.MustCompile(`reviews\.default\.svc\.cluster\.local\s+9080\s+v3\s+outbound\s+EDS\s+reviews\.default\n`).MatchString(clusters) {
		t.Errorf("proxy-config clusters lacks reviews' v3 subset cluster from DestinationRule reviews.default:\n%s", clusters)
	}
	if eps := m.mustWeft("pc", "endpoints", "productpage"); strings.Count(eps, "outbound|9080||reviews.default.svc.cluster.local") != 3 {
		t.Errorf("proxy-config endpoints should list reviews' three endpoints:\n%s", eps)
	}
	out, code := m.weft("proxy-config", "routes", "nosuch")
	if code == 0 || !strings.Contains(out, "productpage-") {
		t.Errorf("an unknown proxy: exit %d, %q; want an error that lists the proxies", code, out)
	}
}

// TestAnalyzeFindsProblems runs `weft analyze` against a live mesh: a clean
// mesh has no findings; a file with a typo'd host is reported without being
// applied.
func TestAnalyzeFindsProblems(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
	// Istio's sample DestinationRule names subsets nothing runs (ratings
	// v2-mysql, ...): analyze mentions them, as information only.
	if out := m.mustWeft("analyze"); strings.Contains(out, "Warning") || strings.Contains(out, "Error") || !strings.Contains(out, `Info [WEFT0002] (DestinationRule default/ratings)`) {
		t.Errorf("weft analyze on the sample config:\n%s\nwant only Info findings about subsets nothing runs", out)
	}
	f := filepath.Join(t.TempDir(), "typo.yaml")
	os.WriteFile(f, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviewz}}]
`), 0o644)
	out := m.mustWeft("analyze", "-f", f)
	if !strings.Contains(out, `[IST0101] (VirtualService default/reviews) Referenced host not found: "reviewz"`) {
		t.Errorf("weft analyze -f typo.yaml:\n%s\nwant IST0101 for reviewz", out)
	}
	if got := m.mustWeft("get", "virtualservice", "reviews", "-o", "yaml"); strings.Contains(got, "reviewz") {
		t.Errorf("analyze stored the file it only had to check:\n%s", got)
	}
}
