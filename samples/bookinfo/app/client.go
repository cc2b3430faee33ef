package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PropagatedHeaders are the request headers a Bookinfo service copies from
// its incoming request to the requests it makes, so that routing rules
// (end-user) and distributed traces follow a request through the mesh.
var PropagatedHeaders = []string{
	"end-user",
	"x-request-id",
	"traceparent",
	"tracestate",
	"x-b3-traceid",
	"x-b3-spanid",
	"x-b3-parentspanid",
	"x-b3-sampled",
	"x-b3-flags",
	"b3",
	"x-ot-span-context",
	"x-cloud-trace-context",
	"grpc-trace-bin",
}

// maxUpstreamBody bounds how much of an upstream response is read.
const maxUpstreamBody = 1 << 20

// sharedTransport is used by every service that does not inject its own, so
// connections to the sidecar are kept alive across requests.
var sharedTransport http.RoundTripper = NewTransport(http.ProxyFromEnvironment)

// NewTransport returns a keep-alive HTTP transport that sends requests
// through the proxy chosen by proxy (nil means direct). Services use
// http.ProxyFromEnvironment so HTTP_PROXY points them at their sidecar.
func NewTransport(proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	return &http.Transport{
		Proxy:                 proxy,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // bounded by the per-call timeout instead
	}
}

func transportOrDefault(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		return sharedTransport
	}
	return rt
}

// serviceURL is the default base URL of a Bookinfo service: its name, the
// services domain (for example ".default.svc.cluster.local") and port 9080.
func serviceURL(name, domain string) string {
	return "http://" + name + dotted(domain) + ":9080"
}

// dotted accepts a services domain with or without its leading dot (Istio's
// images take "default.svc.cluster.local").
func dotted(domain string) string {
	if domain != "" && !strings.HasPrefix(domain, ".") {
		return "." + domain
	}
	return domain
}

// serviceURLFromEnv is the base URL of the named upstream as Istio's
// Bookinfo images compute it: host NAME_HOSTNAME (default the service
// name) plus SERVICES_DOMAIN, port NAME_SERVICE_PORT (default 9080).
func serviceURLFromEnv(getenv func(string) string, name string) string {
	upper := strings.ToUpper(name)
	host := getenv(upper + "_HOSTNAME")
	if host == "" {
		host = name
	}
	port := getenv(upper + "_SERVICE_PORT")
	if port == "" {
		port = "9080"
	}
	return "http://" + host + dotted(getenv("SERVICES_DOMAIN")) + ":" + port
}

// forwardHeaders copies the propagated headers of in to out.
func forwardHeaders(in, out http.Header) {
	for _, h := range PropagatedHeaders {
		if v := in.Values(h); len(v) > 0 {
			out[http.CanonicalHeaderKey(h)] = append([]string(nil), v...)
		}
	}
}

// statusError is an upstream answer with an unexpected status code.
type statusError struct {
	url    string
	status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: status %d", e.url, e.status)
}

// getJSON performs one GET of url with the given headers and timeout and
// returns the body of a 200 response.
func getJSON(ctx context.Context, rt http.RoundTripper, url string, header http.Header, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", url, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return nil, fmt.Errorf("read response of GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{url: url, status: resp.StatusCode}
	}
	return body, nil
}

// retryable reports whether a failed call may be tried again: transport
// errors and 5xx answers are, other statuses are not.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.status >= 500
	}
	return true
}
