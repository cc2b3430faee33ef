package xdsserver

import (
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
// CDS, LDS and every other type it subscribes to are ACKed, or NACKed, at
// the pushed version.
func (p *proxyState) settleIfAnswered() {
	if p.answered == nil {
		return
	}
	for i, url := range pushTypes {
		ts := p.types[url]
		always := url == resourcev3.ClusterType || url == resourcev3.ListenerType
		if !always && (ts == nil || !ts.subscribed) {
			continue
		}
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
		Synced:           p.push.seq != 0,
	}
	for _, url := range typeOrder {
		ts := p.types[url]
		want := p.push.version(url)
		st := TypeStatus{Type: shortType(url), Want: want, Status: NotSent}
		if ts != nil {
			st.Sent, st.Acked, st.Nack, st.NackVersion = ts.sent, ts.acked, ts.nack, ts.nackVersion
			switch {
			case ts.sent == "":
				st.Status = NotSent
			case ts.acked == want && ts.sent == want:
				st.Status = Synced
			default:
				st.Status = Stale
			}
		}
		// A type the proxy never subscribed to (RDS for a gateway with no
		// routes, say) does not hold the proxy back.
		if st.Status != Synced && ts != nil && ts.subscribed {
			ps.Synced = false
		}
		if ts == nil && url != resourcev3.EndpointType && url != resourcev3.RouteType {
			ps.Synced = false // CDS and LDS are always subscribed
		}
		ps.Types = append(ps.Types, st)
	}
	return ps
}

// SyncReport says whether every connected proxy has ACKed the config at a
// store revision.
type SyncReport struct {
	Revision int64         `json:"revision"`
	Done     bool          `json:"done"` // every proxy synced, or at least one NACKed
	Proxies  []ProxySync   `json:"proxies"`
	Status   []ProxyStatus `json:"-"`
}

// ProxySync is one proxy's part of a SyncReport.
type ProxySync struct {
	ID     string `json:"id"`
	Synced bool   `json:"synced"`
	// Nack holds the proxy's rejection, as "RDS: message".
	Nack string `json:"nack,omitempty"`
}

// Sync reports, for each connected proxy, whether it has ACKed a config
// that includes store revision rev and registry revision regRev (0 for
// any): with the current revisions of both, whether every proxy has the
// mesh as it is now.
func (s *Server) Sync(rev, regRev int64) SyncReport {
	rep := SyncReport{Revision: rev, Done: true}
	for _, ps := range s.Status() {
		px := ProxySync{ID: ps.ID, Synced: ps.Synced && ps.ConfigRevision >= rev && ps.RegistryRevision >= regRev}
		for _, t := range ps.Types {
			if t.Nack != "" && t.NackVersion == t.Want {
				px.Nack = t.Type + ": " + t.Nack
			}
		}
		if !px.Synced && px.Nack == "" {
			rep.Done = false
		}
		rep.Proxies = append(rep.Proxies, px)
	}
	return rep
}
