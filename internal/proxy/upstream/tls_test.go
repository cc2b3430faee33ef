package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
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
		{"wrong name", TLS{ServerName: "wrong.example.test", Verify: true, CAFile: certs.CAFile}, "wrong.example.test", true},
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
