package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/proxy/admin"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/origdst"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
)

// Options configures Run.
type Options struct {
	// XDSAddress is the control plane's ADS address, host:port.
	XDSAddress string
	// StateOfTheWorld selects state-of-the-world xDS, for a control plane
	// that does not serve incremental (delta) xDS; by default the proxy
	// uses delta.
	StateOfTheWorld bool
	// Meta describes this proxy to the control plane.
	Meta nodemeta.Metadata
	// AdminAddress is where the admin API listens (loopback), e.g.
	// 127.0.0.1:15000. Ignored when AdminListener is set.
	AdminAddress string
	// AdminListener, when set, is used for the admin API instead of
	// binding AdminAddress.
	AdminListener net.Listener
	// DrainTimeout bounds how long shutdown waits for in-flight requests.
	// Default 5s.
	DrainTimeout time.Duration
	// H2WhenBusy is upstream.PoolsOptions.H2WhenBusy (an experiment).
	H2WhenBusy int64
	// EventLoops is listener.Options.EventLoops.
	EventLoops int
	Logger     *slog.Logger
	// OnReady is called once, from its own goroutine, when the proxy first
	// becomes ready (/ready would answer 200).
	OnReady func()
	// MinBackoff and MaxBackoff bound the xDS reconnect delay (defaults
	// 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Pprof serves Go profiles under /debug/pprof/ on the admin API.
	Pprof bool
	// WaitLogInterval is how often Run logs what it is waiting for while
	// not ready. Default 5s.
	WaitLogInterval time.Duration
}

// Run runs a proxy until ctx ends or the admin API asks it to quit, then
// stops accepting, drains in-flight requests (bounded by DrainTimeout) and
// returns nil. It returns an error only when it cannot start.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.WaitLogInterval <= 0 {
		o.WaitLogInterval = 5 * time.Second
	}
	log := o.Logger
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	adminLn := o.AdminListener
	if adminLn == nil {
		var err error
		if adminLn, err = net.Listen("tcp", o.AdminAddress); err != nil {
			return fmt.Errorf("admin API on %s: %w", o.AdminAddress, err)
		}
	}

	pools := upstream.NewPools(upstream.PoolsOptions{Logger: log, H2WhenBusy: o.H2WhenBusy})
	listeners := listener.New(listener.Options{Logger: log, DrainTimeout: o.DrainTimeout, OriginalDst: originalDst, Namespace: o.Meta.Namespace, EventLoops: o.EventLoops})
	compiler := model.New(model.Options{Logger: log, Pools: pools, PortMap: o.Meta.PortMap, Publish: listeners.Apply})
	node := &corev3.Node{Id: o.Meta.ID(), Cluster: o.Meta.Service, Metadata: o.Meta.Struct(), UserAgentName: nodemeta.UserAgent}
	client, err := xdsclient.New(xdsclient.Options{
		Address: o.XDSAddress, Node: node, Handler: compiler, Logger: log,
		MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff, Delta: !o.StateOfTheWorld,
	})
	if err != nil {
		adminLn.Close()
		return err
	}

	var draining atomic.Bool
	ready := func() (bool, string) {
		if draining.Load() {
			return false, "draining"
		}
		if compiler.Current() == nil {
			if st := client.Status(); st.Responses == 0 {
				why := st.LastError
				if why == "" {
					why = "connecting"
				}
				return false, fmt.Sprintf("waiting for config from %s: %s", o.XDSAddress, why)
			}
			return false, compiler.Pending()
		}
		if p := listeners.Pending(); len(p) > 0 {
			return false, "cannot bind " + strings.Join(p, "; ")
		}
		return true, ""
	}
	adm := admin.New(admin.Options{Logger: log, Ready: ready, Resources: compiler.Resources, Quit: cancel, Stats: pools.Stats, Listeners: listeners.Stats,
		Faults: compiler.FaultStats, Cors: compiler.CorsStats, Mirrors: compiler.MirrorStats, Pprof: o.Pprof})

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := adm.Serve(adminLn); err != nil {
			log.Error("admin API stopped", "err", err)
		}
	}()
	log.Info("admin API listening", "address", adminLn.Addr().String())
	go func() {
		defer wg.Done()
		client.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		watchReady(ctx, ready, o.WaitLogInterval, log, o.OnReady)
	}()

	<-ctx.Done()
	draining.Store(true)
	log.Info("shutting down: draining listeners", "timeout", o.DrainTimeout)
	dctx, dcancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer dcancel()
	if err := listeners.Shutdown(dctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := adm.Shutdown(actx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("admin shutdown", "err", err)
	}
	wg.Wait()
	pools.Close()
	log.Info("stopped")
	return nil
}

// originalDst reads a captured connection's original destination.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: %T has no file descriptor", c)
	}
	return origdst.Get(sc)
}

// watchReady polls readiness until ready, logging what it waits for every
// interval, then calls onReady.
func watchReady(ctx context.Context, ready func() (bool, string), interval time.Duration, log *slog.Logger, onReady func()) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	lastLog := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			ok, why := ready()
			if ok {
				log.Info("ready", "after", time.Since(start).Round(time.Millisecond))
				if onReady != nil {
					onReady()
				}
				return
			}
			if now.Sub(lastLog) >= interval {
				lastLog = now
				log.Info("not ready yet", "reason", why)
			}
		}
	}
}
