package harness

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fortio.org/fortio/stats"

	"github.com/weftmesh/weft/internal/config"
)

func TestPercentile(t *testing.T) {
	ten := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1} // unsorted on purpose
	tests := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"median of even count interpolates", ten, 50, 5.5},
		{"p90", ten, 90, 9.1},
		{"p99.9 stays below max", ten, 99.9, 9.991},
		{"p0 is min", ten, 0, 1},
		{"p100 is max", ten, 100, 10},
		{"single value", []float64{3}, 99, 3},
		{"median of odd count", []float64{1, 100, 2}, 50, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.xs)
			if got := Percentile(tt.xs, tt.p); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
			if !slices.Equal(before, tt.xs) {
				t.Errorf("Percentile reordered its input: %v", tt.xs)
			}
		})
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("Median(nil) = %v, want 0 (JSON cannot hold NaN)", got)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantPPID  int
		wantTicks uint64
		wantErr   bool
	}{
		{
			name:     "plain",
			in:       "1234 (weft-proxy) S 1200 1234 1200 0 -1 4194560 2593 0 0 0 150 37 0 0 20 0 9 0 123 1290469376 6466 18446744073709551615",
			wantPPID: 1200, wantTicks: 187,
		},
		{
			name:     "command with spaces and parentheses",
			in:       "99 (nginx: (worker) x) R 98 99 98 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0",
			wantPPID: 98, wantTicks: 10,
		},
		{name: "truncated", in: "99 (x) R 98 99", wantErr: true},
		{name: "no command", in: "99 x R 98", wantErr: true},
		{name: "bad utime", in: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 abc 3 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat error = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (st.PPID != tt.wantPPID || st.Ticks != tt.wantTicks) {
				t.Errorf("parseStat = %+v, want ppid %d ticks %d", st, tt.wantPPID, tt.wantTicks)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"status file", "Name:\tweft-proxy\nVmPeak:\t 1290464 kB\nVmHWM:\t   30000 kB\nVmRSS:\t   25864 kB\nRssAnon:\t 10000 kB\n", 25864 * 1024, false},
		{"zombie has none", "Name:\tx\nState:\tZ (zombie)\n", 0, true},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseVmRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseCPUTimes(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cpuTimes
		wantErr bool
	}{
		{"proc stat", "cpu  100 5 50 800 20 3 7 15 40 0\ncpu0 50 2 25 400 10 1 3 7 20 0\nintr 1 2 3\n", cpuTimes{total: 1000, idle: 820}, false},
		{"older kernel, no steal", "cpu  100 5 50 800 20 3 7\n", cpuTimes{}, true},
		{"not the cpu line", "intr 1 2 3 4 5 6 7 8 9\n", cpuTimes{}, true},
		{"not a number", "cpu  100 5 50 x 20 3 7 15\n", cpuTimes{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTimes([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseCPUTimes = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	// 300 of 1000 more ticks idle: 30 %.
	if got := idlePct(cpuTimes{total: 1000, idle: 820}, cpuTimes{total: 2000, idle: 1120}); math.Abs(got-30) > 1e-9 {
		t.Errorf("idlePct = %v, want 30", got)
	}
	// A run whose /proc/stat could not be read (-1) does not count.
	if got := knownMedian([]float64{-1, 10, 30, -1, 20}); got != 20 {
		t.Errorf("knownMedian = %v, want 20 (the unknown runs left out)", got)
	}
	if got := knownMedian([]float64{-1, -1}); got != -1 {
		t.Errorf("knownMedian of nothing known = %v, want -1", got)
	}
	// The real file parses, with some time in it.
	if c, ok := readCPUTimes(); !ok || c.total == 0 || c.idle > c.total {
		t.Errorf("readCPUTimes = %+v, %v; want this machine's CPU times", c, ok)
	}
}

// TestOwnProcess reads this test process's own /proc entries: the parsers
// must agree with the real kernel format, not only with the samples above.
func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.PPID, os.Getppid())
	}
	rss, err := readRSS(pid)
	if err != nil || rss < 1<<20 {
		t.Errorf("readRSS = %d, %v; want at least 1 MB", rss, err)
	}
	if pids := withChildren(pid); !slices.Contains(pids, pid) {
		t.Errorf("withChildren(%d) = %v, want it to include itself", pid, pids)
	}
}

func TestJSONShape(t *testing.T) {
	rows := []Row{
		{Name: "direct", P50ms: 0.1, P90ms: 0.2, P99ms: 0.3, AchievedQPS: 1000, MaxRPS: 30000},
		{Name: "weft", P50ms: 0.4, P90ms: 0.7, P99ms: 2.3, AchievedQPS: 999, MaxRPS: 7000, CPUsPer1k: 0.37, RSSPeakMB: 33, RSSIdleMB: 25, Over1msPct: 1.25, CapacityIdlePct: 12.5,
			P99Spread: [2]float64{2.1, 2.6}, MaxRPSSpread: [2]float64{6500, 7400}},
	}
	addLatency(rows)
	if math.Abs(rows[1].AddedP99ms-2.0) > 1e-9 || math.Abs(rows[1].AddedP50ms-0.3) > 1e-9 {
		t.Errorf("added latency = %+v, want p50 0.3 and p99 2.0 over direct", rows[1])
	}
	path := filepath.Join(t.TempDir(), "out", "latest.json")
	res := &Result{Settings: Settings{Mode: "quick", Reps: 2}, Rows: rows, ControlPlane: &ControlPlane{Services: 1000,
		Sidecar: &ScaleSidecar{ReadySeconds: 0.5, RSSMB: 34, CPUPerChangeMs: 18, Changes: 10},
		Runs:    []ScaleRun{{Clients: 100, XDS: "delta"}}}}
	if err := WriteJSON(path, res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"settings", "rows", "controlplane"} {
		if _, ok := got[k].(map[string]any); !ok && k != "rows" {
			t.Errorf("top-level %q is %T, want an object", k, got[k])
		}
	}
	gotRows, _ := got["rows"].([]any)
	if len(gotRows) != 2 {
		t.Fatalf("rows = %v", got["rows"])
	}
	// The keys issue 4 fixes, with the direct row's proxy fields at 0.
	direct := gotRows[0].(map[string]any)
	for _, k := range []string{"name", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "achieved_qps", "max_rps", "proxy_cpu_s_per_1k", "proxy_rss_peak_mb", "proxy_rss_idle_mb"} {
		if _, ok := direct[k]; !ok {
			t.Errorf("row lacks %q: %v", k, direct)
		}
	}
	for _, k := range []string{"proxy_cpu_s_per_1k", "proxy_rss_peak_mb", "proxy_rss_idle_mb"} {
		if direct[k] != 0.0 {
			t.Errorf("direct row %s = %v, want 0", k, direct[k])
		}
	}
	if w := gotRows[1].(map[string]any); w["name"] != "weft" || w["proxy_rss_peak_mb"] != 33.0 {
		t.Errorf("weft row = %v", w)
	}
	var md strings.Builder
	Markdown(&md, res)
	if !strings.Contains(md.String(), "weft p99 2.100–2.600 ms, max rps 6500–7400") {
		t.Errorf("markdown lacks the weft row's spread:\n%s", md.String())
	}
	if !strings.Contains(md.String(), "slower than 1 ms in the latency runs (median share over the repetitions): direct 0.00 %; weft 1.25 %.") {
		t.Errorf("markdown lacks the share of slow requests:\n%s", md.String())
	}
	if w := gotRows[1].(map[string]any); w["over_1ms_pct"] != 1.25 {
		t.Errorf("weft row over_1ms_pct = %v, want 1.25", w["over_1ms_pct"])
	}
	if !strings.Contains(md.String(), "| weft | 0.400 | 0.700 | 2.300 |") {
		t.Errorf("markdown lacks the weft row:\n%s", md.String())
	}
	if !strings.Contains(md.String(), "CPU time left idle during the capacity runs (the whole machine, median over the repetitions): direct 0.0 %; weft 12.5 %.") {
		t.Errorf("markdown lacks the idle CPU of the capacity runs:\n%s", md.String())
	}
	if w := gotRows[1].(map[string]any); w["capacity_cpu_idle_pct"] != 12.5 {
		t.Errorf("weft row capacity_cpu_idle_pct = %v, want 12.5", w["capacity_cpu_idle_pct"])
	}
	if !strings.Contains(md.String(), "| 0.300 / 0.500 / 2.000 | 7000 |") {
		t.Errorf("markdown lacks the weft row's added latency:\n%s", md.String())
	}
	if !strings.Contains(md.String(), "A weft-proxy sidecar in this mesh: ready in 0.50s, RSS 34.0 MB, 18.0 ms of CPU per change (10 changes") {
		t.Errorf("markdown lacks the sidecar in the control plane's mesh:\n%s", md.String())
	}
	if !strings.Contains(md.String(), "| 100 | delta |") {
		t.Errorf("markdown lacks the clients' protocol:\n%s", md.String())
	}
	cp, _ := got["controlplane"].(map[string]any)
	if sc, _ := cp["sidecar"].(map[string]any); sc["cpu_per_change_ms"] != 18.0 || sc["rss_mb"] != 34.0 {
		t.Errorf("controlplane.sidecar = %v", cp["sidecar"])
	}

	// Without the direct row there is nothing to add to: the column says
	// so instead of showing zeros.
	md.Reset()
	Markdown(&md, &Result{Settings: res.Settings, Rows: []Row{{Name: "weft", P50ms: 0.4, MaxRPS: 7000}}})
	if !strings.Contains(md.String(), "| - | 7000 |") {
		t.Errorf("markdown without a direct row shows added latency:\n%s", md.String())
	}
}

func TestJudge(t *testing.T) {
	rows := []Row{
		{Name: "direct", P99ms: 0.3},
		{Name: "weft", P99ms: 0.6, MaxRPS: 15000, CPUsPer1k: 0.18, RSSPeakMB: 21, ProxyProcesses: 2, PerProxy: make([]ProxyRSS, 2)},
		{Name: "nginx", P99ms: 0.5, MaxRPS: 14000, CPUsPer1k: 0.14, RSSPeakMB: 18, ProxyProcesses: 6, PerProxy: make([]ProxyRSS, 2)},
	}
	addLatency(rows)
	got := map[string]bool{}
	for _, tg := range judge(rows, nil) {
		got[tg.Name] = tg.Met
	}
	want := map[string]bool{
		"vCPU per 1000 rps, per proxy": true,  // 0.09 per proxy
		"RSS peak under load, MB":      false, // 21 > 20
		"added p99, ms":                false, // 0.3 > nginx's 0.2
		"max rps":                      true,
	}
	if !maps.Equal(got, want) {
		t.Errorf("judge = %v, want %v", got, want)
	}
	if judge(rows[:1], nil) != nil {
		t.Error("targets judged without a weft row")
	}
	// With per-repetition figures, the targets set against nginx also
	// say how the two compared within each repetition.
	rows[1].P99Runs, rows[2].P99Runs = []float64{0.6, 0.5, 0.7}, []float64{0.5, 0.6, 0.5}
	rows[1].MaxRPSRuns, rows[2].MaxRPSRuns = []float64{15000, 14000, 13000}, []float64{14000, 14000, 13000}
	paired := map[string]string{}
	for _, tg := range judge(rows, pair(rows, "nginx")) {
		paired[tg.Name] = tg.Paired
	}
	wantPaired := map[string]string{
		"vCPU per 1000 rps, per proxy": "",
		"RSS peak under load, MB":      "",
		"added p99, ms":                "weft's p99 +0.100 ms from nginx's (-0.100 to +0.200)",
		"max rps":                      "1.000 of nginx's (1.000–1.071)",
	}
	if !maps.Equal(paired, wantPaired) {
		t.Errorf("paired = %v, want %v", paired, wantPaired)
	}
	// Without the direct row there is no added latency to judge (it would
	// read 0 for both rows, and "met").
	for _, tg := range judge(rows[1:], pair(rows[1:], "nginx")) {
		if tg.Name == "added p99, ms" {
			t.Errorf("added p99 judged without a direct row: %+v", tg)
		}
	}
}

// TestServiceEntries checks that the control plane run's synthetic services
// pass the control plane's own validation, with distinct addresses.
func TestServiceEntries(t *testing.T) {
	const n, eps = 300, 10
	rs, err := config.Decode("bench.yaml", []byte(serviceEntries("svc", 0, n, eps)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != n {
		t.Fatalf("decoded %d resources, want %d", len(rs), n)
	}
	for _, r := range rs {
		if errs := config.Validate(r); len(errs) > 0 {
			t.Fatalf("%s/%s: %v", r.Namespace, r.Name, errs)
		}
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(serviceEntries("svc", 0, n, eps), "\n") {
		if a, ok := strings.CutPrefix(line, "  - address: "); ok {
			if seen[a] {
				t.Fatalf("address %s used twice", a)
			}
			seen[a] = true
		}
	}
	if len(seen) != n*eps {
		t.Errorf("%d distinct addresses, want %d", len(seen), n*eps)
	}
}

func TestConfigs(t *testing.T) {
	n := nginxConf("/tmp/x", 1001, 1002)
	for _, want := range []string{"listen 127.0.0.1:1001;", "server 127.0.0.1:1002;", "keepalive 64;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %q (keep-alive upstreams need it):\n%s", want, n)
		}
	}
	h := haproxyConf(1001, 1002)
	for _, want := range []string{"bind 127.0.0.1:1001", "server s1 127.0.0.1:1002", "option http-keep-alive", "http-reuse always"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
}

// TestPaired compares weft with nginx repetition by repetition: a drift
// that moves both rows (here, repetition 2 is slower for both) leaves the
// ratio where it is.
func TestPaired(t *testing.T) {
	rows := []Row{
		{Name: "direct", MaxRPSRuns: []float64{40000, 30000, 40000}, P99Runs: []float64{0.2, 0.3, 0.2}},
		{Name: "weft", MaxRPSRuns: []float64{9000, 6300, 8100}, P99Runs: []float64{0.50, 0.70, 0.45}},
		{Name: "nginx", MaxRPSRuns: []float64{10000, 7000, 9000}, P99Runs: []float64{0.45, 0.60, 0.50}},
	}
	p := pair(rows, "nginx")
	if p == nil {
		t.Fatal("no paired figures for a run with weft and nginx rows")
	}
	if math.Abs(p.MaxRPSRatio-0.9) > 1e-9 || p.MaxRPSRatioSpread != [2]float64{0.9, 0.9} {
		t.Errorf("max rps ratio %v (%v), want 0.9 in every repetition", p.MaxRPSRatio, p.MaxRPSRatioSpread)
	}
	if math.Abs(p.P99DiffMs-0.05) > 1e-9 || math.Abs(p.P99DiffMsSpread[0]+0.05) > 1e-9 || math.Abs(p.P99DiffMsSpread[1]-0.1) > 1e-9 {
		t.Errorf("p99 difference %v (%v), want 0.05 (-0.05 to 0.1)", p.P99DiffMs, p.P99DiffMsSpread)
	}
	var md strings.Builder
	Markdown(&md, &Result{Rows: rows, Paired: p})
	if !strings.Contains(md.String(), "weft's max rps is 0.900 of nginx's (0.900–0.900)") {
		t.Errorf("the report does not give the paired ratio:\n%s", md.String())
	}
	if pair(rows[:2], "nginx") != nil {
		t.Error("paired figures without an nginx row")
	}
	// The same against the go-relay floor, reported on a line of its own.
	floor := append(rows[:2:2], Row{Name: "go-relay", MaxRPSRuns: []float64{12000, 8400, 10800}, P99Runs: []float64{0.40, 0.55, 0.40}})
	pf := pair(floor, "go-relay")
	if pf == nil || math.Abs(pf.MaxRPSRatio-0.75) > 1e-9 {
		t.Fatalf("paired against go-relay = %+v, want a max rps ratio of 0.75", pf)
	}
	md.Reset()
	Markdown(&md, &Result{Rows: floor, PairedFloor: pf})
	if !strings.Contains(md.String(), "weft's max rps is 0.750 of go-relay's (0.750–0.750)") {
		t.Errorf("the report does not give the ratio to the floor:\n%s", md.String())
	}
}

// TestLoadConnections: a latency run opens Connections connections and a
// capacity run CapacityConnections, against a real server.
func TestLoadConnections(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns[c.RemoteAddr().String()] = true
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	b := &bench{opts: Options{Connections: 2, CapacityConnections: 5}}
	for _, tc := range []struct {
		qps  float64
		want int
	}{{100, 2}, {0, 5}} {
		mu.Lock()
		clear(conns)
		mu.Unlock()
		if _, err := b.load(context.Background(), &target{name: "test", url: srv.URL + "/"}, tc.qps, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if len(conns) != tc.want {
			t.Errorf("a run at %v qps opened %d connections, want %d", tc.qps, len(conns), tc.want)
		}
		mu.Unlock()
	}
}

// TestLoadCanceled: cancelling the context (Ctrl-C) ends a load run early
// with the context's error, against a real server. fortio clears the
// options' aborter once the run starts; aborting through it crashed the
// harness, which then left nginx's workers running.
func TestLoadCanceled(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	b := &bench{opts: Options{Connections: 2}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	// 100 rps for 20 s would be 2000 requests.
	_, err := b.load(ctx, &target{name: "test", url: srv.URL + "/"}, 100, 20*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("load returned %v, want context.Canceled", err)
	}
	if n := served.Load(); n >= 1000 {
		t.Errorf("the server saw %d requests: the run did not stop when its context ended", n)
	}
}

// TestParseFlagsRejectsArguments: a subcommand given the wrong arguments
// (or any stray word) is an error that names the subcommands, not the
// start of a whole bench.
func TestParseFlagsRejectsArguments(t *testing.T) {
	for _, args := range [][]string{{"relay", "127.0.0.1:1"}, {"backend"}, {"-reps", "1", "extra"}} {
		var stderr strings.Builder
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("parseFlags(%q) accepted the arguments", args)
		} else if !strings.Contains(stderr.String(), "relay ADDR UPSTREAM") {
			t.Errorf("parseFlags(%q) said %q; want the subcommands named", args, stderr.String())
		}
	}
	if _, err := parseFlags([]string{"-reps", "1", "-rows", "weft"}, io.Discard); err != nil {
		t.Errorf("flags only: %v", err)
	}
	var stderr strings.Builder
	if _, err := parseFlags([]string{"-capacity-connections", "-4"}, &stderr); err == nil || !strings.Contains(stderr.String(), "-capacity-connections -4") {
		t.Errorf("a negative connection count: err %v, said %q", err, stderr.String())
	}
}

func TestRotatedPutsEachRowInEachPosition(t *testing.T) {
	rows := []string{"direct", "weft", "nginx", "haproxy", "go-relay"}
	position := map[string]map[int]bool{}
	for rep := range len(rows) {
		for i, r := range rotated(rows, rep) {
			if position[r] == nil {
				position[r] = map[int]bool{}
			}
			position[r][i] = true
		}
	}
	for _, r := range rows {
		if len(position[r]) != len(rows) {
			t.Errorf("over %d repetitions %s ran in positions %v, want every one", len(rows), r, position[r])
		}
	}
	if got := rotated(rows, 6); got[0] != "weft" || got[4] != "direct" || len(got) != 5 {
		t.Errorf("rotated(rows, 6) = %v, want it to start at weft and wrap", got)
	}
	if rows[0] != "direct" {
		t.Errorf("rotated changed its argument: %v", rows)
	}
}

func TestShareAbove(t *testing.T) {
	// 1000 samples: 900 under 0.5 ms, 60 in 0.8–1.2 ms (half of them above
	// 1 ms), 40 in 2–3 ms.
	h := &stats.HistogramData{Count: 1000, Data: []stats.Bucket{
		{Interval: stats.Interval{Start: 0.0001, End: 0.0005}, Count: 900},
		{Interval: stats.Interval{Start: 0.0008, End: 0.0012}, Count: 60},
		{Interval: stats.Interval{Start: 0.002, End: 0.003}, Count: 40},
	}}
	for _, c := range []struct{ sec, want float64 }{
		{0.001, 7},     // 30 + 40 of 1000
		{0.0005, 10},   // everything from the second bucket on
		{0.0025, 2},    // half the last bucket
		{0.004, 0},     // nothing that slow
		{0.00005, 100}, // everything
	} {
		if got := shareAbove(h, c.sec); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("shareAbove(%v s) = %v %%, want %v %%", c.sec, got, c.want)
		}
	}
	if got := shareAbove(&stats.HistogramData{}, 0.001); got != 0 {
		t.Errorf("shareAbove(empty) = %v, want 0", got)
	}
}

// TestFetchProfile: a profile lands at its path, its directory made if
// need be, and a sidecar without --pprof is an error that says so.
func TestFetchProfile(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/profile" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("profile"))
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "new", "client.pprof")
	if err := fetchProfile(context.Background(), srv.URL+"/debug/pprof/profile", 2*time.Second, path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "profile" {
		t.Errorf("profile file: %q, %v", b, err)
	}
	err := fetchProfile(context.Background(), srv.URL+"/other", 2*time.Second, path)
	if err == nil || !strings.Contains(err.Error(), "is --pprof on?") {
		t.Errorf("a 404 gave %v", err)
	}
}
