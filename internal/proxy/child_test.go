package proxy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// proxyBinary builds cmd/weft-proxy once per test run.
func proxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "weft-proxy-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "weft-proxy")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/weftmesh/weft/cmd/weft-proxy").CombinedOutput()
		if err != nil {
			buildErr = errors.New(err.Error() + ": " + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building weft-proxy: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// childMeta is what the binary's flags below produce, for the node ID.
func childMeta(workload string) nodemeta.Metadata {
	return nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "default", WorkloadName: workload, IP: "127.0.0.1"}
}

func proxyCmd(t *testing.T, xdsAddr, workload string, child ...string) *exec.Cmd {
	_, adminPort, _ := strings.Cut(freeAddr(t), ":")
	_, outPort, _ := strings.Cut(freeAddr(t), ":")
	args := []string{"--xds-address", xdsAddr, "--service", "app", "--workload-name", workload,
		"--admin-port", adminPort, "--outbound-port", outPort, "--drain-timeout", "1s", "--"}
	cmd := exec.Command(proxyBinary(t), append(args, child...)...)
	cmd.Env = append(os.Environ(), "WEFT_TEST_VAR=passed-through")
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	return cmd
}

func exitStatus(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		t.Fatalf("weft-proxy did not exit within %v", timeout)
	}
	return cmd.ProcessState.ExitCode()
}

func TestChildExitCode(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	tests := []struct {
		name  string
		child string
		want  int
	}{
		{"exit code is the child's", "exit 3", 3},
		{"environment is passed through", `test "$WEFT_TEST_VAR" = passed-through && exit 4`, 4},
		{"killed by a signal is 128+signal", "kill -KILL $$", 128 + 9},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wl := "app-" + strconv.Itoa(i)
			xds.Set(childMeta(wl).ID(), "1", xdstest.Resources{})
			cmd := proxyCmd(t, xds.Addr, wl, "sh", "-c", tc.child)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if got := exitStatus(t, cmd, 20*time.Second); got != tc.want {
				t.Errorf("exit code %d, want %d", got, tc.want)
			}
		})
	}
}

func TestChildStartsWhenReadyAndStopsOnSIGTERM(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	marker := filepath.Join(t.TempDir(), "started")
	cmd := proxyCmd(t, xds.Addr, "app-sig", "sh", "-c", "touch "+marker+"; exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// No config yet: the application must not start.
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the application started before the proxy was ready")
	}
	_, outPort, _ := strings.Cut(freeAddr(t), ":")
	xds.Set(childMeta("app-sig").ID(), "1", xdstest.Resources{
		Listeners: []types.Resource{xdstest.RDSListener("outbound", "127.0.0.1:"+outPort, "http_proxy")},
		Routes:    []types.Resource{xdstest.RouteConfig("http_proxy")},
	})
	eventually(t, "application start", func() string {
		if _, err := os.Stat(marker); err != nil {
			return err.Error()
		}
		return ""
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := exitStatus(t, cmd, 10*time.Second); got != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d, want %d (the child killed by the forwarded SIGTERM)", got, 128+int(syscall.SIGTERM))
	}
}

func TestChildDiesWithProxy(t *testing.T) {
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	xds.Set(childMeta("app-orphan").ID(), "1", xdstest.Resources{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := proxyCmd(t, xds.Addr, "app-orphan", "sh", "-c", "echo $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+" && exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	eventually(t, "child pid", func() string {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err.Error()
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return ""
	})
	cmd.Process.Kill()
	cmd.Wait()
	eventually(t, "child killed with the proxy", func() string {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return "" // gone
		}
		// A zombie (state Z) is dead too; someone else reaps it.
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
			return ""
		}
		return "child still running: " + string(st)
	})
}
