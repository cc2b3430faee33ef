package fault

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
)

// upstream is the next handler: it counts the requests that reach it.
type upstream struct{ n atomic.Int32 }

func (u *upstream) Serve(x *chain.Exchange) {
	u.n.Add(1)
	io.WriteString(x.W, "upstream")
}

// serve runs f behind a real HTTP server on loopback, with route as the
// selected route of every request.
func serve(t *testing.T, f *Filter, route *router.Route) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Serve(&chain.Exchange{W: w, R: r, Route: route})
	}))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func delay(d time.Duration, pct uint32) *router.FaultDelay {
	return &router.FaultDelay{Duration: d, Percent: pct}
}

func httpAbort(status int, pct uint32) *router.FaultAbort {
	return &router.FaultAbort{HTTPStatus: status, Percent: pct, Body: router.DefaultFaultAbortBody}
}

func TestFaults(t *testing.T) {
	const d = 50 * time.Millisecond
	tests := []struct {
		name       string
		route      *router.Fault
		dflt       *router.Fault
		wantCode   int
		wantBody   string
		wantDelay  bool
		wantStats  Stats
		wantPassed int32
	}{
		{"delay 100%", &router.Fault{Delay: delay(d, router.Million)}, nil,
			200, "upstream", true, Stats{DelaysInjected: 1}, 1},
		{"abort 100%", &router.Fault{Abort: httpAbort(503, router.Million)}, nil,
			503, "fault filter abort", false, Stats{AbortsInjected: 1}, 0},
		{"delay then abort", &router.Fault{Delay: delay(d, router.Million), Abort: httpAbort(418, router.Million)}, nil,
			418, "fault filter abort", true, Stats{DelaysInjected: 1, AbortsInjected: 1}, 0},
		{"custom abort body", &router.Fault{Abort: &router.FaultAbort{HTTPStatus: 500, Percent: router.Million, Body: "injected"}}, nil,
			500, "injected", false, Stats{AbortsInjected: 1}, 0},
		{"0% never", &router.Fault{Delay: delay(time.Hour, 0), Abort: httpAbort(503, 0)}, nil,
			200, "upstream", false, Stats{}, 1},
		{"no fault", nil, nil, 200, "upstream", false, Stats{}, 1},
		{"filter default applies to a route without its own", nil, &router.Fault{Abort: httpAbort(502, router.Million)},
			502, "fault filter abort", false, Stats{AbortsInjected: 1}, 0},
		{"a route's empty fault disables the default", &router.Fault{}, &router.Fault{Abort: httpAbort(502, router.Million)},
			200, "upstream", false, Stats{}, 1},
		{"max_active_faults 0 injects nothing", &router.Fault{Abort: httpAbort(503, router.Million), LimitActive: true}, nil,
			200, "upstream", false, Stats{FaultsOverflow: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &upstream{}
			f := New(Options{Next: up, Default: tt.dflt})
			s := serve(t, f, &router.Route{Name: "r", Fault: tt.route})
			start := time.Now()
			code, body, _ := get(t, s.URL)
			took := time.Since(start)
			if code != tt.wantCode || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
			if tt.wantDelay && took < d {
				t.Errorf("answered after %v, want at least the %v delay", took, d)
			}
			if got := f.Stats(); got != tt.wantStats {
				t.Errorf("stats %+v, want %+v", got, tt.wantStats)
			}
			if n := up.n.Load(); n != tt.wantPassed {
				t.Errorf("%d requests reached the next handler, want %d", n, tt.wantPassed)
			}
		})
	}
}

func TestGRPCAbort(t *testing.T) {
	f := New(Options{Next: &upstream{}})
	s := serve(t, f, &router.Route{Fault: &router.Fault{Abort: &router.FaultAbort{GRPC: true, GRPCStatus: 14, Percent: router.Million, Body: "fault filter abort 100%"}}})
	code, body, h := get(t, s.URL)
	if code != 200 || body != "" {
		t.Errorf("got %d %q, want 200 and no body", code, body)
	}
	if h.Get("Content-Type") != "application/grpc" || h.Get("Grpc-Status") != "14" || h.Get("Grpc-Message") != "fault filter abort 100%25" {
		t.Errorf("headers %v, want a trailers-only gRPC UNAVAILABLE", h)
	}
}

