package h2

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkRoundTrip is one small request and response through this
// package's client and server over loopback, the mesh hop's shape: the
// allocations per request are both ends'.
func BenchmarkRoundTrip(b *testing.B) {
	body := strings.Repeat("x", 1024)
	addr := leanServerB(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})
	cc := dialClientB(b, addr)
	req, _ := http.NewRequest(http.MethodGet, "http://backend.default:8080/", nil)
	req.Header.Set("User-Agent", "fortio.org/fortio-1.75.3")
	req.Header.Set("X-Forwarded-Proto", "http")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Header.Set("X-Request-Id", "5d2a1b3c-0000-4000-8000-000000000001")
		if !cc.Reserve() {
			b.Fatal("no stream")
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}
