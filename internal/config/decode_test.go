package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// errorList extracts the ErrorList from a Decode error.
func errorList(t *testing.T, err error) ErrorList {
	t.Helper()
	if err == nil {
		return nil
	}
	var l ErrorList
	if !errors.As(err, &l) {
		t.Fatalf("error %v (%T) is not an ErrorList", err, err)
	}
	return l
}

// findError returns the error at path, or nil.
func findError(l ErrorList, path string) *Error {
	for _, e := range l {
		if e.Path == path {
			return e
		}
	}
	return nil
}

const reviewsVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`

func TestDecodeMultiDocument(t *testing.T) {
	in := `# Bookinfo routing.
---
` + reviewsVS + `---
# only a comment
---

---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
  uid: 0b5c1c2e-1111-2222-3333-444455556666
  resourceVersion: "12345"
  creationTimestamp: "2024-01-01T00:00:00Z"
  generation: 7
  labels: {app: reviews}
  annotations: {note: "kept"}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
status: {}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: httpbin-ext}
spec:
  hosts: [httpbin.org]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec:
  address: 10.0.0.5
  ports: {http: 9080}
  labels: {app: details}
`
	rs, err := Decode("bookinfo.yaml", []byte(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := []Key{
		{KindVirtualService, "default", "reviews"},
		{KindDestinationRule, "prod", "reviews"},
		{KindServiceEntry, "default", "httpbin-ext"},
		{KindGateway, "default", "bookinfo-gateway"},
		{KindWorkloadEntry, "default", "vm-1"},
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d resources, want %d", len(rs), len(want))
	}
	for i, k := range want {
		if rs[i].Key() != k {
			t.Errorf("resource %d: got %s, want %s", i, rs[i].Key(), k)
		}
	}
	if got := rs[1].APIVersion; got != "networking.istio.io/v1beta1" {
		t.Errorf("APIVersion = %q, want it as written", got)
	}
	dr := rs[1]
	if dr.Labels["app"] != "reviews" || dr.Annotations["note"] != "kept" {
		t.Errorf("labels/annotations not decoded: %v %v", dr.Labels, dr.Annotations)
	}
	if dr.ResourceVersion != 0 || dr.Generation != 0 || !dr.CreationTimestamp.IsZero() {
		t.Errorf("server-set metadata from the file must be ignored, got rv=%d gen=%d ts=%v", dr.ResourceVersion, dr.Generation, dr.CreationTimestamp)
	}
	spec := dr.Spec.(*networking.DestinationRule)
	if len(spec.Subsets) != 2 || spec.Subsets[0].Labels["version"] != "v1" {
		t.Errorf("subsets not decoded: %v", spec.Subsets)
	}
	if we := rs[4].Spec.(*networking.WorkloadEntry); we.Ports["http"] != 9080 {
		t.Errorf("WorkloadEntry ports = %v", we.Ports)
	}
}

func TestDecodeErrorNamesFileDocumentAndResource(t *testing.T) {
	in := reviewsVS + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 40
`
	rs, err := Decode("reviews.yaml", []byte(in))
	want := "reviews.yaml: document 2 (VirtualService default/reviews): spec.http[0].route: weights sum to 90, want 100"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n got %v\nwant %s", err, want)
	}
	l := errorList(t, err)
	if len(l) != 1 || l[0].Index != 1 || l[0].File != "reviews.yaml" || l[0].Kind != KindVirtualService {
		t.Errorf("error fields = %+v", l[0])
	}
	if len(rs) != 1 || rs[0].Name != "reviews" {
		t.Errorf("the valid first document should still be returned, got %d", len(rs))
	}
}

