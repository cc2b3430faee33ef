package xdsserver

import (
	"context"
	"sort"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/internal/nodemeta"
)

// Sync states, as istioctl proxy-status names them.
const (
	Synced  = "SYNCED"
	Stale   = "STALE"
	NotSent = "NOT SENT"
)

// typeOrder is the order proxy-status shows the types in.
var typeOrder = []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.EndpointType, resourcev3.RouteType}

func shortType(url string) string {
	switch url {
	case resourcev3.ClusterType:
		return "CDS"
	case resourcev3.ListenerType:
		return "LDS"
	case resourcev3.EndpointType:
		return "EDS"
	case resourcev3.RouteType:
		return "RDS"
	}
	return url
}

type proxyState struct {
	id          string
	meta        nodemeta.Metadata
	connectedAt time.Time
	streams     int
	push        pushRecord
	types       map[string]*typeState // by type URL
	// pushMu serializes pushes to this proxy (from the push loop and from
	// the proxy's own stream when it connects). It is taken before mu.
	pushMu sync.Mutex
	// answered, while a change is in flight, is closed when the proxy
	// has ACKed or NACKed it for every type it subscribes to.
	answered chan struct{}
}

// settle ends the change in flight, if any.
func (p *proxyState) settle() {
	if p.answered != nil {
		close(p.answered)
		p.answered = nil
	}
}

// settleIfAnswered ends the change in flight if the proxy has answered it:
// every type that counts toward its sync (see typeSync) is ACKed, or
// NACKed, at the pushed version.
func (p *proxyState) settleIfAnswered() {
	if p.answered == nil {
		return
	}
	for i, url := range pushTypes {
		if _, counts := p.typeSync(url); !counts {
			continue
		}
		ts := p.types[url]
		if ts == nil {
			return
		}
		want := p.push.versions[i]
		if ts.acked != want && ts.nackVersion != want {
			return
		}
	}
	p.settle()
}

// pushRecord is the last configuration handed to the cache for a proxy.
type pushRecord struct {
	seq              int64 // of the push; 0 before the first
	configRevision   int64
	registryRevision int64
	versions         [4]string // by the index of the type in pushTypes
	at               time.Time
}

// version is the version pushed for type url.
func (r pushRecord) version(url string) string {
	for i, typ := range pushTypes {
		if typ == url {
			return r.versions[i]
		}
	}
	return ""
}

type typeState struct {
	subscribed  bool
	sent        string
	sentAt      time.Time
	acked       string
	ackedAt     time.Time
	nack        string // the proxy's error for nackVersion
	nackVersion string
	nackAt      time.Time
	nonces      map[sentWith]string // the version sent with each recent response
}

func (p *proxyState) typeState(url string) *typeState {
	ts := p.types[url]
	if ts == nil {
		ts = &typeState{nonces: map[sentWith]string{}}
		p.types[url] = ts
	}
	return ts
}

// TypeStatus is one resource type's state for one proxy.
type TypeStatus struct {
	Type   string `json:"type"`   // CDS, LDS, EDS, RDS
	Status string `json:"status"` // SYNCED, STALE, NOT SENT
	// Want is the version the control plane currently has for the proxy.
	Want  string `json:"want,omitempty"`
	Sent  string `json:"sent,omitempty"`
	Acked string `json:"acked,omitempty"`
	// Nack is the proxy's rejection of version NackVersion.
	Nack        string `json:"nack,omitempty"`
	NackVersion string `json:"nackVersion,omitempty"`
}

// ProxyStatus is what proxy-status shows for one proxy.
type ProxyStatus struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Namespace   string    `json:"namespace"`
	Service     string    `json:"service,omitempty"`
	Workload    string    `json:"workload"`
	ConnectedAt time.Time `json:"connectedAt"`
	// ConfigRevision is the store revision of the config last pushed.
	ConfigRevision int64 `json:"configRevision"`
	// RegistryRevision is the registry revision of the config last pushed.
	RegistryRevision int64        `json:"registryRevision"`
	Types            []TypeStatus `json:"types"`
	// Synced is true when every type the proxy uses is ACKed at the
	// latest version.
	Synced bool `json:"synced"`
}

// Status reports every connected proxy, sorted by ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (p *proxyState) status() ProxyStatus {
	ps := ProxyStatus{
		ID: p.id, Type: p.meta.Type, Namespace: p.meta.Namespace, Service: p.meta.Service,
		Workload: p.meta.WorkloadName, ConnectedAt: p.connectedAt, ConfigRevision: p.push.configRevision,
		RegistryRevision: p.push.registryRevision,
		Synced:           p.synced(),
	}
	for _, url := range typeOrder {
		status, _ := p.typeSync(url)
		st := TypeStatus{Type: shortType(url), Want: p.push.version(url), Status: status}
		if ts := p.types[url]; ts != nil {
			st.Sent, st.Acked, st.Nack, st.NackVersion = ts.sent, ts.acked, ts.nack, ts.nackVersion
		}
		ps.Types = append(ps.Types, st)
	}
	return ps
}

