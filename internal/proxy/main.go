package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/proxy/procs"
)

// portList is the repeatable --port flag.
type portList []nodemeta.Port

func (p *portList) String() string { return fmt.Sprint(*p) }

func (p *portList) Set(s string) error {
	parts := strings.Split(s, ":")
	if len(parts) != 3 && len(parts) != 4 {
		return fmt.Errorf("want NAME:PORT:TARGETPORT[:LISTENPORT], e.g. http:9080:20001:20002")
	}
	if parts[0] == "" {
		return fmt.Errorf("%q: the port name is empty", s)
	}
	nums := make([]uint32, 3)
	for i, f := range parts[1:] {
		n, err := parsePort(f)
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		nums[i] = n
	}
	if len(parts) == 3 {
		nums[2] = nums[0]
	}
	*p = append(*p, nodemeta.Port{Name: parts[0], Port: nums[0], TargetPort: nums[1], ListenPort: nums[2]})
	return nil
}

// portMap is the repeatable --port-map flag.
type portMap map[uint32]uint32

func (m portMap) String() string { return fmt.Sprint(map[uint32]uint32(m)) }

func (m portMap) Set(s string) error {
	from, to, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want FROM=TO, e.g. 80=8080")
	}
	f, err := parsePort(from)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	t, err := parsePort(to)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	m[f] = t
	return nil
}

func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint32(n), nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func randomSuffix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// config is the parsed command line.
type config struct {
	opts  Options
	child []string
	// gcPercent and memLimit are the runtime settings applied by Main; -1
	// leaves the runtime's own (from GOGC and GOMEMLIMIT).
	gcPercent int
	memLimit  int64
	// procs is GOMAXPROCS (the number of threads running Go code at once);
	// 0 leaves the runtime's own (from GOMAXPROCS, or the CPUs available).
	procs int
	// autoProcs fits GOMAXPROCS to the load instead, from one up to the
	// runtime's own (package procs).
	autoProcs bool
}

// DefaultGCPercent is weft-proxy's garbage collection target when neither
// --gc-percent nor GOGC says otherwise. A sidecar's live heap is small and
// mostly fixed (protobuf descriptors, the compiled model, per-connection
// buffers), and a proxied request allocates a few hundred bytes, so
// collecting at 25% growth instead of Go's 100% keeps the heap, and so the
// RSS under load, about 1.5 MB smaller for a capacity cost of about 2%
// (docs/performance-log.md, rounds 1 and 2, has the figures).
const DefaultGCPercent = 25

// A sidecar without event loops (--event-loops 0) has --concurrency auto
// by default (unless GOMAXPROCS is set): one thread, and more while it is
// busy (package procs has the why). A
// sidecar carries one workload's traffic on CPUs it shares with that
// workload, so at the rates most sidecars carry what counts is CPU per
// request, and one thread spends the least (docs/performance-log.md, round
// 6); at high rates a second one lets the kernel spread a sidecar pair
// over two CPUs (round 11). A gateway uses every CPU.
const concurrencyAuto = "auto"

// DefaultEventLoops is how many event loops a sidecar serves plain
// HTTP/1.x on (Linux only; fewer on fewer CPUs) unless --event-loops or
// WEFT_EVENT_LOOPS says otherwise. A loop serves a request without waking
// a goroutine, which at a sidecar's maximum rate saves about a fifth of its
// CPU per request; two let the kernel spread a sidecar pair at that rate
// over two CPUs, as nginx's two workers do, where one would leave a tenth
// of them idle (docs/performance-log.md, rounds 17 to 19). At modest rates
// they cost what goroutines do, and an idle loop costs nothing (package
// evloop).
const DefaultEventLoops = 2

// SidecarLoops is a sidecar's default count of event loops on Linux, for a
// thread count asked for (--concurrency or GOMAXPROCS; 0: none), which
// leaves one thread for the rest of the proxy.
func SidecarLoops(threads int) int {
	n := min(DefaultEventLoops, runtime.NumCPU())
	if threads > 0 {
		n = min(n, threads-1)
	}
	return n
}

// parseSize parses a byte count as GOMEMLIMIT does: a number with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: want a positive size such as 64MiB", s)
	}
	return n * mult, nil
}

