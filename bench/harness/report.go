package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Result is the whole bench output; its JSON shape is fixed by issue 4.
type Result struct {
	Settings     Settings      `json:"settings"`
	Rows         []Row         `json:"rows"`
	ControlPlane *ControlPlane `json:"controlplane"`
	// Targets are issue 4's goals for the weft row, judged against this
	// run (absent when the weft or nginx row was not run).
	Targets []Target `json:"targets,omitempty"`
	// Paired compares weft with nginx repetition by repetition (absent
	// when either row was not run).
	Paired *Paired `json:"paired,omitempty"`
	// PairedFloor compares weft with the go-relay row, the floor for a Go
	// proxy of weft-proxy's shape, the same way.
	PairedFloor *Paired `json:"paired_go_relay,omitempty"`
	// Notes are things a reader must know, e.g. a row that was skipped.
	Notes []string `json:"notes,omitempty"`
}

// Paired compares the weft row with another (nginx, or the go-relay floor)
// within each repetition, whose runs are minutes apart: on a machine whose
// speed drifts (other tenants, other work), the ratio of two rows in the
// same repetition is steadier than either row's figure.
type Paired struct {
	// MaxRPSRatio is weft's max rps over the other row's: the median over
	// the repetitions, then the smallest and largest.
	MaxRPSRatio       float64    `json:"max_rps_ratio"`
	MaxRPSRatioSpread [2]float64 `json:"max_rps_ratio_spread"`
	// P99DiffMs is weft's p99 minus the other row's, in ms, the same way.
	P99DiffMs       float64    `json:"p99_diff_ms"`
	P99DiffMsSpread [2]float64 `json:"p99_diff_ms_spread"`
}

// pair computes Paired for the weft row against the row named base from
// the per-repetition figures of rows.
func pair(rows []Row, base string) *Paired {
	var weft, baseRow *Row
	for i := range rows {
		switch rows[i].Name {
		case "weft":
			weft = &rows[i]
		case base:
			baseRow = &rows[i]
		}
	}
	if weft == nil || baseRow == nil {
		return nil
	}
	var ratios, diffs []float64
	for i := range min(len(weft.MaxRPSRuns), len(baseRow.MaxRPSRuns)) {
		if baseRow.MaxRPSRuns[i] > 0 {
			ratios = append(ratios, weft.MaxRPSRuns[i]/baseRow.MaxRPSRuns[i])
		}
	}
	for i := range min(len(weft.P99Runs), len(baseRow.P99Runs)) {
		diffs = append(diffs, weft.P99Runs[i]-baseRow.P99Runs[i])
	}
	if len(ratios) == 0 || len(diffs) == 0 {
		return nil
	}
	return &Paired{
		MaxRPSRatio: Median(ratios), MaxRPSRatioSpread: spread(ratios),
		P99DiffMs: Median(diffs), P99DiffMsSpread: spread(diffs),
	}
}

// Target is one performance goal and where this run stands.
type Target struct {
	Name string  `json:"name"`
	Goal string  `json:"goal"`
	Weft float64 `json:"weft"`
	Met  bool    `json:"met"`
	// Paired is, for the targets set against nginx, the same comparison
	// made within each repetition (see Paired): the verdict compares
	// medians that may come from different repetitions, and on a noisy
	// machine the paired figure is the steadier one. It does not change
	// the verdict.
	Paired string `json:"paired,omitempty"`
}

