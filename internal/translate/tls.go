package translate

import (
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"istio.io/api/networking/v1alpha3"
)

// tlsTransportSocket is the name of Envoy's TLS transport socket.
const tlsTransportSocket = "envoy.transport_sockets.tls"

// applyTLS has the cluster originate TLS to its endpoints as a
// DestinationRule's tls settings say: SIMPLE checks the server's
// certificate chain against caCertificates (without them, the system's
// roots: system_root_certs) and its names against subjectAltNames, or the
// server name sent when there are none, unless insecureSkipVerify; MUTUAL
// also presents clientCertificate and privateKey. The server name sent
// (SNI) is sni, or the service's host when it is not a wildcard (with a
// wildcard host and neither sni nor subjectAltNames, only the chain is
// checked, and config analysis warns). DISABLE and
// nil leave the connections plain, and so do ISTIO_MUTUAL (the mesh's own
// mutual TLS) and credentialName, which Weft does not support yet (config
// analysis warns).
func applyTLS(c *clusterv3.Cluster, s *v1alpha3.ClientTLSSettings, host string) {
	mode := s.GetMode()
	if mode != v1alpha3.ClientTLSSettings_SIMPLE && mode != v1alpha3.ClientTLSSettings_MUTUAL || s.GetCredentialName() != "" {
		return
	}
	ctx := &tlsv3.UpstreamTlsContext{Sni: s.GetSni(), CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if ctx.Sni == "" && !strings.HasPrefix(host, "*") {
		ctx.Sni = host
	}
	if !s.GetInsecureSkipVerify().GetValue() {
		vc := &tlsv3.CertificateValidationContext{}
		if ca := s.GetCaCertificates(); ca != "" {
			vc.TrustedCa = fileSource(ca)
		} else {
			vc.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
		}
		sans := s.GetSubjectAltNames()
		if len(sans) == 0 && ctx.Sni != "" {
			// Envoy checks a certificate's names only against SAN
			// matchers: without any, the server name sent must be one.
			sans = []string{ctx.Sni}
		}
		for _, san := range sans {
			typ := tlsv3.SubjectAltNameMatcher_DNS
			if strings.Contains(san, "://") {
				typ = tlsv3.SubjectAltNameMatcher_URI
			}
			vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
				SanType: typ,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
			})
		}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	if mode == v1alpha3.ClientTLSSettings_MUTUAL {
		ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(s.GetClientCertificate()),
			PrivateKey:       fileSource(s.GetPrivateKey()),
		}}
	}
	c.TransportSocket = &corev3.TransportSocket{
		Name:       tlsTransportSocket,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}

// fileSource is a data source read from a file on the proxy's machine.
func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// servesTLSFromFiles reports whether an HTTPS Gateway server's tls
// settings are what Weft terminates: SIMPLE, with serverCertificate and
// privateKey files and no credentialName.
func servesTLSFromFiles(t *v1alpha3.ServerTLSSettings) bool {
	return t.GetMode() == v1alpha3.ServerTLSSettings_SIMPLE && t.GetCredentialName() == "" &&
		t.GetServerCertificate() != "" && t.GetPrivateKey() != ""
}

// serverTLSSocket terminates TLS with an HTTPS server's certificate and
// key files, offering HTTP/2 and HTTP/1.1 by ALPN, as Istio's gateways do.
func serverTLSSocket(t *v1alpha3.ServerTLSSettings) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(t.GetServerCertificate()),
			PrivateKey:       fileSource(t.GetPrivateKey()),
		}},
		AlpnProtocols: []string{"h2", "http/1.1"},
	}}
	return &corev3.TransportSocket{
		Name:       tlsTransportSocket,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)},
	}
}
