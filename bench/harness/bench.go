package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"fortio.org/log"

	"github.com/weftmesh/weft/internal/proxy"
)

// Options configures a bench run.
type Options struct {
	Logger *slog.Logger
	// Out receives the markdown report.
	Out io.Writer
	// Quick runs fewer, shorter repetitions (about 5 minutes in all).
	Quick bool
	// BinDir holds weft and weft-proxy.
	BinDir string
	// Self is the weftbench executable, re-run as `weftbench backend ADDR`.
	Self string
	// ResultsDir receives latest.md and latency.png.
	ResultsDir string
	// JSONPath is where the JSON goes (default ResultsDir/latest.json).
	JSONPath string
	// Reps, LatencyDuration and CapacityDuration default by mode: quick
	// 2 reps of 10s + 5s, full 5 reps of 30s + 15s.
	Reps                              int
	LatencyDuration, CapacityDuration time.Duration
	// Connections carry the latency run (default 16), and
	// CapacityConnections the capacity run (default 64). A maximum rate
	// needs enough requests in flight to keep every process of a row
	// busy: at 16 connections the nginx pair on 2 CPUs carried about
	// 26,000 rps, at 64 about 33,000 (docs/performance-log.md, round 11).
	Connections, CapacityConnections int
	// LatencyQPS is the latency run's constant rate (default 1000).
	LatencyQPS float64
	// ControlClients are the ADS client counts of the control plane run
	// (quick: 100; full: 100 and 1000).
	ControlClients []int
	// ControlServices and ControlEndpoints size the synthetic registry
	// (default 1000 and 10).
	ControlServices, ControlEndpoints int
	// Rows to run (default direct, weft, nginx, haproxy, go-relay).
	Rows []string
	// ProxyArgs are appended to both weft-proxy command lines (for
	// experiments, e.g. --concurrency 2).
	ProxyArgs []string
	// ProfilePath and ServerProfilePath, when set, receive CPU profiles of
	// the weft row's client and server sidecars, taken during an extra
	// capacity run after the measured ones.
	ProfilePath, ServerProfilePath string
	// ProfileQPS is the rate of the profiled run; 0 runs it at the
	// maximum rate, as a capacity run.
	ProfileQPS float64
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ResultsDir == "" {
		o.ResultsDir = "bench/results"
	}
	if o.JSONPath == "" {
		o.JSONPath = filepath.Join(o.ResultsDir, "latest.json")
	}
	if o.Reps == 0 {
		o.Reps = 5
		if o.Quick {
			o.Reps = 2
		}
	}
	if o.LatencyDuration == 0 {
		o.LatencyDuration = 30 * time.Second
		if o.Quick {
			o.LatencyDuration = 10 * time.Second
		}
	}
	if o.CapacityDuration == 0 {
		o.CapacityDuration = 15 * time.Second
		if o.Quick {
			o.CapacityDuration = 5 * time.Second
		}
	}
	if o.Connections == 0 {
		o.Connections = 16
	}
	if o.CapacityConnections == 0 {
		o.CapacityConnections = 64
	}
	if o.LatencyQPS == 0 {
		o.LatencyQPS = 1000
	}
	if o.ControlClients == nil {
		o.ControlClients = []int{100, 1000}
		if o.Quick {
			o.ControlClients = []int{100}
		}
	}
	if o.ControlServices == 0 {
		o.ControlServices = 1000
	}
	if o.ControlEndpoints == 0 {
		o.ControlEndpoints = 10
	}
	if len(o.Rows) == 0 {
		o.Rows = []string{"direct", "weft", "nginx", "haproxy", "go-relay"}
	}
}

type bench struct {
	opts        Options
	log         *slog.Logger
	procs       *procSet
	tmp         string
	weftBin     string
	proxyBin    string
	backendPort int
	aptUpdated  bool
	notes       []string
}

// rowRuns collects one row's runs over the repetitions.
type rowRuns struct {
	t        *target
	latency  []*runResult
	capacity []*runResult
	idleRSS  []int64
}

