package config

import (
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// Istio's documentation writes durations the Go way; they must decode.
func TestGoStyleDurations(t *testing.T) {
	rs, err := Decode("dr.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 30ms}
    outlierDetection:
      interval: 1s
      baseEjectionTime: 3m
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      outlierDetection: {baseEjectionTime: 1h30m}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 500ms
    retries: {attempts: 3, perTryTimeout: 0.5s}
    route:
    - destination: {host: reviews}
`))
	if err != nil {
		t.Fatal(err)
	}
	dr := rs[0].Spec.(*networking.DestinationRule)
	vs := rs[1].Spec.(*networking.VirtualService)
	for name, tc := range map[string]struct {
		got  time.Duration
		want time.Duration
	}{
		"connectTimeout":          {dr.TrafficPolicy.ConnectionPool.Tcp.ConnectTimeout.AsDuration(), 30 * time.Millisecond},
		"interval":                {dr.TrafficPolicy.OutlierDetection.Interval.AsDuration(), time.Second},
		"baseEjectionTime":        {dr.TrafficPolicy.OutlierDetection.BaseEjectionTime.AsDuration(), 3 * time.Minute},
		"subset baseEjectionTime": {dr.Subsets[0].TrafficPolicy.OutlierDetection.BaseEjectionTime.AsDuration(), 90 * time.Minute},
		"timeout":                 {vs.Http[0].Timeout.AsDuration(), 500 * time.Millisecond},
		"retries.perTryTimeout":   {vs.Http[0].Retries.PerTryTimeout.AsDuration(), 500 * time.Millisecond},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}

	// A duration that is not one still gets a clear error at its path.
	_, err = Decode("bad.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: soon
    route:
    - destination: {host: reviews}
`))
	if err == nil {
		t.Fatal("timeout: soon was accepted")
	}
}
