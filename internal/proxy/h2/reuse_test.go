package h2

// Streams (and their responses) serve one request after another: these
// tests check that nothing of one use reaches the next.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reviewReserve waits (bounded) for a stream on cc.
func reviewReserve(t testing.TB, cc *ClientConn) {
	t.Helper()
	for i := 0; !cc.Reserve(); i++ {
		if i > 2000 {
			t.Fatal("no stream free for 2s")
		}
		time.Sleep(time.Millisecond)
	}
}

// reviewHandler answers according to the path: /s/<status>/<id> with the
// status; /reset/<id> aborts; /trailer/<id> sets a trailer; /slow/<id>
// waits for its context; otherwise an echo of id and the body.
func reviewHandler(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.Path, "/")
	id := parts[len(parts)-1]
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Id", id)
	w.Header().Set("X-Req", r.Header.Get("X-Req"))
	switch parts[1] {
	case "reset":
		panic(http.ErrAbortHandler)
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return
	case "s":
		code, _ := strconv.Atoi(parts[2])
		w.WriteHeader(code)
		if code != 204 && code != 304 && (r.Method != "HEAD" || parts[3] == "headbody") {
			fmt.Fprintf(w, "body-%s", id)
		}
		return
	case "stream":
		for k := range 3 {
			fmt.Fprintf(w, "c%d-%s;", k, id)
			w.(http.Flusher).Flush()
			time.Sleep(200 * time.Microsecond)
		}
		return
	case "partial":
		fmt.Fprintf(w, "part-%s", id)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	case "rtrailer":
		fmt.Fprintf(w, "%s:%s:%s", id, body, r.Trailer.Get("X-Rt"))
		return
	case "trailer":
		w.Header().Set("Trailer", "X-Tr")
		fmt.Fprintf(w, "tbody-%s", id)
		w.Header().Set("X-Tr", "tr-"+id)
		return
	}
	fmt.Fprintf(w, "%s:%s:%s", r.Method, id, body)
}

// Many concurrent requests of all kinds on one ClientConn against the
// package's server (bodies, HEAD, 204, resets, trailers both ways,
// cancellation midway, Close from elsewhere): each response matches its
// request.
func TestStreamReuseUnderMixedTraffic(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	<-cc.Settled()
	const workers, per = 16, 300
	var wg sync.WaitGroup
	var bad atomic.Int32
	fail := func(format string, a ...any) {
		if bad.Add(1) < 20 {
			t.Errorf(format, a...)
		}
	}
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				id := fmt.Sprintf("g%di%d", g, i)
				kind := (g + i) % 11
				method, path, body := "GET", "/e/"+id, ""
				ctx, cancel := context.WithCancel(context.Background())
				switch kind {
				case 1:
					method, body = "POST", "pbody-"+id
				case 2:
					method, path = "HEAD", "/s/200/"+id
				case 3:
					path = "/s/204/" + id
				case 4:
					path = "/reset/" + id
				case 5:
					path = "/trailer/" + id
				case 6:
					path = "/slow/" + id
					time.AfterFunc(time.Millisecond, cancel)
				case 7:
					path = "/s/418/" + id
				case 8:
					path = "/stream/" + id
				case 9:
					path = "/partial/" + id
				case 10:
					method, path, body = "POST", "/rtrailer/"+id, "rt-"+id
				}
				var rb io.Reader
				if body != "" {
					rb = strings.NewReader(body)
				}
				req, _ := http.NewRequestWithContext(ctx, method, "http://x"+path, rb)
				req.Header.Set("X-Req", id)
				if kind == 10 {
					req.Trailer = http.Header{"X-Rt": {"trv-" + id}}
					req.Header.Set("Trailer", "X-Rt") // (the client does not announce them itself)
					req.ContentLength = -1
				}
				reviewReserve(t, cc)
				resp, err := cc.RoundTrip(req)
				switch kind {
				case 8:
					if err != nil {
						fail("%s: %v", path, err)
						cancel()
						continue
					}
					buf := make([]byte, 64)
					n, _ := io.ReadFull(resp.Body, buf[:len("c0-"+id+";")])
					if string(buf[:n]) != "c0-"+id+";" {
						fail("%s: first chunk %q", path, buf[:n])
					}
					if i%2 == 0 {
						cancel() // midway
						rest, err := io.ReadAll(resp.Body)
						if err == nil && string(rest) != "c1-"+id+";c2-"+id+";" {
							fail("%s: rest %q", path, rest)
						}
					} else {
						go resp.Body.Close() // midway, from elsewhere
					}
					if i%2 == 0 {
						resp.Body.Close()
					}
					cancel()
					continue
				case 9:
					if err == nil {
						got, err2 := io.ReadAll(resp.Body)
						if !strings.HasPrefix("part-"+id, string(got)) {
							fail("%s: partial body %q", path, got)
						}
						err = err2
						resp.Body.Close()
					}
					if err == nil {
						fail("%s %s: no error", method, path)
					}
					cancel()
					continue
				case 4, 6:
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					if err == nil {
						fail("%s %s: no error", method, path)
					}
					cancel()
					continue
				}
				if err != nil {
					fail("%s %s: %v", method, path, err)
					cancel()
					continue
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					fail("%s %s: reading: %v", method, path, err)
				}
				want, wantCode := fmt.Sprintf("%s:%s:%s", method, id, body), 200
				switch kind {
				case 2:
					want = ""
				case 3:
					want, wantCode = "", 204
				case 5:
					want = "tbody-" + id
					if tr := resp.Trailer.Get("X-Tr"); tr != "tr-"+id {
						fail("%s: trailer %q", id, tr)
					}
				case 7:
					want, wantCode = "body-"+id, 418
				case 10:
					want = id + ":rt-" + id + ":trv-" + id
				}
				if string(got) != want || resp.StatusCode != wantCode || resp.Header.Get("X-Id") != id || resp.Header.Get("X-Req") != id {
					fail("%s %s: got %d %q X-Id %q X-Req %q; want %d %q", method, path, resp.StatusCode, got, resp.Header.Get("X-Id"), resp.Header.Get("X-Req"), wantCode, want)
				}
				resp.Body.Close()
				cancel()
			}
		}()
	}
	wg.Wait()
}

