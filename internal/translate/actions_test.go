package translate

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
)

func fraction(n uint32, d typev3.FractionalPercent_DenominatorType) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: d}
}

const (
	hundred = typev3.FractionalPercent_HUNDRED
	million = typev3.FractionalPercent_MILLION
)

// assertProto fails unless got and want are the same message, printing
// both as JSON.
func assertProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s =\n  %s\nwant\n  %s", what, protojson.Format(got), protojson.Format(want))
	}
}

func TestMillionths(t *testing.T) {
	tests := []struct {
		value float64
		want  uint32
	}{
		{100, 1_000_000},
		{50, 500_000},
		{12.5, 125_000},
		{0.1, 1000},
		{0.29, 2900}, // 0.29*10000 is 2899.9999999999995 in float64
		{0.0001, 1},
		{0, 0},
		{-1, 0},
		{150, 1_000_000},
	}
	for _, tt := range tests {
		got := millionths(&v1alpha3.Percent{Value: tt.value})
		assertProto(t, "millionths", got, fraction(tt.want, million))
	}
}

func TestHundredths(t *testing.T) {
	for in, want := range map[int64]uint32{0: 0, 1: 1, 25: 25, 100: 100, 101: 100, -5: 0} {
		assertProto(t, "hundredths", hundredths(in), fraction(want, hundred))
	}
}

func TestMirrorFraction(t *testing.T) {
	tests := []struct {
		name string
		hr   *v1alpha3.HTTPRoute
		want *typev3.FractionalPercent // nil: no mirroring
	}{
		{"no percentage mirrors everything", &v1alpha3.HTTPRoute{}, fraction(100, hundred)},
		{"mirrorPercentage", &v1alpha3.HTTPRoute{MirrorPercentage: &v1alpha3.Percent{Value: 12.5}}, fraction(125_000, million)},
		{"mirrorPercentage 0 mirrors nothing", &v1alpha3.HTTPRoute{MirrorPercentage: &v1alpha3.Percent{}}, nil},
		{"deprecated mirrorPercent", &v1alpha3.HTTPRoute{MirrorPercent: wrapperspb.UInt32(40)}, fraction(40, hundred)},
		{"deprecated mirrorPercent 0 mirrors nothing", &v1alpha3.HTTPRoute{MirrorPercent: wrapperspb.UInt32(0)}, nil},
		{"mirrorPercentage wins", &v1alpha3.HTTPRoute{
			MirrorPercentage: &v1alpha3.Percent{Value: 1}, MirrorPercent: wrapperspb.UInt32(40),
		}, fraction(10_000, million)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mirrorFraction(tt.hr)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("mirrorFraction = %v, want no mirroring", got)
				}
				return
			}
			assertProto(t, "mirrorFraction", got, &corev3.RuntimeFractionalPercent{DefaultValue: tt.want})
		})
	}
}

func TestPolicyFraction(t *testing.T) {
	assertProto(t, "no percentage", policyFraction(nil), &corev3.RuntimeFractionalPercent{DefaultValue: fraction(100, hundred)})
	assertProto(t, "0.5%", policyFraction(&v1alpha3.Percent{Value: 0.5}), &corev3.RuntimeFractionalPercent{DefaultValue: fraction(5000, million)})
	if got := policyFraction(&v1alpha3.Percent{}); got != nil {
		t.Errorf("policyFraction(0) = %v, want no mirroring", got)
	}
}

