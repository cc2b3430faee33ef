package harness

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	sc, err := b.scaleSidecar(ctx, api, xdsAddr)
	if err != nil {
		if ctx.Err() != nil {
			return cp, ctx.Err()
		}
		sc.Error = err.Error()
	}
	cp.Sidecar = sc
	// Each count of clients runs with incremental xDS, which weft-proxy
	// uses, then with state of the world, which any Envoy speaks.
	round := 0
	for _, n := range o.ControlClients {
		for _, delta := range []bool{true, false} {
			run, err := b.scaleRun(ctx, api, xdsAddr, &ctlInst, n, round, delta)
			round++
			if err != nil {
				if ctx.Err() != nil {
					return cp, ctx.Err()
				}
				run.Error = err.Error()
			}
			cp.Runs = append(cp.Runs, run)
		}
	}
	return cp, nil
}

// scaleSidecar starts one real weft-proxy sidecar in the mesh of the
// control plane run, times its first config, and measures its memory and
// the CPU it spends on a few changes. The lightweight clients of the runs
// read only names; this is what a proxy that compiles its config pays.
func (b *bench) scaleSidecar(ctx context.Context, api *controlapi.Client, xdsAddr string) (*ScaleSidecar, error) {
	sc := &ScaleSidecar{}
	ports, err := freePorts(2)
	if err != nil {
		return sc, err
	}
	start := time.Now()
	px, err := b.procs.start("weft-proxy-scale", nil, b.proxyBin, "--xds-address", xdsAddr, "--namespace", "bench",
		"--service", "sidecar", "--workload-name", "sidecar-bench", "--outbound-port", strconv.Itoa(ports[0]),
		"--admin-port", strconv.Itoa(ports[1]), "--log-level", "warn")
	if err != nil {
		return sc, err
	}
	defer b.procs.stop(px)
	if err := waitHTTP(ctx, px, fmt.Sprintf("http://127.0.0.1:%d/ready", ports[1]), "", 60*time.Second, status200); err != nil {
		return sc, fmt.Errorf("weft-proxy: %w", err)
	}
	sc.ReadySeconds = time.Since(start).Seconds()
	inst := proxyInst{name: "sidecar", pid: px.pid(), pids: []int{px.pid()}}
	sc.RSSMB = float64(inst.rss()) / mb
	cpu0 := inst.cpu()
	const changes = 30 // CPU is counted in 10 ms ticks: a third of a millisecond per change
	for i := range changes {
		resp, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "sidecar-change.yaml",
			Content: serviceEntries("sidecar-change", i, 1, b.opts.ControlEndpoints)}}})
		if err != nil {
			return sc, fmt.Errorf("apply a change: %w", err)
		}
		if err := waitSynced(ctx, api, resp.Revision); err != nil {
			return sc, err
		}
	}
	sc.Changes = changes
	sc.CPUPerChangeMs = (inst.cpu() - cpu0) * 1000 / changes
	return sc, nil
}

// waitSynced waits, as `weft apply --wait` does, until every proxy has
// answered revision rev: the control plane answers the sync question when
// the last proxy has.
func waitSynced(ctx context.Context, api *controlapi.Client, rev int64) error {
	for {
		if rep, err := api.SyncWait(ctx, rev, 10*time.Second); err == nil && rep.Done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(10 * time.Millisecond) // only after an error or a 10 s wait
	}
}