// judge evaluates the targets: added p99 no worse than the nginx pair's,
// at most 0.1 vCPU per 1000 rps per proxy, RSS at most 20 MB under load,
// max rps at least the nginx pair's.
//
// paired is weft against nginx within each repetition (pair), or nil; it
// is shown beside the verdicts set against nginx and does not change them.
func judge(rows []Row, paired *Paired) []Target {
	var weft, nginx *Row
	hasDirect := false
	for i := range rows {
		switch rows[i].Name {
		case "weft":
			weft = &rows[i]
		case "nginx":
			nginx = &rows[i]
		case "direct":
			hasDirect = true
		}
	}
	if weft == nil {
		return nil
	}
	perHop := weft.CPUsPer1k / float64(max(len(weft.PerProxy), 1))
	t := []Target{
		{Name: "vCPU per 1000 rps, per proxy", Goal: "≤ 0.1", Weft: perHop, Met: perHop <= 0.1},
		{Name: "RSS peak under load, MB", Goal: "≤ 20", Weft: weft.RSSPeakMB, Met: weft.RSSPeakMB <= 20},
	}
	if nginx != nil {
		var p99Paired, rpsPaired string
		if p := paired; p != nil {
			p99Paired = fmt.Sprintf("weft's p99 %+.3f ms from nginx's (%+.3f to %+.3f)", p.P99DiffMs, p.P99DiffMsSpread[0], p.P99DiffMsSpread[1])
			rpsPaired = fmt.Sprintf("%.3f of nginx's (%.3f–%.3f)", p.MaxRPSRatio, p.MaxRPSRatioSpread[0], p.MaxRPSRatioSpread[1])
		}
		// Added latency needs the direct row to add to.
		if hasDirect {
			t = append(t, Target{Name: "added p99, ms", Goal: fmt.Sprintf("≤ nginx's %s", f2(nginx.AddedP99ms)), Weft: weft.AddedP99ms, Met: weft.AddedP99ms <= nginx.AddedP99ms, Paired: p99Paired})
		}
		t = append(t, Target{Name: "max rps", Goal: fmt.Sprintf("≥ nginx's %.0f", nginx.MaxRPS), Weft: weft.MaxRPS, Met: weft.MaxRPS >= nginx.MaxRPS, Paired: rpsPaired})
	}
	return t
}

// Settings records every setting that shapes the figures.
type Settings struct {
	Mode             string  `json:"mode"` // quick or full
	Date             string  `json:"date"`
	CPUs             int     `json:"cpus"`
	CPUModel         string  `json:"cpu_model"`
	Kernel           string  `json:"kernel"`
	WeftProxy        string  `json:"weft_proxy"` // the sidecars' runtime settings
	GOMAXPROCS       string  `json:"gomaxprocs"` // of the backend and the load generator; "unset" means the Go default (= CPUs)
	GOGC             string  `json:"gogc"`
	CPUPinning       string  `json:"cpu_pinning"`
	Reps             int     `json:"reps"`
	LatencyQPS       float64 `json:"latency_qps"`
	LatencySeconds   float64 `json:"latency_seconds"`
	CapacitySeconds  float64 `json:"capacity_seconds"`
	Connections      int     `json:"connections"`          // of the latency run
	CapacityConns    int     `json:"capacity_connections"` // of the capacity run
	BodyBytes        int     `json:"body_bytes"`
	LoadGenerator    string  `json:"load_generator"`
	NginxWorkers     string  `json:"nginx_workers"`
	HAProxyThreads   string  `json:"haproxy_threads"`
	GoVersion        string  `json:"go_version"`
	WeftRev          string  `json:"weft_rev"`
	NginxVersion     string  `json:"nginx_version"`
	HAProxyVersion   string  `json:"haproxy_version"`
	ControlClients   []int   `json:"controlplane_clients"`
	ControlServices  int     `json:"controlplane_services"`
	ControlEndpoints int     `json:"controlplane_endpoints_per_service"`
}

