package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/nodemeta"
)

// Type URLs the ADS clients subscribe to.
const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// serviceEntries renders n ServiceEntry documents with eps endpoints each,
// in namespace bench, named prefix-0000...
func serviceEntries(prefix string, first, n, eps int) string {
	var sb strings.Builder
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("%s-%04d", prefix, i)
		fmt.Fprintf(&sb, "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: %s\n  namespace: bench\nspec:\n  hosts: [%s.bench.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {number: 8080, name: http, protocol: HTTP}\n  endpoints:\n", name, name)
		for e := range eps {
			fmt.Fprintf(&sb, "  - address: 10.%d.%d.%d\n", 1+i/250%250, i%250, 1+e)
		}
	}
	return sb.String()
}

// controlPlane runs the synthetic control plane bench against a fresh
// `weft control`.
func (b *bench) controlPlane(ctx context.Context) (*ControlPlane, error) {
	o := b.opts
	cp := &ControlPlane{Services: o.ControlServices, EndpointsPerSvc: o.ControlEndpoints}
	ports, err := freePorts(2)
	if err != nil {
		return cp, err
	}
	xdsAddr, apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	dataDir := filepath.Join(b.tmp, "weft-scale")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return cp, err
	}
	ctl, err := b.procs.start("weft-control-scale", nil, b.weftBin, "control", "--data-dir", dataDir, "--xds-addr", xdsAddr, "--api-addr", apiAddr)
	if err != nil {
		return cp, err
	}
	defer b.procs.stop(ctl)
	if err := waitHTTP(ctx, ctl, "http://"+apiAddr+"/ready", "", 30*time.Second, status200); err != nil {
		return cp, fmt.Errorf("weft control: %w", err)
	}
	api := controlapi.NewClient(apiAddr)
	api.HTTP.Timeout = 2 * time.Minute
	start := time.Now()
	if _, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "bench-services.yaml",
		Content: serviceEntries("svc", 0, o.ControlServices, o.ControlEndpoints)}}}); err != nil {
		return cp, fmt.Errorf("register %d services: %w", o.ControlServices, err)
	}
	cp.RegisterSeconds = time.Since(start).Seconds()
	time.Sleep(500 * time.Millisecond) // let the debounced push settle
	ctlInst := proxyInst{name: "weft control", pid: ctl.pid(), pids: []int{ctl.pid()}}
	cp.IdleRSSMB = float64(ctlInst.rss()) / mb
	for i, n := range o.ControlClients {
		run, err := b.scaleRun(ctx, api, xdsAddr, &ctlInst, n, i)
		if err != nil {
			if ctx.Err() != nil {
				return cp, ctx.Err()
			}
			run.Error = err.Error()
		}
		cp.Runs = append(cp.Runs, run)
	}
	return cp, nil
}

