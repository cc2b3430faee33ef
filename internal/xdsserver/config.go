package xdsserver

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/anypb"
)

// ErrUnknownProxy is returned by Resources for a proxy that is not
// connected.
var ErrUnknownProxy = errors.New("proxy is not connected")

// ProxyResources are the resources of one type that the cache holds for a
// proxy: what the proxy was last sent, or is about to be sent when its
// status for the type is STALE.
type ProxyResources struct {
	// Version is the version of the resources; empty before the proxy's
	// first push.
	Version string
	// Resources are sorted by name. They are shared with the cache and
	// every proxy that gets them: callers must not modify them.
	Resources []*anypb.Any
}

// Resources returns the resources of type typeURL (a resourcev3 type URL)
// in the snapshot the cache holds for proxy id. It returns an error
// wrapping ErrUnknownProxy when no proxy with that ID is connected.
func (s *Server) Resources(id, typeURL string) (ProxyResources, error) {
	if !slices.Contains(pushTypes[:], typeURL) {
		return ProxyResources{}, fmt.Errorf("resources of proxy %s: type %s is not served", id, typeURL)
	}
	s.mu.Lock()
	_, ok := s.proxies[id]
	s.mu.Unlock()
	if !ok {
		return ProxyResources{}, fmt.Errorf("resources of proxy %s: %w", id, ErrUnknownProxy)
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	n := s.cache.nodes[id]
	if n == nil || n.snap == nil {
		return ProxyResources{}, nil // connected, not yet pushed to
	}
	g := n.snap.group(typeURL)
	if g == nil {
		return ProxyResources{}, nil
	}
	return ProxyResources{Version: g.version, Resources: slices.Clone(g.all)}, nil
}
