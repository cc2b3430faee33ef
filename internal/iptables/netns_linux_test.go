package iptables

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/internal/proxy/origdst"
)

// newNetns creates a network namespace with lo up, deleted when the test
// ends (also on failure).
func newNetns(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "weft-ipt-" + hex.EncodeToString(b)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetns runs f on a thread that has joined namespace ns. The thread is
// never unlocked, so it exits with the goroutine and no other goroutine
// ever runs in ns; sockets f opens and processes f starts belong to ns.
func inNetns(t *testing.T, ns string, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in netns %s: %v", ns, err)
	}
}

// serve answers every TCP connection with its name; the proxy's listeners
// ("inbound" and "outbound") add the original destination.
func serve(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if name != "inbound" && name != "outbound" {
			fmt.Fprintf(c, "%s\n", name)
			c.Close()
			continue
		}
		dst, err := origdst.Get(c.(*net.TCPConn))
		if err != nil {
			fmt.Fprintf(c, "%s error: %v\n", name, err)
		} else {
			fmt.Fprintf(c, "%s %s\n", name, dst)
		}
		c.Close()
	}
}

// listen opens TCP listeners (and with "udp " prefix, a UDP socket that
// answers "NAME") in the calling goroutine's namespace.
func listen(t *testing.T, specs map[string]string) func() error {
	return func() error {
		for addr, name := range specs {
			if a, ok := strings.CutPrefix(addr, "udp "); ok {
				pc, err := net.ListenPacket("udp", a)
				if err != nil {
					return err
				}
				t.Cleanup(func() { pc.Close() })
				go func() {
					buf := make([]byte, 512)
					for {
						_, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						pc.WriteTo([]byte(name+"\n"), from)
					}
				}()
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			t.Cleanup(func() { ln.Close() })
			go serve(ln, name)
		}
		return nil
	}
}

// helperBinary copies the test binary where any uid can run it.
func helperBinary(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "weft-ipt-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "client")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// saveAll is the namespace's IPv4 and IPv6 rules in both backends,
// without comments and counters.
func saveAll(t *testing.T, ns string) string {
	t.Helper()
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	var b strings.Builder
	for _, save := range []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"} {
		b.WriteString("## " + save + "\n")
		for _, l := range strings.Split(mustRun(t, "ip", "netns", "exec", ns, save), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
			}
		}
	}
	return b.String()
}

// TestCaptureInNetns installs the rules with the real iptables in a
// namespace "pod" linked by a veth pair to a namespace "peer", and checks
// where connections land, once per backend: rules that are not Weft's
// exist only in that backend, so detection must pick it.
func TestCaptureInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces and changes their iptables rules (CI runs as root; run it as root, e.g. `sudo make test`)")
	}
	for _, bin := range []string{"ip", "iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run `make deps` (apt-get install iptables iproute2)", bin)
		}
	}
	for _, backend := range []string{"nft", "legacy"} {
		t.Run(backend, func(t *testing.T) { testCapture(t, backend) })
	}
}

