package h1

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// The benchmarks compare this package with net/http on what one proxied
// keep-alive request costs each: reading its head, writing it upstream,
// reading the response head.

func BenchmarkReadRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader) (*http.Request, error)
	}{
		{"net/http", func(br *bufio.Reader) (*http.Request, error) {
			req, err := http.ReadRequest(br)
			if err == nil {
				req = req.WithContext(context.Background())
			}
			return req, err
		}},
		{"h1", func() func(*bufio.Reader) (*http.Request, error) {
			var rr RequestReader
			rr.SetContext(context.Background())
			return rr.ReadRequest
		}()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := bufio.NewReaderSize(&repeat{msg: []byte(keepAliveRequest)}, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.read(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadResponse(b *testing.B) {
	req := &http.Request{Method: "GET"}
	var rr ResponseReader
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader, *http.Request) (*http.Response, error)
	}{
		{"net/http", http.ReadResponse},
		{"h1", rr.ReadResponse},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := bufio.NewReaderSize(&repeat{msg: []byte(keepAliveResponse)}, 4096)
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.read(br, req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Read(buf)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkWriteRequest(b *testing.B) {
	u, _ := url.Parse("http://10.0.0.1:9080/api/v1/reviews/42?verbose=1")
	req := &http.Request{Method: "GET", URL: u, Host: "reviews:9080", Header: http.Header{
		"User-Agent": {"curl/8.5"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "X-Tenant-Name": {"acme"},
		"X-B3-Traceid": {"80f198ee56343ba8"}, "X-Request-Id": {"5f1c3a"}, "X-Forwarded-Proto": {"http"},
	}}
	var w RequestWriter
	for _, bc := range []struct {
		name  string
		write func(*bufio.Writer, *http.Request) error
	}{
		{"net/http", func(bw *bufio.Writer, r *http.Request) error { return r.Write(bw) }},
		{"h1", w.Write},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bw := bufio.NewWriterSize(io.Discard, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.write(bw, req); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}
