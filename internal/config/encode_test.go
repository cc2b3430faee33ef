package config

import (
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

func sampleResource() *Resource {
	return &Resource{
		APIVersion: "networking.istio.io/v1beta1",
		Kind:       KindVirtualService,
		Meta: Meta{
			Namespace:         "prod",
			Name:              "reviews",
			Labels:            map[string]string{"app": "reviews"},
			Annotations:       map[string]string{"owner": "team-a"},
			ResourceVersion:   42,
			Generation:        3,
			CreationTimestamp: time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC),
		},
		Spec: &networking.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{
					Uri:           &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api"}},
					IgnoreUriCase: true,
				}},
				Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: "reviews", Subset: "v1"}, Weight: 80},
					{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}, Weight: 20},
				},
			}},
		},
	}
}

func TestMarshalJSON(t *testing.T) {
	got, err := sampleResource().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"networking.istio.io/v1beta1","kind":"VirtualService",` +
		`"metadata":{"name":"reviews","namespace":"prod","labels":{"app":"reviews"},"annotations":{"owner":"team-a"},` +
		`"resourceVersion":"42","generation":3,"creationTimestamp":"2025-03-01T12:30:00Z"},` +
		`"spec":{"hosts":["reviews"],"http":[{"match":[{"uri":{"prefix":"/api"},"ignoreUriCase":true}],` +
		`"route":[{"destination":{"host":"reviews","subset":"v1"},"weight":80},{"destination":{"host":"reviews","subset":"v2"},"weight":20}]}]}}`
	if string(got) != want {
		t.Errorf("MarshalJSON:\n got %s\nwant %s", got, want)
	}
}

func TestUnmarshalResourceRoundTrip(t *testing.T) {
	in := sampleResource()
	data, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	out, err := UnmarshalResource(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != in.APIVersion || out.Key() != in.Key() ||
		out.ResourceVersion != 42 || out.Generation != 3 || !out.CreationTimestamp.Equal(in.CreationTimestamp) ||
		!maps.Equal(out.Labels, in.Labels) || !maps.Equal(out.Annotations, in.Annotations) {
		t.Errorf("metadata changed in round trip: %+v", out.Meta)
	}
	if !proto.Equal(out.Spec, in.Spec) {
		t.Errorf("spec changed in round trip: %v", out.Spec)
	}
	if _, err := UnmarshalResource([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"Nope","metadata":{"name":"x"}}`)); err == nil {
		t.Error("UnmarshalResource accepted an unknown kind")
	}
}

func TestToYAML(t *testing.T) {
	got, err := ToYAML(sampleResource())
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  annotations:
    owner: team-a
  creationTimestamp: "2025-03-01T12:30:00Z"
  generation: 3
  labels:
    app: reviews
  name: reviews
  namespace: prod
  resourceVersion: "42"
spec:
  hosts:
  - reviews
  http:
  - match:
    - ignoreUriCase: true
      uri:
        prefix: /api
    route:
    - destination:
        host: reviews
        subset: v1
      weight: 80
    - destination:
        host: reviews
        subset: v2
      weight: 20
`
	if string(got) != want {
		t.Errorf("ToYAML:\n%s\nwant:\n%s", got, want)
	}
	// What `weft get -o yaml` prints can be applied again.
	rs, err := Decode("get.yaml", got)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(rs[0].Spec, sampleResource().Spec) || rs[0].Key() != sampleResource().Key() {
		t.Errorf("decoding ToYAML output gave %v", rs[0])
	}
}