// Run runs the bench, writes latest.md, latest.json and latency.png, and
// prints the report to Out. It stops every process it started before it
// returns, also when ctx is cancelled (Ctrl-C).
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	log.SetLogLevelQuiet(log.Error) // fortio's own logger
	tmp, err := os.MkdirTemp("", "weftbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	b := &bench{
		opts: opts, log: opts.Logger, tmp: tmp,
		procs:    &procSet{log: opts.Logger, logDir: tmp},
		weftBin:  filepath.Join(opts.BinDir, "weft"),
		proxyBin: filepath.Join(opts.BinDir, "weft-proxy"),
	}
	defer b.procs.stopAll()

	res := &Result{Settings: b.settings(ctx)}

	if b.backendPort, err = freePort(); err != nil {
		return nil, err
	}
	backend, err := b.procs.start("backend", nil, opts.Self, "backend", fmt.Sprintf("127.0.0.1:%d", b.backendPort))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, backend, fmt.Sprintf("http://127.0.0.1:%d/", b.backendPort), "", 10*time.Second, status200); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}

	var rows []*rowRuns
	for _, name := range opts.Rows {
		var t *target
		switch name {
		case "direct":
			t, err = b.setupDirect(ctx)
		case "weft", "weft-h2":
			t, err = b.setupWeft(ctx, name)
		case "nginx", "haproxy":
			t, err = b.setupPair(ctx, name)
		case "go-relay", "go-epoll":
			t, err = b.setupRelay(ctx, name)
		default:
			return nil, fmt.Errorf("unknown row %q: want direct, weft, weft-h2, nginx, haproxy, go-relay or go-epoll", name)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if name == "direct" || name == "weft" {
				return nil, fmt.Errorf("row %s: %w", name, err)
			}
			b.note(fmt.Sprintf("row %s skipped: %v", name, err))
			continue
		}
		rr := &rowRuns{t: t}
		for i := range t.proxies {
			t.proxies[i].resolve()
			rr.idleRSS = append(rr.idleRSS, t.proxies[i].rss())
		}
		// Warm up: connections, pools, and the Go heap.
		b.log.Info("warming up", "row", name)
		if _, err := b.load(ctx, t, opts.LatencyQPS, 2*time.Second); err != nil {
			return nil, err
		}
		rows = append(rows, rr)
	}
	res.Settings = b.settings(ctx) // versions of anything just installed

	for rep := range opts.Reps {
		// Each repetition starts one row later, so that no row always
		// follows the same one (or the machine's state after it): with as
		// many repetitions as rows, each row runs once in each position.
		order := rotated(rows, rep)
		for _, rr := range order {
			b.log.Info("latency run", "rep", rep+1, "of", opts.Reps, "row", rr.t.name, "qps", opts.LatencyQPS, "duration", opts.LatencyDuration)
			r, err := b.load(ctx, rr.t, opts.LatencyQPS, opts.LatencyDuration)
			if err != nil {
				return nil, err
			}
			rr.latency = append(rr.latency, r)
		}
		for _, rr := range order {
			b.log.Info("capacity run", "rep", rep+1, "of", opts.Reps, "row", rr.t.name, "duration", opts.CapacityDuration)
			r, err := b.load(ctx, rr.t, 0, opts.CapacityDuration)
			if err != nil {
				return nil, err
			}
			rr.capacity = append(rr.capacity, r)
			b.log.Info("capacity run done", "row", rr.t.name, "rps", int(r.qps), "proxy_us_per_req", 1e6*r.cpuSeconds/float64(max(r.requests, 1)), "proxy_rw_syscalls_per_req", float64(r.syscalls)/float64(max(r.requests, 1)), "idle_pct", r.idlePct)
		}
	}
	// The profile comes from an extra capacity run whose figures are not
	// kept: profiling costs the sidecar CPU and memory (its RSS peak rose
	// by about 1 MB while profiled).
	for _, rr := range rows {
		var profiles []profile
		for _, p := range []profile{
			{"client sidecar", rr.t.pprofURL, opts.ProfilePath},
			{"server sidecar", rr.t.serverPprofURL, opts.ServerProfilePath},
		} {
			if p.url != "" && p.path != "" {
				profiles = append(profiles, p)
			}
		}
		if len(profiles) == 0 {
			continue
		}
		b.log.Info("profiled run (not measured)", "row", rr.t.name, "duration", opts.CapacityDuration, "qps", opts.ProfileQPS)
		errs := make(chan error, len(profiles))
		for _, p := range profiles {
			go func() {
				err := fetchProfile(ctx, p.url, opts.CapacityDuration, p.path)
				if err != nil {
					err = fmt.Errorf("CPU profile of the %s %s failed: %w", rr.t.name, p.name, err)
				}
				errs <- err
			}()
		}
		if _, err := b.load(ctx, rr.t, opts.ProfileQPS, opts.CapacityDuration); err != nil {
			return nil, err
		}
		for range profiles {
			if err := <-errs; err != nil {
				b.note(err.Error())
			}
		}
	}
	for _, rr := range rows {
		res.Rows = append(res.Rows, summarize(rr))
	}
	addLatency(res.Rows)
	res.Paired = pair(res.Rows, "nginx")
	res.Targets = judge(res.Rows, res.Paired)
	res.PairedFloor = pair(res.Rows, "go-relay")

	// Stop the data plane before the control plane run, so that it has the
	// machine to itself.
	b.procs.stopAll()
	if len(opts.ControlClients) > 0 {
		cp, err := b.controlPlane(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cp.Error = err.Error()
		}
		res.ControlPlane = cp
	}
	res.Notes = b.notes

	if err := os.MkdirAll(opts.ResultsDir, 0o755); err != nil {
		return nil, err
	}
	var md strings.Builder
	Markdown(&md, res)
	fmt.Fprint(opts.Out, md.String())
	if err := os.WriteFile(filepath.Join(opts.ResultsDir, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write report: %w", err)
	}
	if err := WriteJSON(opts.JSONPath, res); err != nil {
		return nil, err
	}
	if err := Plot(filepath.Join(opts.ResultsDir, "latency.png"), res.Rows); err != nil {
		return nil, err
	}
	return res, nil
}

