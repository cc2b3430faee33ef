package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// upState is the part of DATA_DIR/up.json the tests read.
type upState struct {
	SupervisorPID int  `json:"supervisorPid"`
	Ready         bool `json:"ready"`
	Procs         []struct {
		Name         string `json:"name"`
		Role         string `json:"role"`
		Service      string `json:"service"`
		Version      string `json:"version"`
		PID          int    `json:"pid"`
		OutboundPort int    `json:"outboundPort"`
		AdminPort    int    `json:"adminPort"`
	} `json:"procs"`
}

func readUpState(t *testing.T, dataDir string) *upState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "up.json"))
	if err != nil {
		return nil
	}
	var st upState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("up.json: %v", err)
	}
	return &st
}

// meshProcesses lists the live processes that belong to the mesh in
// dataDir: the ones it recorded, and every app started with one of its
// workload names in POD_NAME.
func meshProcesses(st *upState) []string {
	var live []string
	for _, p := range st.Procs {
		if syscall.Kill(p.PID, 0) == nil && !zombie(p.PID) {
			live = append(live, fmt.Sprintf("%s (pid %d)", p.Name, p.PID))
		}
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(d + "/environ")
		if err != nil {
			continue
		}
		for _, p := range st.Procs {
			if bytes.Contains(env, []byte("\x00POD_NAME="+p.Name+"\x00")) || bytes.HasPrefix(env, []byte("POD_NAME="+p.Name+"\x00")) {
				pid, _ := strconv.Atoi(filepath.Base(d))
				if !zombie(pid) {
					live = append(live, fmt.Sprintf("app of %s (pid %d)", p.Name, pid))
				}
			}
		}
	}
	return live
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// TestUpCtrlCStopsEverything runs `weft up` in the foreground as a user
// does, waits for the product page, presses Ctrl-C and checks that no
// process is left behind.
func TestUpCtrlCStopsEverything(t *testing.T) {
	ports := freePorts(t, 3)
	m := &mesh{t: t, dataDir: t.TempDir(), xdsPort: ports[0], apiPort: ports[1], gwPort: ports[2]}
	m.gateway = fmt.Sprintf("http://127.0.0.1:%d", m.gwPort)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "weft"), append(m.upArgs(false), "--data-dir", m.dataDir)...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var st *upState
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st = readUpState(t, m.dataDir); st != nil && st.Ready {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("weft up exited before it was ready (%v):\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("weft up was not ready in 90s:\n%s", out.String())
		}
	}
	// The hints name the binary the user ran and the data dir it needs.
	hint := fmt.Sprintf("%s/weft --data-dir %s proxy-status", binDir, m.dataDir)
	for _, want := range []string{"productpage", "reviews", "v3", "istio-ingressgateway", m.gateway + "/productpage", hint} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("weft up's summary lacks %q:\n%s", want, out.String())
		}
	}
	if got := m.user().versions(3); len(got) == 0 {
		t.Fatal("no answer from the product page")
	}

	cmd.Process.Signal(syscall.SIGINT)
	if err := <-exited; err != nil {
		t.Fatalf("weft up after Ctrl-C: %v\n%s", err, out.String())
	}
	if left := meshProcesses(st); len(left) > 0 {
		t.Errorf("processes left after Ctrl-C: %v", left)
	}
}

// TestUpAfterCrash kills the supervisor outright: its processes must die
// with it, and a new `weft up` must start cleanly in the same data dir.
func TestUpAfterCrash(t *testing.T) {
	m := startMesh(t)
	st := readUpState(t, m.dataDir)
	if st == nil || !st.Ready {
		t.Fatal("no ready up.json after weft up --detach")
	}
	syscall.Kill(st.SupervisorPID, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for len(meshProcesses(st)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := meshProcesses(st); len(left) > 0 {
		t.Fatalf("processes outlived their killed supervisor: %v", left)
	}
	out := m.mustWeft(m.upArgs(true)...)
	if !strings.Contains(out, "/productpage") {
		t.Errorf("second weft up printed no summary:\n%s", out)
	}
	if got := m.user().versions(3); len(got) == 0 {
		t.Fatal("no answer from the product page after the restart")
	}
}

// TestControlPlaneLoss kills the control plane in the middle of steady
// traffic: no request may fail. A new control plane on the same data dir
// has all the config, and the proxies reconnect to it.
func TestControlPlaneLoss(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
	st := readUpState(t, m.dataDir)
	var control int
	for _, p := range st.Procs {
		if p.Role == "control" {
			control = p.PID
		}
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := m.user()
			for i := 0; i < 5000; i++ { // bounded; stopped far earlier
				select {
				case <-stop:
					return
				default:
				}
				r, err := u.getReviews()
				if err == nil && r.version() != "v1" {
					err = fmt.Errorf("answered by %s, want v1", r.version())
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	time.Sleep(time.Second)
	if err := syscall.Kill(control, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the control plane (pid %d): %v", control, err)
	}
	time.Sleep(3 * time.Second) // traffic goes on without a control plane

	restarted := exec.Command(filepath.Join(binDir, "weft"), "control", "--data-dir", m.dataDir,
		"--xds-addr", fmt.Sprintf("127.0.0.1:%d", m.xdsPort), "--api-addr", fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	var logs syncBuffer
	restarted.Stdout, restarted.Stderr = &logs, &logs
	// Die with the test binary, even if it is killed.
	restarted.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := restarted.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		restarted.Process.Signal(syscall.SIGTERM)
		restarted.Wait()
	})

	// Every proxy reconnects and is synced with the new control plane.
	var status string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, _ = m.weft("proxy-status")
		if strings.Count(status, "SYNCED") >= 7*4 && !strings.Contains(status, "STALE") && !strings.Contains(status, "NOT SENT") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxies did not resync with the restarted control plane:\n%s\ncontrol plane log:\n%s", status, logs.String())
		}
	}
	time.Sleep(time.Second) // traffic after the resync
	close(stop)
	wg.Wait()

	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed across the control plane's loss; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests succeeded; the test did not exercise the mesh", ok.Load())
	}
	got := m.mustWeft("get", "virtualservices")
	for _, name := range []string{"productpage", "reviews", "ratings", "details"} {
		if !strings.Contains(got, name) {
			t.Errorf("VirtualService %s is missing after the restart:\n%s", name, got)
		}
	}
	// The new control plane is in charge: a change reaches the proxies.
	m.applyWait("virtual-service-reviews-v3.yaml")
	if got := m.user().versions(10); got["v3"] != 10 {
		t.Errorf("after the restart, versions = %v, want all v3", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
