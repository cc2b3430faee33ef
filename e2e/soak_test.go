package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMixedTrafficSoak sends a few seconds of mixed traffic from eight
// clients through a sidecar: small answers (what its event loops serve),
// chunked, streamed and large answers, request bodies, a retried 503,
// pipelined requests, clients that give up mid-request, and connections
// that last one request or many. Every answer must be whole and right, and
// once the clients are gone the sidecar must hold no more descriptors than
// before, and the backend no connection.
func TestMixedTrafficSoak(t *testing.T) {
	m := startMesh(t)
	var open atomic.Int32
	var seen sync.Map // X-Soak-Id values of /flaky requests answered with 503
	small := bytes.Repeat([]byte("0123456789abcdef"), 64)
	big := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog.\n"), 14000) // 630 KB: streamed
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { w.Write(small) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := range 20 {
			fmt.Fprintf(w, "chunk-%d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read whole before answering: Go's HTTP/1 server discards what
		// is left of a request body once the answer's head goes out.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.Header.Get("X-Soak-Id"), true); !again {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "second time lucky\n")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(w, "late\n")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m.applyYAML(loopbackServiceEntry("soak", ln.Addr().(*net.TCPAddr).Port) + `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: soak
spec:
  host: soak.example.com
  trafficPolicy:
    connectionPool:
      http:
        idleTimeout: 1s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: soak
spec:
  hosts:
  - soak.example.com
  http:
  - retries:
      attempts: 2
      retryOn: 5xx
    route:
    - destination:
        host: soak.example.com
`)

	var sidecarPID, outbound int
	for _, p := range readUpState(t, m.dataDir).Procs {
		if p.Role == "sidecar" && p.Service == "productpage" {
			sidecarPID, outbound = p.PID, p.OutboundPort
		}
	}
	if sidecarPID == 0 {
		t.Fatal("up.json has no productpage sidecar")
	}
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", outbound)
	proxyURL, _ := url.Parse("http://" + proxyAddr)
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sidecarPID))
		if err != nil {
			t.Fatalf("the sidecar's descriptors: %v", err)
		}
		return len(ents)
	}
	// settled waits until the backend has no connection (the sidecar's
	// idle ones close after the DestinationRule's second) and returns the
	// sidecar's descriptor count then.
	settled := func(what string) int {
		deadline := time.Now().Add(15 * time.Second)
		for open.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the backend still has %d connections from the sidecar after 15 s", what, open.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fds()
	}
	ready := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
	if codes := statusCounts(t, ready, "http://soak.example.com/small", 3); codes[http.StatusOK] != 3 {
		t.Fatalf("before the soak: answers %v, want three 200s", codes)
	}
	before := settled("before the soak")

	var (
		ids      atomic.Int64
		requests atomic.Int64
		gaveUp   atomic.Int64
		mu       sync.Mutex
		failures []string
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, a...))
	}
	// get sends one request and checks its answer against want.
	get := func(c *http.Client, method, path string, body []byte, header http.Header, want []byte) {
		req, _ := http.NewRequest(method, "http://soak.example.com"+path, bytes.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			fail("%s %s: %v", method, path, err)
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			fail("%s %s: reading the answer: %v", method, path, err)
		case resp.StatusCode != http.StatusOK:
			fail("%s %s: %s %q", method, path, resp.Status, got)
		case !bytes.Equal(got, want):
			fail("%s %s: %d bytes, want %d: %.80q", method, path, len(got), len(want), got)
		}
	}
	var chunked, events strings.Builder
	for i := range 20 {
		fmt.Fprintf(&chunked, "chunk-%d\n", i)
	}
	for i := range 5 {
		fmt.Fprintf(&events, "data: %d\n\n", i)
	}
	// pipelined writes three requests at once on one connection and
	// reads the three answers.
	pipelined := func() {
		c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
		if err != nil {
			fail("pipelined: %v", err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req := "GET http://soak.example.com/small HTTP/1.1\r\nHost: soak.example.com\r\n\r\n"
		if _, err := io.WriteString(c, req+req+req); err != nil {
			fail("pipelined: %v", err)
			return
		}
		br := bufio.NewReader(c)
		for i := range 3 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				fail("pipelined answer %d: %v", i, err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, small) {
				fail("pipelined answer %d: %s, %d bytes, %v", i, resp.Status, len(got), err)
				return
			}
		}
	}

	const clients = 8
	end := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	transports := make([]*http.Transport, clients)
	for w := range clients {
		// Half the clients keep their connections, half open one per
		// request.
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: w%2 == 0, MaxIdleConnsPerHost: 2}
		transports[w] = tr
		c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(end); i++ {
				requests.Add(1)
				switch i % 8 {
				case 0, 1:
					get(c, "GET", "/small", nil, nil, small)
				case 2:
					get(c, "GET", "/chunked", nil, nil, []byte(chunked.String()))
				case 3:
					get(c, "GET", "/big", nil, nil, big)
				case 4:
					get(c, "GET", "/events", nil, nil, []byte(events.String()))
				case 5:
					body := small[:100+i%900]
					get(c, "POST", "/echo", body, nil, body)
				case 6:
					get(c, "GET", "/flaky", nil, http.Header{"X-Soak-Id": {fmt.Sprint(ids.Add(1))}}, []byte("second time lucky\n"))
				case 7:
					if i%16 == 7 {
						pipelined()
						continue
					}
					// A client that gives up before the answer.
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
					req, _ := http.NewRequestWithContext(ctx, "GET", "http://soak.example.com/slow", nil)
					resp, err := c.Do(req)
					cancel()
					if err == nil {
						resp.Body.Close()
						fail("GET /slow: answered %s within 20 ms; the backend takes 100", resp.Status)
					} else if !errors.Is(err, context.DeadlineExceeded) {
						fail("GET /slow: %v, want the client's own deadline", err)
					}
					gaveUp.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed; the first: %s", len(failures), requests.Load(), strings.Join(failures[:min(5, len(failures))], "; "))
	}
	t.Logf("%d requests, %d given up by their clients", requests.Load(), gaveUp.Load())

	// Nothing left behind: the sidecar's descriptors come back to what
	// they were once its idle upstream connections have closed.
	deadline := time.Now().Add(15 * time.Second)
	for {
		after := settled("after the soak")
		if after <= before {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the sidecar holds %d descriptors after the soak, %d before", after, before)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if loops := int(m.adminStat("productpage", "v1", "weft_event_loops")); loops > 0 {
		if n := m.adminStat("productpage", "v1", "weft_event_loop_requests_total"); n == 0 {
			t.Error("the event loops served none of the requests")
		}
		if n := m.adminStat("productpage", "v1", "weft_event_loop_handoffs_total"); n == 0 {
			t.Error("the event loops handed no connection to the goroutine server (bodies and streams should go there)")
		}
	}
	if codes := statusCounts(t, ready, "http://soak.example.com/small", 3); codes[http.StatusOK] != 3 {
		t.Errorf("after the soak: answers %v, want three 200s", codes)
	}
}
