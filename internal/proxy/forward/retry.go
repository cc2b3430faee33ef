package forward

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/weftmesh/weft/internal/proxy/router"
)

// policy is the part of a route's retry policy the attempt loop reads.
type policy struct {
	retries   int
	on        router.RetryOn
	codes     []uint32
	perTry    time.Duration
	base, max time.Duration
}

func policyOf(r *router.Route) policy {
	p := r.Retry
	if p.RetryOn == 0 {
		return policy{}
	}
	out := policy{retries: int(p.NumRetries), on: p.RetryOn, codes: p.RetriableStatusCodes, perTry: p.PerTryTimeout, base: p.BackOffBase, max: p.BackOffMax}
	if out.base <= 0 {
		out.base = 25 * time.Millisecond
	}
	if out.max < out.base {
		out.max = 10 * out.base
	}
	return out
}

// retryOnError says whether a failed attempt (no response) is retried, with
// Envoy's meanings: connect failures count as resets, and 5xx and
// gateway-error include both.
func (p policy) retryOnError(e attemptErr, perTryTimeout bool) bool {
	any := func(c router.RetryOn) bool { return p.on&c != 0 }
	if any(router.RetryOn5xx | router.RetryOnGatewayError | router.RetryOnReset) {
		return true
	}
	if perTryTimeout {
		return false
	}
	return e.connect && any(router.RetryOnConnectFailure|router.RetryOnResetBeforeRequest)
}

// gRPC status codes retry conditions look at (grpc-status of a trailers-only
// response).
var grpcConds = map[string]router.RetryOn{
	"1":  router.RetryOnCancelled,
	"4":  router.RetryOnDeadlineExceeded,
	"8":  router.RetryOnResourceExhausted,
	"13": router.RetryOnInternal,
	"14": router.RetryOnUnavailable,
}

// retryOnResponse says whether a response is retried.
func (p policy) retryOnResponse(resp *http.Response) bool {
	if p.on == 0 {
		return false
	}
	c := resp.StatusCode
	switch {
	case c >= 500 && p.on.Has(router.RetryOn5xx):
		return true
	case (c == 502 || c == 503 || c == 504) && p.on.Has(router.RetryOnGatewayError):
		return true
	case c == 409 && p.on.Has(router.RetryOnRetriable4xx):
		return true
	case p.on.Has(router.RetryOnRetriableStatusCodes) && slices.Contains(p.codes, uint32(c)):
		return true
	}
	if gs := responseValue(resp, "Grpc-Status"); gs != "" {
		if cond, ok := grpcConds[gs]; ok && p.on.Has(cond) {
			return true
		}
	}
	return false
}

// pathRewriter is implemented by routes that know their matched prefix.
type pathRewriter interface {
	RewritePath(path string) string
}

var _ pathRewriter = (*router.Route)(nil)

// rewritePrefix applies the route's prefix_rewrite to the escaped path.
func rewritePrefix(r *router.Route, path, rawPath string) (string, string) {
	rw, ok := any(r).(pathRewriter)
	if !ok {
		return path, rawPath
	}
	if rawPath != "" {
		raw := rw.RewritePath(rawPath)
		if p, err := url.PathUnescape(raw); err == nil {
			return p, raw
		}
	}
	return rw.RewritePath(path), ""
}