// TestFraction rolls a 50% abort and a 25% delay 400 times with a seeded
// source: the shares land in wide bands around them (a fixed seed makes
// the test deterministic; the bands make it independent of the seed).
func TestFraction(t *testing.T) {
	src := rand.New(rand.NewPCG(1, 2))
	up := &upstream{}
	f := New(Options{Next: up, Rand: src.Uint64})
	route := &router.Route{Fault: &router.Fault{Delay: delay(time.Nanosecond, router.Million/4), Abort: httpAbort(503, router.Million/2)}}
	aborted := 0
	for range 400 {
		rec := httptest.NewRecorder()
		f.Serve(&chain.Exchange{W: rec, R: httptest.NewRequest("GET", "/", nil), Route: route})
		if rec.Code == 503 {
			aborted++
		}
	}
	if aborted < 140 || aborted > 260 {
		t.Errorf("%d of 400 aborted at 50%%", aborted)
	}
	st := f.Stats()
	if st.AbortsInjected != uint64(aborted) || int(up.n.Load()) != 400-aborted {
		t.Errorf("stats %+v and %d passed, for %d aborts", st, up.n.Load(), aborted)
	}
	if st.DelaysInjected < 60 || st.DelaysInjected > 140 {
		t.Errorf("%d of 400 delayed at 25%%", st.DelaysInjected)
	}
}

func TestClientGoneDuringDelay(t *testing.T) {
	up := &upstream{}
	f := New(Options{Next: up})
	route := &router.Route{Fault: &router.Fault{Delay: delay(time.Minute, router.Million)}}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() {
		f.Serve(&chain.Exchange{W: httptest.NewRecorder(), R: req, Route: route})
		close(done)
	}()
	for f.Stats().ActiveFaults == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the filter kept sleeping after the client went away")
	}
	if up.n.Load() != 0 {
		t.Error("the request was passed on after the client went away")
	}
	if st := f.Stats(); st.ActiveFaults != 0 || st.DelaysInjected != 1 {
		t.Errorf("stats %+v, want one delay and none active", st)
	}
}

// TestMaxActiveFaults: while one delayed request is in progress (held in
// the next handler), a second one is not faulted.
func TestMaxActiveFaults(t *testing.T) {
	release := make(chan struct{})
	var passed atomic.Int32
	next := chain.HandlerFunc(func(x *chain.Exchange) {
		passed.Add(1)
		if x.R.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(x.W, "upstream")
	})
	f := New(Options{Next: next})
	s := serve(t, f, &router.Route{Fault: &router.Fault{Delay: delay(time.Millisecond, router.Million), LimitActive: true, MaxActive: 1}})
	held := make(chan int)
	go func() {
		resp, err := http.Get(s.URL + "/hold")
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	for passed.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if st := f.Stats(); st.ActiveFaults != 1 {
		t.Fatalf("stats %+v while the delayed request is upstream, want 1 active fault", st)
	}
	if code, body, _ := get(t, s.URL+"/other"); code != 200 || body != "upstream" {
		t.Errorf("second request got %d %q", code, body)
	}
	close(release)
	if code := <-held; code != 200 {
		t.Errorf("held request got %d", code)
	}
	if st := f.Stats(); st != (Stats{DelaysInjected: 1, FaultsOverflow: 1}) {
		t.Errorf("stats %+v, want 1 delay, 1 overflow, none active", st)
	}
}

func TestNoFaultDoesNotAllocate(t *testing.T) {
	f := New(Options{Next: chain.HandlerFunc(func(*chain.Exchange) {})})
	x := &chain.Exchange{W: httptest.NewRecorder(), R: httptest.NewRequest("GET", "/", nil), Route: &router.Route{}}
	if n := testing.AllocsPerRun(100, func() { f.Serve(x) }); n != 0 {
		t.Errorf("Serve allocates %.0f times for a route without a fault", n)
	}
	x.Route.Fault = &router.Fault{Delay: delay(time.Hour, 0), Abort: httpAbort(503, 0)}
	if n := testing.AllocsPerRun(100, func() { f.Serve(x) }); n != 0 {
		t.Errorf("Serve allocates %.0f times for a fault that is not injected", n)
	}
}
