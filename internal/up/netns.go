package up

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/weftmesh/weft/internal/netns"
)

// ProxyGID is the group the transparent sidecars run as; iptables leaves
// the traffic of user or group 1337 alone (Istio's proxy user and group),
// so that the proxy's own connections are not captured again. The sidecar
// keeps user root so that it can run from wherever the binaries are, a
// private home directory included.
const ProxyGID = 1337

// Ports of a transparent sidecar inside its namespace (Istio's).
const (
	netnsOutboundPort = 15001
	netnsInboundPort  = 15006
	netnsAdminPort    = 15000
)

// createNetwork makes the bridge of --netns mode, named after the data dir
// so that two meshes on one machine do not collide, and points the proxies
// at the control plane's address on it.
func (s *supervisor) createNetwork() error {
	subnet, err := netip.ParsePrefix(s.opts.Subnet)
	if err != nil {
		return fmt.Errorf("--subnet %q: %w", s.opts.Subnet, err)
	}
	h := fnv.New32a()
	h.Write([]byte(s.opts.DataDir))
	name := fmt.Sprintf("weft%04x", h.Sum32()&0xffff)
	s.st.Network = name
	if err := writeState(s.opts.DataDir, s.st); err != nil {
		return err
	}
	n, err := netns.Create(netns.Options{Name: name, Subnet: subnet, Logger: s.log})
	if err != nil {
		return fmt.Errorf("create the mesh network: %w", err)
	}
	s.net = n
	s.st.XDSAddr = fmt.Sprintf("%s:%d", n.Gateway(), s.opts.XDSPort)
	return writeState(s.opts.DataDir, s.st)
}

// startTransparent starts a workload in a namespace of its own, as a pod
// runs: an init step installs the iptables capture, then the sidecar runs
// in group ProxyGID, and once it is ready the app starts with no proxy settings
// at all, on the service port of its own IP.
func (s *supervisor) startTransparent(ctx context.Context, w Workload) (*child, error) {
	name := podName(w.App, w.Version)
	host, err := s.net.AddHost(name)
	if err != nil {
		return nil, err
	}
	uid := strconv.Itoa(ProxyGID)
	init, err := startChild(s.opts, Proc{Name: name + "-init", Role: "init", Binary: "weft-proxy"}, host, nil, nil,
		[]string{"iptables", "--proxy-uid", uid, "--proxy-gid", uid, "--capture-dns",
			"--inbound-ports-exclude", strconv.Itoa(netnsAdminPort)})
	if err != nil {
		return nil, err
	}
	<-init.done
	if init.err != nil {
		return nil, fmt.Errorf("install the traffic capture of %s (%v); its log %s ends:\n%s", name, init.err, init.proc.Log, tail(init.proc.Log, 15))
	}

	port := strconv.Itoa(int(w.ServicePort))
	p := Proc{
		Name: name, Role: "sidecar", Service: w.App, Version: w.Version, Binary: "weft-proxy",
		AppPort: int(w.ServicePort), InboundPort: netnsInboundPort, OutboundPort: netnsOutboundPort, AdminPort: netnsAdminPort,
	}
	proxy, err := s.start(p, host, &syscall.Credential{Uid: 0, Gid: ProxyGID}, nil,
		"--xds-address", s.st.XDSAddr, "--interception-mode", "REDIRECT", "--ip", host.IP.String(),
		"--namespace", "default", "--service", w.App,
		"--workload-name", name, "--service-account", w.ServiceAccount,
		"--labels", "app="+w.App+",version="+w.Version,
		"--port", w.PortName+":"+port+":"+port+":"+port, "--admin-port", strconv.Itoa(netnsAdminPort))
	if err != nil {
		return nil, err
	}
	inside := &http.Transport{DialContext: host.Dial, DisableKeepAlives: true}
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", netnsAdminPort)
	proxy.ready = func(ctx context.Context) error { return httpOK(ctx, inside, url) }
	if err := waitFor(ctx, proxy, name, proxy.ready); err != nil {
		return nil, err
	}

	env := append([]string{
		"PORT=" + port, "POD_NAME=" + name, "SERVICE_VERSION=" + w.Version,
		"HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=",
	}, w.Env...)
	app := Proc{Name: name + "-app", Role: "app", Service: w.App, Version: w.Version, Binary: w.Binary}
	if _, err := s.start(app, host, nil, env, w.Args...); err != nil {
		return nil, err
	}
	return proxy, nil
}
