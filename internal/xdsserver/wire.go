package xdsserver

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// wireResource is an xDS resource serialized once per push, as the Any a
// DiscoveryResponse carries, and shared by every proxy that receives it.
// go-control-plane's snapshot cache marshalled each resource again for
// every stream it answered: P proxies × R resources marshals of the same
// bytes on every push, which dominated the control plane's CPU.
type wireResource struct {
	name string
	any  *anypb.Any
	hash uint64 // FNV-64a of the encoding
}

// newWireResource serializes r, of type typeURL, deterministically.
func newWireResource(typeURL string, r types.Resource) (*wireResource, error) {
	name := cachev3.GetResourceName(r)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal %s %s: %w", typeURL, name, err)
	}
	h := fnv.New64a()
	h.Write(b)
	return &wireResource{name: name, any: &anypb.Any{TypeUrl: typeURL, Value: b}, hash: h.Sum64()}, nil
}

// wireGroup is one version of one type's resources for a proxy. Proxies
// that get the same resources of a type (every sidecar gets the same load
// assignments, every sidecar of a namespace the same routes) share one
// group. A group is immutable.
type wireGroup struct {
	version string
	names   []string     // sorted
	all     []*anypb.Any // in the order of names
	byName  map[string]*anypb.Any
	// For delta streams, in the order of names: each resource's version,
	// and the resource as a delta response carries it (shared, like all).
	versions  []string
	resources []*discoverygrpc.Resource
	// diffs holds, by the version of the group a stream comes from, what
	// changed between that group and this one (see wireCache.diff); it is
	// the one mutable part of a group, guarded by wireCache.mu.
	diffs map[string]*groupDiff
}

// wireVersion names a list of resources by a hash of their encodings, so
// that a push that does not change a type does not resend it.
func wireVersion(items []*wireResource) string {
	h := fnv.New64a()
	var buf [8]byte
	for _, w := range items {
		binary.LittleEndian.PutUint64(buf[:], w.hash)
		h.Write(buf[:])
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

func newWireGroup(version string, items []*wireResource) *wireGroup {
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b *wireResource) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	sorted = slices.CompactFunc(sorted, func(a, b *wireResource) bool { return a.name == b.name })
	g := &wireGroup{
		version:   version,
		names:     make([]string, len(sorted)),
		all:       make([]*anypb.Any, len(sorted)),
		byName:    make(map[string]*anypb.Any, len(sorted)),
		versions:  make([]string, len(sorted)),
		resources: make([]*discoverygrpc.Resource, len(sorted)),
	}
	for i, w := range sorted {
		g.names[i], g.all[i], g.byName[w.name] = w.name, w.any, w.any
		g.versions[i] = strconv.FormatUint(w.hash, 36)
		g.resources[i] = &discoverygrpc.Resource{Name: w.name, Version: g.versions[i], Resource: w.any}
	}
	return g
}

// wireSnapshot is everything one proxy gets from one push, by the index of
// the type in pushTypes.
type wireSnapshot [len(pushTypes)]*wireGroup

// group returns the snapshot's resources of type typeURL, or nil for a type
// it does not serve.
func (s *wireSnapshot) group(typeURL string) *wireGroup {
	for i, typ := range pushTypes {
		if typ == typeURL {
			return s[i]
		}
	}
	return nil
}
