package model

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
)

// ServerTLS is a filter chain's TLS termination (a DownstreamTlsContext
// with its certificate and key in files): connections are TLS, served with
// that certificate and offering ALPN. The files are looked at again for
// each handshake, so a rotated certificate is served from the next
// connection on; while they cannot be read (or do not make a pair), the
// last good certificate is kept, and with none, handshakes fail.
type ServerTLS struct {
	CertFile, KeyFile string
	ALPN              []string

	once sync.Once
	cfg  *tls.Config

	mu   sync.Mutex
	cert *tls.Certificate
	pem  []byte // the files' contents the certificate was made from
	bad  []byte // contents that did not make a pair (not parsed again)
}

// Config is the server configuration of the chain's connections: one for
// all of them, so that sessions can resume.
func (s *ServerTLS) Config() *tls.Config {
	s.once.Do(func() {
		s.cfg = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     s.ALPN,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate() },
		}
	})
	return s.cfg
}

// certificate loads the certificate and key, when their files changed.
func (s *ServerTLS) certificate() (*tls.Certificate, error) {
	certPEM, err1 := os.ReadFile(s.CertFile)
	keyPEM, err2 := os.ReadFile(s.KeyFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err1 == nil && err2 == nil {
		both := append(append(certPEM[:len(certPEM):len(certPEM)], 0), keyPEM...)
		if (s.cert == nil || !bytes.Equal(both, s.pem)) && !bytes.Equal(both, s.bad) {
			if c, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
				s.cert, s.pem, s.bad = &c, both, nil
			} else {
				s.bad = both
				if s.cert == nil {
					return nil, fmt.Errorf("server certificate %s with key %s: %w", s.CertFile, s.KeyFile, err)
				}
			}
		} else if s.cert == nil {
			return nil, fmt.Errorf("server certificate %s with key %s: they do not make a certificate and key pair", s.CertFile, s.KeyFile)
		}
	} else if s.cert == nil {
		return nil, fmt.Errorf("server certificate %s with key %s: %w", s.CertFile, s.KeyFile, errors.Join(err1, err2))
	}
	return s.cert, nil
}
