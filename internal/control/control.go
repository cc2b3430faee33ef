package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
	"github.com/weftmesh/weft/internal/store"
	"github.com/weftmesh/weft/internal/xdsserver"
)

// Options configures the control plane.
type Options struct {
	Logger  *slog.Logger
	DataDir string
	XDSAddr string // default 127.0.0.1:15010
	APIAddr string // default 127.0.0.1:15014
	// Debounce is how long the push loop waits for more changes; default 100ms.
	Debounce time.Duration
	// MaxDelay bounds how long a change may wait under a stream of changes; default 1s.
	MaxDelay time.Duration
	// Grace is how long a disconnected proxy's endpoints stay; default registry.DefaultGrace.
	Grace time.Duration
	// VIPRange is where service VIPs come from; default registry.DefaultVIPRange.
	VIPRange string
	// Mesh holds the mesh-wide settings pushed to every proxy.
	Mesh snapshot.Mesh
	// Pprof serves net/http/pprof under /debug/pprof/ on the API listener.
	Pprof bool
	// MemoryLimit, when positive, is the Go runtime's soft memory limit in
	// bytes (as GOMEMLIMIT): near it the garbage collector runs more often
	// instead of letting the heap grow to twice what is live.
	MemoryLimit int64
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = discard()
	}
	if o.XDSAddr == "" {
		o.XDSAddr = "127.0.0.1:15010"
	}
	if o.APIAddr == "" {
		o.APIAddr = "127.0.0.1:15014"
	}
	if o.Debounce == 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = time.Second
	}
	if o.VIPRange == "" {
		o.VIPRange = registry.DefaultVIPRange
	}
	if o.Mesh.OutboundTrafficPolicy == "" {
		o.Mesh.OutboundTrafficPolicy = snapshot.AllowAny
	}
}

// Run runs the control plane until ctx ends.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	log := opts.Logger
	if opts.MemoryLimit > 0 {
		debug.SetMemoryLimit(opts.MemoryLimit)
	}
	switch opts.Mesh.OutboundTrafficPolicy {
	case snapshot.AllowAny, snapshot.RegistryOnly:
	default:
		return fmt.Errorf("outbound traffic policy %q: want %s or %s", opts.Mesh.OutboundTrafficPolicy, snapshot.AllowAny, snapshot.RegistryOnly)
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := store.Open(store.Options{Dir: opts.DataDir, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	restored, err := loadWorkloads(opts.DataDir)
	if err != nil {
		log.Warn("ignoring the saved registry", "err", err)
	}
	reg := registry.New(registry.Options{Logger: log, Grace: opts.Grace, Restored: restored})
	savedVIPs, err := loadVIPs(opts.DataDir)
	if err != nil {
		log.Warn("ignoring the saved VIPs; services get new ones", "err", err)
	}
	vips, err := registry.NewVIPs(opts.VIPRange, savedVIPs)
	if err != nil {
		return err
	}
	xds := xdsserver.New(xdsserver.Options{Logger: log, Registry: reg})

	xl, err := net.Listen("tcp", opts.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", opts.XDSAddr, err)
	}
	al, err := net.Listen("tcp", opts.APIAddr)
	if err != nil {
		xl.Close()
		return fmt.Errorf("listen for the API on %s: %w", opts.APIAddr, err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pusher{log: log, store: st, reg: reg, xds: xds, debounce: opts.Debounce, maxDelay: opts.MaxDelay,
		dataDir: opts.DataDir, savedRegistry: -1, vips: vips, mesh: opts.Mesh}
	// The first snapshot is built before any proxy can connect, so the
	// first proxy gets its config without waiting for the debounce.
	if err := p.push(); err != nil {
		return err
	}
	errc := make(chan error, 3)
	go func() { errc <- xds.Serve(ctx, xl) }()
	api := &http.Server{Handler: newAPI(apiOptions{log: log, store: st, xds: xds, reg: reg, pprof: opts.Pprof}), ReadHeaderTimeout: 10 * time.Second,
		// A question held by GET /api/v1/sync?wait= ends when the
		// control plane stops, rather than holding up its shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := api.Serve(al); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve API: %w", err)
			return
		}
		errc <- nil
	}()
	go func() { errc <- p.loop(ctx) }()

	state := controlapi.State{PID: os.Getpid(), APIAddr: al.Addr().String(), XDSAddr: xl.Addr().String()}
	if err := controlapi.WriteState(opts.DataDir, state); err != nil {
		return err
	}
	defer os.Remove(opts.DataDir + "/" + controlapi.StateFile)
	log.Info("control plane ready", "xds", state.XDSAddr, "api", state.APIAddr, "data_dir", opts.DataDir, "config_revision", st.Revision())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	api.Shutdown(shutdownCtx)
	log.Info("control plane stopped")
	return runErr
}

// pusher owns the push loop.
type pusher struct {
	log      *slog.Logger
	store    *store.Store
	reg      *registry.Registry
	xds      *xdsserver.Server
	debounce time.Duration
	maxDelay time.Duration
	// dataDir is where the registry is saved after each change to it.
	dataDir       string
	savedRegistry int64
	vips          *registry.VIPs
	mesh          snapshot.Mesh
}

func (p *pusher) loop(ctx context.Context) error {
	revs, unsubscribe := p.store.Subscribe()
	defer unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-revs:
		case <-p.reg.Changes():
		}
		// Debounce: wait until no change for p.debounce, at most p.maxDelay.
		deadline := time.NewTimer(p.maxDelay)
		quiet := time.NewTimer(p.debounce)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				quiet.Stop()
				return nil
			case <-revs:
				quiet.Reset(p.debounce)
			case <-p.reg.Changes():
				quiet.Reset(p.debounce)
			case <-quiet.C:
				break wait
			case <-deadline.C:
				break wait
			}
		}
		deadline.Stop()
		quiet.Stop()
		if err := p.push(); err != nil {
			p.log.Error("push failed; proxies keep their last config", "err", err)
		}
	}
}

// push reads the store and the registry once and pushes the result.
func (p *pusher) push() error {
	rev, resources, err := p.store.All()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	regRev, workloads := p.reg.Workloads()
	ses, wes := config.OfKind(resources, config.KindServiceEntry), config.OfKind(resources, config.KindWorkloadEntry)
	if regRev != p.savedRegistry {
		if err := saveWorkloads(p.dataDir, workloads); err != nil {
			p.log.Warn("saving the registry failed; a restart will wait for proxies to reconnect", "err", err)
		}
		p.savedRegistry = regRev
	}
	services := registry.Services(workloads, ses, wes)
	if err := p.vips.Assign(services); err != nil {
		p.log.Error("services without a VIP are unreachable in transparent mode", "err", err)
	}
	if saved, changed := p.vips.Save(); changed {
		if err := saveVIPs(p.dataDir, saved); err != nil {
			p.log.Warn("saving VIPs failed; a restart may give services new ones", "err", err)
		}
	}
	snap := snapshot.New(rev, regRev, resources, services)
	snap.Mesh = p.mesh
	p.xds.Push(snap)
	return nil
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
