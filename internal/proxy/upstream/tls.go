package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// TLS is a cluster's TLS origination (Envoy's UpstreamTlsContext): every
// connection to its endpoints is TLS, made with these settings. It is
// comparable, so that an endpoint is kept across configurations that do
// not change it.
type TLS struct {
	// ServerName is sent as SNI.
	ServerName string
	// Verify checks the server's certificate chain against the roots in
	// CAFile (PEM), or the system's roots when CAFile is empty.
	Verify bool
	CAFile string
	// SANs, separated by newlines, are the names (DNS names or URIs) of
	// which the server's certificate must carry one (a wildcard DNS name
	// in the certificate covers one label); empty: its names are not
	// checked, as in Envoy without SAN matchers.
	SANs string
	// CertFile and KeyFile, when set, are the client certificate chain and
	// key (PEM) presented to the server: mutual TLS.
	CertFile, KeyFile string
	// ALPN is the application protocol offered: "h2" for a cluster that
	// speaks HTTP/2 (set by the Pools from the cluster's protocol), else
	// none (HTTP/1.1).
	ALPN string
}

// Config reads the files t names and returns the client configuration
// its connections use.
func (t *TLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: t.ServerName,
		MinVersion: tls.VersionTLS12,
		// The chain and the names are checked by VerifyConnection, which
		// matches SANs rather than ServerName, as Envoy does.
		InsecureSkipVerify: true,
	}
	if t.ALPN != "" {
		cfg.NextProtos = []string{t.ALPN}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s with key %s: %w", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if !t.Verify {
		return cfg, nil
	}
	roots, err := x509.SystemCertPool()
	if t.CAFile != "" {
		var pem []byte
		if pem, err = os.ReadFile(t.CAFile); err == nil {
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				err = errors.New("no PEM certificate in it")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("CA certificates %s: %w", t.CAFile, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("the system's root certificates: %w", err)
	}
	var sans []string
	if t.SANs != "" {
		sans = strings.Split(t.SANs, "\n")
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := leaf.Verify(opts); err != nil {
			return err
		}
		if sans != nil && !hasSAN(leaf, sans) {
			return fmt.Errorf("the server's certificate names none of %s", strings.Join(sans, ", "))
		}
		return nil
	}
	return cfg, nil
}

// hasSAN reports whether the certificate carries one of names as a DNS
// name or a URI.
func hasSAN(c *x509.Certificate, names []string) bool {
	for _, u := range c.URIs {
		if slices.Contains(names, u.String()) {
			return true
		}
	}
	return slices.ContainsFunc(c.DNSNames, func(dns string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return dnsNameMatches(dns, n) })
	})
}

// dnsNameMatches reports whether a certificate's DNS name covers name: the
// same name (case aside), or a wildcard "*.example.com" for one label in
// its place ("api.example.com", not "example.com" or "a.b.example.com").
func dnsNameMatches(certName, name string) bool {
	if strings.EqualFold(certName, name) {
		return true
	}
	suffix, ok := strings.CutPrefix(certName, "*")
	if !ok || !strings.HasPrefix(suffix, ".") {
		return false
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && label != "" && strings.EqualFold("."+rest, suffix)
}

// tlsDial wraps dial: each connection it makes does the TLS handshake
// with t's configuration (within timeout) before it is used. The
// configuration is made on the first dial, and made again when a file it
// read has changed since (a rotated certificate or CA takes effect on the
// next connection) or could not be read (each such dial fails, saying
// why).
func tlsDial(dial func(context.Context) (net.Conn, error), t TLS, addr string, timeout time.Duration) func(context.Context) (net.Conn, error) {
	var made atomic.Pointer[madeTLS]
	return func(ctx context.Context) (net.Conn, error) {
		m := made.Load()
		if stamp := t.filesStamp(); m == nil || m.stamp != stamp {
			cfg, err := t.Config()
			if err != nil {
				return nil, fmt.Errorf("TLS to %s: %w", addr, err)
			}
			m = &madeTLS{cfg: cfg, stamp: stamp}
			made.Store(m)
		}
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		tc := tls.Client(c, m.cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}

// madeTLS is a configuration and the files it was made from.
type madeTLS struct {
	cfg   *tls.Config
	stamp string
}

// filesStamp is the content of the files t names (a missing one counts
// as such), so that any change shows, whatever the file system's clock.
// The files are small, and read once per connection, beside a TLS
// handshake that costs far more.
func (t *TLS) filesStamp() string {
	var b strings.Builder
	for _, f := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(&b, "%d:", len(data))
			b.Write(data)
		} else {
			b.WriteString("-")
		}
		b.WriteByte(';')
	}
	return b.String()
}