// Row is one row's medians over the repetitions.
type Row struct {
	Name        string  `json:"name"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	Maxms       float64 `json:"max_ms"`
	AchievedQPS float64 `json:"achieved_qps"`
	MaxRPS      float64 `json:"max_rps"`
	CPUsPer1k   float64 `json:"proxy_cpu_s_per_1k"`
	RSSPeakMB   float64 `json:"proxy_rss_peak_mb"`
	RSSIdleMB   float64 `json:"proxy_rss_idle_mb"`
	AddedP50ms  float64 `json:"added_p50_ms"`
	AddedP90ms  float64 `json:"added_p90_ms"`
	AddedP99ms  float64 `json:"added_p99_ms"`
	// Over1msPct is the share of the latency runs' requests slower than
	// 1 ms, in %: how often the tail happens, where p99 says only how far
	// out it lies.
	Over1msPct float64 `json:"over_1ms_pct"`
	// CapacityIdlePct is the share of the machine's CPU time left idle
	// during the row's capacity runs (median over the repetitions, from
	// /proc/stat; -1 where it could not be read). The load generator,
	// the backend and the proxies share the CPUs, so a row whose maximum
	// rate is lower while it leaves more of them idle is held back by how
	// its processes take turns, not by what each request costs.
	CapacityIdlePct float64 `json:"capacity_cpu_idle_pct"`
	Errors          int64   `json:"errors"` // non-200 answers and socket errors, summed over all runs
	// P99Spread and MaxRPSSpread are the smallest and largest p99 and max
	// rps over the repetitions: how far apart the runs behind the medians
	// were.
	P99Spread    [2]float64 `json:"p99_ms_spread"`
	MaxRPSSpread [2]float64 `json:"max_rps_spread"`
	// P99Runs and MaxRPSRuns are each repetition's p99 and max rps, in
	// the order the repetitions ran.
	P99Runs        []float64 `json:"p99_ms_runs,omitempty"`
	MaxRPSRuns     []float64 `json:"max_rps_runs,omitempty"`
	ProxyProcesses int       `json:"proxy_processes"`
	// PerProxy holds each proxy instance's RSS (peak, idle) in MB.
	PerProxy []ProxyRSS `json:"per_proxy,omitempty"`
}

// ProxyRSS is one proxy instance of a row (client side or server side).
type ProxyRSS struct {
	Name   string  `json:"name"`
	PeakMB float64 `json:"peak_mb"`
	IdleMB float64 `json:"idle_mb"`
}

// ControlPlane is the synthetic control plane run.
type ControlPlane struct {
	Services        int     `json:"services"`
	EndpointsPerSvc int     `json:"endpoints_per_service"`
	RegisterSeconds float64 `json:"register_s"`
	IdleRSSMB       float64 `json:"idle_rss_mb"` // after registering, before any client
	// Sidecar is one real weft-proxy sidecar in this mesh.
	Sidecar *ScaleSidecar `json:"sidecar,omitempty"`
	Runs    []ScaleRun    `json:"runs"`
	Error   string        `json:"error,omitempty"`
}

// ScaleSidecar is what a real sidecar (weft-proxy, incremental xDS) costs
// in the control plane run's mesh.
type ScaleSidecar struct {
	ReadySeconds float64 `json:"ready_s"` // from start until it serves the whole config
	RSSMB        float64 `json:"rss_mb"`  // with the whole config
	// CPUPerChangeMs is its CPU time per applied change (one new service),
	// from `weft apply` until it has ACKed, averaged over Changes.
	CPUPerChangeMs float64 `json:"cpu_per_change_ms"`
	Changes        int     `json:"changes"`
	Error          string  `json:"error,omitempty"`
}

// ScaleRun is the control plane with Clients ADS clients connected.
type ScaleRun struct {
	Clients int `json:"clients"`
	// XDS is the clients' protocol: "delta" (incremental, what weft-proxy
	// uses) or "sotw" (state of the world).
	XDS string `json:"xds"`
	// FullPushSeconds: from the moment all clients dial until every one has
	// ACKed a complete config (CDS, LDS, every EDS and RDS).
	FullPushSeconds float64 `json:"full_push_s"`
	// ApplyToAckP50ms and P99ms: from `weft apply` of one new service until
	// each client has ACKed the cluster, its endpoints and its route.
	ApplyToAckP50ms float64 `json:"apply_to_ack_p50_ms"`
	ApplyToAckP99ms float64 `json:"apply_to_ack_p99_ms"`
	ApplyToAckMaxms float64 `json:"apply_to_ack_max_ms"`
	// ApplyWaitms is how long `weft apply --wait` would wait: until the
	// control plane's sync report says every proxy ACKed the revision.
	ApplyWaitms float64 `json:"apply_wait_ms"`
	RSSPeakMB   float64 `json:"rss_peak_mb"`
	CPUSeconds  float64 `json:"cpu_s"` // control plane CPU over the connect and the change
	Error       string  `json:"error,omitempty"`
}

// WriteJSON writes r to path, creating its directory.
func WriteJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func f2(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

// Markdown renders r as the report printed and written to latest.md.
func Markdown(w io.Writer, r *Result) {
	s := r.Settings
	fmt.Fprintf(w, "# Weft bench (%s)\n\n", s.Mode)
	fmt.Fprintf(w, "%s · %d CPUs (%s) · kernel %s · %s · weft %s\n\n", s.Date, s.CPUs, s.CPUModel, s.Kernel, s.GoVersion, s.WeftRev)
	fmt.Fprintf(w, "Load: %s, HTTP/1.1 keep-alive, %d B body; latency run %.0f rps (uniform, no catch-up) over %d connections for %.0fs, capacity run at max rate over %d connections for %.0fs; rows interleaved over %d repetitions, each starting one row later than the one before, medians shown.\n\n",
		s.LoadGenerator, s.BodyBytes, s.LatencyQPS, s.Connections, s.LatencySeconds, s.CapacityConns, s.CapacitySeconds, s.Reps)
	fmt.Fprintf(w, "Settings: weft-proxy %s · backend and load generator GOMAXPROCS=%s GOGC=%s · nginx worker_processes %s · haproxy nbthread %s · CPU pinning: %s · %s · %s\n\n",
		s.WeftProxy, s.GOMAXPROCS, s.GOGC, s.NginxWorkers, s.HAProxyThreads, s.CPUPinning, s.NginxVersion, s.HAProxyVersion)
	fmt.Fprintln(w, "| row | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | achieved qps | added p50 / p90 / p99 ms | max rps | proxy CPU s per 1k req | proxy RSS peak MB | proxy RSS idle MB | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	// Added latency needs the direct row to add to; a run without it
	// (-rows weft,nginx) shows none.
	hasDirect := slices.ContainsFunc(r.Rows, func(row Row) bool { return row.Name == "direct" })
	for _, row := range r.Rows {
		added := "-"
		cpu, peak, idle := "-", "-", "-"
		if row.Name != "direct" {
			if hasDirect {
				added = fmt.Sprintf("%s / %s / %s", f2(row.AddedP50ms), f2(row.AddedP90ms), f2(row.AddedP99ms))
			}
			cpu, peak, idle = f2(row.CPUsPer1k), f2(row.RSSPeakMB), f2(row.RSSIdleMB)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.0f | %s | %.0f | %s | %s | %s | %d |\n",
			row.Name, f2(row.P50ms), f2(row.P90ms), f2(row.P99ms), f2(row.P999ms), f2(row.Maxms), row.AchievedQPS,
			added, row.MaxRPS, cpu, peak, idle, row.Errors)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Proxy CPU is the user+system time of all of a row's proxy processes (both hops) during the latency run, per 1000 requests; at 1000 rps it equals vCPU per 1000 rps, and half of it is one proxy's share. RSS is per proxy instance (the larger of the two hops; an nginx or HAProxy instance counts its master and workers), peak sampled every 100 ms under load, idle after start-up.")
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		switch row.Name {
		case "go-relay":
			fmt.Fprintln(w, "go-relay is a featureless relay of weft-proxy's shape (a goroutine per connection on Go's netpoller; it frames messages and changes no byte), run as two `weftbench relay` processes: the floor for a Go proxy on this machine. Its RSS is weftbench's (fortio linked in), not a figure to compare.")
			fmt.Fprintln(w)
		case "go-epoll":
			fmt.Fprintln(w, "go-epoll is the same relay (without framing: bytes pass as they come) written as an event loop: one locked thread in epoll_wait, raw reads and writes, no goroutine per connection and no netpoller; two `weftbench epoll-relay` processes, GOMAXPROCS=1. The floor for a Go proxy that leaves the runtime's scheduler out of its data path. Its RSS is weftbench's.")
			fmt.Fprintln(w)
		}
	}
	var spreads []string
	for _, row := range r.Rows {
		if row.MaxRPSSpread[1] > 0 {
			spreads = append(spreads, fmt.Sprintf("%s p99 %s–%s ms, max rps %.0f–%.0f", row.Name,
				f2(row.P99Spread[0]), f2(row.P99Spread[1]), row.MaxRPSSpread[0], row.MaxRPSSpread[1]))
		}
	}
	if len(spreads) > 0 {
		fmt.Fprintf(w, "Spread over the repetitions (smallest–largest): %s.\n\n", strings.Join(spreads, "; "))
	}
	var slow []string
	for _, row := range r.Rows {
		slow = append(slow, fmt.Sprintf("%s %.2f %%", row.Name, row.Over1msPct))
	}
	if len(slow) > 0 {
		fmt.Fprintf(w, "Requests slower than 1 ms in the latency runs (median share over the repetitions): %s.\n\n", strings.Join(slow, "; "))
	}
	var idle []string
	for _, row := range r.Rows {
		if row.CapacityIdlePct >= 0 {
			idle = append(idle, fmt.Sprintf("%s %.1f %%", row.Name, row.CapacityIdlePct))
		}
	}
	if len(idle) > 0 {
		fmt.Fprintf(w, "CPU time left idle during the capacity runs (the whole machine, median over the repetitions): %s.\n\n", strings.Join(idle, "; "))
	}
	for _, pb := range []struct {
		p    *Paired
		base string
	}{{r.Paired, "nginx"}, {r.PairedFloor, "go-relay"}} {
		if p := pb.p; p != nil {
			fmt.Fprintf(w, "Paired by repetition (weft against %[1]s in the same repetition): weft's max rps is %[2]s of %[1]s's (%[3]s–%[4]s), weft's p99 minus %[1]s's is %+.3[5]f ms (%+.3[6]f to %+.3[7]f); medians over the repetitions, then smallest–largest.\n\n",
				pb.base, f2(p.MaxRPSRatio), f2(p.MaxRPSRatioSpread[0]), f2(p.MaxRPSRatioSpread[1]), p.P99DiffMs, p.P99DiffMsSpread[0], p.P99DiffMsSpread[1])
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "Targets for the weft row:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | goal | weft | met | paired by repetition (median, range) |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, t := range r.Targets {
			met := "no"
			if t.Met {
				met = "yes"
			}
			paired := t.Paired
			if paired == "" {
				paired = "-"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.Name, t.Goal, f2(t.Weft), met, paired)
		}
		fmt.Fprintln(w)
	}
	var per []string
	for _, row := range r.Rows {
		for _, p := range row.PerProxy {
			per = append(per, fmt.Sprintf("%s %s: idle %s MB, peak %s MB", row.Name, p.Name, f2(p.IdleMB), f2(p.PeakMB)))
		}
	}
	if len(per) > 0 {
		fmt.Fprintf(w, "Per proxy: %s.\n\n", strings.Join(per, "; "))
	}
	if cp := r.ControlPlane; cp != nil {
		fmt.Fprintf(w, "## Control plane: %d services × %d endpoints (ServiceEntry), registered in %.2fs; idle RSS %s MB\n\n",
			cp.Services, cp.EndpointsPerSvc, cp.RegisterSeconds, f2(cp.IdleRSSMB))
		if cp.Error != "" {
			fmt.Fprintf(w, "Error: %s\n\n", cp.Error)
		}
		if sc := cp.Sidecar; sc != nil {
			if sc.Error != "" {
				fmt.Fprintf(w, "A weft-proxy sidecar in this mesh: error: %s\n\n", sc.Error)
			} else {
				// CPU time is counted in clock ticks (10 ms) over all the
				// changes: a tenth of a millisecond is what it resolves.
				fmt.Fprintf(w, "A weft-proxy sidecar in this mesh: ready in %.2fs, RSS %s MB, %.1f ms of CPU per change (%d changes, each one new service).\n\n",
					sc.ReadySeconds, f2(sc.RSSMB), sc.CPUPerChangeMs, sc.Changes)
			}
		}
		fmt.Fprintln(w, "| ADS clients | xDS | full push s | apply → all ACKed p50 ms | p99 ms | max ms | apply --wait ms | control RSS peak MB | control CPU s |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		for _, run := range cp.Runs {
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", run.Clients, run.XDS, f2(run.FullPushSeconds),
				f2(run.ApplyToAckP50ms), f2(run.ApplyToAckP99ms), f2(run.ApplyToAckMaxms), f2(run.ApplyWaitms), f2(run.RSSPeakMB), f2(run.CPUSeconds))
			if run.Error != "" {
				fmt.Fprintf(w, "\n%d %s clients: error: %s\n", run.Clients, run.XDS, run.Error)
			}
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}
