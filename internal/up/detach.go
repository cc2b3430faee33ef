package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/internal/netns"
)

// Detach starts the supervisor in the background with args (the same `up`
// command line plus a marker that makes it supervise in the foreground),
// waits until the mesh is ready and prints the summary.
func Detach(ctx context.Context, opts Options, args []string) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(opts.DataDir, "logs", "weft-up.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the mesh supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.After(opts.ReadyTimeout + 15*time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the mesh did not start (%v); %s ends:\n%s", err, logPath, tail(logPath, 20))
		case <-deadline:
			cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("the mesh was not ready in time; see %s:\n%s", logPath, tail(logPath, 20))
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-tick.C:
		}
		st, err := ReadState(opts.DataDir)
		if err == nil && st.Ready && st.SupervisorPID == cmd.Process.Pid {
			PrintSummary(opts.Out, st, opts.DataDir, opts.Command)
			fmt.Fprintf(opts.Out, "Running in the background (supervisor pid %d, log %s).\n", st.SupervisorPID, logPath)
			return nil
		}
	}
}

// Down stops the mesh running with dataDir.
func Down(dataDir string, out io.Writer) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	st, err := ReadState(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "No mesh is running with data dir %s.\n", dataDir)
		return nil
	}
	if err != nil {
		return err
	}
	if alive(st.SupervisorPID, "weft") {
		syscall.Kill(st.SupervisorPID, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for alive(st.SupervisorPID, "weft") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Whatever is still there (the supervisor was killed, or hung) goes now.
	for _, p := range st.Procs {
		if alive(p.PID, p.Binary) {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if alive(st.SupervisorPID, "weft") {
		syscall.Kill(st.SupervisorPID, syscall.SIGKILL)
	}
	if st.Network != "" {
		if err := netns.Remove(st.Network); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(dataDir, stateFile))
	fmt.Fprintf(out, "Stopped the mesh (%d processes).\n", len(st.Procs))
	return nil
}

// PrintSummary shows what runs where and what to do next. weft is how the
// user runs weft against this mesh, e.g. "./bin/weft --data-dir /tmp/mesh".
func PrintSummary(w io.Writer, st *State, dataDir, weft string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if st.Network != "" {
		fmt.Fprintln(tw, "SERVICE\tVERSION\tWORKLOAD\tPROXY PID\tIP\tNETWORK NAMESPACE")
	} else {
		fmt.Fprintln(tw, "SERVICE\tVERSION\tWORKLOAD\tPID\tAPP\tINBOUND\tOUTBOUND\tADMIN")
	}
	for _, p := range st.Procs {
		switch {
		case p.Role == "control", p.Role == "app", p.Role == "init":
			continue
		case p.NetNS != "":
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Service, p.Version, p.Name, p.PID, p.IP, p.NetNS)
			continue
		case p.Role == "gateway" && st.Network != "":
			fmt.Fprintf(tw, "%s\t-\t%s\t%d\t127.0.0.1:%d\t(host)\n", p.Service, p.Name, p.PID, p.InboundPort)
			continue
		case p.Role == "gateway":
			fmt.Fprintf(tw, "%s\t-\t%s\t%d\t-\t%d\t-\t%d\n", p.Service, p.Name, p.PID, p.InboundPort, p.AdminPort)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p.Service, p.Version, p.Name, p.PID, p.AppPort, p.InboundPort, p.OutboundPort, p.AdminPort)
		}
	}
	tw.Flush()
	ctl := 0
	for _, p := range st.Procs {
		if p.Role == "control" {
			ctl = p.PID
		}
	}
	fmt.Fprintf(w, `
Control plane  pid %d, xDS %s, API %s
Product page   %s/productpage
Route traffic  %[5]s apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
Check proxies  %[5]s proxy-status
Logs           %[6]s
Stop           Ctrl-C, or %[5]s down
`, ctl, st.XDSAddr, st.APIAddr, st.GatewayURL, weft, filepath.Join(dataDir, "logs"))
}