// A handler that writes a body for HEAD: the server drops it (RFC 9110,
// 9.3.2), as net/http's does.
func TestHEADResponseHasNoBody(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	reviewReserve(t, cc)
	req, _ := http.NewRequest("HEAD", "http://x/s/200/headbody", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) > 0 {
		t.Errorf("HEAD response with a body: %q", b)
	}
}

// A second Close of a body (defer resp.Body.Close() plus an explicit one is
// common) after its stream went on to another request does nothing.
func TestSecondCloseLeavesNextRequestAlone(t *testing.T) {
	release := make(chan struct{})
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done(): // a request whose stream was not the one
				return
			}
			io.WriteString(w, "second-body")
			return
		}
		io.WriteString(w, "first-body")
	})
	defer close(release)
	cc := dialClient(t, addr)
	reviewReserve(t, cc)
	req, _ := http.NewRequest("GET", "http://x/a", nil)
	r1, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r1.Body)
	r1.Body.Close()
	// Requests until one gets r1's stream back.
	var r2 *http.Response
	for i := 0; i < 20 && r2 == nil; i++ {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", "http://x/hold", nil)
		r, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.Body.(*clientBody).cs == r1.Body.(*clientBody).cs {
			r2 = r
			break
		}
		r.Body.Close()
	}
	if r2 == nil {
		t.Fatal("the stream was not reused in 20 requests")
	}
	r1.Body.Close() // again: must do nothing
	release <- struct{}{}
	b, err := io.ReadAll(r2.Body)
	if err != nil || string(b) != "second-body" {
		t.Errorf("the next request's body after a second Close of the previous one: %q, %v", b, err)
	}
	r2.Body.Close()
}

// A Read after Close fails, also once the stream serves another request.
func TestReadAfterCloseFails(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	reviewReserve(t, cc)
	req, _ := http.NewRequest("GET", "http://x/e/one", nil)
	r1, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r1.Body)
	r1.Body.Close()
	for i := range 20 {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://x/e/two%d", i), nil)
		r, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		reused := r.Body.(*clientBody).cs == r1.Body.(*clientBody).cs
		if reused {
			b, _ := io.ReadAll(r1.Body) // the closed body
			if len(b) > 0 {
				t.Errorf("Read on a closed body returned %q: the next request's body", b)
			}
		}
		r.Body.Close()
		if reused {
			return
		}
	}
	t.Fatal("the stream was not reused in 20 requests")
}

