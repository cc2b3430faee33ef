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
	"time"
)

// TLS is a cluster's TLS origination (Envoy's UpstreamTlsContext): every
// connection to its endpoints is TLS, made with these settings. It is
// comparable, so that an endpoint is kept across configurations that do
// not change it.
type TLS struct {
	// ServerName is sent as SNI, and is the name the server's
	// certificate must carry when SANs is empty.
	ServerName string
	// Verify checks the server's certificate: its chain against the roots
	// in CAFile (PEM), or the system's roots when CAFile is empty, and its
	// names.
	Verify bool
	CAFile string
	// SANs, separated by newlines, are the names (DNS names or URIs) of
	// which the server's certificate must carry one; empty: ServerName,
	// if set.
	SANs string
	// CertFile and KeyFile, when set, are the client certificate chain and
	// key (PEM) presented to the server: mutual TLS.
	CertFile, KeyFile string
}

// Config reads the files t names and returns the client configuration
// its connections use.
func (t *TLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: t.ServerName,
		MinVersion: tls.VersionTLS12,
		// The chain and the names are checked by VerifyConnection, which
		// matches SANs rather than ServerName when they are set.
		InsecureSkipVerify: true,
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
		if sans == nil {
			opts.DNSName = t.ServerName
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
	return slices.ContainsFunc(c.DNSNames, func(n string) bool { return slices.Contains(names, n) })
}

// tlsDial wraps dial: each connection it makes does the TLS handshake
// with cfg (within timeout) before it is used. cfgErr, when set, fails
// every dial (a certificate file that could not be read).
func tlsDial(dial func(context.Context) (net.Conn, error), cfg *tls.Config, cfgErr error, addr string, timeout time.Duration) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		if cfgErr != nil {
			return nil, fmt.Errorf("TLS to %s: %w", addr, cfgErr)
		}
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}
