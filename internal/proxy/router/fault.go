package router

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	commonfaultv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/v3"
)

// FaultFilterName is the name of Envoy's fault injection HTTP filter, and
// the key of its per-route configuration in typed_per_filter_config.
const FaultFilterName = "envoy.filters.http.fault"

// Type URLs of the fault filter's configuration and of the per-filter
// configuration wrapper.
const (
	FaultTypeURL        = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	filterConfigTypeURL = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
)

// Million is the denominator of the fractions in this package: a share of
// requests is stored in millionths, so 1_000_000 means every request.
const Million = 1_000_000

// InShare reports whether a request falls in a share of p millionths,
// drawing from rnd (uniformly distributed) only when the share is neither
// none nor all.
func InShare(p uint32, rnd func() uint64) bool {
	switch {
	case p >= Million:
		return true
	case p == 0:
		return false
	}
	return rnd()%Million < uint64(p)
}

// DefaultFaultAbortBody is the body of an abort (Envoy's text) when the
// configuration gives none.
const DefaultFaultAbortBody = "fault filter abort"

// Fault is a compiled HTTPFault: the faults the fault filter injects into a
// request. A Fault with neither Delay nor Abort injects nothing (it is how a
// route disables a filter-level default).
type Fault struct {
	// Delay, when set, delays a share of requests.
	Delay *FaultDelay
	// Abort, when set, answers a share of requests itself (after the delay,
	// if both apply).
	Abort *FaultAbort
	// LimitActive is set when max_active_faults is: then no new fault is
	// injected while MaxActive faults are in progress.
	LimitActive bool
	MaxActive   uint32
}

// FaultDelay is a fixed delay injected into a share of requests.
type FaultDelay struct {
	Duration time.Duration
	// Percent is the share of requests delayed, in millionths.
	Percent uint32
}

// FaultAbort is an abort injected into a share of requests.
type FaultAbort struct {
	// HTTPStatus is the response status (200 to 599) of an HTTP abort; 0
	// when the abort is a gRPC status.
	HTTPStatus int
	// GRPC is set for a gRPC abort: a trailers-only response (HTTP 200,
	// content-type application/grpc) carrying grpc-status GRPCStatus.
	GRPC       bool
	GRPCStatus uint32
	// Percent is the share of requests aborted, in millionths.
	Percent uint32
	// Body is the response body of an HTTP abort, the grpc-message of a
	// gRPC one.
	Body string
}

// noFault is the Fault of a route whose per-filter configuration disables
// the fault filter.
var noFault = &Fault{}

// CompileFault compiles the fault filter's configuration, an Any holding an
// HTTPFault. Anything the filter cannot honour is an error naming the field.
func CompileFault(a *anypb.Any) (*Fault, error) {
	pb := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(pb); err != nil {
		return nil, err
	}
	return compileHTTPFault(pb)
}

func compileHTTPFault(pb *faultv3.HTTPFault) (*Fault, error) {
	switch {
	case pb.GetUpstreamCluster() != "":
		return nil, fmt.Errorf("upstream_cluster %q is not supported", pb.GetUpstreamCluster())
	case len(pb.GetHeaders()) > 0:
		return nil, errors.New("headers is not supported")
	case len(pb.GetDownstreamNodes()) > 0:
		return nil, errors.New("downstream_nodes is not supported")
	case pb.GetResponseRateLimit() != nil:
		return nil, errors.New("response_rate_limit is not supported")
	}
	f := &Fault{}
	if m := pb.GetMaxActiveFaults(); m != nil {
		f.LimitActive, f.MaxActive = true, m.GetValue()
	}
	if d := pb.GetDelay(); d != nil {
		fd := &FaultDelay{}
		var fixed *durationpb.Duration
		switch s := d.GetFaultDelaySecifier().(type) {
		case *commonfaultv3.FaultDelay_FixedDelay:
			fixed = s.FixedDelay
		case *commonfaultv3.FaultDelay_HeaderDelay_:
			return nil, errors.New("delay.header_delay is not supported")
		case nil:
			return nil, errors.New("delay: fixed_delay is required")
		default:
			return nil, fmt.Errorf("delay: unsupported delay type %T", s)
		}
		if err := fixed.CheckValid(); err != nil || fixed.AsDuration() <= 0 {
			return nil, fmt.Errorf("delay.fixed_delay %s: must be greater than zero", fixed.AsDuration())
		}
		fd.Duration = fixed.AsDuration()
		p, err := fraction(d.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("delay.percentage: %w", err)
		}
		fd.Percent = p
		f.Delay = fd
	}
	if a := pb.GetAbort(); a != nil {
		fa := &FaultAbort{Body: a.GetResponseBody()}
		if fa.Body == "" {
			fa.Body = DefaultFaultAbortBody
		}
		switch e := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus >= 600 {
				return nil, fmt.Errorf("abort.http_status %d: must be between 200 and 599", e.HttpStatus)
			}
			fa.HTTPStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			fa.GRPC, fa.GRPCStatus = true, e.GrpcStatus
		case *faultv3.FaultAbort_HeaderAbort_:
			return nil, errors.New("abort.header_abort is not supported")
		case nil:
			return nil, errors.New("abort: one of http_status or grpc_status is required")
		default:
			return nil, fmt.Errorf("abort: unsupported error type %T", e)
		}
		p, err := fraction(a.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("abort.percentage: %w", err)
		}
		fa.Percent = p
		f.Abort = fa
	}
	return f, nil
}

// fraction converts a FractionalPercent to millionths. As in Envoy, an
// absent percentage is 0% and a numerator above the denominator is 100%.
func fraction(p *typev3.FractionalPercent) (uint32, error) {
	n := uint64(p.GetNumerator())
	switch d := p.GetDenominator(); d {
	case typev3.FractionalPercent_HUNDRED:
		n *= Million / 100
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= Million / 10_000
	case typev3.FractionalPercent_MILLION:
	default:
		return 0, fmt.Errorf("denominator %s is not supported", d)
	}
	return uint32(min(n, Million)), nil
}

// perFilterFault reads the fault filter's entry of a typed_per_filter_config
// map: nil when there is none, noFault when it disables the filter.
func perFilterFault(cfg map[string]*anypb.Any) (*Fault, error) {
	a, ok := cfg[FaultFilterName]
	if !ok {
		return nil, nil
	}
	field := "typed_per_filter_config[" + FaultFilterName + "]"
	if a.GetTypeUrl() == filterConfigTypeURL {
		fc := &routev3.FilterConfig{}
		if err := a.UnmarshalTo(fc); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if fc.GetDisabled() {
			return noFault, nil
		}
		if fc.GetConfig() == nil {
			return nil, fmt.Errorf("%s.config: missing", field)
		}
		a, field = fc.GetConfig(), field+".config"
	}
	if a.GetTypeUrl() != FaultTypeURL {
		return nil, fmt.Errorf("%s: type %s, want %s", field, a.GetTypeUrl(), FaultTypeURL)
	}
	f, err := CompileFault(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return f, nil
}
