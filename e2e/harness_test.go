// Package e2e runs Weft the way a user does: it builds the real binaries,
// starts a mesh with `weft up` as separate processes on loopback, drives it
// with the weft CLI and measures traffic through the ingress gateway.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// binDir holds the binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/weft", "./cmd/weft-proxy", "./samples/bookinfo", "./samples/tcpecho", "./samples/grpcecho")
	cmd.Dir = ".."
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	binDir = dir
	// Other users must be able to run the binaries (a test runs weft as
	// an ordinary user).
	os.Chmod(dir, 0o755)
	// Root runs the network namespace tests too; the whole suite must
	// leave the machine's network as it found it.
	var before string
	if os.Geteuid() == 0 {
		before = hostNetwork()
	}
	code := m.Run()
	if before != "" {
		if after := hostNetwork(); after != before {
			fmt.Fprintf(os.Stderr, "FAIL: the e2e suite left the host's network changed:\nbefore:\n%s\nafter:\n%s", before, after)
			return 1
		}
	}
	return code
}

// mesh is one running local mesh.
type mesh struct {
	t        *testing.T
	dataDir  string
	xdsPort  int
	apiPort  int
	gwPort   int
	gateway  string // http://127.0.0.1:PORT
	samples  string // samples/bookinfo/networking
	upOutput string
	extra    []string // more weft up flags
}

// startMesh runs `weft up --detach` with the extra flags on free ports and
// stops it when the test ends.
func startMesh(t *testing.T, extra ...string) *mesh {
	t.Helper()
	ports := freePorts(t, 3)
	m := &mesh{
		t: t, dataDir: t.TempDir(), xdsPort: ports[0], apiPort: ports[1], gwPort: ports[2],
		samples: filepath.Join("..", "samples", "bookinfo", "networking"),
		extra:   extra,
	}
	m.gateway = fmt.Sprintf("http://127.0.0.1:%d", m.gwPort)
	t.Cleanup(func() {
		if out, code := m.weft("down"); code != 0 {
			t.Errorf("weft down: exit %d: %s", code, out)
		}
	})
	out, code := m.weft(m.upArgs(true)...)
	if code != 0 {
		t.Fatalf("weft up --detach: exit %d:\n%s", code, out)
	}
	m.upOutput = out
	return m
}

func (m *mesh) upArgs(detach bool) []string {
	args := []string{"up", "--bin-dir", binDir,
		"--xds-port", strconv.Itoa(m.xdsPort), "--api-port", strconv.Itoa(m.apiPort),
		"--gateway-port", strconv.Itoa(m.gwPort)}
	if detach {
		args = append(args, "--detach")
	}
	return append(args, m.extra...)
}

// weft runs the weft CLI against this mesh and returns its combined output
// and exit code.
func (m *mesh) weft(args ...string) (string, int) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "weft"), append(args, "--data-dir", m.dataDir)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		m.t.Fatalf("run weft %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// mustWeft runs weft and fails the test on a non-zero exit.
func (m *mesh) mustWeft(args ...string) string {
	m.t.Helper()
	out, code := m.weft(args...)
	if code != 0 {
		m.t.Fatalf("weft %s: exit %d:\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// applyWait applies sample files and waits until every proxy has ACKed them.
func (m *mesh) applyWait(files ...string) {
	m.t.Helper()
	args := []string{"apply", "--wait", "--timeout", "30s"}
	for _, f := range files {
		args = append(args, "-f", filepath.Join(m.samples, f))
	}
	m.mustWeft(args...)
}

// user is a browser-like client of the product page.
type user struct {
	t      *testing.T
	client *http.Client
	base   string
}

func (m *mesh) user() *user {
	jar, _ := cookiejar.New(nil)
	return &user{t: m.t, base: m.gateway, client: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}}
}

func (u *user) login(name string) {
	u.t.Helper()
	resp, err := u.client.PostForm(u.base+"/login", url.Values{"username": {name}})
	if err != nil {
		u.t.Fatalf("login as %s: %v", name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		u.t.Fatalf("login as %s: %s (after redirect to the product page)", name, resp.Status)
	}
}

// reviews is the reviews service's answer, as productpage passes it on.
type reviews struct {
	Podname string `json:"podname"`
	Reviews []struct {
		Reviewer string `json:"reviewer"`
		Rating   *struct {
			Stars int    `json:"stars"`
			Color string `json:"color"`
			Error string `json:"error"`
		} `json:"rating"`
	} `json:"reviews"`
}

// version says which reviews version answered, from its pod name.
func (r reviews) version() string {
	for _, v := range []string{"v1", "v2", "v3"} {
		if strings.HasPrefix(r.Podname, "reviews-"+v+"-") {
			return v
		}
	}
	return "unknown(" + r.Podname + ")"
}

// getReviews fetches the reviews of product 0 through the gateway.
func (u *user) getReviews() (reviews, error) {
	var r reviews
	resp, err := u.client.Get(u.base + "/api/v1/products/0/reviews")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("GET /api/v1/products/0/reviews: %s: %s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decode reviews %q: %w", body, err)
	}
	return r, nil
}

// versions sends n requests and counts the reviews versions that answered.
func (u *user) versions(n int) map[string]int {
	u.t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		r, err := u.getReviews()
		if err != nil {
			u.t.Fatalf("request %d: %v", i, err)
		}
		counts[r.version()]++
	}
	return counts
}

// freePorts returns n loopback ports that nothing listens on, from a range
// below the kernel's ephemeral ports (so no outgoing connection takes one
// before the mesh binds it) and away from weft up's sidecar ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for p := 20000 + rand.IntN(10000); len(ports) < n && p < 32000; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatal("no free ports below 32000")
	}
	return ports
}

// meshLink matches the names weft up --netns gives its bridge, veths and
// namespaces (weftXXXX, weftXXXXvN, weftXXXX-workload); other packages'
// tests, which may run at the same time, use other names.
var meshLink = regexp.MustCompile(`\bweft[0-9a-f]{4}(v[0-9]+p?|-[a-z0-9-]+)?\b`)

// hostNetwork is what weft up --netns may change on the machine: its
// namespaces and links, and the host's iptables rules. A mesh must leave it
// as it found it.
func hostNetwork() string {
	var b strings.Builder
	for _, args := range [][]string{{"ip", "netns", "list"}, {"ip", "-o", "link", "show"}} {
		out, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", strings.Join(args, " "), err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if meshLink.MatchString(line) {
				b.WriteString(line + "\n")
			}
		}
	}
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			fmt.Fprintf(&b, "iptables-save -t %s: %v\n", table, err)
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			// Comments carry timestamps and chain lines counters.
			if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, ":") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}
