package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/store"
	"github.com/weftmesh/weft/internal/xdsserver"
)

type apiOptions struct {
	log   *slog.Logger
	store *store.Store
	xds   *xdsserver.Server
	reg   *registry.Registry // nil: the registry is not asked
	// pprof serves net/http/pprof under /debug/pprof/.
	pprof bool
}

type api struct{ apiOptions }

func newAPI(opts apiOptions) http.Handler {
	a := &api{opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /api/v1/apply", a.apply)
	mux.HandleFunc("POST /api/v1/delete", a.delete)
	mux.HandleFunc("GET /api/v1/resources", a.resources)
	mux.HandleFunc("GET /api/v1/proxy-status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.xds.Status())
	})
	mux.HandleFunc("GET /api/v1/sync", a.sync)
	mux.HandleFunc("GET /api/v1/workloads", a.workloads)
	mux.HandleFunc("GET /api/v1/proxy-config", a.proxyConfig)
	if opts.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// maxBody bounds what one apply may send.
const maxBody = 16 << 20

func (a *api) apply(w http.ResponseWriter, r *http.Request) {
	var req controlapi.ApplyRequest
	if !readJSON(w, r, &req) {
		return
	}
	resources, errs := decodeFiles(req.Files)
	if len(errs) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, controlapi.ChangeResponse{Errors: errs})
		return
	}
	if len(resources) == 0 {
		writeError(w, http.StatusBadRequest, "no resources found in the input")
		return
	}
	// Analyze the config as it would be after the apply.
	_, current, err := a.store.All()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	incoming := map[config.Key]bool{}
	for _, r := range resources {
		incoming[r.Key()] = true
	}
	after := append([]*config.Resource(nil), resources...)
	for _, r := range current {
		if !incoming[r.Key()] {
			after = append(after, r)
		}
	}
	var resp controlapi.ChangeResponse
	for _, warn := range config.Analyze(after) {
		if incoming[config.Key{Kind: warn.Kind, Namespace: warn.Namespace, Name: warn.Name}] {
			resp.Warnings = append(resp.Warnings, warn.String())
		}
	}
	for _, r := range resources {
		for _, warn := range config.Unsupported(r) {
			resp.Warnings = append(resp.Warnings, warn.String())
		}
	}
	if req.DryRun {
		for _, r := range resources {
			resp.Results = append(resp.Results, result(r.Key(), "validated (dry run)"))
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	rev, results, err := a.store.Apply(resources)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	resp.Revision = rev
	for _, res := range results {
		resp.Results = append(resp.Results, result(res.Key, res.Action))
	}
	a.log.Info("config applied", "revision", rev, "resources", len(results))
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) delete(w http.ResponseWriter, r *http.Request) {
	var req controlapi.DeleteRequest
	if !readJSON(w, r, &req) {
		return
	}
	var keys []config.Key
	if len(req.Files) > 0 {
		resources, errs := decodeFiles(req.Files)
		if len(errs) > 0 {
			writeJSON(w, http.StatusUnprocessableEntity, controlapi.ChangeResponse{Errors: errs})
			return
		}
		for _, r := range resources {
			keys = append(keys, r.Key())
		}
	} else {
		kind, err := config.ParseKind(req.Kind)
		if err != nil || req.Name == "" {
			if err == nil {
				err = errors.New("delete needs a kind and a name, or files")
			}
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		ns := req.Namespace
		if ns == "" {
			ns = "default"
		}
		keys = append(keys, config.Key{Kind: kind, Namespace: ns, Name: req.Name})
	}
	rev, results, err := a.store.Delete(keys)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	resp := controlapi.ChangeResponse{Revision: rev}
	for _, res := range results {
		resp.Results = append(resp.Results, result(res.Key, res.Action))
	}
	a.log.Info("config deleted", "revision", rev, "resources", len(results))
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) resources(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var kind config.Kind
	if k := q.Get("kind"); k != "" {
		var err error
		if kind, err = config.ParseKind(k); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	list, err := a.store.List(kind, q.Get("namespace"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []*config.Resource{}
	for _, res := range list {
		if name := q.Get("name"); name == "" || res.Name == name {
			out = append(out, res)
		}
	}
	if name := q.Get("name"); name != "" && len(out) == 0 {
		ns := q.Get("namespace")
		if ns == "" {
			ns = "all namespaces"
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found in %s", kind, name, ns))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// maxSyncWait bounds ?wait= of GET /api/v1/sync.
const maxSyncWait = time.Minute

// sync reports whether every proxy has ACKed store revision ?revision=N,
// or with ?current=true the config and the registry as they are now. With
// ?wait=10s it answers once the report is done (every proxy has ACKed, or
// one has rejected the config) or after that long, whichever comes first.
func (a *api) sync(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxSyncWait {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait must be a duration from 0s to %s, such as 10s; got %q", maxSyncWait, v))
			return
		}
		wait = d
	}
	var rev, regRev int64
	if q.Get("current") == "true" {
		rev = a.store.Revision()
		if a.reg != nil {
			regRev = a.reg.Revision()
		}
	} else {
		var err error
		if rev, err = strconv.ParseInt(q.Get("revision"), 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "revision must be a number, or current=true")
			return
		}
	}
	if wait == 0 {
		writeJSON(w, http.StatusOK, a.xds.Sync(rev, regRev))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	writeJSON(w, http.StatusOK, a.xds.WaitSync(ctx, rev, regRev))
}

// workloads lists the proxies in the registry with their labels, for
// weft analyze.
func (a *api) workloads(w http.ResponseWriter, _ *http.Request) {
	out := []controlapi.Workload{}
	if a.reg != nil {
		_, ws := a.reg.Workloads()
		for _, wl := range ws {
			m := wl.Meta
			out = append(out, controlapi.Workload{
				Type: m.Type, Namespace: m.Namespace, Name: m.WorkloadName, Service: m.Service, Labels: m.Labels,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// proxyConfigTypes maps the type names of GET /api/v1/proxy-config to
// xDS type URLs.
var proxyConfigTypes = map[string]string{
	"listeners": resourcev3.ListenerType,
	"routes":    resourcev3.RouteType,
	"clusters":  resourcev3.ClusterType,
	"endpoints": resourcev3.EndpointType,
}

// proxyConfig answers ?proxy=ID&type=listeners|routes|clusters|endpoints
// with the resources of that type in the proxy's current snapshot.
func (a *api) proxyConfig(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, typ := q.Get("proxy"), q.Get("type")
	url, ok := proxyConfigTypes[typ]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("type %q: want listeners, routes, clusters or endpoints", typ))
		return
	}
	if id == "" {
		writeError(w, http.StatusBadRequest, "proxy: want the node ID of a connected proxy")
		return
	}
	res, err := a.xds.Resources(id, url)
	if errors.Is(err, xdsserver.ErrUnknownProxy) {
		var known []string
		for _, p := range a.xds.Status() {
			known = append(known, p.ID)
		}
		msg := fmt.Sprintf("proxy %q is not connected", id)
		if len(known) > 0 {
			msg += "; connected proxies: " + strings.Join(known, ", ")
		}
		writeError(w, http.StatusNotFound, msg)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := controlapi.ProxyConfig{Proxy: id, Type: typ, Version: res.Version, Resources: []json.RawMessage{}}
	for _, item := range res.Resources {
		b, err := protojson.Marshal(item)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode %s of proxy %s: %v", typ, id, err))
			return
		}
		out.Resources = append(out.Resources, b)
	}
	writeJSON(w, http.StatusOK, out)
}

func decodeFiles(files []controlapi.File) ([]*config.Resource, []controlapi.ConfigError) {
	var all []*config.Resource
	var errs []controlapi.ConfigError
	for _, f := range files {
		rs, err := config.Decode(f.Name, []byte(f.Content))
		if err != nil {
			errs = append(errs, configErrors(f.Name, err)...)
			continue
		}
		all = append(all, rs...)
	}
	return all, errs
}

func configErrors(file string, err error) []controlapi.ConfigError {
	var list config.ErrorList
	if errors.As(err, &list) {
		out := make([]controlapi.ConfigError, 0, len(list))
		for _, e := range list {
			out = append(out, controlapi.ConfigError{
				File: e.File, Index: e.Index, Kind: string(e.Kind), Namespace: e.Namespace,
				Name: e.Name, Path: e.Path, Message: e.Message, Text: e.Error(),
			})
		}
		return out
	}
	return []controlapi.ConfigError{{File: file, Message: err.Error(), Text: file + ": " + err.Error()}}
}

func result(k config.Key, action string) controlapi.Result {
	return controlapi.Result{Kind: string(k.Kind), Namespace: k.Namespace, Name: k.Name, Action: action}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
