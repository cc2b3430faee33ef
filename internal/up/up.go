package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/control"
	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/netns"
	"github.com/weftmesh/weft/samples/bookinfo/networking"
)

// Options configures a local mesh.
type Options struct {
	Logger *slog.Logger
	// Out receives the summary table.
	Out     io.Writer
	DataDir string
	// BinDir holds weft, weft-proxy and bookinfo; default: the directory of
	// the running executable.
	BinDir      string
	XDSPort     int // default 15010
	APIPort     int // default 15014
	GatewayPort int // default 8080
	// OutboundTrafficPolicy is passed to the control plane: ALLOW_ANY or
	// REGISTRY_ONLY; empty means the control plane's default.
	OutboundTrafficPolicy string
	// Samples names the sets of workloads to run: "bookinfo" (always
	// there, since the gateway serves it), "tcp" and "grpc". Default:
	// bookinfo.
	Samples []string
	// PortBase is the first of the ports given to sidecars and apps;
	// default 16000.
	PortBase int
	// Command is how the user runs weft against this mesh, for the
	// summary: "./bin/weft", or "weft --data-dir /tmp/mesh". Default "weft".
	Command string
	// NetNS runs every workload in its own network namespace with its own
	// IP, its traffic captured by iptables (transparent mode). Needs root.
	NetNS bool
	// Subnet is the namespaces' network in NetNS mode; default 10.244.0.0/24.
	Subnet string
	// ReadyTimeout bounds start-up; default 60s.
	ReadyTimeout time.Duration
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Command == "" {
		o.Command = "weft"
	}
	if o.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the weft binary: %w", err)
		}
		o.BinDir = filepath.Dir(exe)
	}
	if o.XDSPort == 0 {
		o.XDSPort = 15010
	}
	if o.APIPort == 0 {
		o.APIPort = 15014
	}
	if o.GatewayPort == 0 {
		o.GatewayPort = 8080
	}
	if o.Subnet == "" {
		o.Subnet = "10.244.0.0/24"
	}
	if o.PortBase == 0 {
		o.PortBase = 16000
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	o.DataDir = abs
	return nil
}

// Proc is one process of the local mesh.
type Proc struct {
	Name         string `json:"name"` // workload name, "weft-control" or the gateway's
	Role         string `json:"role"` // control, sidecar, gateway, app (--netns) or init (--netns)
	Service      string `json:"service,omitempty"`
	Version      string `json:"version,omitempty"`
	PID          int    `json:"pid"`
	AppPort      int    `json:"appPort,omitempty"`
	InboundPort  int    `json:"inboundPort,omitempty"`
	OutboundPort int    `json:"outboundPort,omitempty"`
	AdminPort    int    `json:"adminPort,omitempty"`
	Log          string `json:"log"`
	// NetNS and IP are the process's network namespace and address in
	// --netns mode.
	NetNS string `json:"netns,omitempty"`
	IP    string `json:"ip,omitempty"`
	// Binary is the executable's base name, to recognise the process when
	// cleaning up after a crash.
	Binary string `json:"binary"`
}

// State is what DATA_DIR/up.json records about a running mesh.
type State struct {
	SupervisorPID int       `json:"supervisorPid"`
	Ready         bool      `json:"ready"`
	StartedAt     time.Time `json:"startedAt"`
	XDSAddr       string    `json:"xdsAddr"`
	APIAddr       string    `json:"apiAddr"`
	GatewayURL    string    `json:"gatewayUrl"`
	// Network names the bridge and namespace prefix of --netns mode.
	Network string `json:"network,omitempty"`
	Procs   []Proc `json:"procs"`
}

const stateFile = "up.json"

// ReadState reads the state of the mesh running with dataDir.
func ReadState(dataDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, stateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dataDir, stateFile), err)
	}
	return &st, nil
}

func writeState(dataDir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write mesh state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dataDir, stateFile))
}

// child is a started process and the channel its exit arrives on.
type child struct {
	proc Proc
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
	// ready reports whether the process serves; nil for processes that
	// have nothing to ask.
	ready func(context.Context) error
}

// supervisor starts the mesh's processes and keeps their record.
type supervisor struct {
	opts     Options
	log      *slog.Logger
	st       *State
	children []*child
	net      *netns.Network // in --netns mode
}

// start starts a process on the host, or in host's namespace when host is
// set, records it in up.json, and returns it.
func (s *supervisor) start(p Proc, host *netns.Host, cred *syscall.Credential, env []string, args ...string) (*child, error) {
	c, err := startChild(s.opts, p, host, cred, env, args)
	if err != nil {
		return nil, err
	}
	s.children = append(s.children, c)
	s.st.Procs = append(s.st.Procs, c.proc)
	// Record every process as soon as it exists, so a crash of this
	// supervisor leaves enough behind to clean up.
	return c, writeState(s.opts.DataDir, s.st)
}

