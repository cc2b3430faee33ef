package iptables

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary a client instead of running tests: the
// netns test runs it as another uid inside the namespace. Its value is
// NETWORK ADDRESS (tcp or udp); it prints the first line the server sends
// back, or "error: ...".
const helperEnv = "WEFT_IPTABLES_TEST_DIAL"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		fmt.Print(dial(v))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func dial(v string) string {
	network, addr, _ := strings.Cut(v, " ")
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if network == "udp" {
		if _, err := c.Write([]byte("ping")); err != nil {
			return "error: " + err.Error()
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(line)
}
