package cli

import (
	"github.com/weftmesh/weft/internal/controlapi"
)

// client returns an API client for the control plane named by --server, or
// the one running with --data-dir.
func (g *globals) client() (*controlapi.Client, error) {
	if g.server != "" {
		return controlapi.NewClient(g.server), nil
	}
	st, err := controlapi.ReadState(g.dataDir)
	if err != nil {
		return nil, err
	}
	return controlapi.NewClient(st.APIAddr), nil
}