// typeSync is type url's state for the proxy (SYNCED, STALE or NOT SENT),
// and whether the proxy is synced only once it is SYNCED: CDS and LDS
// always, another type once the proxy has subscribed to it or has
// resources of it to get (a gateway with no routes never asks for RDS,
// and is not held back by it; one given its first routes is, until it has
// asked for them and ACKed them).
func (p *proxyState) typeSync(url string) (status string, counts bool) {
	ts := p.types[url]
	want := p.push.version(url)
	has := want != "" && want != emptyGroupVersion
	if ts == nil {
		return NotSent, url == resourcev3.ClusterType || url == resourcev3.ListenerType || has
	}
	switch {
	case ts.sent == "":
		status = NotSent
	case ts.acked == want && ts.sent == want:
		status = Synced
	default:
		status = Stale
	}
	return status, ts.subscribed || has
}

// emptyGroupVersion is the version of a group of no resources.
var emptyGroupVersion = wireVersion(nil)

// synced says whether the proxy has ACKed the last push for every type
// it uses (ProxyStatus.Synced).
func (p *proxyState) synced() bool {
	if p.push.seq == 0 {
		return false
	}
	for _, url := range typeOrder {
		if status, counts := p.typeSync(url); status != Synced && counts {
			return false
		}
	}
	return true
}

// answer is the proxy's part of a sync report at store revision rev and
// registry revision regRev: whether it holds a config that includes both,
// ACKed, and the type and text of its rejection of the config it was last
// pushed, if that config includes both and it rejected it (the last such
// type in typeOrder).
func (p *proxyState) answer(rev, regRev int64) (synced bool, nackType, nack string) {
	pushed := p.push.configRevision >= rev && p.push.registryRevision >= regRev
	synced = p.synced() && pushed
	if !pushed {
		// A rejection of an earlier config is no answer to this one.
		return synced, "", ""
	}
	for _, url := range typeOrder {
		if ts := p.types[url]; ts != nil && ts.nack != "" && ts.nackVersion == p.push.version(url) {
			nackType, nack = shortType(url), ts.nack
		}
	}
	return synced, nackType, nack
}

// SyncReport says whether every connected proxy has ACKed the config at a
// store revision.
type SyncReport struct {
	Revision int64       `json:"revision"`
	Done     bool        `json:"done"` // every proxy synced, or at least one NACKed
	Proxies  []ProxySync `json:"proxies"`
}

// ProxySync is one proxy's part of a SyncReport.
type ProxySync struct {
	ID     string `json:"id"`
	Synced bool   `json:"synced"`
	// Nack holds the proxy's rejection, as "RDS: message".
	Nack string `json:"nack,omitempty"`
}

// Sync reports, for each connected proxy (sorted by ID), whether it has
// ACKed a config that includes store revision rev and registry revision
// regRev (0 for any): with the current revisions of both, whether every
// proxy has the mesh as it is now.
func (s *Server) Sync(rev, regRev int64) SyncReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := SyncReport{Revision: rev, Done: true, Proxies: make([]ProxySync, 0, len(s.proxies))}
	for _, p := range s.proxies {
		synced, typ, nack := p.answer(rev, regRev)
		px := ProxySync{ID: p.id, Synced: synced}
		if nack != "" {
			px.Nack = typ + ": " + nack
		} else if !synced {
			rep.Done = false
		}
		rep.Proxies = append(rep.Proxies, px)
	}
	sort.Slice(rep.Proxies, func(i, j int) bool { return rep.Proxies[i].ID < rep.Proxies[j].ID })
	return rep
}

// WaitSync is Sync once its report is done (every proxy has ACKed the
// revisions, or rejected its config), or when ctx ends, whichever comes
// first. It looks again at each change to what a proxy was pushed or has
// answered, taking every change since its last look at once.
func (s *Server) WaitSync(ctx context.Context, rev, regRev int64) SyncReport {
	for {
		s.mu.Lock()
		done := s.syncDone(rev, regRev)
		if !done && s.syncWake == nil {
			s.syncWake = make(chan struct{})
		}
		wake := s.syncWake
		s.mu.Unlock()
		if done {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return s.Sync(rev, regRev)
		}
		// Each look walks every proxy with mu held: while a change
		// reaches a thousand proxies, look at most every recheck, taking
		// the ACKs of that time together.
		select {
		case <-time.After(recheck):
		case <-ctx.Done():
			return s.Sync(rev, regRev)
		}
	}
	return s.Sync(rev, regRev)
}

// recheck is the shortest time between two looks of WaitSync.
const recheck = 2 * time.Millisecond

// syncDone is Sync(rev, regRev).Done without the report. Call it with mu
// held.
func (s *Server) syncDone(rev, regRev int64) bool {
	for _, p := range s.proxies {
		if synced, _, nack := p.answer(rev, regRev); !synced && nack == "" {
			return false
		}
	}
	return true
}

// syncChanged wakes WaitSync's callers: something a sync report says may
// have changed. Call it with mu held.
func (s *Server) syncChanged() {
	if s.syncWake != nil {
		close(s.syncWake)
		s.syncWake = nil
	}
}