// Run starts the mesh, prints where everything runs, and supervises it until
// ctx ends; then it stops every process and returns.
func Run(ctx context.Context, opts Options) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	if opts.NetNS && !netns.Root() {
		return errors.New("weft up --netns needs root: it creates network namespaces, veth pairs and iptables rules; run it with sudo, or without --netns")
	}
	if err := prepare(opts); err != nil {
		return err
	}
	s := &supervisor{opts: opts, log: opts.Logger, st: &State{
		SupervisorPID: os.Getpid(), StartedAt: time.Now(),
		XDSAddr:    fmt.Sprintf("127.0.0.1:%d", opts.XDSPort),
		APIAddr:    fmt.Sprintf("127.0.0.1:%d", opts.APIPort),
		GatewayURL: fmt.Sprintf("http://127.0.0.1:%d", opts.GatewayPort),
	}}
	defer func() {
		stop(s.log, s.children)
		if s.net != nil {
			if err := netns.Remove(s.st.Network); err != nil {
				s.log.Error("removing the mesh network", "err", err)
			}
		}
		os.Remove(filepath.Join(opts.DataDir, stateFile))
	}()
	if opts.NetNS {
		if err := s.createNetwork(); err != nil {
			return err
		}
	}

	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()

	// 1. The control plane, and the sample's gateway config.
	ctlArgs := []string{"control", "--data-dir", opts.DataDir, "--xds-addr", s.st.XDSAddr, "--api-addr", s.st.APIAddr}
	if opts.OutboundTrafficPolicy != "" {
		ctlArgs = append(ctlArgs, "--outbound-traffic-policy", opts.OutboundTrafficPolicy)
	}
	ctl, err := s.start(Proc{Name: "weft-control", Role: "control", Binary: "weft"}, nil, nil, nil, ctlArgs...)
	if err != nil {
		return err
	}
	api := controlapi.NewClient(s.st.APIAddr)
	if err := waitFor(readyCtx, ctl, "the control plane", func(ctx context.Context) error { return api.Ready(ctx) }); err != nil {
		return err
	}
	gw, err := networking.FS.ReadFile("bookinfo-gateway.yaml")
	if err != nil {
		return fmt.Errorf("read the sample gateway: %w", err)
	}
	if _, err := api.Apply(readyCtx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "samples/bookinfo/networking/bookinfo-gateway.yaml", Content: string(gw)}}}); err != nil {
		return fmt.Errorf("apply the Bookinfo gateway: %w", err)
	}

	// 2. One sidecar per workload with its app, and the gateway.
	alloc := newPortAllocator(opts.PortBase, opts.XDSPort, opts.APIPort, opts.GatewayPort)
	var proxies []*child
	workloads, err := opts.workloads()
	if err != nil {
		return err
	}
	for _, w := range workloads {
		var c *child
		if opts.NetNS {
			c, err = s.startTransparent(readyCtx, w)
		} else {
			c, err = s.startExplicit(w, alloc)
		}
		if err != nil {
			return err
		}
		proxies = append(proxies, c)
	}
	adminPort, err := alloc.take(1)
	if err != nil {
		return err
	}
	gwProc := Proc{Name: podName("istio-ingressgateway", "v1"), Role: "gateway", Service: "istio-ingressgateway",
		Binary: "weft-proxy", AdminPort: adminPort[0], InboundPort: opts.GatewayPort}
	gwChild, err := s.start(gwProc, nil, nil, nil,
		"--type", "router", "--xds-address", s.st.XDSAddr, "--namespace", "istio-system",
		"--workload-name", gwProc.Name, "--service-account", "istio-ingressgateway-service-account",
		"--labels", "istio=ingressgateway,app=istio-ingressgateway",
		"--port-map", fmt.Sprintf("80=%d", opts.GatewayPort), "--admin-port", strconv.Itoa(gwProc.AdminPort))
	if err != nil {
		return err
	}
	gwURL := fmt.Sprintf("http://127.0.0.1:%d/ready", gwProc.AdminPort)
	gwChild.ready = func(ctx context.Context) error { return httpOK(ctx, http.DefaultTransport, gwURL) }
	proxies = append(proxies, gwChild)

	// 3. Ready when every proxy is and the product page answers.
	for _, c := range proxies {
		if err := waitFor(readyCtx, c, c.proc.Name, c.ready); err != nil {
			return err
		}
	}
	// Every proxy must know every workload before the mesh is ready: the
	// last to start registered only a moment ago.
	synced := func(ctx context.Context) error {
		rep, err := api.SyncCurrent(ctx)
		if err != nil {
			return err
		}
		for _, p := range rep.Proxies {
			if p.Nack != "" {
				return fmt.Errorf("%s rejected its config: %s", p.ID, p.Nack)
			}
		}
		if !rep.Done || len(rep.Proxies) < len(proxies) {
			return fmt.Errorf("%d proxies connected, not all have the latest config", len(rep.Proxies))
		}
		return nil
	}
	if err := waitFor(readyCtx, ctl, "every proxy's config", synced); err != nil {
		return err
	}
	page := s.st.GatewayURL + "/productpage"
	if err := waitFor(readyCtx, gwChild, page, func(ctx context.Context) error { return httpOK(ctx, http.DefaultTransport, page) }); err != nil {
		return err
	}
	// The summary goes out before the state says ready, so that whoever
	// waits for the state (a detached parent, a test) finds it printed.
	s.st.Ready = true
	PrintSummary(opts.Out, s.st, opts.DataDir, opts.Command)
	if err := writeState(opts.DataDir, s.st); err != nil {
		return err
	}
	s.log.Info("mesh is up; Ctrl-C stops it")

	// 4. Supervise until told to stop.
	children := s.children
	for {
		exited := make(chan *child, len(children))
		for _, c := range children {
			go func(c *child) {
				<-c.done
				exited <- c
			}(c)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(opts.Out, "\nStopping the mesh...")
			return nil
		case c := <-exited:
			// The rest keeps running: a dead control plane, say, must not
			// take the data plane with it.
			s.log.Error("process exited", "name", c.proc.Name, "pid", c.proc.PID, "err", c.err, "log", c.proc.Log)
			children = remove(children, c)
		}
	}
}

