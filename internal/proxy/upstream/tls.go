package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
// with t's configuration (within timeout) before it is used, offering
// ALPN h2 when the dial is for the HTTP/2 pool (see withH2), and nothing
// for HTTP/1.1, as Envoy offers per connection pool. The configuration is
// made on the first dial, and made again when a file it read has changed
// since (a rotated certificate or CA takes effect on the next connection);
// while the files cannot be read (or are half written), the last good
// configuration is kept, and with none, the dial fails saying why.
func tlsDial(dial func(context.Context) (net.Conn, error), t TLS, addr string, timeout time.Duration) func(context.Context) (net.Conn, error) {
	var made atomic.Pointer[madeTLS]
	return func(ctx context.Context) (net.Conn, error) {
		m := made.Load()
		if stamp := t.filesStamp(); m == nil || m.stamp != stamp {
			cfg, err := t.Config()
			switch {
			case err == nil:
				h2 := cfg.Clone()
				h2.NextProtos = []string{"h2"}
				m = &madeTLS{h1: cfg, h2: h2, stamp: stamp}
				made.Store(m)
			case m == nil:
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("TLS to %s: %w", addr, err)}
			}
		}
		cfg := m.h1
		if ctx.Value(h2DialKey{}) != nil {
			cfg = m.h2
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
			// A connection that fails its handshake is a connect failure,
			// as in Envoy (retried as one, counted as one by outlier
			// detection).
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: fmt.Errorf("TLS handshake: %w", err)}
		}
		return tc, nil
	}
}

// h2DialKey marks the context of a dial for the HTTP/2 pool.
type h2DialKey struct{}

// withH2 marks ctx as a dial for an HTTP/2 connection.
func withH2(ctx context.Context) context.Context { return context.WithValue(ctx, h2DialKey{}, true) }

// madeTLS is a configuration (for HTTP/1.1 and for HTTP/2 connections)
// and a digest of the files it was made from.
type madeTLS struct {
	h1, h2 *tls.Config
	stamp  [sha256.Size]byte
}

// filesStamp is a digest of the files t names (a missing one counts as
// such), so that any change shows, whatever the file system's clock. The
// files are small, and read once per new connection, beside a TLS
// handshake that costs far more.
func (t *TLS) filesStamp() [sha256.Size]byte {
	h := sha256.New()
	for _, f := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if f == "" {
			continue
		}
		if data, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(h, "%d:", len(data))
			h.Write(data)
		} else {
			io.WriteString(h, "-")
		}
		io.WriteString(h, ";")
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
