package e2e

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestGRPCThroughSidecars calls a grpc-go server, which has a sidecar of
// its own (a weft-proxy process declaring a grpc port), from a grpc-go
// client through productpage's sidecar: a unary call, an error status, a
// server stream whose messages arrive one by one while the stream stays
// open, a call through the ingress gateway, one through a ServiceEntry,
// and a call after the application stopped. gRPC needs HTTP/2 on every hop and its status arrives in trailers,
// so each of these fails if a hop speaks HTTP/1.1 or drops trailers.
func TestGRPCThroughSidecars(t *testing.T) {
	m := startMesh(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("weft.Echo", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	app := ln.Addr().(*net.TCPAddr).Port

	// The server's sidecar: grpc-echo's port 7070 (named grpc, so the
	// mesh speaks HTTP/2 to it) is the app's, and other sidecars reach it
	// on listen.
	ports := freePorts(t, 4)
	listen, admin, outbound, listenWeb := ports[0], ports[1], ports[2], ports[3]
	ctx, cancel := context.WithCancel(context.Background())
	sidecar := exec.CommandContext(ctx, filepath.Join(binDir, "weft-proxy"),
		"--service", "grpc-echo", "--workload-name", "grpc-echo-v1", "--labels", "app=grpc-echo,version=v1",
		"--port", fmt.Sprintf("grpc:7070:%d:%d", app, listen),
		// The same server for browsers: a gRPC-Web port, which its sidecar
		// turns into gRPC.
		"--port", fmt.Sprintf("grpc-web:7080:%d:%d", app, listenWeb),
		"--xds-address", fmt.Sprintf("127.0.0.1:%d", m.xdsPort),
		"--admin-port", fmt.Sprint(admin), "--outbound-port", fmt.Sprint(outbound), "--log-level", "warn")
	var logs syncBuffer
	sidecar.Stdout, sidecar.Stderr = &logs, &logs
	if err := sidecar.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		sidecar.Wait()
		if t.Failed() {
			t.Logf("grpc-echo's sidecar said:\n%s", logs.String())
		}
	})

	// The client talks to productpage's sidecar as to the service itself
	// (explicit mode: the sidecar routes by the request's authority).
	var via int
	for _, p := range readUpState(t, m.dataDir).Procs {
		if strings.HasPrefix(p.Name, "productpage-") {
			via = p.OutboundPort
		}
	}
	client := healthVia(t, via, "grpc-echo:7070")

	// Until the control plane has told productpage's sidecar about the
	// new workload, the call fails (no route, or no endpoint yet).
	var lastErr error
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := check(client, "weft.Echo")
		if err == nil {
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("Check(weft.Echo) = %v, want SERVING", resp.GetStatus())
			}
			break
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("no successful call through the sidecars within 20 s; last error: %v", lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An error status travels in the response's trailers.
	if _, err := check(client, "no.such.Service"); status.Code(err) != codes.NotFound {
		t.Errorf("Check(no.such.Service): %v; want the server's NotFound status", err)
	}

	// A server stream: each status change is a message, sent while the
	// stream stays open.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	watch, err := client.Watch(wctx, &healthpb.HealthCheckRequest{Service: "weft.Echo"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	for i, want := range []healthpb.HealthCheckResponse_ServingStatus{healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING} {
		msg, err := watch.Recv()
		if err != nil {
			t.Fatalf("Watch message %d: %v", i+1, err)
		}
		if msg.GetStatus() != want {
			t.Fatalf("Watch message %d: %v, want %v", i+1, msg.GetStatus(), want)
		}
		if i == 0 {
			hs.SetServingStatus("weft.Echo", healthpb.HealthCheckResponse_NOT_SERVING)
		}
	}

	// A browser's gRPC-Web call (base64 text form, over HTTP/1.1) to the
	// gRPC-Web port: grpc-echo's sidecar turns it into gRPC for the
	// server and the answer, trailers included, back into gRPC-Web.
	checkWeb(t, m.outboundClient(5*time.Second), "http://grpc-echo:7080/grpc.health.v1.Health/Check", "weft.Echo", healthpb.HealthCheckResponse_NOT_SERVING) // set by the Watch above

	// Through the ingress gateway, as a client outside the mesh calls:
	// a VirtualService bound to the Bookinfo gateway routes a host to
	// grpc-echo.
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: grpc-echo-ingress
spec:
  hosts:
  - grpc.example.com
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        prefix: /grpc.health.v1.Health/
    route:
    - destination:
        host: grpc-echo
        port:
          number: 7070
`)
	if resp, err := check(healthVia(t, m.gwPort, "grpc.example.com"), "weft.Echo"); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check through the ingress gateway: %v, %v; want NOT_SERVING (set by the Watch above)", resp.GetStatus(), err)
	}

	// A browser's gRPC-Web call to a GRPC-WEB server of the gateway: the
	// gateway itself turns it into gRPC for grpc-echo's gRPC port.
	webPort := freePorts(t, 1)[0]
	m.applyYAML(ingressGateway("grpc-web-gateway", webPort, "GRPC-WEB") + `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: grpc-echo-web
spec:
  hosts:
  - "*"
  gateways:
  - grpc-web-gateway
  http:
  - route:
    - destination:
        host: grpc-echo
        port:
          number: 7070
`)
	checkWeb(t, &http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/grpc.health.v1.Health/Check", webPort), "weft.Echo", healthpb.HealthCheckResponse_NOT_SERVING)

	// A ServiceEntry with a GRPC port, as docs/grpc.md shows it: the
	// sidecar calls the endpoint, which has no sidecar, over HTTP/2.
	m.applyYAML(fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: inventory
spec:
  hosts:
  - inventory.example.com
  ports:
  - number: 7070
    name: grpc
    protocol: GRPC
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      grpc: %d
`, app))
	if resp, err := check(healthVia(t, via, "inventory.example.com:7070"), "weft.Echo"); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check through the ServiceEntry: %v, %v; want NOT_SERVING (set by the Watch above)", resp.GetStatus(), err)
	}

	// With the application gone, the call fails as a gRPC status that
	// says why: the sidecar's own answer is the status's message (grpc-go
	// would otherwise report an unexpected HTTP status and content type).
	srv.Stop()
	_, err = check(client, "weft.Echo")
	// (A call that raced the sidecar's noticing the closed connection
	// reads "upstream reset before response" instead.)
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), "upstream ") || !strings.Contains(st.Message(), "cluster inbound|7070||") {
		t.Errorf("Check with the application stopped: %v; want UNAVAILABLE naming the upstream error and the inbound cluster", err)
	}

	// Both sidecars carried the calls: productpage's to the service,
	// grpc-echo's to its application.
	if got := m.adminStat("productpage", "v1", `envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|7070||grpc-echo.default.svc.cluster.local"}`); got < 3 {
		t.Errorf("productpage's sidecar sent %v requests to grpc-echo, want at least 3", got)
	}
	stats := &http.Client{Timeout: 5 * time.Second}
	if got := scrapeStat(t, stats, fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", admin), `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|7070||"}`); got < 3 {
		t.Errorf("grpc-echo's sidecar sent %v requests to its application, want at least 3", got)
	}
}

// checkWeb makes a gRPC-Web (text) Health.Check call with client and
// checks the answer: one message with status want, then the trailer
// message with grpc-status 0.
func checkWeb(t *testing.T, client *http.Client, url, service string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	msg, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	req, _ := http.NewRequest("POST", url, strings.NewReader(base64.StdEncoding.EncodeToString(body)))
	req.Header.Set("Content-Type", "application/grpc-web-text+proto")
	req.Header.Set("Accept", "application/grpc-web-text")
	req.Header.Set("X-Grpc-Web", "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("gRPC-Web call: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc-web-text+proto" {
		t.Fatalf("gRPC-Web call: %s, Content-Type %q, body %q; want 200 application/grpc-web-text+proto", resp.Status, resp.Header.Get("Content-Type"), raw)
	}
	// The text is base64 chunks, each padded: four characters at a time.
	var dec []byte
	for i := 0; i+4 <= len(raw); i += 4 {
		b, err := base64.StdEncoding.DecodeString(string(raw[i : i+4]))
		if err != nil {
			t.Fatalf("gRPC-Web answer is not base64: %v (%q)", err, raw)
		}
		dec = append(dec, b...)
	}
	var got healthpb.HealthCheckResponse
	var trailers string
	for len(dec) >= 5 {
		n := int(binary.BigEndian.Uint32(dec[1:5]))
		if len(dec) < 5+n {
			t.Fatalf("truncated gRPC-Web message: %q", dec)
		}
		if dec[0]&0x80 != 0 {
			trailers = string(dec[5 : 5+n])
		} else if err := proto.Unmarshal(dec[5:5+n], &got); err != nil {
			t.Fatalf("gRPC-Web message: %v", err)
		}
		dec = dec[5+n:]
	}
	if got.GetStatus() != want || !strings.Contains(trailers, "grpc-status:0\r\n") {
		t.Errorf("gRPC-Web Check(%s) = %v with trailers %q; want %v and grpc-status:0", service, got.GetStatus(), trailers, want)
	}
}

// healthVia is a Health client that dials 127.0.0.1:port and names
// authority as the service, as a client of an explicit-mode sidecar or of
// the gateway does; the connection closes when the test ends.
func healthVia(t *testing.T, port int, authority string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", port),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// check calls Health.Check for service, giving up after 5 s.
func check(c healthpb.HealthClient, service string) (*healthpb.HealthCheckResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
}