func TestRouteFault(t *testing.T) {
	sec := durationpb.New(time.Second)
	delay := func(d *v1alpha3.HTTPFaultInjection_Delay) *v1alpha3.HTTPFaultInjection {
		return &v1alpha3.HTTPFaultInjection{Delay: d}
	}
	abort := func(a *v1alpha3.HTTPFaultInjection_Abort) *v1alpha3.HTTPFaultInjection {
		return &v1alpha3.HTTPFaultInjection{Abort: a}
	}
	fixed := &v1alpha3.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: sec}
	envoyDelay := func(p *typev3.FractionalPercent) *faultv3.HTTPFault {
		return &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: sec}, Percentage: p,
		}}
	}
	tests := []struct {
		name string
		in   *v1alpha3.HTTPFaultInjection
		want *faultv3.HTTPFault // nil: no per-route fault config
	}{
		{"none", nil, nil},
		{"delay with percentage", delay(&v1alpha3.HTTPFaultInjection_Delay{
			HttpDelayType: fixed, Percentage: &v1alpha3.Percent{Value: 0.1},
		}), envoyDelay(fraction(1000, million))},
		{"delay with deprecated percent", delay(&v1alpha3.HTTPFaultInjection_Delay{HttpDelayType: fixed, Percent: 25}), envoyDelay(fraction(25, hundred))},
		{"percentage wins over percent", delay(&v1alpha3.HTTPFaultInjection_Delay{
			HttpDelayType: fixed, Percent: 25, Percentage: &v1alpha3.Percent{Value: 50},
		}), envoyDelay(fraction(500_000, million))},
		{"delay without percentage delays nothing", delay(&v1alpha3.HTTPFaultInjection_Delay{HttpDelayType: fixed}), envoyDelay(fraction(0, hundred))},
		{"exponential delay is left out", delay(&v1alpha3.HTTPFaultInjection_Delay{
			HttpDelayType: &v1alpha3.HTTPFaultInjection_Delay_ExponentialDelay{ExponentialDelay: sec},
			Percentage:    &v1alpha3.Percent{Value: 100},
		}), nil},
		{"zero delay is left out", delay(&v1alpha3.HTTPFaultInjection_Delay{
			HttpDelayType: &v1alpha3.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(0)},
			Percentage:    &v1alpha3.Percent{Value: 100},
		}), nil},
		{"http abort", abort(&v1alpha3.HTTPFaultInjection_Abort{
			ErrorType: &v1alpha3.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503}, Percentage: &v1alpha3.Percent{Value: 10},
		}), &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
			ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: fraction(100_000, million),
		}}},
		{"grpc abort without percentage", abort(&v1alpha3.HTTPFaultInjection_Abort{
			ErrorType: &v1alpha3.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "DEADLINE_EXCEEDED"},
		}), &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 4}}}},
		{"unknown grpc status is left out", abort(&v1alpha3.HTTPFaultInjection_Abort{
			ErrorType: &v1alpha3.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "NOPE"},
		}), nil},
		{"http2 error is left out", abort(&v1alpha3.HTTPFaultInjection_Abort{
			ErrorType: &v1alpha3.HTTPFaultInjection_Abort_Http2Error{Http2Error: "CANCEL"},
		}), nil},
		{"status Envoy rejects is left out", abort(&v1alpha3.HTTPFaultInjection_Abort{
			ErrorType: &v1alpha3.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 700},
		}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := routeFault(tt.in)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("routeFault = %v, want none", got)
				}
				return
			}
			assertProto(t, "routeFault", got, tt.want)
		})
	}
}

