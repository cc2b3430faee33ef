package harness

import (
	"context"
	"fmt"
	"io"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"
)

// runResult is one load run of one row.
type runResult struct {
	p50, p90, p99, p999, max float64 // ms
	qps                      float64
	over1ms                  float64 // share of requests slower than 1 ms, in %
	requests                 int64
	errors                   int64
	cpuSeconds               float64 // proxies' CPU over the run, all hops
	syscalls                 uint64  // proxies' read and write system calls over the run, all hops
	peakRSS                  []int64 // per proxy instance
	idlePct                  float64 // the machine's CPUs idle over the run, in %; -1 unknown
}

// load runs fortio against t: qps > 0 is an open-loop run at that constant
// rate (uniform, no catch-up); qps <= 0 runs at the maximum rate.
func (b *bench) load(ctx context.Context, t *target, qps float64, d time.Duration) (*runResult, error) {
	o := &fhttp.HTTPRunnerOptions{}
	o.RunnerOptions = periodic.RunnerOptions{
		RunType: "weftbench " + t.name, QPS: qps, Duration: d, NumThreads: b.opts.Connections,
		Percentiles: []float64{50, 90, 99, 99.9},
		// 10 µs buckets: fortio's 1 ms default is coarser than a hop.
		Resolution: 0.00001, Uniform: qps > 0, NoCatchUp: true, Out: io.Discard,
	}
	if qps <= 0 {
		o.QPS, o.NumThreads = -1, b.opts.CapacityConnections
	}
	o.HTTPOptions.Init(t.url)
	o.HTTPReqTimeOut = 5 * time.Second
	if t.host != "" {
		if err := o.AddAndValidateExtraHeader("Host: " + t.host); err != nil {
			return nil, fmt.Errorf("load %s: %w", t.name, err)
		}
	}
	o.AllowInitialErrors = true

	res := &runResult{peakRSS: make([]int64, len(t.proxies)), idlePct: -1}
	machine0, machineOK := readCPUTimes()
	cpu0 := 0.0
	var sys0 uint64
	for i := range t.proxies {
		cpu0 += t.proxies[i].cpu()
		sys0 += t.proxies[i].syscalls()
	}
	stopSampling := sampleEvery(100*time.Millisecond, func() {
		for i := range t.proxies {
			res.peakRSS[i] = max(res.peakRSS[i], t.proxies[i].rss())
		}
	})
	// Ctrl-C aborts the run early. fortio's runner keeps its own copy of
	// the options and clears o.Stop once it has started, so the aborter is
	// held here.
	stop := periodic.NewAborter()
	o.Stop = stop
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop.Abort(false)
		case <-done:
		}
	}()
	r, err := fhttp.RunHTTPTest(o)
	close(done)
	stopSampling()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", t.name, err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for i := range t.proxies {
		res.cpuSeconds += t.proxies[i].cpu()
		res.syscalls += t.proxies[i].syscalls()
	}
	res.cpuSeconds -= cpu0
	res.syscalls -= sys0
	if machine1, ok := readCPUTimes(); ok && machineOK {
		res.idlePct = idlePct(machine0, machine1)
	}
	h := r.DurationHistogram
	res.requests = h.Count
	res.errors = h.Count - r.RetCodes[200]
	res.qps = r.ActualQPS
	res.max = h.Max * 1000
	res.over1ms = shareAbove(h, 0.001)
	for _, p := range h.Percentiles {
		v := p.Value * 1000
		switch p.Percentile {
		case 50:
			res.p50 = v
		case 90:
			res.p90 = v
		case 99:
			res.p99 = v
		case 99.9:
			res.p999 = v
		}
	}
	return res, nil
}

// shareAbove is the share of h's samples slower than sec seconds, in %. A
// bucket that straddles sec counts in proportion to its part above it.
func shareAbove(h *stats.HistogramData, sec float64) float64 {
	if h == nil || h.Count == 0 {
		return 0
	}
	var n float64
	for _, b := range h.Data {
		switch {
		case b.Start >= sec:
			n += float64(b.Count)
		case b.End > sec && b.End > b.Start:
			n += float64(b.Count) * (b.End - sec) / (b.End - b.Start)
		}
	}
	return 100 * n / float64(h.Count)
}
