package translate

import (
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
)

// faultFilter is the fault injection filter every HTTP connection manager
// runs before the router, as in Istio. Its own configuration is empty: it
// injects nothing until a route's typed_per_filter_config says so.
func faultFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       wellknown.Fault,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})},
	}
}

// routeFault converts an Istio fault injection into the fault filter's
// per-route configuration, or nil when there is nothing Envoy can inject.
//
// As in Istio, a delay without percentage uses the deprecated integer
// percent (0, so no request is delayed, when that is unset too), and an
// abort without percentage carries none, which Envoy reads as 0%. An
// exponential delay, an HTTP/2 error abort, an unknown gRPC status, a
// non-positive delay or an HTTP status Envoy rejects are left out.
func routeFault(f *v1alpha3.HTTPFaultInjection) *faultv3.HTTPFault {
	if f == nil {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil && d.GetFixedDelay().AsDuration() > 0 {
		out.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()},
		}
		if d.GetPercentage() != nil {
			out.Delay.Percentage = millionths(d.GetPercentage())
		} else {
			out.Delay.Percentage = hundredths(int64(d.GetPercent())) //nolint:staticcheck // deprecated, still honoured as in Istio
		}
	}
	if a := f.GetAbort(); a != nil {
		abort := &faultv3.FaultAbort{}
		switch e := a.GetErrorType().(type) {
		case *v1alpha3.HTTPFaultInjection_Abort_HttpStatus:
			if e.HttpStatus >= 200 && e.HttpStatus < 600 {
				abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
			}
		case *v1alpha3.HTTPFaultInjection_Abort_GrpcStatus:
			if code, ok := config.GRPCStatusCode(e.GrpcStatus); ok {
				abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
			}
		}
		if abort.ErrorType != nil {
			if a.GetPercentage() != nil {
				abort.Percentage = millionths(a.GetPercentage())
			}
			out.Abort = abort
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}