func TestRedirectAction(t *testing.T) {
	tests := []struct {
		name string
		in   *v1alpha3.HTTPRedirect
		port uint32
		want *routev3.RedirectAction // nil: the route is left out
	}{
		{"defaults to 301", &v1alpha3.HTTPRedirect{Uri: "/new"}, 9080, &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"},
			ResponseCode:         routev3.RedirectAction_MOVED_PERMANENTLY,
		}},
		{"host and code", &v1alpha3.HTTPRedirect{Authority: "b.example.com", RedirectCode: 307}, 80, &routev3.RedirectAction{
			HostRedirect: "b.example.com", ResponseCode: routev3.RedirectAction_TEMPORARY_REDIRECT,
		}},
		{"prefix rewrite", &v1alpha3.HTTPRedirect{PrefixRewrite: "/v2/", RedirectCode: 302}, 80, &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: "/v2/"},
			ResponseCode:         routev3.RedirectAction_FOUND,
		}},
		{"derive the request port", &v1alpha3.HTTPRedirect{
			RedirectPort: &v1alpha3.HTTPRedirect_DerivePort{DerivePort: v1alpha3.HTTPRedirect_FROM_REQUEST_PORT},
		}, 9080, &routev3.RedirectAction{PortRedirect: 9080}},
		{"request port 80 is http's default", &v1alpha3.HTTPRedirect{
			RedirectPort: &v1alpha3.HTTPRedirect_DerivePort{DerivePort: v1alpha3.HTTPRedirect_FROM_REQUEST_PORT},
		}, 80, &routev3.RedirectAction{}},
		{"protocol default sets no port", &v1alpha3.HTTPRedirect{
			Scheme:       "https",
			RedirectPort: &v1alpha3.HTTPRedirect_DerivePort{DerivePort: v1alpha3.HTTPRedirect_FROM_PROTOCOL_DEFAULT},
		}, 9080, &routev3.RedirectAction{SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}}},
		{"https on 443", &v1alpha3.HTTPRedirect{Scheme: "https", RedirectPort: &v1alpha3.HTTPRedirect_Port{Port: 443}}, 80, &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"},
		}},
		{"443 without scheme is kept", &v1alpha3.HTTPRedirect{RedirectPort: &v1alpha3.HTTPRedirect_Port{Port: 443}}, 80, &routev3.RedirectAction{PortRedirect: 443}},
		{"80 with https is kept", &v1alpha3.HTTPRedirect{Scheme: "https", RedirectPort: &v1alpha3.HTTPRedirect_Port{Port: 80}}, 80, &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}, PortRedirect: 80,
		}},
		{"code Envoy cannot send", &v1alpha3.HTTPRedirect{Uri: "/x", RedirectCode: 304}, 80, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := redirectAction(tt.in, tt.port)
			if tt.want == nil {
				if got != nil {
					t.Fatalf("redirectAction = %v, want none", got)
				}
				return
			}
			assertProto(t, "redirectAction", got, tt.want)
		})
	}
}

func TestHeaderOperations(t *testing.T) {
	set := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	add := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}
	}
	tests := []struct {
		name      string
		in        *v1alpha3.Headers
		want      *routev3.Route
		authority string
	}{
		{"none", nil, &routev3.Route{}, ""},
		{"sets sorted, then adds sorted", &v1alpha3.Headers{
			Request: &v1alpha3.Headers_HeaderOperations{
				Set: map[string]string{"x-b": "2", "x-a": "1"}, Add: map[string]string{"x-d": "4", "x-c": "3"}, Remove: []string{"x-z", "x-y"},
			},
			Response: &v1alpha3.Headers_HeaderOperations{Set: map[string]string{"x-r": "r"}, Add: map[string]string{"x-s": "s"}, Remove: []string{"server"}},
		}, &routev3.Route{
			RequestHeadersToAdd:     []*corev3.HeaderValueOption{set("x-a", "1"), set("x-b", "2"), add("x-c", "3"), add("x-d", "4")},
			RequestHeadersToRemove:  []string{"x-z", "x-y"},
			ResponseHeadersToAdd:    []*corev3.HeaderValueOption{set("x-r", "r"), add("x-s", "s")},
			ResponseHeadersToRemove: []string{"server"},
		}, ""},
		{"host becomes the authority; pseudo-headers are left alone", &v1alpha3.Headers{
			Request: &v1alpha3.Headers_HeaderOperations{
				Set: map[string]string{"Host": "a.example.com", ":path": "/x"}, Add: map[string]string{":authority": "b.example.com"},
				Remove: []string{"host", ":method", "", "x-gone"},
			},
		}, &routev3.Route{RequestHeadersToRemove: []string{"x-gone"}}, "a.example.com"},
		{"add gives the authority when set does not", &v1alpha3.Headers{
			Request: &v1alpha3.Headers_HeaderOperations{Add: map[string]string{":authority": "b.example.com"}},
		}, &routev3.Route{}, "b.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := headerOperations(tt.in)
			got := &routev3.Route{}
			ops.applyToRoute(got)
			assertProto(t, "route headers", got, tt.want)
			if ops.authority != tt.authority {
				t.Errorf("authority = %q, want %q", ops.authority, tt.authority)
			}
		})
	}
}
