package harness

import (
	"context"
	"fmt"
	"github.com/weftmesh/weft/internal/controlapi"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// target is where a row's load goes, and which processes are its proxies.
type target struct {
	name    string
	url     string // what fortio connects to
	host    string // Host header, when it differs from the URL's
	proxies []proxyInst
	// pprofURL and serverPprofURL are the client and server sidecars' CPU
	// profile endpoints (weft row).
	pprofURL, serverPprofURL string
}

// proxyInst is one proxy instance (a hop) of a row: a process and, for
// nginx and HAProxy, its workers.
type proxyInst struct {
	name string
	pid  int
	pids []int // pid and its descendants, resolved once it is serving
}

func (p *proxyInst) resolve() { p.pids = withChildren(p.pid) }

func (p *proxyInst) cpu() float64 {
	var ticks uint64
	for _, q := range p.pids {
		if st, err := readStat(q); err == nil {
			ticks += st.Ticks
		}
	}
	return float64(ticks) / clockTicks
}

// syscalls is the read and write system calls made so far by the
// instance's processes (syscr and syscw of /proc/PID/io).
func (p *proxyInst) syscalls() uint64 {
	var sum uint64
	for _, q := range p.pids {
		sum += readIOCalls(q)
	}
	return sum
}

func (p *proxyInst) rss() int64 {
	var sum int64
	for _, q := range p.pids {
		if r, err := readRSS(q); err == nil {
			sum += r
		}
	}
	return sum
}

// setupWeft starts `weft control` and two sidecars: the server sidecar
// registers service backend (port 8080) with the backend behind its inbound
// listener; the client sidecar's explicit outbound listener is where the
// load goes, with Host: backend:8080, as an app behind HTTP_PROXY would
// send it. Row weft-h2 also applies a DestinationRule with
// h2UpgradePolicy: UPGRADE, so that the sidecars speak HTTP/2 to each
// other (weft's default, as Istio's, is HTTP/1.1).
func (b *bench) setupWeft(ctx context.Context, name string) (*target, error) {
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	xds, api, out, inbound, admS, admC, outS := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]
	dataDir := filepath.Join(b.tmp, name+"-data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", xds)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", api)
	ctl, err := b.procs.start(name+"-control", nil, b.weftBin, "control", "--data-dir", dataDir, "--xds-addr", xdsAddr, "--api-addr", apiAddr)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, ctl, "http://"+apiAddr+"/ready", "", 30*time.Second, status200); err != nil {
		return nil, fmt.Errorf("weft control: %w", err)
	}
	srv, err := b.procs.start(name+"-proxy-server", nil, append([]string{b.proxyBin,
		"--xds-address", xdsAddr, "--namespace", "default", "--service", "backend",
		"--workload-name", "backend-v1-bench", "--labels", "app=backend,version=v1",
		"--port", fmt.Sprintf("http:8080:%d:%d", b.backendPort, inbound),
		"--outbound-port", strconv.Itoa(outS), "--admin-port", strconv.Itoa(admS), "--log-level", "warn", "--pprof"}, b.opts.ProxyArgs...)...)
	if err != nil {
		return nil, err
	}
	cli, err := b.procs.start(name+"-proxy-client", nil, append([]string{b.proxyBin,
		"--xds-address", xdsAddr, "--namespace", "default", "--service", "client",
		"--workload-name", "client-v1-bench", "--labels", "app=client,version=v1",
		"--outbound-port", strconv.Itoa(out), "--admin-port", strconv.Itoa(admC), "--log-level", "warn", "--pprof"}, b.opts.ProxyArgs...)...)
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		p    *proc
		port int
	}{{srv, admS}, {cli, admC}} {
		if err := waitHTTP(ctx, s.p, fmt.Sprintf("http://127.0.0.1:%d/ready", s.port), "", 30*time.Second, status200); err != nil {
			return nil, fmt.Errorf("%s: %w", s.p.name, err)
		}
	}
	t := &target{
		name: name, url: fmt.Sprintf("http://127.0.0.1:%d/", out), host: "backend:8080",
		proxies:        []proxyInst{{name: "client sidecar", pid: cli.pid()}, {name: "server sidecar", pid: srv.pid()}},
		pprofURL:       fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", admC),
		serverPprofURL: fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile", admS),
	}
	if name == "weft-h2" {
		api := controlapi.NewClient(apiAddr)
		resp, err := api.Apply(ctx, controlapi.ApplyRequest{Files: []controlapi.File{{Name: "backend-h2.yaml", Content: backendH2}}})
		if err != nil {
			return nil, fmt.Errorf("%s row: apply the HTTP/2 DestinationRule: %w", name, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = waitSynced(wctx, api, resp.Revision)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s row: the sidecars did not ACK the HTTP/2 DestinationRule: %w", name, err)
		}
	}
	// Ready means configured; wait until the route to backend works end to end.
	if err := waitHTTP(ctx, cli, t.url, t.host, 30*time.Second, status200); err != nil {
		return nil, fmt.Errorf("%s row: %w", name, err)
	}
	return t, nil
}

// backendH2 is the DestinationRule of row weft-h2.
const backendH2 = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: default
spec:
  host: backend.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      http:
        h2UpgradePolicy: UPGRADE