// applyRuntime applies the garbage collector settings.
func applyRuntime(c *config, log *slog.Logger) {
	gc := "GOGC=" + os.Getenv("GOGC")
	if c.gcPercent >= 0 {
		debug.SetGCPercent(c.gcPercent)
		gc = strconv.Itoa(c.gcPercent)
	}
	if c.memLimit > 0 {
		debug.SetMemoryLimit(c.memLimit)
	}
	if c.procs > 0 {
		runtime.GOMAXPROCS(c.procs)
	}
	if n := c.opts.EventLoops; n > 0 && runtime.GOMAXPROCS(0) < n+1 {
		log.Warn("raising the thread count asked for: each event loop needs a thread of its own, and the rest of the proxy one more", "GOMAXPROCS", runtime.GOMAXPROCS(0), "event_loops", n, "now", n+1)
		runtime.GOMAXPROCS(n + 1)
	}
	threads := strconv.Itoa(runtime.GOMAXPROCS(0))
	if c.autoProcs {
		pc := procs.New(procs.Options{Logger: log})
		threads = fmt.Sprintf("auto (1 to %d)", pc.Max())
		go pc.Run(context.Background())
	}
	// SetMemoryLimit with a negative value only reads the limit.
	log.Debug("runtime settings", "GOMAXPROCS", threads, "event_loops", c.opts.EventLoops, "gc_percent", gc, "memory_limit", debug.SetMemoryLimit(-1))
}

