package router

import (
	"errors"
	"fmt"
	"strings"
	"time"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// RetryOn is a set of retry conditions, Envoy's x-envoy-retry-on and
// x-envoy-retry-grpc-on values.
type RetryOn uint32

// Retry conditions. The HTTP ones follow x-envoy-retry-on; the gRPC ones
// (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)
// follow x-envoy-retry-grpc-on and look at the grpc-status of the response.
const (
	RetryOn5xx RetryOn = 1 << iota
	RetryOnGatewayError
	RetryOnReset
	RetryOnResetBeforeRequest
	RetryOnConnectFailure
	RetryOnEnvoyRateLimited
	RetryOnRetriable4xx
	RetryOnRefusedStream
	RetryOnRetriableStatusCodes
	RetryOnRetriableHeaders
	RetryOnHTTP3PostConnectFailure
	RetryOnCancelled
	RetryOnDeadlineExceeded
	RetryOnInternal
	RetryOnResourceExhausted
	RetryOnUnavailable
)

var retryOnNames = []struct {
	name string
	flag RetryOn
}{
	{"5xx", RetryOn5xx},
	{"gateway-error", RetryOnGatewayError},
	{"reset", RetryOnReset},
	{"reset-before-request", RetryOnResetBeforeRequest},
	{"connect-failure", RetryOnConnectFailure},
	{"envoy-ratelimited", RetryOnEnvoyRateLimited},
	{"retriable-4xx", RetryOnRetriable4xx},
	{"refused-stream", RetryOnRefusedStream},
	{"retriable-status-codes", RetryOnRetriableStatusCodes},
	{"retriable-headers", RetryOnRetriableHeaders},
	{"http3-post-connect-failure", RetryOnHTTP3PostConnectFailure},
	{"cancelled", RetryOnCancelled},
	{"deadline-exceeded", RetryOnDeadlineExceeded},
	{"internal", RetryOnInternal},
	{"resource-exhausted", RetryOnResourceExhausted},
	{"unavailable", RetryOnUnavailable},
}

// Has reports whether all conditions in c are set.
func (f RetryOn) Has(c RetryOn) bool { return f&c == c }

// String returns the conditions in Envoy's comma-separated form.
func (f RetryOn) String() string {
	var names []string
	for _, n := range retryOnNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// ParseRetryOn parses an Envoy retry_on value such as
// "connect-failure,refused-stream,5xx". Unknown conditions are an error.
func ParseRetryOn(s string) (RetryOn, error) {
	var f RetryOn
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		found := false
		for _, n := range retryOnNames {
			if n.name == tok {
				f |= n.flag
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown retry condition %q", tok)
		}
	}
	return f, nil
}

// RetryPolicy is a compiled Envoy RetryPolicy. The zero value retries
// nothing.
type RetryPolicy struct {
	// RetryOn is the set of conditions that trigger a retry.
	RetryOn RetryOn
	// NumRetries is the maximum number of retries (Envoy's default is 1).
	NumRetries uint32
	// PerTryTimeout bounds each attempt; 0 means the route timeout applies.
	PerTryTimeout time.Duration
	// PerTryIdleTimeout bounds idle time within each attempt; 0 means none.
	PerTryIdleTimeout time.Duration
	// RetriableStatusCodes are retried when RetryOnRetriableStatusCodes is
	// set.
	RetriableStatusCodes []uint32
	// AvoidPreviousHosts is set by the previous_hosts retry host predicate:
	// a retry should go to a host not tried before.
	AvoidPreviousHosts bool
	// HostSelectionMaxAttempts is how often host selection may be retried to
	// satisfy AvoidPreviousHosts (Envoy's default is 1).
	HostSelectionMaxAttempts int64
	// BackOffBase and BackOffMax parameterise the exponential back-off
	// between retries (Envoy's defaults: 25ms and 10 times the base).
	BackOffBase time.Duration
	BackOffMax  time.Duration
}

const (
	previousHostsName    = "envoy.retry_host_predicates.previous_hosts"
	previousHostsTypeURL = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
	defaultBackOffBase   = 25 * time.Millisecond
)

func compileRetry(pb *routev3.RetryPolicy) (RetryPolicy, error) {
	var p RetryPolicy
	on, err := ParseRetryOn(pb.GetRetryOn())
	if err != nil {
		return p, fmt.Errorf("retry_on: %w", err)
	}
	p.RetryOn = on
	p.NumRetries = 1
	if n := pb.GetNumRetries(); n != nil {
		p.NumRetries = n.GetValue()
	}
	if d := pb.GetPerTryTimeout(); d != nil {
		if p.PerTryTimeout, err = duration(d); err != nil {
			return p, fmt.Errorf("per_try_timeout: %w", err)
		}
	}
	if d := pb.GetPerTryIdleTimeout(); d != nil {
		if p.PerTryIdleTimeout, err = duration(d); err != nil {
			return p, fmt.Errorf("per_try_idle_timeout: %w", err)
		}
	}
	p.RetriableStatusCodes = append([]uint32(nil), pb.GetRetriableStatusCodes()...)
	for i, hp := range pb.GetRetryHostPredicate() {
		if hp.GetName() != previousHostsName && hp.GetTypedConfig().GetTypeUrl() != previousHostsTypeURL {
			return p, fmt.Errorf("retry_host_predicate[%d] %q is not supported (only %s)", i, hp.GetName(), previousHostsName)
		}
		p.AvoidPreviousHosts = true
	}
	p.HostSelectionMaxAttempts = pb.GetHostSelectionRetryMaxAttempts()
	if p.HostSelectionMaxAttempts == 0 {
		p.HostSelectionMaxAttempts = 1
	}
	p.BackOffBase = defaultBackOffBase
	if bo := pb.GetRetryBackOff(); bo != nil {
		if p.BackOffBase, err = duration(bo.GetBaseInterval()); err != nil {
			return p, fmt.Errorf("retry_back_off.base_interval: %w", err)
		}
		if p.BackOffBase <= 0 {
			return p, errors.New("retry_back_off.base_interval must be greater than zero")
		}
		if d := bo.GetMaxInterval(); d != nil {
			if p.BackOffMax, err = duration(d); err != nil {
				return p, fmt.Errorf("retry_back_off.max_interval: %w", err)
			}
			if p.BackOffMax < p.BackOffBase {
				return p, fmt.Errorf("retry_back_off.max_interval %s is less than base_interval %s", p.BackOffMax, p.BackOffBase)
			}
		}
	}
	if p.BackOffMax == 0 {
		p.BackOffMax = 10 * p.BackOffBase
	}
	switch {
	case pb.GetRetryPriority() != nil:
		return p, errors.New("retry_priority is not supported")
	case len(pb.GetRetriableHeaders()) > 0:
		return p, errors.New("retriable_headers is not supported")
	case len(pb.GetRetriableRequestHeaders()) > 0:
		return p, errors.New("retriable_request_headers is not supported")
	case pb.GetRateLimitedRetryBackOff() != nil:
		return p, errors.New("rate_limited_retry_back_off is not supported")
	case len(pb.GetRetryOptionsPredicates()) > 0:
		return p, errors.New("retry_options_predicates is not supported")
	}
	return p, nil
}