// scaleRun connects n ADS clients, waits for every one to hold a complete
// config, then applies one new service and times its arrival everywhere.
func (b *bench) scaleRun(ctx context.Context, api *controlapi.Client, xdsAddr string, ctl *proxyInst, n, round int) (run ScaleRun, err error) {
	run.Clients = n
	timeout := 60*time.Second + time.Duration(n)*300*time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Guard the shared machine: stop the run before the control plane
	// takes more than half the memory available now (at most 8 GiB).
	limit := min(int64(8<<30), memAvailable()/2)
	var overLimit atomic.Bool

	var peak int64
	stopSampling := sampleEvery(100*time.Millisecond, func() {
		peak = max(peak, ctl.rss())
		if peak > limit && !overLimit.Swap(true) {
			cancel()
		}
	})
	cpu0 := ctl.cpu()
	defer func() {
		stopSampling()
		run.RSSPeakMB = float64(peak) / mb
		run.CPUSeconds = ctl.cpu() - cpu0
		if overLimit.Load() {
			err = fmt.Errorf("stopped: the control plane's RSS passed %d MB, the bench's limit (half the available memory, at most 8 GiB)", limit/mb)
		}
	}()

	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return run, fmt.Errorf("dial %s: %w", xdsAddr, err)
	}
	defer conn.Close()

	changeSvc := fmt.Sprintf("change-%04d", round)
	want := change{
		cluster: fmt.Sprintf("outbound|8080||%s.bench.svc.cluster.local", changeSvc),
		vhost:   fmt.Sprintf("%s.bench.svc.cluster.local:8080", changeSvc),
	}
	full := make(chan time.Duration, n)
	changed := make(chan time.Time, n)
	errs := make(chan error, n)
	var clients sync.WaitGroup
	start := time.Now()
	for i := range n {
		meta := nodemeta.Metadata{
			Type: nodemeta.TypeSidecar, Namespace: "bench", Service: "adsclient",
			WorkloadName: fmt.Sprintf("adsclient-%d-%04d", round, i), ServiceAccount: "adsclient", IP: "127.0.0.1",
			Labels: map[string]string{"app": "adsclient"}, OutboundPort: 15001,
		}
		c := &adsClient{node: &corev3.Node{Id: meta.ID(), Cluster: meta.Service, Metadata: meta.Struct(), UserAgentName: "weftbench"}, want: want, full: full, changed: changed, start: start}
		clients.Add(1)
		go func() {
			defer clients.Done()
			if err := c.run(ctx, conn); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	defer func() { cancel(); clients.Wait() }()

	var last time.Duration
	for got := 0; got < n; got++ {
		select {
		case d := <-full:
			last = max(last, d)
		case err := <-errs:
			return run, fmt.Errorf("ADS client: %w", err)
		case <-ctx.Done():
			return run, fmt.Errorf("%d of %d clients complete after %s", got, n, timeout)
		}
	}
	run.FullPushSeconds = last.Seconds()

	t0 := time.Now()
	resp, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "change.yaml",
		Content: serviceEntries("change", round, 1, b.opts.ControlEndpoints)}}})
	if err != nil {
		return run, fmt.Errorf("apply the change: %w", err)
	}
	// What `weft apply --wait` waits for.
	waitDone := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			if rep, err := api.Sync(ctx, resp.Revision); err == nil && rep.Done {
				waitDone <- time.Since(t0)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var lat []float64
	for len(lat) < n {
		select {
		case at := <-changed:
			lat = append(lat, float64(at.Sub(t0))/float64(time.Millisecond))
		case err := <-errs:
			return run, fmt.Errorf("ADS client: %w", err)
		case <-ctx.Done():
			return run, fmt.Errorf("%d of %d clients ACKed the change after %s", len(lat), n, timeout)
		}
	}
	run.ApplyToAckP50ms = Percentile(lat, 50)
	run.ApplyToAckP99ms = Percentile(lat, 99)
	run.ApplyToAckMaxms = Percentile(lat, 100)
	select {
	case d := <-waitDone:
		run.ApplyWaitms = float64(d) / float64(time.Millisecond)
	case <-ctx.Done():
		return run, fmt.Errorf("the sync report never said done")
	}
	return run, nil
}

// change is what the one applied change must bring to every client.
type change struct{ cluster, vhost string }

// adsClient is a minimal state-of-the-world ADS client: wildcard CDS and
// LDS, then EDS and RDS for the names they reference; it ACKs every
// response. It reads only resource names from the wire (leanxds.go), and
// keeps nothing else.
type adsClient struct {
	node    *corev3.Node
	want    change
	full    chan<- time.Duration
	changed chan<- time.Time
	start   time.Time

	stream    grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	sentNode  bool
	version   map[string]string
	nonce     map[string]string
	names     map[string][]string // subscribed names, EDS and RDS
	clusters  map[string]bool     // from the last CDS
	edsWant   []string
	rdsWant   []string
	eds       map[string]bool // CLAs in the last EDS
	rds       map[string]bool // route configs in the last RDS
	vhosts    map[string]bool
	fullSent  bool
	changeHit bool
}