`

// ensureInstalled installs Debian packages when bin is missing.
func (b *bench) ensureInstalled(ctx context.Context, bin string, pkgs ...string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/" + bin, "/usr/bin/" + bin} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if !b.aptUpdated {
		b.log.Info("apt-get update (to install " + strings.Join(pkgs, ", ") + ")")
		if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
			return "", fmt.Errorf("apt-get update: %v: %s", err, lastLine(out))
		}
		b.aptUpdated = true
	}
	b.log.Info("apt-get install " + strings.Join(pkgs, " "))
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get install %s: %v: %s", strings.Join(pkgs, " "), err, lastLine(out))
	}
	for _, p := range []string{"/usr/sbin/" + bin, "/usr/bin/" + bin} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is still missing after apt-get install %s", bin, strings.Join(pkgs, " "))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// nginxConf is one nginx instance proxying 127.0.0.1:listen to
// 127.0.0.1:upstream with a keep-alive upstream pool.
func nginxConf(dir string, listen, upstream int) string {
	return fmt.Sprintf(`# generated by weftbench
worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    upstream up {
        server 127.0.0.1:%[3]d;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:%[2]d;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, listen, upstream)
}

// haproxyConf is one HAProxy instance proxying 127.0.0.1:listen to
// 127.0.0.1:upstream, reusing server connections.
func haproxyConf(listen, upstream int) string {
	return fmt.Sprintf(`# generated by weftbench
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option http-keep-alive
    http-reuse always
frontend in
    bind 127.0.0.1:%d
    default_backend out
backend out
    server s1 127.0.0.1:%d
`, listen, upstream)
}

// setupPair starts two instances of nginx or HAProxy, client → server →
// backend.
func (b *bench) setupPair(ctx context.Context, kind string) (*target, error) {
	var bin string
	var err error
	if kind == "nginx" {
		bin, err = b.ensureInstalled(ctx, "nginx", "nginx-light")
	} else {
		bin, err = b.ensureInstalled(ctx, "haproxy", "haproxy")
	}
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	clientPort, serverPort := ports[0], ports[1]
	t := &target{name: kind, url: fmt.Sprintf("http://127.0.0.1:%d/", clientPort)}
	for _, hop := range []struct {
		name             string
		listen, upstream int
	}{{"server", serverPort, b.backendPort}, {"client", clientPort, serverPort}} {
		dir := filepath.Join(b.tmp, kind+"-"+hop.name)
		for _, d := range []string{dir, filepath.Join(dir, "body"), filepath.Join(dir, "proxy")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		var argv []string
		if kind == "nginx" {
			conf := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(conf, []byte(nginxConf(dir, hop.listen, hop.upstream)), 0o644); err != nil {
				return nil, err
			}
			argv = []string{bin, "-p", dir, "-c", conf}
		} else {
			conf := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(conf, []byte(haproxyConf(hop.listen, hop.upstream)), 0o644); err != nil {
				return nil, err
			}
			argv = []string{bin, "-db", "-f", conf}
		}
		p, err := b.procs.start(kind+"-"+hop.name, nil, argv...)
		if err != nil {
			return nil, err
		}
		if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/", hop.listen), "", 20*time.Second, status200); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, hop.name, err)
		}
		t.proxies = append([]proxyInst{{name: hop.name, pid: p.pid()}}, t.proxies...)
	}
	return t, nil
}

// setupRelay starts two featureless relays (rawhttp.Relay, each a
// `weftbench relay` process), client → server → backend: a Go proxy of
// weft-proxy's shape (a goroutine per connection on Go's netpoller) that
// does no work but framing, the floor for weft's row on this machine.
//
// The go-epoll row (kind go-epoll) is the same pair as event loops
// (`weftbench epoll-relay`, see serveEpollRelay), each on one thread.
func (b *bench) setupRelay(ctx context.Context, kind string) (*target, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	clientPort, serverPort := ports[0], ports[1]
	t := &target{name: kind, url: fmt.Sprintf("http://127.0.0.1:%d/", clientPort)}
	sub, env := "relay", []string(nil)
	if kind == "go-epoll" {
		sub, env = "epoll-relay", []string{"GOMAXPROCS=1"}
	}
	for _, hop := range []struct {
		name             string
		listen, upstream int
	}{{"server", serverPort, b.backendPort}, {"client", clientPort, serverPort}} {
		p, err := b.procs.start(kind+"-"+hop.name, env, b.opts.Self, sub,
			fmt.Sprintf("127.0.0.1:%d", hop.listen), fmt.Sprintf("127.0.0.1:%d", hop.upstream))
		if err != nil {
			return nil, err
		}
		if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/", hop.listen), "", 10*time.Second, status200); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, hop.name, err)
		}
		t.proxies = append([]proxyInst{{name: hop.name, pid: p.pid()}}, t.proxies...)
	}
	return t, nil
}

func (b *bench) setupDirect(ctx context.Context) (*target, error) {
	t := &target{name: "direct", url: fmt.Sprintf("http://127.0.0.1:%d/", b.backendPort)}
	return t, waitHTTP(ctx, nil, t.url, "", 10*time.Second, func(r *http.Response) bool { return r.StatusCode == 200 })
}