// A request's context is canceled when its handler returns (as
// net/http's) and stays so while the stream serves other requests.
func TestRequestContextStaysEnded(t *testing.T) {
	var mu sync.Mutex
	var saved []context.Context
	hold := make(chan struct{})
	inHandler := make(chan context.Context, 1)
	addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			inHandler <- r.Context()
			<-hold
			return
		}
		mu.Lock()
		saved = append(saved, r.Context())
		mu.Unlock()
	})
	cc := dialClient(t, addr)
	for i := range 5 {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://x/a%d", i), nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	reviewReserve(t, cc)
	req, _ := http.NewRequest("GET", "http://x/hold", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := cc.RoundTrip(req); err == nil {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}()
	cur := <-inHandler
	mu.Lock()
	for i, ctx := range saved {
		if ctx.Err() == nil {
			t.Errorf("request %d's context, its handler long returned, is live again (same as the request in flight: %v)", i, ctx == cur)
		}
	}
	mu.Unlock()
	close(hold)
	<-done
}

// A handler that leaves a context derived with WithCancel to a goroutine
// (or leaks it): when the request ends, cancel runs the child's
// propagation on a new goroutine, which calls parent.Err(). The stream
// may serve its next request before that goroutine runs; the child must
// still see its parent ended (a reused context made context's cancel
// panic with "missing cancel error"). The interleaving is forced with one
// P, in a subprocess (a panic ends the process).
func TestLeakedChildContextAfterReuse(t *testing.T) {
	if os.Getenv("H2_TEST_REUSE_CHILD") == "1" {
		runtime.GOMAXPROCS(1)
		sc := &serverConn{opts: ServerOptions{Context: context.Background()}}
		st := sc.newStream(1)
		child, cancelChild := context.WithCancel(st.ctx) // as a handler would
		_ = cancelChild
		st.ctx.cancel()               // run's deferred cancel: go f()
		sc.free = append(sc.free, st) // worker's and connection's refs gone; quiesce
		sc.newStream(3)               // the next HEADERS, before f has run
		select {
		case <-child.Done():
		case <-time.After(2 * time.Second):
		}
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakedChildContextAfterReuse$", "-test.count=1")
	cmd.Env = append(os.Environ(), "H2_TEST_REUSE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(out), "missing cancel error") {
			t.Fatalf("the process panicked: %s", firstLines(string(out), 6))
		}
		t.Fatalf("subprocess: %v\n%s", err, firstLines(string(out), 20))
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}

// The same through the server: handlers hand a context derived from the
// request's to a goroutine (which outlives them); concurrent requests on
// one connection. In a subprocess: a panic ends the process.
func TestLeakedChildContextRealServer(t *testing.T) {
	if os.Getenv("H2_TEST_REAL_SERVER_CHILD") == "1" {
		addr := leanServer(t, func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithCancel(r.Context())
			go func() { <-ctx.Done(); cancel() }()
			io.WriteString(w, "ok")
		})
		cc := dialClient(t, addr)
		var wg sync.WaitGroup
		deadline := time.Now().Add(2 * time.Second)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					reviewReserve(t, cc)
					req, _ := http.NewRequest("GET", "http://x/", nil)
					resp, err := cc.RoundTrip(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.ReadAll(resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakedChildContextRealServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "H2_TEST_REAL_SERVER_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("subprocess: %v\n%s", err, firstLines(string(out), 30))
	}
}

// Two goroutines closing one body at once (a watchdog and a deferred
// Close) release its stream once (the race detector watches the rest):
// every request after them is answered.
func TestConcurrentClose(t *testing.T) {
	addr := leanServer(t, reviewHandler)
	cc := dialClient(t, addr)
	for i := range 50 {
		reviewReserve(t, cc)
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://x/e/c%d", i), nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { resp.Body.Close(); close(done) }()
		resp.Body.Close()
		<-done
	}
}
