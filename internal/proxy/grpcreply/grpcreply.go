// Package grpcreply shapes the proxy's own answers to gRPC requests (an
// injected abort, no route, no healthy upstream, a timeout) as gRPC
// clients read them: a trailers-only response, HTTP status 200 with
// content-type application/grpc and the status in grpc-status and
// grpc-message, no body. Envoy answers gRPC requests this way; a text/plain
// error would reach a gRPC client as an unexpected content type.
package grpcreply

import (
	"net/http"
	"strconv"
	"strings"
)

// Status codes of the gRPC protocol that FromHTTP returns.
const (
	Unknown          = 2
	PermissionDenied = 7
	Unimplemented    = 12
	Internal         = 13
	Unavailable      = 14
	Unauthenticated  = 16
)

// IsRequest reports whether r is a gRPC request: Content-Type
// application/grpc, alone or with a +format or parameters. gRPC-Web's
// application/grpc-web is not.
func IsRequest(r *http.Request) bool {
	ct := r.Header["Content-Type"]
	return len(ct) > 0 && IsContentType(ct[0])
}

// IsContentType reports whether ct is gRPC's content type:
// application/grpc, alone or with a +format or parameters (not
// application/grpc-web).
func IsContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// FromHTTP maps the HTTP status of a local answer to a gRPC status code,
// as Envoy does (and as gRPC clients map the HTTP statuses they meet).
func FromHTTP(code int) uint32 {
	switch code {
	case http.StatusBadRequest:
		return Internal
	case http.StatusUnauthorized:
		return Unauthenticated
	case http.StatusForbidden:
		return PermissionDenied
	case http.StatusNotFound:
		return Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return Unavailable
	}
	return Unknown
}

// valGRPC is shared by every answer: a handler changing a header replaces
// its value slice (see package chain).
var valGRPC = []string{"application/grpc"}

// SetHeader sets the fields of a trailers-only answer with status and
// message on h. The caller then writes status 200 and no body.
func SetHeader(h http.Header, status uint32, message string) {
	h["Content-Type"] = valGRPC
	h["Grpc-Status"] = []string{strconv.FormatUint(uint64(status), 10)}
	h["Grpc-Message"] = []string{Message(message)}
}

// Message percent-encodes a grpc-message value as the gRPC protocol
// requires: bytes outside printable ASCII, and '%'. A message that needs
// no encoding is returned as it is.
func Message(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append(b, s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&0xf])
	}
	if b == nil {
		return s
	}
	return string(b)
}