func (b *bench) note(s string) {
	b.log.Warn(s)
	b.notes = append(b.notes, s)
}

const mb = 1 << 20

// summarize takes the medians of a row's runs.
// knownMedian is the median of the values that are known (>= 0), or -1
// when none is.
func knownMedian(xs []float64) float64 {
	known := slices.DeleteFunc(slices.Clone(xs), func(x float64) bool { return x < 0 })
	if len(known) == 0 {
		return -1
	}
	return Median(known)
}

func summarize(rr *rowRuns) Row {
	col := func(rs []*runResult, f func(*runResult) float64) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = f(r)
		}
		return out
	}
	lat := rr.latency
	row := Row{
		Name:            rr.t.name,
		P50ms:           Median(col(lat, func(r *runResult) float64 { return r.p50 })),
		P90ms:           Median(col(lat, func(r *runResult) float64 { return r.p90 })),
		P99ms:           Median(col(lat, func(r *runResult) float64 { return r.p99 })),
		P999ms:          Median(col(lat, func(r *runResult) float64 { return r.p999 })),
		Maxms:           Median(col(lat, func(r *runResult) float64 { return r.max })),
		AchievedQPS:     Median(col(lat, func(r *runResult) float64 { return r.qps })),
		Over1msPct:      Median(col(lat, func(r *runResult) float64 { return r.over1ms })),
		MaxRPS:          Median(col(rr.capacity, func(r *runResult) float64 { return r.qps })),
		CapacityIdlePct: knownMedian(col(rr.capacity, func(r *runResult) float64 { return r.idlePct })),
		CPUsPer1k: Median(col(lat, func(r *runResult) float64 {
			if r.requests == 0 {
				return 0
			}
			return r.cpuSeconds / (float64(r.requests) / 1000)
		})),
		ProxyProcesses: 0,
	}
	row.P99Runs = col(lat, func(r *runResult) float64 { return r.p99 })
	row.MaxRPSRuns = col(rr.capacity, func(r *runResult) float64 { return r.qps })
	row.P99Spread = spread(row.P99Runs)
	row.MaxRPSSpread = spread(row.MaxRPSRuns)
	for _, r := range append(append([]*runResult(nil), lat...), rr.capacity...) {
		row.Errors += r.errors
	}
	for i, p := range rr.t.proxies {
		var peak int64
		for _, r := range append(append([]*runResult(nil), lat...), rr.capacity...) {
			peak = max(peak, r.peakRSS[i])
		}
		pr := ProxyRSS{Name: p.name, PeakMB: float64(peak) / mb, IdleMB: float64(rr.idleRSS[i]) / mb}
		row.PerProxy = append(row.PerProxy, pr)
		row.RSSPeakMB = max(row.RSSPeakMB, pr.PeakMB)
		row.RSSIdleMB = max(row.RSSIdleMB, pr.IdleMB)
		row.ProxyProcesses += len(p.pids)
	}
	return row
}

