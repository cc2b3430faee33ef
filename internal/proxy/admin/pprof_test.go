package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestPprof(t *testing.T) {
	h := New(Options{Pprof: true}).Handler()
	if code, body := get(t, h, "/debug/pprof/"); code != 200 || !strings.Contains(body, "heap") || !strings.Contains(body, "goroutine") {
		t.Errorf("index: %d %q", code, body)
	}
	// Profiles come gzip-compressed in pprof's protobuf format.
	for _, p := range []string{"/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/profile?seconds=1"} {
		if code, body := get(t, h, p); code != 200 || !strings.HasPrefix(body, "\x1f\x8b") {
			t.Errorf("%s: %d, %d bytes, want a gzipped profile", p, code, len(body))
		}
	}
	if code, body := get(t, h, "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine?debug=1: %d %q", code, body)
	}
	for path, want := range map[string]int{
		"/debug/pprof/nosuch":              404,
		"/debug/pprof/profile?seconds=x":   400,
		"/debug/pprof/profile?seconds=0":   400,
		"/debug/pprof/profile?seconds=1e9": 400,
	} {
		if code, body := get(t, h, path); code != want {
			t.Errorf("%s: %d %q, want %d", path, code, body, want)
		}
	}
	off := New(Options{}).Handler()
	if code, _ := get(t, off, "/debug/pprof/heap"); code != 404 {
		t.Errorf("without Pprof, /debug/pprof/heap answers %d, want 404", code)
	}
}