func parseArgs(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: weft-proxy [flags] [-- COMMAND ARGS...]\n\n"+
			"Runs Weft's data plane (a sidecar, or a gateway with --type router). With a\n"+
			"COMMAND it starts the application once the proxy is ready and exits with it.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		ports    portList
		pm       = portMap{}
		c        config
		m        = &c.opts.Meta
		labels   string
		outbound uint
		adminP   uint
		logLevel string
	)
	fs.StringVar(&c.opts.XDSAddress, "xds-address", "127.0.0.1:15010", "control plane ADS `address`")
	fs.BoolVar(&c.opts.StateOfTheWorld, "xds-sotw", false, "use state-of-the-world xDS instead of incremental (delta), for a control plane that serves only that")
	fs.StringVar(&m.Type, "type", nodemeta.TypeSidecar, "proxy `type`: sidecar or router (gateway)")
	fs.StringVar(&m.Namespace, "namespace", "default", "workload `namespace`")
	fs.StringVar(&m.Service, "service", "", "`name` of the service this workload belongs to")
	fs.StringVar(&m.WorkloadName, "workload-name", "", "workload `name` (default SERVICE-<random>)")
	fs.StringVar(&m.ServiceAccount, "service-account", "default", "service `account`")
	fs.StringVar(&labels, "labels", "", "workload labels `k=v,k=v`")
	fs.StringVar(&m.IP, "ip", "127.0.0.1", "`address` other proxies use to reach this one")
	fs.StringVar(&m.InterceptionMode, "interception-mode", "",
		"`REDIRECT` when `weft-proxy iptables` captures the workload's traffic (transparent mode); empty for explicit mode (HTTP_PROXY)")
	fs.Var(&ports, "port", "service port `NAME:PORT:TARGETPORT:LISTENPORT` (repeatable), e.g. http:9080:20001:20002")
	fs.UintVar(&outbound, "outbound-port", 15001, "explicit outbound (HTTP_PROXY) `port`")
	fs.UintVar(&adminP, "admin-port", 15000, "admin API `port` on 127.0.0.1")
	fs.Var(pm, "port-map", "gateway port rebinding `FROM=TO` (repeatable), e.g. 80=8080")
	fs.DurationVar(&c.opts.DrainTimeout, "drain-timeout", 5*time.Second, "how long shutdown waits for in-flight requests")
	fs.Int64Var(&c.opts.H2WhenBusy, "h2-when-busy", 0, "experimental: requests to an endpoint another mesh proxy serves go over HTTP/1.1 while at most `n` are in flight to it, over HTTP/2 beyond, whatever the cluster's protocol (0: the cluster's protocol)")
	loopsEnv := os.Getenv("WEFT_EVENT_LOOPS")
	loopsFromEnv, loopsEnvErr := strconv.Atoi(loopsEnv)
	fs.IntVar(&c.opts.EventLoops, "event-loops", -1, fmt.Sprintf("serve plain HTTP/1.x connections on `n` event loops instead of a goroutine each (Linux; GOMAXPROCS becomes at least n+1; 0: off; default $WEFT_EVENT_LOOPS, else %d for a sidecar (one per CPU up to that), 0 for a router)", DefaultEventLoops))
	fs.BoolVar(&c.opts.Pprof, "pprof", false, "serve Go profiles (CPU, heap, goroutines, ...) under /debug/pprof/ on the admin API")
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.IntVar(&c.gcPercent, "gc-percent", -1, fmt.Sprintf("garbage collection target `percent` (as GOGC; 0 or less: GOGC, or %d when GOGC is unset)", DefaultGCPercent))
	concurrency := fs.String("concurrency", "", "worker `threads` (GOMAXPROCS): a count; 0: one per CPU; auto: one, and more up to one per CPU while the proxy is busy (default: GOMAXPROCS if set; else auto for a sidecar, one per CPU for a router)")
	memLimit := fs.String("memory-limit", "", "soft memory `limit` for the Go runtime, e.g. 64MiB (as GOMEMLIMIT; default GOMEMLIMIT, or none)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.child = fs.Args()
	bad := func(format string, a ...any) (*config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "weft-proxy: %v\n", err)
		return nil, err
	}
	if m.Type != nodemeta.TypeSidecar && m.Type != nodemeta.TypeRouter {
		return bad("--type %q: want %s or %s", m.Type, nodemeta.TypeSidecar, nodemeta.TypeRouter)
	}
	if _, _, err := net.SplitHostPort(c.opts.XDSAddress); err != nil {
		return bad("--xds-address %q: want host:port", c.opts.XDSAddress)
	}
	if m.InterceptionMode != "" && m.InterceptionMode != nodemeta.InterceptionRedirect {
		return bad("--interception-mode %q: want %s, or nothing for explicit mode", m.InterceptionMode, nodemeta.InterceptionRedirect)
	}
	if net.ParseIP(m.IP) == nil {
		return bad("--ip %q is not an IP address", m.IP)
	}
	if outbound == 0 || outbound > 65535 {
		return bad("--outbound-port %d is not a port number", outbound)
	}
	if adminP == 0 || adminP > 65535 {
		return bad("--admin-port %d is not a port number", adminP)
	}
	if c.opts.H2WhenBusy < 0 {
		return bad("--h2-when-busy %d: want a count of requests in flight, or 0 (off)", c.opts.H2WhenBusy)
	}
	switch *concurrency {
	case concurrencyAuto:
		c.autoProcs = true
	case "":
		c.autoProcs = os.Getenv("GOMAXPROCS") == "" && m.Type == nodemeta.TypeSidecar
	default:
		n, err := strconv.Atoi(*concurrency)
		if err != nil || n < 0 {
			return bad("--concurrency %q: want a thread count, 0 (one per CPU) or auto", *concurrency)
		}
		c.procs = n
	}
	// threads is the thread count asked for (--concurrency, else
	// GOMAXPROCS); 0: none.
	threads := c.procs
	switch {
	case *concurrency == "0":
		threads = runtime.NumCPU()
	case *concurrency == "":
		threads, _ = strconv.Atoi(os.Getenv("GOMAXPROCS"))
	}
	loopsSet := false
	fs.Visit(func(f *flag.Flag) { loopsSet = loopsSet || f.Name == "event-loops" })
	switch {
	case loopsSet:
		if c.opts.EventLoops < 0 {
			return bad("--event-loops %d: want a count of loops, or 0 (off)", c.opts.EventLoops)
		}
	case loopsEnv != "":
		if loopsEnvErr != nil || loopsFromEnv < 0 {
			return bad("WEFT_EVENT_LOOPS=%q: want a count of event loops, or 0 (off)", loopsEnv)
		}
		c.opts.EventLoops = loopsFromEnv
	case m.Type == nodemeta.TypeSidecar && listener.LoopsSupported() == nil && *concurrency != concurrencyAuto:
		// Auto concurrency, the goroutines' way, means no loops.
		c.opts.EventLoops = SidecarLoops(threads)
	default:
		c.opts.EventLoops = 0
	}
	if c.opts.EventLoops > 0 {
		// A busy loop holds a thread (a P) while it waits (package
		// evloop), so the proxy needs one for each loop and one more,
		// which auto concurrency would take away; more than that only
		// costs.
		if *concurrency == concurrencyAuto {
			return bad("--concurrency auto fits the proxy's threads to its load, and event loops each need one of their own: choose one (--event-loops 0 turns the loops off)")
		}
		c.autoProcs = false
		if threads == 0 {
			c.procs = c.opts.EventLoops + 1
		}
	}
	if c.gcPercent <= 0 {
		c.gcPercent = -1
		if os.Getenv("GOGC") == "" {
			c.gcPercent = DefaultGCPercent
		}
	}
	c.memLimit = -1
	if *memLimit != "" {
		n, err := parseSize(*memLimit)
		if err != nil {
			return bad("--memory-limit %v", err)
		}
		c.memLimit = n
	}
	var err error
	if m.Labels, err = parseLabels(labels); err != nil {
		return bad("--labels: %v", err)
	}
	if m.WorkloadName == "" {
		base := m.Service
		if base == "" {
			base = m.Type
		}
		m.WorkloadName = base + "-" + randomSuffix()
	}
	m.Ports = ports
	m.OutboundPort = uint32(outbound)
	if len(pm) > 0 {
		m.PortMap = pm
	}
	c.opts.AdminAddress = net.JoinHostPort("127.0.0.1", strconv.FormatUint(uint64(adminP), 10))

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return bad("--log-level %q: want debug, info, warn or error", logLevel)
	}
	c.opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return &c, nil
}

