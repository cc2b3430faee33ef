package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weftmesh/weft/internal/registry"
)

// VIPsFile keeps the service VIPs across control plane restarts.
const VIPsFile = "vips.json"

func saveVIPs(dataDir string, vips map[string]string) error {
	return saveJSON(filepath.Join(dataDir, VIPsFile), vips)
}

func loadVIPs(dataDir string) (map[string]string, error) {
	var vips map[string]string
	return vips, loadJSON(filepath.Join(dataDir, VIPsFile), &vips)
}

// WorkloadsFile keeps the registry's self-registered proxies across control
// plane restarts, next to the config store.
const WorkloadsFile = "workloads.json"

func saveWorkloads(dataDir string, ws []registry.Workload) error {
	return saveJSON(filepath.Join(dataDir, WorkloadsFile), ws)
}

func loadWorkloads(dataDir string) ([]registry.Workload, error) {
	var ws []registry.Workload
	return ws, loadJSON(filepath.Join(dataDir, WorkloadsFile), &ws)
}

// saveJSON replaces path atomically with v as JSON.
func saveJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	return os.Rename(path+".tmp", path)
}

// loadJSON reads path into v; a missing file leaves v as it is.
func loadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