// startExplicit starts a workload's sidecar on the host; the sidecar starts
// the app as its child, with HTTP_PROXY pointing at itself.
func (s *supervisor) startExplicit(w Workload, alloc *portAllocator) (*child, error) {
	ports, err := alloc.take(4)
	if err != nil {
		return nil, err
	}
	p := Proc{
		Name: podName(w.App, w.Version), Role: "sidecar", Service: w.App, Version: w.Version, Binary: "weft-proxy",
		AppPort: ports[0], InboundPort: ports[1], OutboundPort: ports[2], AdminPort: ports[3],
	}
	outbound := fmt.Sprintf("http://127.0.0.1:%d", p.OutboundPort)
	env := append([]string{
		"PORT=" + strconv.Itoa(p.AppPort), "BIND_ADDR=127.0.0.1", "POD_NAME=" + p.Name,
		"SERVICE_VERSION=" + w.Version, "HTTP_PROXY=" + outbound, "http_proxy=" + outbound,
		"NO_PROXY=", "no_proxy=",
	}, w.Env...)
	args := []string{
		"--xds-address", s.st.XDSAddr, "--namespace", "default", "--service", w.App,
		"--workload-name", p.Name, "--service-account", w.ServiceAccount,
		"--labels", "app=" + w.App + ",version=" + w.Version,
		"--port", fmt.Sprintf("%s:%d:%d:%d", w.PortName, w.ServicePort, p.AppPort, p.InboundPort),
		"--outbound-port", strconv.Itoa(p.OutboundPort), "--admin-port", strconv.Itoa(p.AdminPort),
		"--", filepath.Join(s.opts.BinDir, w.Binary),
	}
	c, err := s.start(p, nil, nil, env, append(args, w.Args...)...)
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", p.AdminPort)
	c.ready = func(ctx context.Context) error { return httpOK(ctx, http.DefaultTransport, url) }
	return c, nil
}

