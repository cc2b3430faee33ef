package netns

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as an echo server run inside a namespace.
func TestMain(m *testing.M) {
	if addr := os.Getenv("NETNS_TEST_ECHO"); addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "echo %s", line)
			}()
		}
	}
	os.Exit(m.Run())
}

func TestNetwork(t *testing.T) {
	if !Root() {
		t.Fatal("this test builds network namespaces and needs root; CI runs as root")
	}
	name := fmt.Sprintf("wt%04x", rand.IntN(0xffff))
	subnet := netip.MustParsePrefix(fmt.Sprintf("10.231.%d.0/24", rand.IntN(250)))
	n, err := Create(Options{Name: name, Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(name) })
	a, err := n.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.IP == b.IP || !subnet.Contains(a.IP) || n.Gateway() != subnet.Addr().Next() {
		t.Fatalf("addresses: gateway %s, a %s, b %s", n.Gateway(), a.IP, b.IP)
	}

	// A server in b, on b's own IP.
	addr := netip.AddrPortFrom(b.IP, 7000).String()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "NETNS_TEST_ECHO="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	wait, err := b.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); wait() })
	self, _ := os.Readlink("/proc/self/ns/net")
	inB, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if inB == self {
		t.Fatalf("the server runs in the host's namespace %s", self)
	}

	// Reach it from a (across the bridge) and from the host.
	for _, dial := range []struct {
		from string
		fn   func(ctx context.Context, network, addr string) (net.Conn, error)
	}{{"namespace a", a.Dial}, {"the host", (&net.Dialer{}).DialContext}} {
		var c net.Conn
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err = dial.fn(ctx, "tcp", addr)
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("dial %s from %s: %v", addr, dial.from, err)
		}
		fmt.Fprintf(c, "hello\n")
		got, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got != "echo hello\n" {
			t.Errorf("from %s got %q", dial.from, got)
		}
	}

	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), name+"-") {
		t.Errorf("namespaces left after Remove:\n%s", out)
	}
	if exec.Command("ip", "link", "show", name).Run() == nil {
		t.Errorf("bridge %s left after Remove", name)
	}
}
