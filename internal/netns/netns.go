// Package netns builds the small virtual network of `weft up --netns`: a
// bridge on the host and one network namespace per workload, joined to the
// bridge by a veth pair, each with its own IP, the way a node gives each
// pod a network. It starts processes and dials connections inside those
// namespaces. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2.
//
// Concurrency: a Network is used by one goroutine at a time (weft up's
// supervisor). Start and Dial each lock their goroutine to an OS thread,
// move that thread into the namespace and back; no other thread changes
// namespace.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Options configures a Network.
type Options struct {
	// Name prefixes every namespace and names the bridge; at most 10
	// characters, e.g. "weft3fa1".
	Name string
	// Subnet is the network's /24 (or larger); the bridge takes its first
	// address and workloads the following ones.
	Subnet netip.Prefix
	Logger *slog.Logger
}

// Network is a bridge and the namespaces attached to it.
type Network struct {
	opts    Options
	gateway netip.Addr
	next    netip.Addr
	hosts   []*Host
}

// Host is one network namespace on the bridge.
type Host struct {
	Namespace string // name under /run/netns
	IP        netip.Addr
	veth      string // host side
}

// Root reports whether this process can build networks.
func Root() bool { return os.Geteuid() == 0 }

// Create makes the bridge. A bridge or namespaces left by an earlier run of
// the same name are removed first.
func Create(opts Options) (*Network, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Name) == 0 || len(opts.Name) > 10 {
		return nil, fmt.Errorf("network name %q: want 1 to 10 characters", opts.Name)
	}
	if !opts.Subnet.Addr().Is4() || opts.Subnet.Bits() > 24 {
		return nil, fmt.Errorf("subnet %s: want an IPv4 /24 or larger", opts.Subnet)
	}
	if err := Remove(opts.Name); err != nil {
		return nil, err
	}
	n := &Network{opts: opts, gateway: opts.Subnet.Masked().Addr().Next()}
	n.next = n.gateway.Next()
	if err := ip("link", "add", n.opts.Name, "type", "bridge"); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"addr", "add", fmt.Sprintf("%s/%d", n.gateway, opts.Subnet.Bits()), "dev", n.opts.Name},
		{"link", "set", n.opts.Name, "up"},
	} {
		if err := ip(args...); err != nil {
			Remove(opts.Name)
			return nil, err
		}
	}
	return n, nil
}

// Gateway is the bridge's address: how namespaces reach the host.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Namespaces lists the namespaces made so far.
func (n *Network) Namespaces() []string {
	out := make([]string, len(n.hosts))
	for i, h := range n.hosts {
		out[i] = h.Namespace
	}
	return out
}

// AddHost makes a namespace named PREFIX-name with the next free address,
// loopback up and a default route through the bridge.
func (n *Network) AddHost(name string) (*Host, error) {
	if !n.opts.Subnet.Contains(n.next) {
		return nil, fmt.Errorf("subnet %s is full", n.opts.Subnet)
	}
	i := len(n.hosts)
	h := &Host{
		Namespace: n.opts.Name + "-" + name,
		IP:        n.next,
		veth:      fmt.Sprintf("%sv%d", n.opts.Name, i), // at most 15 characters
	}
	n.next = n.next.Next()
	peer := h.veth + "p"
	steps := [][]string{
		{"netns", "add", h.Namespace},
		{"link", "add", h.veth, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", h.Namespace},
		{"link", "set", h.veth, "master", n.opts.Name, "up"},
		{"-n", h.Namespace, "link", "set", "lo", "up"},
		{"-n", h.Namespace, "link", "set", peer, "name", "eth0"},
		{"-n", h.Namespace, "addr", "add", fmt.Sprintf("%s/%d", h.IP, n.opts.Subnet.Bits()), "dev", "eth0"},
		{"-n", h.Namespace, "link", "set", "eth0", "up"},
		{"-n", h.Namespace, "route", "add", "default", "via", n.gateway.String()},
	}
	n.hosts = append(n.hosts, h)
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return nil, fmt.Errorf("add namespace %s: %w", h.Namespace, err)
		}
	}
	return h, nil
}

// Remove deletes the bridge called name and every namespace whose name
// starts with name-, with their veths. Missing pieces are fine.
func Remove(name string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("list network namespaces: %w (is iproute2 installed?)", err)
	}
	var errs []string
	// Delete the host ends of the veths first: the kernel destroys a
	// deleted namespace, and the veths in it, only later.
	links, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, line := range strings.Split(string(links), "\n") {
		// "12: weft3fa1v0@if11: <BROADCAST,..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		link, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(link, name+"v") {
			if err := ip("link", "delete", link); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(ns, name+"-") {
			if err := ip("netns", "delete", ns); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if exec.Command("ip", "link", "show", name).Run() == nil {
		if err := ip("link", "delete", name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove network %s: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Start starts cmd inside the namespace. The goroutine that calls it stays
// on the thread that forked the child until wait returns, because Linux
// delivers the parent-death signal (SysProcAttr.Pdeathsig) when that
// thread exits; so Start returns wait, which the caller must call, once.
func (h *Host) Start(cmd *exec.Cmd) (wait func() error, err error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restore, err := h.enter()
		if err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		err = cmd.Start()
		if rerr := restore(); rerr != nil {
			// This thread is stuck in the namespace: let it die with the
			// goroutine rather than serve others.
			started <- err
			if err == nil {
				done <- cmd.Wait()
			}
			return
		}
		started <- err
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		done <- cmd.Wait()
		runtime.UnlockOSThread()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", cmd.Path, h.Namespace, err)
	}
	return func() error { return <-done }, nil
}

// Dial connects to addr from inside the namespace; the connection stays in
// the namespace it was made in.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restore, err := h.enter()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{nil, err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if restore() == nil {
			runtime.UnlockOSThread()
		}
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// enter moves the calling (locked) thread into the namespace and returns a
// function that moves it back.
func (h *Host) enter() (func() error, error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open this thread's network namespace: %w", err)
	}
	target, err := os.Open("/run/netns/" + h.Namespace)
	if err != nil {
		self.Close()
		return nil, fmt.Errorf("open namespace %s: %w", h.Namespace, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		self.Close()
		return nil, fmt.Errorf("enter namespace %s: %w", h.Namespace, err)
	}
	return func() error {
		defer self.Close()
		return unix.Setns(int(self.Fd()), unix.CLONE_NEWNET)
	}, nil
}