func remove(cs []*child, c *child) []*child {
	out := cs[:0]
	for _, x := range cs {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

// workloads lists the workloads of the chosen samples, Bookinfo first.
func (o *Options) workloads() ([]Workload, error) {
	out := append([]Workload(nil), bookinfo...)
	for _, name := range o.Samples {
		ws, ok := samples[name]
		if !ok {
			return nil, fmt.Errorf("unknown sample %q: choose from bookinfo, tcp", name)
		}
		if name != "bookinfo" {
			out = append(out, ws...)
		}
	}
	return out, nil
}

// prepare checks the binaries and clears what an earlier run left behind.
func prepare(opts Options) error {
	workloads, err := opts.workloads()
	if err != nil {
		return err
	}
	need := map[string]bool{"weft": true, "weft-proxy": true}
	for _, w := range workloads {
		need[w.Binary] = true
	}
	for b := range need {
		if _, err := os.Stat(filepath.Join(opts.BinDir, b)); err != nil {
			return fmt.Errorf("%s not found in %s: build it with `make build`", b, opts.BinDir)
		}
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// Proxies of an earlier mesh are gone for good; the control plane must
	// not wait for them to reconnect.
	os.Remove(filepath.Join(opts.DataDir, control.WorkloadsFile))
	old, err := ReadState(opts.DataDir)
	if errors.Is(err, os.ErrNotExist) {
		return checkPorts(opts)
	}
	if err != nil {
		return err
	}
	if old.SupervisorPID != os.Getpid() && alive(old.SupervisorPID, "weft") {
		return fmt.Errorf("a mesh is already running with data dir %s (pid %d); stop it with `weft down --data-dir %s`",
			opts.DataDir, old.SupervisorPID, opts.DataDir)
	}
	// The last run crashed: stop whatever it left.
	for _, p := range old.Procs {
		if alive(p.PID, p.Binary) {
			opts.Logger.Info("stopping a process left by an earlier run", "name", p.Name, "pid", p.PID)
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if old.Network != "" {
		if err := netns.Remove(old.Network); err != nil {
			return fmt.Errorf("remove the network an earlier run left: %w", err)
		}
	}
	os.Remove(filepath.Join(opts.DataDir, stateFile))
	os.Remove(filepath.Join(opts.DataDir, controlapi.StateFile))
	return checkPorts(opts)
}

// checkPorts fails early, and clearly, when a fixed port is taken.
func checkPorts(opts Options) error {
	for _, p := range []struct {
		port int
		flag string
	}{{opts.XDSPort, "--xds-port"}, {opts.APIPort, "--api-port"}, {opts.GatewayPort, "--gateway-port"}} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
		if err != nil {
			return fmt.Errorf("port %d is in use (choose another with %s): %w", p.port, p.flag, err)
		}
		l.Close()
	}
	return nil
}

func startChild(opts Options, p Proc, host *netns.Host, cred *syscall.Credential, env, args []string) (*child, error) {
	p.Log = filepath.Join(opts.DataDir, "logs", p.Name+".log")
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", p.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(opts.BinDir, p.Binary), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the supervisor, and keep Ctrl-C in the terminal from
	// reaching children directly: the supervisor stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: cred}
	wait := cmd.Wait
	if host != nil {
		p.NetNS, p.IP = host.Namespace, host.IP.String()
		if wait, err = host.Start(cmd); err != nil {
			return nil, fmt.Errorf("start %s: %w", p.Name, err)
		}
	} else if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.PID = cmd.Process.Pid
	c := &child{proc: p, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = wait()
		close(c.done)
	}()
	opts.Logger.Debug("started", "name", p.Name, "pid", p.PID, "args", strings.Join(args, " "))
	return c, nil
}

// stop sends SIGTERM to the proxies and the gateway first, then the control
// plane, and kills whatever has not exited in time.
func stop(log *slog.Logger, children []*child) {
	var data, control []*child
	for _, c := range children {
		if c.proc.Role == "control" {
			control = append(control, c)
		} else {
			data = append(data, c)
		}
	}
	for _, group := range [][]*child{data, control} {
		for _, c := range group {
			c.cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(10 * time.Second)
		for _, c := range group {
			select {
			case <-c.done:
			case <-deadline:
				log.Warn("process did not stop in time; killing it", "name", c.proc.Name, "pid", c.proc.PID)
				c.cmd.Process.Kill()
				<-c.done
			}
		}
	}
}

// waitFor polls check until it succeeds, ctx ends or the process exits.
func waitFor(ctx context.Context, c *child, what string, check func(context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited while starting (%v); its log %s ends:\n%s", c.proc.Name, c.err, c.proc.Log, tail(c.proc.Log, 15))
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready in time: %v; see %s:\n%s", what, last, c.proc.Log, tail(c.proc.Log, 15))
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, rt http.RoundTripper, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// portAllocator hands out loopback ports from a fixed range below the
// kernel's ephemeral range (32768 and up on Linux), so that no outgoing
// connection can take a port between its allocation and its bind.
type portAllocator struct {
	next  int
	limit int
	skip  map[int]bool // ports with another use (xDS, API, gateway)
}

func newPortAllocator(base int, skip ...int) *portAllocator {
	a := &portAllocator{next: base, limit: base + 2000, skip: map[int]bool{}}
	for _, p := range skip {
		a.skip[p] = true
	}
	return a
}

// take returns n ports that nothing listens on now.
func (a *portAllocator) take(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for len(ports) < n {
		if a.next >= a.limit {
			return nil, fmt.Errorf("no free port in %d-%d (choose another range with --port-base)", a.limit-2000, a.limit-1)
		}
		p := a.next
		a.next++
		if a.skip[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// alive reports whether pid runs the named binary (so a reused pid is not
// mistaken for ours).
func alive(pid int, binary string) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0) == binary
}
