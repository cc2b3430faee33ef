package grpcreply

import (
	"net/http"
	"strings"
	"testing"
)

func TestMessage(t *testing.T) {
	for in, want := range map[string]string{
		"fault filter abort": "fault filter abort",
		"100%":               "100%25",
		"caf\u00e9\n":        "caf%C3%A9%0A",
	} {
		if got := Message(in); got != want {
			t.Errorf("Message(%q) = %q, want %q", in, got, want)
		}
	}
	if strings.Contains(Message("a%b"), "%b") {
		t.Error("a bare % survived")
	}
}

func TestFromHTTP(t *testing.T) {
	for code, want := range map[int]uint32{400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14, 500: 2} {
		if got := FromHTTP(code); got != want {
			t.Errorf("FromHTTP(%d) = %d, want %d", code, got, want)
		}
	}
}

func TestIsRequest(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "application/grpc;charset=utf-8": true,
		"application/grpc-web": false, "application/grpcx": false, "text/plain": false, "": false,
	} {
		r := &http.Request{Header: http.Header{}}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if got := IsRequest(r); got != want {
			t.Errorf("IsRequest(Content-Type %q) = %v, want %v", ct, got, want)
		}
	}
}
