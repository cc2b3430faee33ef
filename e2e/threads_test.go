package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestSidecarThreadsFollowLoad: a sidecar runs on one thread while it is
// nearly idle, takes a second one while it carries a heavy load, and gives
// it back once the load has gone, as its envoy_server_concurrency gauge
// shows. On a machine with one CPU it never takes more than that one.
func TestSidecarThreadsFollowLoad(t *testing.T) {
	// Auto concurrency is for sidecars without event loops (a loop holds
	// a thread of its own), whatever the run's WEFT_EVENT_LOOPS says.
	t.Setenv("WEFT_EVENT_LOOPS", "0")
	m := startMesh(t)
	st := readUpState(t, m.dataDir)
	outbound := 0
	for _, p := range st.Procs {
		if p.Role == "sidecar" && p.Service == "productpage" {
			outbound = p.OutboundPort
		}
	}
	if outbound == 0 {
		t.Fatal("up.json has no productpage sidecar with an outbound port")
	}
	threads := func() float64 { return m.adminStat("productpage", "v1", "envoy_server_concurrency") }
	waitThreads := func(want float64, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := threads()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: productpage's sidecar runs %v threads, want %v", what, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitThreads(1, "idle")

	// Load: details through productpage's sidecar, as productpage calls
	// it, from 16 connections as fast as they go, until the sidecar takes
	// its second thread (or 20 s pass).
	proxyURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", outbound))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 16}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://details:9080/details/0", nil)
				resp, err := client.Do(req)
				mu.Lock()
				if err == nil && resp.StatusCode == 200 {
					ok++
				} else if ctx.Err() == nil {
					failed++
				}
				mu.Unlock()
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	if runtime.NumCPU() < 2 {
		time.Sleep(3 * time.Second)
		if got := threads(); got != 1 {
			t.Errorf("under load on one CPU: productpage's sidecar runs %v threads, want 1", got)
		}
	} else {
		waitThreads(2, "under load")
	}
	stop()
	wg.Wait()
	if ok == 0 || failed > 0 {
		t.Errorf("under load: %d requests answered 200, %d failed", ok, failed)
	}
	waitThreads(1, "after the load")
}