func TestDecodeReportsAllErrors(t *testing.T) {
	in := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [""]
  http:
  - route:
    - destination: {host: ""}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec:
  subsets: [{name: v1}, {name: v1}]
`
	_, err := Decode("x.yaml", []byte(in))
	l := errorList(t, err)
	want := []struct {
		index int
		path  string
	}{
		{0, "spec.hosts[0]"},
		{0, "spec.http[0].route[0].destination.host"},
		{1, "spec.host"},
		{1, "spec.subsets[1].name"},
	}
	if len(l) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(l), len(want), err)
	}
	for i, w := range want {
		if l[i].Index != w.index || l[i].Path != w.path {
			t.Errorf("error %d = document %d %s, want document %d %s", i, l[i].Index, l[i].Path, w.index, w.path)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantPath string
		wantMsg  string // substring of the message
	}{
		{
			name: "unknown spec field named",
			in: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 100
`,
			wantPath: "spec.http[0].route[0].wieght",
			wantMsg:  `unknown field "wieght"`,
		},
		{
			name: "wrong type",
			in: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: lots
`,
			wantPath: "spec.http[0].route[0].weight",
			wantMsg:  `invalid value for int32 field weight: "lots"`,
		},
		{
			name: "hosts not a list",
			in: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: {a: b}
`,
			wantPath: "spec.hosts",
			wantMsg:  "unexpected token",
		},
		{
			name: "bad enum",
			in: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBN}}
`,
			wantPath: "spec.trafficPolicy.loadBalancer.simple",
			wantMsg:  `invalid value for enum field simple: "ROUND_ROBN"`,
		},
		{
			name: "unknown kind",
			in: `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: r}
spec: {}
`,
			wantPath: "kind",
			wantMsg:  `unsupported kind "Sidecar"; supported: VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry`,
		},
		{
			name: "unknown apiVersion",
			in: `apiVersion: networking.istio.io/v2
kind: VirtualService
metadata: {name: r}
spec: {}
`,
			wantPath: "apiVersion",
			wantMsg:  `unsupported apiVersion "networking.istio.io/v2"; supported: networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3`,
		},
		{
			name: "missing apiVersion",
			in: `kind: VirtualService
metadata: {name: r}
spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}
`,
			wantPath: "apiVersion",
			wantMsg:  "required",
		},
		{
			name: "missing kind",
			in: `apiVersion: networking.istio.io/v1
metadata: {name: r}
`,
			wantPath: "kind",
			wantMsg:  "required",
		},
		{
			name: "unknown top-level key",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: r}
sepc: {address: 1.2.3.4}
`,
			wantPath: "sepc",
			wantMsg:  `unknown field "sepc"`,
		},
		{
			name: "missing name",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {namespace: prod}
spec: {address: 1.2.3.4}
`,
			wantPath: "metadata.name",
			wantMsg:  "required",
		},
		{
			name: "missing metadata",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
spec: {address: 1.2.3.4}
`,
			wantPath: "metadata.name",
			wantMsg:  "required",
		},
		{
			name: "name not DNS-1123",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: My_VM}
spec: {address: 1.2.3.4}
`,
			wantPath: "metadata.name",
			wantMsg:  `invalid name "My_VM"`,
		},
		{
			name: "bad namespace",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: a.b}
spec: {address: 1.2.3.4}
`,
			wantPath: "metadata.namespace",
			wantMsg:  `invalid namespace "a.b"`,
		},
		{
			name: "label value not a string",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, labels: {version: 2}}
