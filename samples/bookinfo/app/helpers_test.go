package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recorder is an upstream test server that remembers the requests it saw.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

// newRecorder serves h and records every request.
func newRecorder(t *testing.T, h http.Handler) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(r.Context()))
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

// last is the last request seen; it fails the test when there was none.
func (r *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	reqs := r.requests()
	if len(reqs) == 0 {
		t.Fatal("upstream saw no request")
	}
	return reqs[len(reqs)-1]
}

// fixed answers every request with status and body.
func fixed(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// do sends one request to h and returns the response.
func do(t *testing.T, h http.Handler, method, target string, header http.Header, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for k, v := range header {
		req.Header[k] = v
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	return rr.Result()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// tracingHeaders has a value for every propagated header.
func tracingHeaders() http.Header {
	h := http.Header{}
	for _, name := range PropagatedHeaders {
		h.Set(name, "value-of-"+name)
	}
	return h
}

// checkForwarded fails unless got carries every propagated header of want.
func checkForwarded(t *testing.T, got, want http.Header) {
	t.Helper()
	for _, name := range PropagatedHeaders {
		if w := want.Get(name); w != "" && got.Get(name) != w {
			t.Errorf("header %s = %q upstream, want %q", name, got.Get(name), w)
		}
	}
}
