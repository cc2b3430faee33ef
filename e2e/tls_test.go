package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
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
