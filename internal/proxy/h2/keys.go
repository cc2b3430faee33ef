package h2

import (
	"net/http"
	"strings"
)

// commonKeys are header names as net/http keys them (canonical) that are
// common enough to convert without allocating.
var commonKeys = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Access-Control-Allow-Origin",
	"Age", "Allow", "Authorization", "B3", "Cache-Control", "Content-Disposition", "Content-Encoding",
	"Content-Language", "Content-Length", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
	"Expect", "Expires", "Forwarded", "From", "Grpc-Encoding", "Grpc-Message", "Grpc-Status",
	"Grpc-Timeout", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
	"Last-Modified", "Link", "Location", "Max-Forwards", "Origin", "Pragma", "Range", "Referer",
	"Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Te", "Trailer", "Traceparent",
	"Tracestate", "User-Agent", "Vary", "Via", "Www-Authenticate", "X-B3-Flags", "X-B3-Parentspanid",
	"X-B3-Sampled", "X-B3-Spanid", "X-B3-Traceid", "X-Content-Type-Options", "X-Envoy-Attempt-Count",
	"X-Envoy-Expected-Rq-Timeout-Ms", "X-Envoy-Original-Path", "X-Envoy-Overloaded",
	"X-Envoy-Upstream-Service-Time", "X-Forwarded-Client-Cert", "X-Forwarded-For", "X-Forwarded-Host",
	"X-Forwarded-Proto", "X-Request-Id",
}

var (
	toLower     = make(map[string]string, len(commonKeys))
	toCanonical = make(map[string]string, len(commonKeys))
)

func init() {
	for _, k := range commonKeys {
		l := strings.ToLower(k)
		toLower[k] = l
		toCanonical[l] = k
	}
}

// lowerKey is a header key in the lower case HTTP/2 sends.
func lowerKey(k string) string {
	if l, ok := toLower[k]; ok {
		return l
	}
	return strings.ToLower(k)
}

// canonicalKey is the net/http key of a lower case field name.
func canonicalKey(name string) string {
	if k, ok := toCanonical[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// volatile reports whether a field's value changes with every message, so
// that adding it to the compression table would only push out fields
// that repeat.
func volatile(name string) bool {
	switch name {
	case "x-request-id", "traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "b3":
		return true
	}
	return false
}