// spread returns the smallest and largest of xs.
func spread(xs []float64) [2]float64 {
	if len(xs) == 0 {
		return [2]float64{}
	}
	return [2]float64{slices.Min(xs), slices.Max(xs)}
}

// addLatency fills in each row's latency added over the direct row.
func addLatency(rows []Row) {
	var direct *Row
	for i := range rows {
		if rows[i].Name == "direct" {
			direct = &rows[i]
		}
	}
	if direct == nil {
		return
	}
	for i := range rows {
		if rows[i].Name == "direct" {
			continue
		}
		rows[i].AddedP50ms = rows[i].P50ms - direct.P50ms
		rows[i].AddedP90ms = rows[i].P90ms - direct.P90ms
		rows[i].AddedP99ms = rows[i].P99ms - direct.P99ms
	}
}

// rotated returns s starting at its (k mod len(s))-th element, wrapping
// around.
func rotated[T any](s []T, k int) []T {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(append(make([]T, 0, len(s)), s[k:]...), s[:k]...)
}

// profile is a CPU profile to take: of which process, from where, to
// which file.
type profile struct{ name, url, path string }

// fetchProfile saves a CPU profile of d (at most 30s) from url.
func fetchProfile(ctx context.Context, url string, d time.Duration, path string) error {
	secs := max(1, min(30, int(d.Seconds())-1))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(secs+10) * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("fetch profile: %s (is --pprof on?)", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetch profile: %w", err)
	}
	return f.Close()
}

// settings records the machine, the settings and the versions.
func (b *bench) settings(ctx context.Context) Settings {
	o := b.opts
	mode := "full"
	if o.Quick {
		mode = "quick"
	}
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	run := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		path, err := exec.LookPath(name)
		if err != nil {
			for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
				if _, err := os.Stat(p); err == nil {
					path = p
				}
			}
		}
		if path == "" {
			return ""
		}
		out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return ""
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	rev := run("git", "rev-parse", "--short", "HEAD")
	if st := run("git", "status", "--porcelain", "--untracked-files=no"); st != "" {
		rev += "+dirty"
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return Settings{
		Mode: mode, Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), CPUModel: cpuModel(),
		Kernel:     strings.TrimSpace(string(kernel)),
		WeftProxy:  weftProxySettings(o.ProxyArgs),
		GOMAXPROCS: env("GOMAXPROCS", fmt.Sprintf("unset (Go default %d)", runtime.NumCPU())),
		GOGC:       env("GOGC", "unset (100)"), CPUPinning: "none (every process may run on every CPU, the load generator included)",
		Reps: o.Reps, LatencyQPS: o.LatencyQPS, LatencySeconds: o.LatencyDuration.Seconds(),
		CapacitySeconds: o.CapacityDuration.Seconds(), Connections: o.Connections, CapacityConns: o.CapacityConnections, BodyBytes: BodyBytes,
		LoadGenerator:  "fortio v1.75.3 library (fhttp fast client), in the weftbench process",
		NginxWorkers:   "auto (= CPUs)",
		HAProxyThreads: "default (= CPUs)",
		GoVersion:      runtime.Version(), WeftRev: rev,
		NginxVersion: run("nginx", "-v"), HAProxyVersion: run("haproxy", "-v"),
		ControlClients: o.ControlClients, ControlServices: o.ControlServices, ControlEndpoints: o.ControlEndpoints,
	}
}

// weftProxySettings describes the sidecars' runtime settings: their
// defaults unless the environment or -proxy-args say otherwise.
func weftProxySettings(extra []string) string {
	threads, _ := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	loops := proxy.SidecarLoops(threads)
	desc := fmt.Sprintf("defaults (--event-loops %d, so GOMAXPROCS %d; --gc-percent %d)", loops, max(loops+1, threads), proxy.DefaultGCPercent)
	if v := os.Getenv("WEFT_EVENT_LOOPS"); v != "" {
		desc += ", WEFT_EVENT_LOOPS=" + v + " from the environment"
	}
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		desc += ", GOMAXPROCS=" + v + " from the environment"
	}
	if v := os.Getenv("GOGC"); v != "" {
		desc += ", GOGC=" + v + " from the environment"
	}
	if len(extra) > 0 {
		desc += ", with " + strings.Join(extra, " ")
	}
	return desc
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