func (c *adsClient) send(typ string, names []string) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: c.version[typ], ResponseNonce: c.nonce[typ], ResourceNames: names}
	if !c.sentNode {
		req.Node = c.node
		c.sentNode = true
	}
	return c.stream.Send(req)
}

func (c *adsClient) run(ctx context.Context, conn *grpc.ClientConn) error {
	var err error
	c.stream, err = discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	c.version, c.nonce, c.names = map[string]string{}, map[string]string{}, map[string][]string{}
	if err := c.send(typeCluster, nil); err != nil {
		return err
	}
	if err := c.send(typeListener, nil); err != nil {
		return err
	}
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return fmt.Errorf("ADS stream: %w", err)
		}
		if err := c.handle(resp); err != nil {
			return err
		}
		c.check()
	}
}

func (c *adsClient) handle(resp *discoveryv3.DiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	switch typ {
	case typeCluster:
		c.clusters = map[string]bool{}
		var eds []string
		for _, a := range resp.GetResources() {
			name, edsName, err := clusterNames(a.GetValue())
			if err != nil {
				return fmt.Errorf("decode cluster: %w", err)
			}
			c.clusters[name] = true
			if edsName != "" {
				eds = append(eds, edsName)
			}
		}
		slices.Sort(eds)
		c.edsWant = eds
	case typeListener:
		var rds []string
		for _, a := range resp.GetResources() {
			var err error
			if rds, err = listenerRoutes(a.GetValue(), rds); err != nil {
				return fmt.Errorf("decode listener: %w", err)
			}
		}
		slices.Sort(rds)
		c.rdsWant = slices.Compact(rds)
	case typeEndpoint:
		c.eds = map[string]bool{}
		for _, a := range resp.GetResources() {
			name, err := lastString(a.GetValue(), claClusterName)
			if err != nil {
				return fmt.Errorf("decode endpoints: %w", err)
			}
			c.eds[name] = true
		}
	case typeRoute:
		c.rds, c.vhosts = map[string]bool{}, map[string]bool{}
		for _, a := range resp.GetResources() {
			name, vhosts, err := routeNames(a.GetValue())
			if err != nil {
				return fmt.Errorf("decode routes: %w", err)
			}
			c.rds[name] = true
			for _, vh := range vhosts {
				c.vhosts[vh] = true
			}
		}
	default:
		return fmt.Errorf("unexpected type %s", typ)
	}
	// ACK.
	c.version[typ], c.nonce[typ] = resp.GetVersionInfo(), resp.GetNonce()
	if err := c.send(typ, c.names[typ]); err != nil {
		return err
	}
	// Follow the names the wildcard types reference.
	for _, dep := range []struct {
		typ  string
		want []string
	}{{typeEndpoint, c.edsWant}, {typeRoute, c.rdsWant}} {
		if len(dep.want) > 0 && !slices.Equal(dep.want, c.names[dep.typ]) {
			c.names[dep.typ] = dep.want
			if err := c.send(dep.typ, dep.want); err != nil {
				return err
			}
		}
	}
	return nil
}

func covered(want []string, have map[string]bool) bool {
	for _, n := range want {
		if !have[n] {
			return false
		}
	}
	return true
}

// check reports, once each, a complete config and the arrival of the change.
func (c *adsClient) check() {
	if c.clusters == nil || c.version[typeListener] == "" || !covered(c.edsWant, c.eds) || !covered(c.rdsWant, c.rds) {
		return
	}
	if !c.fullSent {
		c.fullSent = true
		c.full <- time.Since(c.start)
	}
	if !c.changeHit && c.clusters[c.want.cluster] && c.eds[c.want.cluster] && c.vhosts[c.want.vhost] {
		c.changeHit = true
		c.changed <- time.Now()
	}
}

// memAvailable is MemAvailable from /proc/meminfo in bytes (8 GiB when it
// cannot be read).
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 8 << 30
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 8 << 30
}
