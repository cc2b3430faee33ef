package model

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	tcpproxyv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/matcher/v3"
)

// tlsSocket is a transport socket holding the encoded UpstreamTlsContext b.
func tlsSocket(b []byte) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: nameTLS, ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: &anypb.Any{TypeUrl: typeUpstreamTLS, Value: b}}}
}

func encode(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TLS settings weft-proxy does not act on are refused, not half applied:
// an Istio-style context (SDS, a combined validation context, ALPN) must
// not pass as TLS that checks nothing. The fields are written by number,
// as a control plane with Envoy's full types would send them.
func TestUpstreamTLSRefusesWhatItCannotApply(t *testing.T) {
	withField := func(m proto.Message, num protowire.Number, value string) []byte {
		b := encode(t, m)
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendString(b, value)
	}
	common := func(inner []byte) []byte {
		b := protowire.AppendTag(nil, 1, protowire.BytesType) // common_tls_context
		return protowire.AppendBytes(b, inner)
	}
	ignoreCase := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a.example.com"}, IgnoreCase: true}}},
		}},
	}}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"ALPN (common_tls_context field 4, applied to servers only)", common(withField(&tlsv3.CommonTlsContext{}, 4, "h2")), "common_tls_context.alpn_protocols"},
		{"combined validation context (field 8)", common(withField(&tlsv3.CommonTlsContext{}, 8, "")), "common_tls_context.field 8 of CommonTlsContext"},
		{"SDS for the certificate (field 6)", common(withField(&tlsv3.CommonTlsContext{}, 6, "")), "common_tls_context.field 6 of CommonTlsContext"},
		{"a field of a known type weft-proxy does not apply", encode(t, ignoreCase), "match_typed_subject_alt_names[0].matcher.ignore_case"},
	} {
		_, err := compileUpstreamTLS(tlsSocket(tc.b))
		if err == nil || !strings.Contains(err.Error(), tc.want+" is not supported by weft-proxy") {
			t.Errorf("%s: %v, want a refusal naming %s", tc.name, err, tc.want)
		}
	}
}

// Envoy's meanings: a trust anchor makes the chain checked, SAN matchers
// the names; the files are not read here (a connection fails without them).
func TestUpstreamTLSSettings(t *testing.T) {
	got, err := compileUpstreamTLS(tlsSocket(encode(t, &tlsv3.UpstreamTlsContext{Sni: "api.example.com", CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{},
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "api.example.com"}}}},
		}},
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/no/such/cert.pem"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/no/such/key.pem"}},
		}},
	}})))
	if err != nil || got.ServerName != "api.example.com" || !got.Verify || got.CAFile != "" || got.SANs != "api.example.com" || got.CertFile != "/no/such/cert.pem" {
		t.Errorf("system roots, a SAN, client files: %+v, %v", got, err)
	}
	got, err = compileUpstreamTLS(tlsSocket(encode(t, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{}},
	}})))
	if err != nil || got.Verify {
		t.Errorf("a validation context without a trust anchor: %+v, %v; want no chain check, as Envoy", got, err)
	}
}

// TLS termination: one certificate and key from files, and ALPN; anything
// else (client certificates required, SDS) is refused.
func TestDownstreamTLS(t *testing.T) {
	ok := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/c.pem"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/k.pem"}},
		}},
		AlpnProtocols: []string{"h2", "http/1.1"},
	}}
	socket := func(b []byte) *corev3.TransportSocket {
		return &corev3.TransportSocket{Name: nameTLS, ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: &anypb.Any{TypeUrl: typeDownstreamTLS, Value: b}}}
	}
	got, err := compileDownstreamTLS(socket(encode(t, ok)))
	if err != nil || got.CertFile != "/c.pem" || got.KeyFile != "/k.pem" || strings.Join(got.ALPN, ",") != "h2,http/1.1" {
		t.Fatalf("compileDownstreamTLS = %+v, %v", got, err)
	}
	// require_client_certificate is field 2 of DownstreamTlsContext.
	b := encode(t, ok)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1))
	if _, err := compileDownstreamTLS(socket(b)); err == nil || !strings.Contains(err.Error(), "is not supported by weft-proxy") {
		t.Errorf("a context requiring client certificates: %v, want refused", err)
	}
	if _, err := compileDownstreamTLS(socket(encode(t, &tlsv3.DownstreamTlsContext{}))); err == nil || !strings.Contains(err.Error(), "exactly one certificate") {
		t.Errorf("a context without a certificate: %v, want refused", err)
	}
}

// TLS termination is for HTTP chains: on a tcp_proxy chain it would pass
// the TLS bytes through undecrypted, so it is refused.
func TestTLSOnATCPChainIsRefused(t *testing.T) {
	tp, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "t", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	tlsCtx := encode(t, &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/c.pem"}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/k.pem"}},
		}},
	}})
	fc := &listenerv3.FilterChain{
		TransportSocket: &corev3.TransportSocket{Name: nameTLS, ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: &anypb.Any{TypeUrl: typeDownstreamTLS, Value: tlsCtx}}},
		Filters: []*listenerv3.Filter{{Name: nameTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
	}
	if _, err := compileChain(fc, "filter_chains[0]"); err == nil || !strings.Contains(err.Error(), "tcp_proxy chain is not supported") {
		t.Fatalf("TLS on a tcp_proxy chain: %v, want refused", err)
	}
}
