package proxy

import (
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/proxy/listener"
)

func TestParseArgs(t *testing.T) {
	t.Setenv("GOGC", "")
	c, err := parseArgs([]string{
		"--xds-address", "10.0.0.1:15010", "--service", "reviews", "--namespace", "shop",
		"--labels", "app=reviews,version=v2", "--ip", "127.0.0.2",
		"--port", "http:9080:20001:20002", "--port", "grpc:9090:20003",
		"--outbound-port", "16001", "--admin-port", "16000", "--port-map", "80=8080",
		"--drain-timeout", "2s", "--", "python3", "-m", "http.server",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := c.opts.Meta
	if m.Type != nodemeta.TypeSidecar || m.Namespace != "shop" || m.Service != "reviews" || m.ServiceAccount != "default" || m.IP != "127.0.0.2" {
		t.Errorf("meta = %+v", m)
	}
	if !strings.HasPrefix(m.WorkloadName, "reviews-") || len(m.WorkloadName) != len("reviews-")+5 {
		t.Errorf("default workload name %q, want reviews-<5 chars>", m.WorkloadName)
	}
	wantPorts := []nodemeta.Port{{Name: "http", Port: 9080, TargetPort: 20001, ListenPort: 20002}, {Name: "grpc", Port: 9090, TargetPort: 20003, ListenPort: 9090}}
	if !reflect.DeepEqual(m.Ports, wantPorts) {
		t.Errorf("ports = %+v", m.Ports)
	}
	if !reflect.DeepEqual(m.Labels, map[string]string{"app": "reviews", "version": "v2"}) || m.OutboundPort != 16001 || m.PortMap[80] != 8080 {
		t.Errorf("labels %v outbound %d portmap %v", m.Labels, m.OutboundPort, m.PortMap)
	}
	if c.opts.AdminAddress != "127.0.0.1:16000" || c.opts.XDSAddress != "10.0.0.1:15010" || c.opts.DrainTimeout != 2*time.Second {
		t.Errorf("opts = %+v", c.opts)
	}
	if c.gcPercent != DefaultGCPercent || c.memLimit != -1 {
		t.Errorf("runtime defaults: gc percent %d, memory limit %d; want %d, -1", c.gcPercent, c.memLimit, DefaultGCPercent)
	}
	if !reflect.DeepEqual(c.child, []string{"python3", "-m", "http.server"}) {
		t.Errorf("child = %q", c.child)
	}

	if h, err := parseArgs([]string{"--h2-when-busy", "4"}, io.Discard); err != nil || h.opts.H2WhenBusy != 4 {
		t.Errorf("--h2-when-busy 4: %v, H2WhenBusy %v", err, h)
	}

	d, err := parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.opts.XDSAddress != "127.0.0.1:15010" || d.opts.AdminAddress != "127.0.0.1:15000" || d.opts.Meta.OutboundPort != 15001 ||
		d.opts.Meta.Namespace != "default" || d.opts.DrainTimeout != 5*time.Second || len(d.child) != 0 || d.opts.H2WhenBusy != 0 {
		t.Errorf("defaults = %+v", d.opts)
	}
}

func TestParseArgsRuntimeSettings(t *testing.T) {
	// A sidecar's default: event loops on Linux, with one thread each and
	// one more; else threads fitted to its load.
	loops := SidecarLoops(0)
	procs, auto := loops+1, false
	if listener.LoopsSupported() != nil {
		loops, procs, auto = 0, 0, true
	}
	// A thread count asked for leaves one thread besides the loops.
	within := func(threads int) int {
		if loops == 0 {
			return 0
		}
		return SidecarLoops(threads)
	}
	tests := []struct {
		name         string
		args         []string
		gogc         string
		wantGC       int
		wantMemLimit int64
		gomaxprocs   string
		wantProcs    int
		wantAuto     bool
		wantLoops    int
	}{
		{"defaults", nil, "", DefaultGCPercent, -1, "", procs, auto, loops},
		{"GOGC in the environment wins over the default", nil, "200", -1, -1, "", procs, auto, loops},
		{"flags", []string{"--gc-percent", "30", "--memory-limit", "64MiB", "--concurrency", "3"}, "200", 30, 64 << 20, "2", 3, false, within(3)},
		{"plain bytes", []string{"--memory-limit", "1000000"}, "", DefaultGCPercent, 1000000, "", procs, auto, loops},
		{"GiB", []string{"--memory-limit", "2GiB"}, "", DefaultGCPercent, 2 << 30, "", procs, auto, loops},
		{"GOMAXPROCS in the environment leaves one thread besides the loops", nil, "", DefaultGCPercent, -1, "2", 0, false, within(2)},
		{"one thread asked for: no loops", []string{"--concurrency", "1"}, "", DefaultGCPercent, -1, "", 1, false, 0},
		{"without loops a sidecar fits its threads to its load", []string{"--event-loops", "0"}, "", DefaultGCPercent, -1, "", 0, true, 0},
		{"concurrency auto means goroutines", []string{"--concurrency", "auto"}, "", DefaultGCPercent, -1, "2", 0, true, 0},
		{"concurrency 0 is one per CPU", []string{"--concurrency", "0"}, "", DefaultGCPercent, -1, "", 0, false, within(runtime.NumCPU())},
		{"event loops by flag", []string{"--event-loops", "3"}, "", DefaultGCPercent, -1, "", 4, false, 3},
		{"a router uses every CPU, and no loops", []string{"--type", "router"}, "", DefaultGCPercent, -1, "", 0, false, 0},
		{"a router may fit its threads too", []string{"--type", "router", "--concurrency", "auto"}, "", DefaultGCPercent, -1, "", 0, true, 0},
		{"a router may run loops", []string{"--type", "router", "--event-loops", "1"}, "", DefaultGCPercent, -1, "", 2, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMAXPROCS", tc.gomaxprocs)
			t.Setenv("WEFT_EVENT_LOOPS", "")
			c, err := parseArgs(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.gcPercent != tc.wantGC || c.memLimit != tc.wantMemLimit || c.procs != tc.wantProcs || c.autoProcs != tc.wantAuto || c.opts.EventLoops != tc.wantLoops {
				t.Errorf("gc percent %d, memory limit %d, procs %d, auto %v, loops %d; want %d, %d, %d, %v, %d",
					c.gcPercent, c.memLimit, c.procs, c.autoProcs, c.opts.EventLoops, tc.wantGC, tc.wantMemLimit, tc.wantProcs, tc.wantAuto, tc.wantLoops)
			}
		})
	}
}

// TestEventLoopsFromEnvironment: WEFT_EVENT_LOOPS is --event-loops's
// default, and a value that is no count is refused with what to set.
func TestEventLoopsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env       string
		args      []string
		wantLoops int
		wantAuto  bool
	}{
		{"3", nil, 3, false},
		{"0", nil, 0, true},
		{"3", []string{"--event-loops", "1"}, 1, false},
		{"0", []string{"--type", "router", "--event-loops", "2"}, 2, false},
	} {
		t.Setenv("GODEBUG", "")
		t.Setenv("GOMAXPROCS", "")
		t.Setenv("WEFT_EVENT_LOOPS", tc.env)
		c, err := parseArgs(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("WEFT_EVENT_LOOPS=%s %v: %v", tc.env, tc.args, err)
		}
		if c.opts.EventLoops != tc.wantLoops || c.autoProcs != tc.wantAuto {
			t.Errorf("WEFT_EVENT_LOOPS=%s %v: %d loops, auto concurrency %v; want %d, %v", tc.env, tc.args, c.opts.EventLoops, c.autoProcs, tc.wantLoops, tc.wantAuto)
		}
	}
	// Without asynchronous preemption loops cannot run: a sidecar's
	// default is then goroutines, with threads that follow the load.
	if runtime.GOOS == "linux" {
		t.Setenv("GODEBUG", "asyncpreemptoff=1")
		t.Setenv("WEFT_EVENT_LOOPS", "")
		c, err := parseArgs(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.opts.EventLoops != 0 || !c.autoProcs {
			t.Errorf("GODEBUG=asyncpreemptoff=1: %d loops, auto concurrency %v; want 0, true", c.opts.EventLoops, c.autoProcs)
		}
		t.Setenv("GODEBUG", "")
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"two", nil, `WEFT_EVENT_LOOPS="two": want a count of event loops`},
		{"-1", nil, `WEFT_EVENT_LOOPS="-1": want a count of event loops`},
		{"2", []string{"--concurrency", "auto"}, "--concurrency auto fits the proxy's threads to its load, and event loops each need one of their own: choose one"},
		{"", []string{"--concurrency", "auto", "--event-loops", "1"}, "choose one (--event-loops 0 turns the loops off)"},
	} {
		t.Setenv("WEFT_EVENT_LOOPS", tc.env)
		var out strings.Builder
		if _, err := parseArgs(tc.args, &out); err == nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("WEFT_EVENT_LOOPS=%s %v: err %v, output %q; want %q", tc.env, tc.args, err, out.String(), tc.want)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--type", "gateway"}, `--type "gateway"`},
		{[]string{"--concurrency", "many"}, `--concurrency "many": want a thread count, 0 (one per CPU) or auto`},
		{[]string{"--concurrency", "-2"}, `--concurrency "-2"`},
		{[]string{"--port", "http:9080"}, "NAME:PORT:TARGETPORT"},
		{[]string{"--port", "http:x:1:2"}, `"x" is not a port number`},
		{[]string{"--port-map", "80"}, "FROM=TO"},
		{[]string{"--labels", "app"}, `label "app"`},
		{[]string{"--ip", "localhost"}, `--ip "localhost"`},
		{[]string{"--xds-address", "nohostport"}, "host:port"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--memory-limit", "lots"}, `--memory-limit "lots"`},
		{[]string{"--memory-limit", "-5MiB"}, `--memory-limit "-5MiB"`},
		{[]string{"--h2-when-busy", "-1"}, `--h2-when-busy -1: want a count of requests in flight, or 0 (off)`},
		{[]string{"--event-loops", "-1"}, `--event-loops -1: want a count of loops, or 0 (off)`},
	}
	for _, tc := range tests {
		var out strings.Builder
		if _, err := parseArgs(tc.args, &out); err == nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: err %v, output %q; want an error mentioning %q", tc.args, err, out.String(), tc.want)
		}
	}
}
