package upstream

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/testcerts"
)

// TestTLSOrigination: a cluster with TLS settings speaks TLS to its
// endpoints, checks the server's certificate (its CA, and its name or the
// SANs asked for), and presents a client certificate for mutual TLS.
func TestTLSOrigination(t *testing.T) {
	certs := testcerts.New(t, t.TempDir(), "secure.example.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, r.TLS.ServerName+" "+who)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs.Server}, ClientCAs: certs.Pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes this test fails on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")

	for _, tc := range []struct {
		name    string
		tls     TLS
		want    string // the body, or a part of the error
		wantErr bool
	}{
		{"verified by name", TLS{ServerName: "secure.example.test", Verify: true, CAFile: certs.CAFile}, "secure.example.test anonymous", false},
		{"verified by SAN", TLS{ServerName: "other.example.test", Verify: true, CAFile: certs.CAFile, SANs: "nope.example.test\nsecure.example.test"}, "other.example.test anonymous", false},
		{"mutual", TLS{ServerName: "secure.example.test", Verify: true, CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}, "secure.example.test client", false},
		{"not verified", TLS{ServerName: "any.example.test"}, "any.example.test anonymous", false},
		{"wrong name", TLS{ServerName: "wrong.example.test", Verify: true, CAFile: certs.CAFile, SANs: "wrong.example.test"}, "names none of wrong.example.test", true},
		{"no SAN matchers: the chain only, as Envoy", TLS{ServerName: "wrong.example.test", Verify: true, CAFile: certs.CAFile}, "wrong.example.test anonymous", false},
		{"wrong SAN", TLS{ServerName: "secure.example.test", Verify: true, CAFile: certs.CAFile, SANs: "nope.example.test"}, "names none of nope.example.test", true},
		{"unknown CA (system roots)", TLS{ServerName: "secure.example.test", Verify: true}, "certificate signed by unknown authority", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPools(PoolsOptions{})
			t.Cleanup(p.Close)
			spec := tc.tls
			ep := p.Build([]ClusterSpec{{Name: "c", TLS: &spec, Endpoints: []EndpointSpec{{Address: addr}}}})["c"].Pick(nil)
			code, body, err := get(t, ep, "GET", "/", nil)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %d %q, %v; want an error containing %q", code, body, err, tc.want)
				}
				return
			}
			if err != nil || code != http.StatusOK || body != tc.want {
				t.Fatalf("got %d %q, %v; want 200 %q", code, body, err, tc.want)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certs := testcerts.New(t, dir, "x")
	for _, tc := range []struct {
		tls  TLS
		want string
	}{
		{TLS{Verify: true, CAFile: dir + "/missing.pem"}, "CA certificates " + dir + "/missing.pem"},
		{TLS{Verify: true, CAFile: certs.KeyFile}, "no PEM certificate in it"},
		{TLS{CertFile: certs.ClientCertFile, KeyFile: dir + "/missing.pem"}, "client certificate"},
	} {
		if _, err := tc.tls.Config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Config(%+v) = %v, want an error containing %q", tc.tls, err, tc.want)
		}
	}
}

func TestDNSNameMatches(t *testing.T) {
	for _, tc := range []struct {
		cert, name string
		want       bool
	}{
		{"api.example.com", "api.example.com", true},
		{"API.example.com", "api.example.com", true},
		{"*.example.com", "api.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"a*.example.com", "ab.example.com", false},
		{"api.example.com", "web.example.com", false},
	} {
		if got := dnsNameMatches(tc.cert, tc.name); got != tc.want {
			t.Errorf("dnsNameMatches(%q, %q) = %v, want %v", tc.cert, tc.name, got, tc.want)
		}
	}
}

// A file that cannot be read fails the connections (saying why) until it
// can: the sidecar tries again on each one.
func TestTLSFilesReadWhenConnecting(t *testing.T) {
	dir := t.TempDir()
	certs := testcerts.New(t, dir, "secure.example.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs.Server}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	late := dir + "/late-ca.pem"
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	ep := p.Build([]ClusterSpec{{Name: "c", TLS: &TLS{ServerName: "secure.example.test", Verify: true, CAFile: late},
		Endpoints: []EndpointSpec{{Address: strings.TrimPrefix(srv.URL, "https://")}}}})["c"].Pick(nil)
	if _, _, err := get(t, ep, "GET", "/", nil); err == nil || !strings.Contains(err.Error(), "CA certificates "+late) {
		t.Fatalf("with the CA file missing: %v, want an error naming it", err)
	}
	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(late, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body, err := get(t, ep, "GET", "/", nil); err != nil || code != http.StatusOK || body != "ok" {
		t.Fatalf("once the CA file is there: %d %q, %v", code, body, err)
	}
}

// An HTTP/2 cluster asks for h2 by ALPN, which a TLS server needs to
// speak HTTP/2.
func TestTLSOriginationHTTP2(t *testing.T) {
	certs := testcerts.New(t, t.TempDir(), "secure.example.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{certs.Server}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	ep := p.Build([]ClusterSpec{{Name: "c", Protocol: HTTP2, TLS: &TLS{ServerName: "secure.example.test", Verify: true, CAFile: certs.CAFile, SANs: "secure.example.test"},
		Endpoints: []EndpointSpec{{Address: strings.TrimPrefix(srv.URL, "https://")}}}})["c"].Pick(nil)
	if code, body, err := get(t, ep, "GET", "/", nil); err != nil || code != http.StatusOK || body != "HTTP/2.0" {
		t.Fatalf("HTTP/2 over TLS: %d %q, %v", code, body, err)
	}
	// A request that must go over HTTP/1.1 (an Upgrade) dials without h2.
	req, _ := http.NewRequest("GET", "http://"+ep.Address()+"/", nil)
	req.Header.Set("Upgrade", "websocket")
	resp, err := ep.RoundTrip(req)
	if err != nil {
		t.Fatalf("an HTTP/1.1 request on the HTTP/2 TLS cluster: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/1.1" {
		t.Errorf("the Upgrade request went as %q, want HTTP/1.1", b)
	}
}

// A rotated CA takes effect on the next connection, with no config change.
func TestTLSFilesRotate(t *testing.T) {
	dir := t.TempDir()
	oldCerts, newCerts := testcerts.New(t, t.TempDir(), "secure.example.test"), testcerts.New(t, t.TempDir(), "secure.example.test")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{newCerts.Server}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := dir + "/ca.pem"
	copyFile := func(from string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ca, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(oldCerts.CAFile)
	p := NewPools(PoolsOptions{})
	t.Cleanup(p.Close)
	ep := p.Build([]ClusterSpec{{Name: "c", TLS: &TLS{ServerName: "secure.example.test", Verify: true, CAFile: ca},
		Endpoints: []EndpointSpec{{Address: strings.TrimPrefix(srv.URL, "https://")}}}})["c"].Pick(nil)
	if _, _, err := get(t, ep, "GET", "/", nil); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("with the old CA: %v, want the server refused", err)
	}
	copyFile(newCerts.CAFile)
	if code, _, err := get(t, ep, "GET", "/", nil); err != nil || code != http.StatusOK {
		t.Fatalf("after the CA file was rotated: %d, %v", code, err)
	}
}
