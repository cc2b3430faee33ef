package admin

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// The profiling endpoints, served with runtime/pprof directly.
// net/http/pprof is not used: its index page needs html/template, and
// text/template's reflective method calls make the linker keep every
// exported method of every type in the binary (about a quarter of
// weft-proxy's size, and so of its resident memory).

// maxProfileSeconds bounds a CPU profile request.
const maxProfileSeconds = 300

func (s *Server) handlePprof() {
	s.mux.HandleFunc("/debug/pprof/{$}", pprofIndex)
	s.mux.HandleFunc("/debug/pprof/profile", cpuProfile)
	s.mux.HandleFunc("/debug/pprof/{name}", namedProfile)
}

func pprofIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "weft-proxy profiles (go tool pprof http://ADMIN/debug/pprof/NAME):")
	fmt.Fprintln(w, "  profile?seconds=N  CPU profile (default 30 s)")
	for _, p := range pprof.Profiles() {
		fmt.Fprintf(w, "  %-18s %d\n", p.Name(), p.Count())
	}
}

func cpuProfile(w http.ResponseWriter, r *http.Request) {
	secs := 30
	if v := r.FormValue("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxProfileSeconds {
			http.Error(w, fmt.Sprintf("seconds=%q: want 1 to %d", v, maxProfileSeconds), http.StatusBadRequest)
			return
		}
		secs = n
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	if err := pprof.StartCPUProfile(w); err != nil {
		w.Header().Del("Content-Disposition")
		http.Error(w, "cannot start a CPU profile: "+err.Error(), http.StatusConflict)
		return
	}
	select {
	case <-time.After(time.Duration(secs) * time.Second):
	case <-r.Context().Done():
	}
	pprof.StopCPUProfile()
}

func namedProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, fmt.Sprintf("unknown profile %q (see /debug/pprof/)", name), http.StatusNotFound)
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	}
	if name == "heap" && r.FormValue("gc") != "" {
		runtime.GC()
	}
	p.WriteTo(w, debug)
}