// scaleRun connects n ADS clients, waits for every one to hold a complete
// config, then applies one new service and times its arrival everywhere.
func (b *bench) scaleRun(ctx context.Context, api *controlapi.Client, xdsAddr string, ctl *proxyInst, n, round int, delta bool) (run ScaleRun, err error) {
	run.Clients, run.XDS = n, "sotw"
	if delta {
		run.XDS = "delta"
	}
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
		c := &adsClient{node: &corev3.Node{Id: meta.ID(), Cluster: meta.Service, Metadata: meta.Struct(), UserAgentName: "weftbench"},
			delta: delta, want: want, full: full, changed: changed, start: start}
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
		if waitSynced(ctx, api, resp.Revision) == nil {
			waitDone <- time.Since(t0)
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

// adsClient is a minimal ADS client, incremental (delta) or state of the
// world: wildcard CDS and LDS, then EDS and RDS for the names they
// reference; it ACKs every response. It reads only resource names from the
// wire (leanxds.go), and keeps nothing else. Its bookkeeping costs in
// proportion to what a response carries, so a delta client does little
// work for a small change, as a real proxy would: the bench's clients share
// the control plane's two cores.
type adsClient struct {
	node    *corev3.Node
	delta   bool
	want    change
	full    chan<- time.Duration
	changed chan<- time.Time
	start   time.Time

	stream   grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	dstream  grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	sentNode bool
	version  map[string]string // state of the world: the last version_info per type
	nonce    map[string]string // state of the world: the last nonce per type
	// held is what the client holds, by type and resource name: an EDS
	// cluster's service name, a listener's route configurations, a route
	// configuration's virtual hosts; nothing for a load assignment.
	held map[string]map[string][]string
	// refs counts the references to each name: load assignments and route
	// configurations by the clusters and listeners held (by the type
	// referenced), virtual hosts by the route configurations held
	// (under typeVHost).
	refs map[string]map[string]int
	// touched are the EDS and RDS names whose references changed with the
	// response being handled; subscribed, the names subscribed to.
	touched    map[string][]string
	subscribed map[string]map[string]bool
	seen       map[string]bool // types with a response
	fullSent   bool
	changeHit  bool
}

// typeVHost keys the virtual hosts in adsClient.refs.
const typeVHost = "vhost"

func (c *adsClient) send(typ string, names []string) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: c.version[typ], ResponseNonce: c.nonce[typ], ResourceNames: names}
	if !c.sentNode {
		req.Node = c.node
		c.sentNode = true
	}
	return c.stream.Send(req)
}

func (c *adsClient) sendDelta(req *discoveryv3.DeltaDiscoveryRequest) error {
	if !c.sentNode {
		req.Node = c.node
		c.sentNode = true
	}
	return c.dstream.Send(req)
}

func (c *adsClient) run(ctx context.Context, conn *grpc.ClientConn) error {
	c.version, c.nonce = map[string]string{}, map[string]string{}
	c.held, c.refs = map[string]map[string][]string{}, map[string]map[string]int{}
	c.touched, c.subscribed, c.seen = map[string][]string{}, map[string]map[string]bool{}, map[string]bool{}
	for _, typ := range []string{typeCluster, typeListener, typeEndpoint, typeRoute} {
		c.held[typ] = map[string][]string{}
	}
	for _, typ := range []string{typeEndpoint, typeRoute, typeVHost} {
		c.refs[typ] = map[string]int{}
		c.subscribed[typ] = map[string]bool{}
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var err error
	if c.delta {
		if c.dstream, err = ads.DeltaAggregatedResources(ctx); err != nil {
			return fmt.Errorf("open delta ADS stream: %w", err)
		}
		for _, typ := range []string{typeCluster, typeListener} {
			if err := c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}); err != nil {
				return err
			}
		}
		for {
			resp, err := c.dstream.Recv()
			if err != nil {
				return fmt.Errorf("delta ADS stream: %w", err)
			}
			typ := resp.GetTypeUrl()
			for _, name := range resp.GetRemovedResources() {
				c.drop(typ, name)
			}
			for _, r := range resp.GetResources() {
				if err := c.hold(typ, r.GetResource().GetValue()); err != nil {
					return err
				}
			}
			if err := c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
				return err
			}
			if err := c.follow(); err != nil {
				return err
			}
			c.check(typ)
		}
	}
	if c.stream, err = ads.StreamAggregatedResources(ctx); err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
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
		// A state-of-the-world response replaces the type's resources.
		typ := resp.GetTypeUrl()
		old := c.held[typ]
		c.held[typ] = map[string][]string{}
		for _, a := range resp.GetResources() {
			if err := c.hold(typ, a.GetValue()); err != nil {
				return err
			}
		}
		for _, refs := range old {
			c.unref(typ, refs)
		}
		// ACK.
		c.version[typ], c.nonce[typ] = resp.GetVersionInfo(), resp.GetNonce()
		if err := c.send(typ, c.names(typ)); err != nil {
			return err
		}
		if err := c.follow(); err != nil {
			return err
		}
		c.check(typ)
	}
}

