// Package snapshot holds the immutable input to translation: every config
// resource and every service with its endpoints, at one version.
//
// A Snapshot is never modified after it is built; readers share it freely.
package snapshot

import (
	"sort"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/registry"
)

// Snapshot is the whole mesh state at one point.
type Snapshot struct {
	// ConfigRevision is the store revision the config was read at.
	ConfigRevision int64
	// RegistryRevision counts registry changes.
	RegistryRevision int64
	// Resources holds the config by kind, each slice sorted by namespace
	// then name.
	Resources map[config.Kind][]*config.Resource
	// Services is sorted by Hostname.
	Services []*registry.Service
	// Mesh holds the mesh-wide settings.
	Mesh Mesh
}

// Outbound traffic policies (Istio's MeshConfig.outboundTrafficPolicy.mode).
const (
	// AllowAny lets transparent workloads reach destinations outside the
	// mesh; it is the default.
	AllowAny = "ALLOW_ANY"
	// RegistryOnly refuses connections to destinations outside the mesh.
	RegistryOnly = "REGISTRY_ONLY"
)

// Mesh is the part of Istio's MeshConfig that Weft honours.
type Mesh struct {
	// OutboundTrafficPolicy is AllowAny (the default when empty) or
	// RegistryOnly.
	OutboundTrafficPolicy string
}

// New builds a snapshot, sorting its inputs so that translation output is
// deterministic.
func New(configRev, registryRev int64, resources []*config.Resource, services []*registry.Service) *Snapshot {
	s := &Snapshot{
		ConfigRevision:   configRev,
		RegistryRevision: registryRev,
		Resources:        map[config.Kind][]*config.Resource{},
		Services:         append([]*registry.Service(nil), services...),
	}
	for _, r := range resources {
		s.Resources[r.Kind] = append(s.Resources[r.Kind], r)
	}
	for _, rs := range s.Resources {
		sort.Slice(rs, func(i, j int) bool {
			if rs[i].Namespace != rs[j].Namespace {
				return rs[i].Namespace < rs[j].Namespace
			}
			return rs[i].Name < rs[j].Name
		})
	}
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].Hostname < s.Services[j].Hostname })
	return s
}

// Of returns the resources of one kind.
func (s *Snapshot) Of(k config.Kind) []*config.Resource { return s.Resources[k] }

// Service returns the service with the given host name, or nil.
func (s *Snapshot) Service(hostname string) *registry.Service {
	i := sort.Search(len(s.Services), func(i int) bool { return s.Services[i].Hostname >= hostname })
	if i < len(s.Services) && s.Services[i].Hostname == hostname {
		return s.Services[i]
	}
	return nil
}
