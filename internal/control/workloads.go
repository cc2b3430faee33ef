package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/internal/registry"
)

// WorkloadsFile keeps the registry's self-registered proxies across control
// plane restarts, next to the config store.
const WorkloadsFile = "workloads.json"

func saveWorkloads(dataDir string, ws []registry.Workload) error {
	b, err := json.Marshal(ws)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, WorkloadsFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("save workloads: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dataDir, WorkloadsFile))
}

func loadWorkloads(dataDir string) ([]registry.Workload, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, WorkloadsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load workloads: %w", err)
	}
	var ws []registry.Workload
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, fmt.Errorf("load workloads from %s: %w", filepath.Join(dataDir, WorkloadsFile), err)
	}
	return ws, nil
}
