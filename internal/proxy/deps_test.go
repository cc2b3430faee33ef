package proxy

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinaryDependencies keeps weft-proxy lean: it must not link the control
// plane, the Istio API, Kubernetes, bbolt, cobra, go-control-plane,
// grpc-go, or text/template.
func TestBinaryDependencies(t *testing.T) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	// The tags the Makefile builds with.
	cmd := exec.Command("go", "list", "-deps", "-tags=grpcnotrace", "./cmd/weft-proxy")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/weft-proxy: %v\n%s", err, out)
	}
	const mod = "github.com/weftmesh/weft/"
	forbidden := []string{
		mod + "internal/config", mod + "internal/store", mod + "internal/translate",
		mod + "internal/xdsserver", mod + "internal/control", mod + "internal/cli",
		mod + "internal/registry", mod + "internal/snapshot", mod + "internal/proxy/xdstest",
		"istio.io/", "k8s.io/", "sigs.k8s.io/", "go.etcd.io/bbolt", "github.com/spf13/cobra",
		// weft-proxy decodes xDS with its own trimmed types
		// (internal/proxy/xdsapi); go-control-plane's full ones, with
		// their validation rules and cncf/xds and CEL imports, cost
		// about 3 MB of resident memory per sidecar.
		"github.com/envoyproxy/", "github.com/cncf/", "cel.dev/",
		// text/template calls methods by name through reflection, so
		// linking it keeps every exported method of every type: about a
		// quarter of the binary, and of each sidecar's resident memory.
		"text/template", "html/template", "net/http/pprof", "golang.org/x/net/trace",
		// The ADS client speaks gRPC over the proxy's own HTTP/2
		// (internal/proxy/grpcstream); grpc-go's client cost about 2 MB
		// of each sidecar's resident memory.
		"google.golang.org/grpc",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list printed only %d packages: %s", len(deps), out)
	}
	for _, d := range deps {
		for _, f := range forbidden {
			p := strings.TrimSuffix(f, "/")
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("weft-proxy imports %s (forbidden: %s)", d, f)
			}
		}
	}
}
