package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/testcerts"
)

// TestEgressTLSOrigination follows Istio's egress TLS origination task
// against a local HTTPS server: the app sends plain HTTP, and the sidecar
// speaks TLS to the server as the DestinationRule says, checking the
// server's certificate against the CA given (SIMPLE) and presenting a
// client certificate when the server wants one (MUTUAL).
func TestEgressTLSOrigination(t *testing.T) {
	m := startMesh(t)
	certs := testcerts.New(t, t.TempDir(), "secure.example.com")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "no client certificate"
		if len(r.TLS.PeerCertificates) > 0 {
			who = "client " + r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "TLS to %s, %s", r.TLS.ServerName, who)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs.Server}, ClientCAs: certs.Pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes this test fails on purpose
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	client := m.outboundClient(5 * time.Second)
	get := func() (int, string) {
		t.Helper()
		resp, err := client.Get("http://secure.example.com/")
		if err != nil {
			t.Fatalf("GET through the sidecar: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Plain HTTP to a TLS port: the server answers 400.
	m.applyYAML(loopbackServiceEntry("secure", port) + noRetries("secure"))
	if code, _ := get(); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the TLS server answered %d, want its 400", code)
	}

	rule := `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: secure
spec:
  host: secure.example.com
  trafficPolicy:
    tls:
      mode: %s
      caCertificates: %s
%s`
	m.applyYAML(fmt.Sprintf(rule, "SIMPLE", certs.CAFile, ""))
	if code, body := get(); code != http.StatusOK || body != "TLS to secure.example.com, no client certificate" {
		t.Fatalf("SIMPLE: %d %q", code, body)
	}

	m.applyYAML(fmt.Sprintf(rule, "MUTUAL", certs.CAFile,
		fmt.Sprintf("      clientCertificate: %s\n      privateKey: %s\n", certs.ClientCertFile, certs.ClientKeyFile)))
	if code, body := get(); code != http.StatusOK || body != "TLS to secure.example.com, client client" {
		t.Fatalf("MUTUAL: %d %q", code, body)
	}

	// A certificate without the name the rule asks for fails the
	// handshake: the sidecar answers 503 rather than talk to the server.
	m.applyYAML(fmt.Sprintf(rule, "SIMPLE", certs.CAFile, "      subjectAltNames: [other.example.com]\n"))
	if code, body := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("a certificate without the SAN asked for: %d %q, want 503", code, body)
	}
}

// TestGatewayHTTPS: an HTTPS server on the ingress gateway, its certificate
// and key in files, terminates TLS and routes as Istio's gateways do; a
// client that asks for HTTP/2 by ALPN gets it.
func TestGatewayHTTPS(t *testing.T) {
	m := startMesh(t)
	certs := testcerts.New(t, t.TempDir(), "bookinfo.example.com")
	port := freePorts(t, 1)[0]
	// A backend that tells the scheme the gateway forwarded.
	proto := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer proto.Close()
	m.applyYAML(loopbackServiceEntry("proto", proto.Listener.Addr().(*net.TCPAddr).Port) + fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-https
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: https
      protocol: HTTPS
    hosts:
    - "*"
    tls:
      mode: SIMPLE
      serverCertificate: %s
      privateKey: %s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo-https
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-https
  http:
  - match:
    - uri:
        exact: /productpage
    route:
    - destination:
        host: productpage
        port:
          number: 9080
  - match:
    - uri:
        exact: /proto
    route:
    - destination:
        host: proto.example.com
`, port, certs.CertFile, certs.KeyFile))
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool, ServerName: "bookinfo.example.com"}, ForceAttemptHTTP2: h2}
		client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/productpage", port))
		if err != nil {
			t.Fatalf("HTTPS to the gateway (h2 %v): %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if resp.StatusCode != http.StatusOK || resp.Proto != wantProto || !strings.Contains(string(body), "Simple Bookstore App") {
			t.Errorf("HTTPS /productpage (h2 %v): %s over %s, %d bytes; want 200 over %s with the product page", h2, resp.Status, resp.Proto, len(body), wantProto)
		}
		resp, err = client.Get(fmt.Sprintf("https://127.0.0.1:%d/proto", port))
		if err != nil {
			t.Fatalf("HTTPS /proto: %v", err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "https" {
			t.Errorf("the gateway forwarded X-Forwarded-Proto %q, want https", body)
		}
		tr.CloseIdleConnections()
	}
	// A client that does not trust the certificate is refused by its own
	// TLS; the gateway counts the failed handshake.
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("https://127.0.0.1:%d/productpage", port)); err == nil {
		t.Error("a client without the CA reached the gateway's HTTPS port")
	}
	admin := 0
	for _, p := range readUpState(t, m.dataDir).Procs {
		if p.Role == "gateway" {
			admin = p.AdminPort
		}
	}
	metric := fmt.Sprintf(`envoy_listener_ssl_connection_error{envoy_listener_name="0.0.0.0_%d"}`, port)
	waitFor(t, "the gateway to count the failed handshake", func() bool {
		return scrapeStat(t, &http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", admin), metric) == 1
	})
}
