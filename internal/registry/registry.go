package registry

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/nodemeta"
)

// DefaultGrace is how long a disconnected proxy's endpoints stay in the
// registry, so a proxy that reconnects at once (a control plane restart, a
// network blip) does not flap its endpoints across the mesh.
const DefaultGrace = 5 * time.Second

// Options configures a Registry.
type Options struct {
	Logger *slog.Logger
	// Grace is how long a proxy stays registered after its last stream
	// closes. Zero means DefaultGrace.
	Grace time.Duration
	// Restored are the workloads a previous run of the control plane knew.
	// They count as disconnected: each stays for RestoreGrace unless its
	// proxy reconnects, so that after a control plane restart the first
	// proxies to reconnect are not sent a mesh without the others.
	Restored []Workload
	// RestoreGrace is how long restored workloads wait for their proxies;
	// zero means DefaultRestoreGrace.
	RestoreGrace time.Duration
}

// DefaultRestoreGrace covers a proxy's longest reconnect backoff.
const DefaultRestoreGrace = 15 * time.Second

// Workload is one connected proxy as the registry knows it.
type Workload struct {
	ID   string
	Meta nodemeta.Metadata
}

// Registry tracks the proxies connected to the control plane. It is safe for
// concurrent use: xDS stream callbacks call Connect and Disconnect, and the
// push loop reads Workloads after each signal on Changes.
type Registry struct {
	log   *slog.Logger
	grace time.Duration

	mu        sync.Mutex
	rev       int64
	workloads map[string]*entry
	changes   chan struct{}
}

type entry struct {
	meta    nodemeta.Metadata
	streams int         // open ADS streams from this proxy
	expiry  *time.Timer // set while streams == 0 and the grace period runs
}

// New returns an empty registry.
func New(opts Options) *Registry {
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RestoreGrace == 0 {
		opts.RestoreGrace = DefaultRestoreGrace
	}
	r := &Registry{
		log:       opts.Logger,
		grace:     opts.Grace,
		workloads: map[string]*entry{},
		changes:   make(chan struct{}, 1),
	}
	for _, w := range opts.Restored {
		e := &entry{meta: w.Meta}
		e.expiry = time.AfterFunc(opts.RestoreGrace, func() { r.expire(w.ID, e) })
		r.workloads[w.ID] = e
	}
	return r
}

// Changes signals (coalesced) after every change to the set of workloads.
func (r *Registry) Changes() <-chan struct{} { return r.changes }

// Connect records an open stream from a proxy. A proxy that reconnects within
// its grace period keeps its place without a change being signalled, unless
// its metadata changed.
func (r *Registry) Connect(id string, m nodemeta.Metadata) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.workloads[id]
	if e == nil {
		e = &entry{meta: m}
		r.workloads[id] = e
		r.log.Info("proxy registered", "proxy", id, "service", m.Service, "namespace", m.Namespace, "ip", m.IP)
		r.changedLocked()
	} else if !sameMeta(e.meta, m) {
		e.meta = m
		r.changedLocked()
	}
	if e.expiry != nil {
		e.expiry.Stop()
		e.expiry = nil
	}
	e.streams++
}

// Disconnect records a closed stream. When a proxy has no stream left it is
// removed after the grace period.
func (r *Registry) Disconnect(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.workloads[id]
	if e == nil {
		return
	}
	if e.streams--; e.streams > 0 {
		return
	}
	e.expiry = time.AfterFunc(r.grace, func() { r.expire(id, e) })
}

func (r *Registry) expire(id string, e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workloads[id] != e || e.streams > 0 {
		return // reconnected in the meantime
	}
	delete(r.workloads, id)
	r.log.Info("proxy deregistered", "proxy", id, "after", r.grace)
	r.changedLocked()
}

func (r *Registry) changedLocked() {
	r.rev++
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// Revision counts the changes to the set of workloads so far.
func (r *Registry) Revision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rev
}

// Workloads returns the registered proxies, sorted by ID, and the registry
// revision they belong to.
func (r *Registry) Workloads() (int64, []Workload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Workload, 0, len(r.workloads))
	for id, e := range r.workloads {
		out = append(out, Workload{ID: id, Meta: e.meta})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return r.rev, out
}

func sameMeta(a, b nodemeta.Metadata) bool {
	return a.ID() == b.ID() && a.Service == b.Service && a.ServiceAccount == b.ServiceAccount &&
		equalMaps(a.Labels, b.Labels) && equalPorts(a.Ports, b.Ports) &&
		a.OutboundPort == b.OutboundPort && equalMaps(a.PortMap, b.PortMap)
}

func equalMaps[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalPorts(a, b []nodemeta.Port) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