spec: {address: 1.2.3.4}
`,
			wantPath: "metadata.labels.version",
			wantMsg:  `must be a string, got 2`,
		},
		{
			name:     "not a mapping",
			in:       "just a string\n",
			wantPath: "",
			wantMsg:  "document must be a mapping",
		},
		{
			name:     "YAML syntax error reports the file line",
			in:       reviewsVS + "---\napiVersion: networking.istio.io/v1\nkind: [\n",
			wantPath: "",
			wantMsg:  "invalid YAML: line 12:",
		},
		{
			name: "duplicate key",
			in: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
  address: 1.2.3.4
  address: 1.2.3.5
`,
			wantPath: "",
			wantMsg:  `key "address" already set`,
		},
		{
			name: "oneof set twice",
			in: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [a]
  http:
  - match: [{uri: {exact: /a, prefix: /b}}]
    route: [{destination: {host: a}}]
`,
			wantPath: "spec.http[0].match[0].uri.prefix",
			wantMsg:  "already set",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode("t.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Decode accepted it: %v", rs)
			}
			l := errorList(t, err)
			e := findError(l, tt.wantPath)
			if e == nil {
				t.Fatalf("no error at path %q; got:\n%v", tt.wantPath, err)
			}
			if !strings.Contains(e.Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", e.Message, tt.wantMsg)
			}
			if e.File != "t.yaml" {
				t.Errorf("File = %q", e.File)
			}
			for _, r := range rs {
				if r.Name == "r" || r.Name == "vm" {
					t.Errorf("the invalid resource %s was returned", r.Key())
				}
			}
		})
	}
}

func TestDecodeVersionsAndDeprecatedFields(t *testing.T) {
	for _, av := range APIVersions {
		t.Run(av, func(t *testing.T) {
			in := `apiVersion: ` + av + `
kind: VirtualService
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        percent: 10
        fixedDelay: 7s
    timeout: 1.5s
    route:
    - destination: {host: ratings, port: {number: 9080}}
`
			rs, err := Decode("f.yaml", []byte(in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			vs := rs[0].Spec.(*networking.VirtualService)
			d := vs.Http[0].Fault.Delay
			if d.Percent != 10 || d.GetFixedDelay().AsDuration() != 7*time.Second {
				t.Errorf("delay = %v", d)
			}
			if vs.Http[0].Timeout.AsDuration() != 1500*time.Millisecond {
				t.Errorf("timeout = %v", vs.Http[0].Timeout)
			}
			if rs[0].APIVersion != av || rs[0].Namespace != "prod" {
				t.Errorf("got %s %s", rs[0].APIVersion, rs[0].Key())
			}
		})
	}
}

func TestDecodeSnakeCaseFieldNames(t *testing.T) {
	// protojson accepts the proto names too; Istio's YAML uses camelCase
	// but some users write the proto names.
	in := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [a]
  http:
  - match: [{uri: {prefix: /}, ignore_uri_case: true}]
    route: [{destination: {host: a}}]
`
	rs, err := Decode("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].Spec.(*networking.VirtualService).Http[0].Match[0].IgnoreUriCase {
		t.Error("ignore_uri_case not decoded")
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing\n", "---\n---\n", "---\n# a\n---\n\n"} {
		rs, err := Decode("e.yaml", []byte(in))
		if err != nil || len(rs) != 0 {
			t.Errorf("Decode(%q) = %v, %v; want nothing", in, rs, err)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Index: 0, Kind: KindGateway, Namespace: "ns", Name: "gw", Path: "spec.servers", Message: "m"}, "a.yaml: document 1 (Gateway ns/gw): spec.servers: m"},
		{Error{File: "a.yaml", Index: 2, Message: "invalid YAML: x"}, "a.yaml: document 3: invalid YAML: x"},
		{Error{Kind: KindGateway, Namespace: "ns", Name: "gw", Path: "spec", Message: "m"}, "Gateway ns/gw: spec: m"},
		{Error{File: "a.yaml", Kind: KindGateway, Path: "metadata.name", Message: "required"}, "a.yaml: document 1 (Gateway): metadata.name: required"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

func TestDecodeUnknownFieldDoesNotHideValidationErrors(t *testing.T) {
	// "hostz" is a typo for "host": the user should hear about both the
	// unknown field and the host that is therefore missing.
	in := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  hostz: reviews
  subsets: [{name: v1}, {name: v1}]
`
	_, err := Decode("t.yaml", []byte(in))
	l := errorList(t, err)
	for _, path := range []string{"spec.hostz", "spec.host", "spec.subsets[1].name"} {
		if findError(l, path) == nil {
			t.Errorf("no error at %s; got:\n%v", path, err)
		}
	}
}