// hold decodes a resource of type typ (b, its encoding) and keeps the
// names it references.
func (c *adsClient) hold(typ string, b []byte) error {
	var name string
	var refs []string
	var err error
	switch typ {
	case typeCluster:
		var eds string
		name, eds, err = clusterNames(b)
		if eds != "" {
			refs = []string{eds}
		}
	case typeListener:
		if name, err = lastString(b, listenerName); err == nil {
			refs, err = listenerRoutes(b, nil)
		}
	case typeEndpoint:
		name, err = lastString(b, claClusterName)
	case typeRoute:
		name, refs, err = routeNames(b)
	default:
		return fmt.Errorf("unexpected type %s", typ)
	}
	if err != nil {
		return fmt.Errorf("decode %s: %w", typ, err)
	}
	if old, ok := c.held[typ][name]; ok {
		c.unref(typ, old)
	}
	c.held[typ][name] = refs
	c.ref(typ, refs)
	return nil
}

// drop forgets a resource the control plane removed.
func (c *adsClient) drop(typ, name string) {
	if refs, ok := c.held[typ][name]; ok {
		c.unref(typ, refs)
		delete(c.held[typ], name)
	}
}

// referenced is the type of the names a resource of typ references.
func referenced(typ string) string {
	switch typ {
	case typeCluster:
		return typeEndpoint
	case typeListener:
		return typeRoute
	case typeRoute:
		return typeVHost
	}
	return ""
}

func (c *adsClient) ref(typ string, names []string) {
	rt := referenced(typ)
	for _, n := range names {
		if c.refs[rt][n]++; c.refs[rt][n] == 1 && rt != typeVHost {
			c.touched[rt] = append(c.touched[rt], n)
		}
	}
}

func (c *adsClient) unref(typ string, names []string) {
	rt := referenced(typ)
	for _, n := range names {
		if c.refs[rt][n]--; c.refs[rt][n] == 0 {
			delete(c.refs[rt], n)
			if rt != typeVHost {
				c.touched[rt] = append(c.touched[rt], n)
			}
		}
	}
}

// names is the sorted list of the names of typ (EDS, RDS) referenced.
func (c *adsClient) names(typ string) []string {
	if typ != typeEndpoint && typ != typeRoute {
		return nil
	}
	return slices.Sorted(maps.Keys(c.refs[typ]))
}

// follow subscribes to the load assignments and route configurations that
// gained their first reference, and drops those that lost their last.
func (c *adsClient) follow() error {
	for _, typ := range []string{typeEndpoint, typeRoute} {
		var added, gone []string
		for _, n := range c.touched[typ] {
			switch wanted := c.refs[typ][n] > 0; {
			case wanted && !c.subscribed[typ][n]:
				c.subscribed[typ][n] = true
				added = append(added, n)
			case !wanted && c.subscribed[typ][n]:
				delete(c.subscribed[typ], n)
				gone = append(gone, n)
			}
		}
		c.touched[typ] = c.touched[typ][:0]
		if len(added) == 0 && len(gone) == 0 {
			continue
		}
		for _, n := range gone {
			c.drop(typ, n)
		}
		if !c.delta {
			if err := c.send(typ, c.names(typ)); err != nil {
				return err
			}
			continue
		}
		if err := c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: gone}); err != nil {
			return err
		}
	}
	return nil
}

// check reports, once each, a complete config and the arrival of the
// change. Until the config is complete it walks every reference; after,
// it looks up only the change.
func (c *adsClient) check(typ string) {
	c.seen[typ] = true
	if !c.fullSent {
		if !c.seen[typeCluster] || !c.seen[typeListener] {
			return
		}
		for _, rt := range []string{typeEndpoint, typeRoute} {
			for n := range c.refs[rt] {
				if _, ok := c.held[rt][n]; !ok {
					return
				}
			}
		}
		c.fullSent = true
		c.full <- time.Since(c.start)
	}
	_, hasCluster := c.held[typeCluster][c.want.cluster]
	_, hasCLA := c.held[typeEndpoint][c.want.cluster]
	if !c.changeHit && hasCluster && hasCLA && c.refs[typeVHost][c.want.vhost] > 0 {
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
