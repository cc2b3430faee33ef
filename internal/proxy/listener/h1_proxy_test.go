package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/rawhttp"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// dialClient connects to addr for the rest of the test, with a deadline
// that ends a hung exchange.
func dialClient(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// echoBackend answers every request with its method, path, body and the
// X-Val header, and counts nothing: it is what the proxied requests look
// like upstream.
func echoBackend(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Val", r.Header.Get("X-Val"))
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Val"), b)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// TestProxiedRequestsOnOneConnection sends a sequence of requests on one
// keep-alive connection through the lean server, Forwarder and lean
// upstream pool: each must reach the backend as sent, although the server
// reads every request of the connection into the same objects, and the
// connection must stay open, also after requests with bodies (which the
// upstream client closes once sent).
func TestProxiedRequestsOnOneConnection(t *testing.T) {
	addr := proxyTo(t, echoBackend(t))
	c, br := dialClient(t, addr)
	big := strings.Repeat("b", 70<<10) // too large for the lean upstream path
	steps := []struct {
		send, want string
	}{
		{"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Val: one\r\n\r\n", "GET /a?x=1 one "},
		{"POST /b HTTP/1.1\r\nHost: h\r\nX-Val: two\r\nContent-Length: 5\r\n\r\nhello", "POST /b two hello"},
		{"GET /c HTTP/1.1\r\nHost: h\r\nX-Val: three\r\n\r\n", "GET /c three "},
		{"POST /d HTTP/1.1\r\nHost: h\r\nX-Val: four\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST /d four abc"},
		{"PUT /e HTTP/1.1\r\nHost: h\r\nX-Val: five\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big, "PUT /e five " + big},
		{"GET /f%2Fg HTTP/1.1\r\nHost: h\r\nX-Val: six\r\n\r\n", "GET /f%2Fg six "},
		{"GET /c HTTP/1.1\r\nHost: h\r\nX-Val: three\r\n\r\n", "GET /c three "},
	}
	for i, s := range steps {
		go io.WriteString(c, s.send)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v (the connection was closed?)", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("request %d body: %v", i, err)
		}
		if resp.StatusCode != 200 || string(b) != s.want {
			t.Fatalf("request %d: %d %.80q, want 200 %.80q", i, resp.StatusCode, b, s.want)
		}
		if resp.Close {
			t.Fatalf("request %d: the response closes the connection", i)
		}
	}
}

// TestProxiedConcurrentConnections runs keep-alive connections in parallel
// through one upstream endpoint, whose pooled connections (and the
// response objects they reuse) pass from one downstream connection to
// another: every client must get its own answers, headers included.
func TestProxiedConcurrentConnections(t *testing.T) {
	addr := proxyTo(t, echoBackend(t))
	const clients, requests = 6, 40
	errs := make(chan error, clients)
	for n := range clients {
		go func() {
			errs <- func() error {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for i := range requests {
					val := fmt.Sprintf("c%d-r%d", n, i)
					method, body := "GET", ""
					if i%3 == 1 {
						method, body = "POST", strings.Repeat(val, 3)
					}
					if i%3 == 2 {
						// No body: the server writes the head after the
						// upstream connection went back to the pool.
						method = "HEAD"
					}
					req := fmt.Sprintf("%s /%s HTTP/1.1\r\nHost: h\r\nX-Val: %s\r\nContent-Length: %d\r\n\r\n%s", method, val, val, len(body), body)
					if _, err := io.WriteString(c, req); err != nil {
						return err
					}
					resp, err := http.ReadResponse(br, &http.Request{Method: method})
					if err != nil {
						return fmt.Errorf("%s: %w", val, err)
					}
					b, err := io.ReadAll(resp.Body)
					if err != nil {
						return fmt.Errorf("%s body: %w", val, err)
					}
					want := fmt.Sprintf("%s /%s %s %s", method, val, val, body)
					if method == "HEAD" {
						want = ""
					}
					if string(b) != want || resp.Header.Get("X-Val") != val {
						return fmt.Errorf("%s: got %q (X-Val %q), want %q (X-Val %q)", val, b, resp.Header.Get("X-Val"), want, val)
					}
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestProxiedHTTP10KeepAlive: an HTTP/1.0 client that asks for keep-alive
// keeps its connection through the Forwarder (which drops the Connection
// header before sending the request upstream), and one that does not ask
// gets the connection closed.
func TestProxiedHTTP10KeepAlive(t *testing.T) {
	addr := proxyTo(t, echoBackend(t))
	for _, tc := range []struct {
		name, header string
		keep         bool
	}{
		{"keep-alive", "Connection: keep-alive\r\n", true},
		{"default", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialClient(t, addr)
			io.WriteString(c, "GET /a HTTP/1.0\r\nHost: h\r\nX-Val: x\r\n"+tc.header+"\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "GET /a x " {
				t.Fatalf("%d %q", resp.StatusCode, b)
			}
			if resp.Close == tc.keep {
				t.Fatalf("response Connection: %q; want the connection kept: %t", resp.Header.Get("Connection"), tc.keep)
			}
			if !tc.keep {
				return
			}
			io.WriteString(c, "GET /b HTTP/1.0\r\nHost: h\r\nX-Val: y\r\nConnection: keep-alive\r\n\r\n")
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("second request on the kept connection: %v", err)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != "GET /b y " {
				t.Fatalf("second response %q", b)
			}
		})
	}
}

// TestShutdownInterruptsStuckUpstream: a request whose upstream does not
// answer keeps its connection through the drain; when the drain time is
// up, shutdown ends the request upstream as well (the backend sees its
// connection go), rather than leaving the exchange blocked on it.
func TestShutdownInterruptsStuckUpstream(t *testing.T) {
	started, gone, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			close(gone)
		case <-done: // the test failed
		}
	}))
	defer backend.Close()
	defer close(done)
	m, addr := proxyManager(t, strings.TrimPrefix(backend.URL, "http://"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /stuck HTTP/1.1\r\nHost: h\r\n\r\n")
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- m.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err == nil || !strings.Contains(err.Error(), "requests in flight") {
			t.Errorf("Shutdown = %v; want it to report the request it cut off", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return: the exchange upstream was not interrupted")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not ended by the shutdown")
	}
}

// TestProxiedResponseFields: an upstream response's end-to-end fields
// reach the client as the upstream sent them, in their order, repeated
// ones included; its hop-by-hop fields do not; and a route's response
// header mutations still apply.
func TestProxiedResponseFields(t *testing.T) {
	const date = "Date: Sun, 22 Nov 2026 13:00:00 GMT\r\n"
	plain := "Content-Type: text/plain\r\nX-B: 2\r\nSet-Cookie: a=1\r\nX-A: 1\r\nSet-Cookie: b=2\r\n" + date
	mutate := func(r *routev3.Route) {
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-added", Value: "yes"}}}
		r.ResponseHeadersToRemove = []string{"x-b"}
	}
	for _, tc := range []struct {
		name   string
		fields string // the upstream's, but for Content-Length
		edit   func(*routev3.Route)
		// want is the head the client gets, less its status line, when
		// ordered; else the fields it holds, in any order.
		want    string
		ordered bool
	}{
		{"passed on as sent", plain, nil, plain + "Content-Length: 2\r\n", true},
		{"hop-by-hop removed", "X-B: 2\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\nUpgrade: h2c\r\n" + date,
			nil, "X-B: 2\r\nX-A: 1\r\n" + date + "Content-Length: 2\r\n", false},
		{"Connection options removed", "X-B: 2\r\nConnection: x-a\r\nX-A: 1\r\n" + date,
			nil, "X-B: 2\r\n" + date + "Content-Length: 2\r\n", false},
		{"mutations applied", plain, mutate,
			"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-A: 1\r\nX-Added: yes\r\n" + date + "Content-Length: 2\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := rawhttp.Backend(t, "HTTP/1.1 200 OK\r\n"+tc.fields+"Content-Length: 2\r\n\r\nok")
			_, addr := proxyManagerWith(t, backend, tc.edit)
			c, br := dialClient(t, addr)
			for i := range 2 { // the second on a reused upstream connection
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
				var head strings.Builder
				status, err := br.ReadString('\n')
				for err == nil {
					var line string
					if line, err = br.ReadString('\n'); line == "\r\n" {
						break
					}
					head.WriteString(line)
				}
				body := make([]byte, 2)
				if _, err := io.ReadFull(br, body); err != nil || status != "HTTP/1.1 200 OK\r\n" || string(body) != "ok" {
					t.Fatalf("response %d: %q %q %v", i, status, body, err)
				}
				got := head.String()
				if !tc.ordered {
					got, tc.want = sortedLines(got), sortedLines(tc.want)
				}
				if got != tc.want {
					t.Fatalf("response %d head:\n%s\nwant:\n%s", i, got, tc.want)
				}
			}
		})
	}
}

// sortedLines returns the lines of s in sorted order.
func sortedLines(s string) string {
	lines := strings.SplitAfter(s, "\r\n")
	slices.Sort(lines)
	return strings.Join(lines, "")
}