// Main is weft-proxy's command line: it parses args and runs the proxy,
// with a child application when args end in `-- COMMAND ARGS...`. It
// returns the process exit code. `weft-proxy iptables ...` installs the
// capture rules instead (see package iptables).
func Main(args []string) int {
	if len(args) > 0 && args[0] == "iptables" {
		return iptables.Main(args[1:], os.Stdout, os.Stderr)
	}
	c, err := parseArgs(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := c.opts.Logger.With()
	applyRuntime(c, log)
	log.Info("starting weft-proxy", "type", c.opts.Meta.Type, "node", c.opts.Meta.ID(), "xds", c.opts.XDSAddress, "delta", !c.opts.StateOfTheWorld)
	if len(c.child) == 0 {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := Run(ctx, c.opts); err != nil {
			log.Error("cannot start", "err", err)
			return 1
		}
		return 0
	}
	return runWithChild(c.opts, c.child)
}

// runWithChild runs the proxy, starts the child once the proxy is ready,
// forwards signals to it, and exits with it.
func runWithChild(o Options, argv []string) int {
	log := o.Logger
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyc := make(chan struct{})
	o.OnReady = func() { close(readyc) }
	runc := make(chan error, 1)
	go func() { runc <- Run(ctx, o) }()

	stopProxy := func() int {
		cancel()
		if err := <-runc; err != nil {
			log.Error("proxy failed", "err", err)
			return 1
		}
		return 0
	}
waitReady:
	for {
		select {
		case <-readyc:
			break waitReady
		case err := <-runc:
			if err != nil {
				log.Error("cannot start", "err", err)
				return 1
			}
			return 0
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			log.Info("signal before the application started; stopping", "signal", s)
			return stopProxy()
		}
	}

	startc := make(chan error, 1)
	donec := make(chan int, 1)
	var cmd *exec.Cmd
	go func() {
		// Pdeathsig fires when the thread that started the child exits, so
		// that thread must live as long as the child: lock it and wait here.
		runtime.LockOSThread()
		cmd = exec.Command(argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = os.Environ()
		cmd.SysProcAttr = childSysProcAttr()
		if err := cmd.Start(); err != nil {
			startc <- err
			return
		}
		startc <- nil
		err := cmd.Wait()
		donec <- exitCode(cmd.ProcessState, err)
	}()
	if err := <-startc; err != nil {
		log.Error("cannot start the application", "command", argv[0], "err", err)
		stopProxy()
		return 127
	}
	log.Info("application started", "command", strings.Join(argv, " "), "pid", cmd.Process.Pid)
	for {
		select {
		case s := <-sigs:
			log.Info("forwarding signal to the application", "signal", s)
			cmd.Process.Signal(s)
		case code := <-donec:
			log.Info("application exited; stopping", "code", code)
			stopProxy()
			return code
		case err := <-runc:
			// The proxy stopped on its own (/quitquitquit): stop the child.
			if err != nil {
				log.Error("proxy failed", "err", err)
			}
			log.Info("proxy stopped; terminating the application")
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case code := <-donec:
				return code
			case <-time.After(o.DrainTimeout + 5*time.Second):
				cmd.Process.Kill()
				return <-donec
			}
		}
	}
}

// exitCode is the child's exit status as a shell reports it: the code, or
// 128+signal when a signal killed it.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return 1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
