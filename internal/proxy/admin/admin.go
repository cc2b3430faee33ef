// Package admin is weft-proxy's loopback admin server: /ready,
// /config_dump (Envoy's ConfigDump JSON), /stats/prometheus (cluster
// counters with Envoy's metric names), /quitquitquit.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/proxy/cors"
	"github.com/weftmesh/weft/internal/proxy/fault"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/listener"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// Options configures a Server.
type Options struct {
	Logger *slog.Logger
	// Ready reports whether the proxy is ready and, if not, why.
	Ready func() (ok bool, reason string)
	// Resources returns the accepted xDS resources.
	Resources func() model.Resources
	// Quit starts a graceful shutdown.
	Quit func()
	// Stats returns the cluster counters for /stats/prometheus.
	Stats func() map[string]upstream.StatsSnapshot
	// Listeners returns the listener counters for /stats/prometheus; may be
	// nil.
	Listeners func() listener.Stats
	// Faults and Cors return the HTTP filters' counters by connection
	// manager stat prefix, and Mirrors the request mirroring counters; all
	// may be nil.
	Faults  func() map[string]fault.Stats
	Cors    func() map[string]cors.Stats
	Mirrors func() forward.MirrorStats
	// Pprof serves runtime/pprof's profiles under /debug/pprof/.
	Pprof bool
}

// Server serves the admin API.
type Server struct {
	opts Options
	srv  *http.Server
	mux  *http.ServeMux
}

// New returns a Server; call Serve to start it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, mux: http.NewServeMux()}
	s.mux.HandleFunc("/ready", s.ready)
	s.mux.HandleFunc("/config_dump", s.configDump)
	s.mux.HandleFunc("/quitquitquit", s.quit)
	s.mux.HandleFunc("/stats/prometheus", s.prometheus)
	if o.Pprof {
		s.handlePprof()
	}
	s.mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "weft-proxy admin\n  /ready\n  /config_dump\n  /stats/prometheus\n  /quitquitquit (POST)\n")
	})
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug)}
	return s
}

// Handler returns the admin API handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
		return err
	}
	return nil
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ok, reason := s.opts.Ready()
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "NOT READY: %s\n", reason)
		return
	}
	fmt.Fprint(w, "LIVE\n")
}

func (s *Server) quit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST /quitquitquit", http.StatusMethodNotAllowed)
		return
	}
	s.opts.Logger.Info("shutdown requested through the admin API")
	fmt.Fprint(w, "OK\n")
	if s.opts.Quit != nil {
		go s.opts.Quit()
	}
}

func (s *Server) configDump(w http.ResponseWriter, _ *http.Request) {
	b, err := ConfigDumpJSON(s.opts.Resources())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
