package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// procSet owns every process the harness starts and stops them all.
type procSet struct {
	log    *slog.Logger
	logDir string
	mu     sync.Mutex
	procs  []*proc
}

type proc struct {
	name string
	log  string // its output
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// start runs argv as its own process group, logging to logDir/name.log.
func (s *procSet) start(name string, env []string, argv ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(s.logDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Its own group, so stop reaches nginx's and HAProxy's workers too. If
	// the harness is killed outright, the process gets SIGTERM: an nginx
	// master killed with SIGKILL would leave its workers running, one told
	// to terminate stops them first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, log: f.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.log.Debug("started", "name", name, "pid", p.pid())
	return p, nil
}

// stop ends one process group: SIGTERM, then SIGKILL after a grace period.
func (s *procSet) stop(p *proc) {
	pgid := p.pid()
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Workers left in the group after the leader exited.
	syscall.Kill(-pgid, syscall.SIGKILL)
	s.mu.Lock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
}

// stopAll stops every process still running, newest first.
func (s *procSet) stopAll() {
	s.mu.Lock()
	ps := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		s.stop(ps[i])
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	// Hold them all open at once so that they differ.
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// waitHTTP polls url until check accepts the response, the process dies, or
// timeout passes.
func waitHTTP(ctx context.Context, p *proc, url string, host string, timeout time.Duration, check func(*http.Response) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err == nil {
			ok := check(resp)
			last = resp.Status
			resp.Body.Close()
			if ok {
				return nil
			}
		} else {
			last = err.Error()
		}
		if p != nil {
			select {
			case <-p.done:
				out, _ := os.ReadFile(p.log)
				return fmt.Errorf("%s exited while waiting for %s: %s", p.name, url, lastLine(out))
			default:
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready after %s: last answer %s", url, timeout, last)
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func status200(r *http.Response) bool { return r.StatusCode == http.StatusOK }

// sampleEvery calls f at once and then every interval until the returned
// stop is called; stop returns once f has run for the last time.
func sampleEvery(interval time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			f()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
