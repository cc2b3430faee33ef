//go:build linux

package harness

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run this test binary as the go-epoll row's relay
// (WEFTBENCH_EPOLL_RELAY=ADDR,UPSTREAM): its event loop never returns, so
// it runs in a process of its own, as the bench runs it.
func TestMain(m *testing.M) {
	if v := os.Getenv("WEFTBENCH_EPOLL_RELAY"); v != "" {
		addr, upstream, _ := strings.Cut(v, ",")
		if err := serveEpollRelay(addr, upstream); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestEpollRelayForwards(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer backend.Close()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1", "WEFTBENCH_EPOLL_RELAY="+addr+","+strings.TrimPrefix(backend.URL, "http://"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := get("/"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the relay never answered: %v", err)
		}
	}
	// Several requests on the client's keep-alive connection, each
	// answered through the relay.
	for _, p := range []string{"/a", "/b", "/c"} {
		if body, err := get(p); err != nil || body != "hello "+p {
			t.Fatalf("GET %s through the relay = %q, %v", p, body, err)
		}
	}
	// A second client connection gets its own upstream connection.
	other := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	resp, err := other.Get("http://" + addr + "/d")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello /d" {
		t.Fatalf("second connection got %q", b)
	}
}