func testCapture(t *testing.T, backend string) {
	pod, peer := newNetns(t), newNetns(t)
	mustRun(t, "ip", "link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", "eth0", "netns", peer)
	for ns, n := range map[string]string{pod: "1", peer: "2"} {
		mustRun(t, "ip", "-n", ns, "addr", "add", "10.99.0."+n+"/24", "dev", "eth0")
		mustRun(t, "ip", "-n", ns, "-6", "addr", "add", "fd00:99::"+n+"/64", "dev", "eth0", "nodad")
		mustRun(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	inNetns(t, pod, listen(t, map[string]string{
		"127.0.0.1:15001":     "outbound",
		"[::1]:15001":         "outbound",
		"0.0.0.0:15006":       "inbound",
		"udp 127.0.0.1:15053": "dns",
		"10.99.0.1:8080":      "app",
		"127.0.0.1:8081":      "loopback",
	}))
	inNetns(t, peer, listen(t, map[string]string{
		"10.99.0.2:80":     "direct",
		"[fd00:99::2]:80":  "direct",
		"udp 10.99.0.2:53": "upstream-dns",
		"10.99.0.2:9999":   "direct",
	}))

	// Rules that are not Weft's must survive everything below.
	for _, args := range [][]string{
		{"iptables-" + backend, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "RETURN"},
		{"iptables-" + backend, "-t", "nat", "-N", "FOREIGN"},
		{"iptables-" + backend, "-t", "nat", "-A", "PREROUTING", "-j", "FOREIGN"},
		{"ip6tables-" + backend, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9999", "-j", "RETURN"},
	} {
		mustRun(t, "ip", append([]string{"netns", "exec", pod}, args...)...)
	}
	before := saveAll(t, pod)

	weft := func(args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := -1
		inNetns(t, pod, func() error { code = Main(args, &out, &errb); return nil })
		if code != 0 {
			t.Fatalf("weft-proxy iptables %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
	bin := helperBinary(t)
	// connect runs the client in ns as uid/gid and returns what it read.
	connect := func(ns string, uid, gid uint32, network, addr string) string {
		t.Helper()
		var out bytes.Buffer
		inNetns(t, ns, func() error {
			cmd := exec.Command(bin)
			cmd.Env = []string{helperEnv + "=" + network + " " + addr}
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
			return cmd.Run()
		})
		return out.String()
	}

	weft("--ipv6", "--capture-dns")
	first := saveAll(t, pod)
	weft("--ipv6", "--capture-dns")
	if again := saveAll(t, pod); again != first {
		t.Errorf("applying twice changed the rules:\nfirst:\n%s\nsecond:\n%s", first, again)
	}
	ours := mustRun(t, "ip", "netns", "exec", pod, "iptables-"+backend+"-save")
	for _, want := range []string{"-A OUTPUT -p tcp -m tcp --dport 9999 -j RETURN", "-A PREROUTING -j FOREIGN", "-A OUTPUT -p tcp -j WEFT_OUTPUT", "-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001"} {
		if !strings.Contains(ours, want+"\n") {
			t.Errorf("iptables-%s-save lacks %q:\n%s", backend, want, ours)
		}
	}
	if strings.Count(first, "-j WEFT_OUTPUT\n") != 2 { // IPv4 and IPv6, in one backend only
		t.Errorf("want one jump to WEFT_OUTPUT per family, in the %s backend only:\n%s", backend, first)
	}

	const app, proxy = 1000, DefaultProxyID
	tests := []struct {
		name     string
		ns       string
		uid, gid uint32
		network  string
		addr     string
		want     string
	}{
		{"app to a peer is redirected to the outbound port", pod, app, app, "tcp", "10.99.0.2:80", "outbound 10.99.0.2:80"},
		{"app to a peer over IPv6 is redirected", pod, app, app, "tcp", "[fd00:99::2]:80", "outbound [fd00:99::2]:80"},
		{"the proxy's uid goes direct", pod, proxy, app, "tcp", "10.99.0.2:80", "direct"},
		{"the proxy's gid goes direct", pod, app, proxy, "tcp", "10.99.0.2:80", "direct"},
		{"the proxy goes direct over IPv6", pod, proxy, proxy, "tcp", "[fd00:99::2]:80", "direct"},
		{"app to loopback is left alone", pod, app, app, "tcp", "127.0.0.1:8081", "loopback"},
		{"app to its own pod IP is left alone", pod, app, app, "tcp", "10.99.0.1:8080", "app"},
		{"the proxy to its own pod IP is captured as inbound", pod, proxy, proxy, "tcp", "10.99.0.1:8080", "inbound 10.99.0.1:8080"},
		{"a peer's call is redirected to the inbound port", peer, 0, 0, "tcp", "10.99.0.1:8080", "inbound 10.99.0.1:8080"},
		{"app DNS goes to the DNS proxy", pod, app, app, "udp", "10.99.0.2:53", "dns"},
		{"the proxy's DNS goes upstream", pod, proxy, proxy, "udp", "10.99.0.2:53", "upstream-dns"},
		{"a rule that is not Weft's still applies first", pod, app, app, "tcp", "10.99.0.2:9999", "direct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connect(tt.ns, tt.uid, tt.gid, tt.network, tt.addr); got != tt.want {
				t.Errorf("uid %d gid %d -> %s %s: got %q, want %q", tt.uid, tt.gid, tt.network, tt.addr, got, tt.want)
			}
		})
	}

	weft("--cleanup")
	if after := saveAll(t, pod); after != before {
		t.Errorf("--cleanup did not restore the rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	weft("--cleanup")
	if got := connect(pod, app, app, "tcp", "10.99.0.2:80"); got != "direct" {
		t.Errorf("after --cleanup the app reached %q, want direct", got)
	}
}
