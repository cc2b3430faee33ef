package upstream

import (
	"context"
	"math"
	"net"
	"net/http"
)

// Protocol is the HTTP version a cluster speaks to its endpoints, as the
// cluster's upstream HTTP protocol options choose it.
type Protocol uint8

const (
	// HTTP1 is HTTP/1.1 (explicit_http_config.http_protocol_options, or
	// no options).
	HTTP1 Protocol = iota
	// HTTP2 is HTTP/2 over cleartext with prior knowledge
	// (explicit_http_config.http2_protocol_options).
	HTTP2
	// Downstream is the version the request came in with
	// (use_downstream_protocol_config).
	Downstream
)

func (p Protocol) String() string {
	switch p {
	case HTTP2:
		return "HTTP/2"
	case Downstream:
		return "the downstream's"
	}
	return "HTTP/1.1"
}

// useH2 reports whether req goes to the endpoint over HTTP/2. A request
// that asks to switch protocols (Upgrade, as WebSocket does) or a CONNECT
// keeps HTTP/1.1: HTTP/2 cannot carry either as such.
func (e *Endpoint) useH2(req *http.Request) bool {
	switch e.set.protocol {
	case HTTP2:
	case Downstream:
		if req.ProtoMajor != 2 {
			return false
		}
	default:
		return false
	}
	return req.Method != http.MethodConnect && len(req.Header["Upgrade"]) == 0
}

// h2Transport returns the endpoint's HTTP/2 Transport (cleartext, prior
// knowledge), making it on first use. Requests share its connection up to
// the server's limit on concurrent streams; its connections count against
// the cluster's max_connections as the lean pool's do.
func (e *Endpoint) h2Transport() *http.Transport {
	if t := e.transport2.Load(); t != nil {
		return t
	}
	set, h1, stats := e.set, e.h1, e.cb.stats
	idle := set.idleTimeout
	if idle == math.MaxInt64 {
		idle = 0 // the Transport's "no limit"
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	t := &http.Transport{
		Proxy: nil, // never HTTP_PROXY from the environment: it usually points here
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := h1.dialForTransport(ctx, set.connectTimeout)
			if err == nil {
				stats.cxHTTP2.Add(1)
			}
			return c, err
		},
		IdleConnTimeout: idle,
		// max_requests_per_connection 1 means a connection per request;
		// other limits are not applied over HTTP/2 yet.
		DisableKeepAlives:  set.maxUses == 1,
		DisableCompression: true, // pass Content-Encoding through untouched
		Protocols:          p,
		// One dial at a time: requests that find no connection wait for
		// the one being dialed and share it, rather than each dialing
		// its own (net/http's HTTP/2 over cleartext otherwise does). A
		// connection whose streams are all in use still gets company.
		MaxConnsPerHost: 1,
	}
	if !e.transport2.CompareAndSwap(nil, t) {
		return e.transport2.Load() // another request made it first
	}
	return t
}
