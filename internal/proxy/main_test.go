package proxy

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/nodemeta"
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
	tests := []struct {
		name         string
		args         []string
		gogc         string
		wantGC       int
		wantMemLimit int64
		gomaxprocs   string
		wantProcs    int
		wantAuto     bool
	}{
		{"defaults: a sidecar fits its threads to its load", nil, "", DefaultGCPercent, -1, "", 0, true},
		{"GOGC in the environment wins over the default", nil, "200", -1, -1, "", 0, true},
		{"flags", []string{"--gc-percent", "30", "--memory-limit", "64MiB", "--concurrency", "3"}, "200", 30, 64 << 20, "2", 3, false},
		{"plain bytes", []string{"--memory-limit", "1000000"}, "", DefaultGCPercent, 1000000, "", 0, true},
		{"GiB", []string{"--memory-limit", "2GiB"}, "", DefaultGCPercent, 2 << 30, "", 0, true},
		{"GOMAXPROCS in the environment wins over the default", nil, "", DefaultGCPercent, -1, "2", 0, false},
		{"concurrency auto wins over GOMAXPROCS", []string{"--concurrency", "auto"}, "", DefaultGCPercent, -1, "2", 0, true},
		{"concurrency 0 is one per CPU", []string{"--concurrency", "0"}, "", DefaultGCPercent, -1, "", 0, false},
		{"a router uses every CPU", []string{"--type", "router"}, "", DefaultGCPercent, -1, "", 0, false},
		{"a router may fit its threads too", []string{"--type", "router", "--concurrency", "auto"}, "", DefaultGCPercent, -1, "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMAXPROCS", tc.gomaxprocs)
			c, err := parseArgs(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.gcPercent != tc.wantGC || c.memLimit != tc.wantMemLimit || c.procs != tc.wantProcs || c.autoProcs != tc.wantAuto {
				t.Errorf("gc percent %d, memory limit %d, procs %d, auto %v; want %d, %d, %d, %v",
					c.gcPercent, c.memLimit, c.procs, c.autoProcs, tc.wantGC, tc.wantMemLimit, tc.wantProcs, tc.wantAuto)
			}
		})
	}
}

// TestEventLoopsFromEnvironment: WEFT_EVENT_LOOPS is --event-loops's
// default, and a value that is no count is refused with what to set.
func TestEventLoopsFromEnvironment(t *testing.T) {
	t.Setenv("WEFT_EVENT_LOOPS", "2")
	c, err := parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatalf("WEFT_EVENT_LOOPS=2: %v", err)
	}
	if c.opts.EventLoops != 2 || c.autoProcs {
		t.Errorf("WEFT_EVENT_LOOPS=2: %d loops, auto concurrency %v; want 2 loops, no auto concurrency", c.opts.EventLoops, c.autoProcs)
	}
	t.Setenv("WEFT_EVENT_LOOPS", "two")
	var out strings.Builder
	if _, err := parseArgs(nil, &out); err == nil || !strings.Contains(out.String(), `WEFT_EVENT_LOOPS="two": want a count of event loops`) {
		t.Errorf("WEFT_EVENT_LOOPS=two: err %v, output %q", err, out.String())
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
