// Package h2 is HTTP/2 over cleartext (h2c with prior knowledge) for the hop
// between two weft proxies: a client connection that multiplexes requests
// and a server that serves one connection's streams with an http.Handler.
//
// It is written for that hop's load rather than for every use of HTTP/2:
// every stream's frames go into one buffer that whichever goroutine finds
// the connection idle writes out, so that under load the frames of many
// requests leave in one system call and arrive in one read; headers are
// compressed with golang.org/x/net/http2/hpack, whose dynamic table turns
// the fields every request repeats into an index. It speaks the protocol
// as RFC 9113 says (settings, flow control, stream states, GOAWAY,
// RST_STREAM, PING), so either end may be another HTTP/2 implementation;
// what it leaves out is server push (it never pushes and refuses to be
// pushed to), priorities (ignored, as RFC 9113 allows) and TLS (the
// caller's net.Conn may be a tls.Conn).
//
// A request costs few allocations, as the HTTP/1.1 path's: a connection
// keeps the state of streams that have ended (the client's with its
// response header map, the server's with its URL) and gives it to the next
// request. A stream goes back only through the connection's read loop, as
// it goes to the socket holding no stream, once the connection and the
// caller (or the handler) are done with it and no context callback can
// still reach it. Each request gets a context and a Request or Response of
// its own, and a response body names the use of its stream, so whatever
// outlives a request sees it ended rather than the next one.
package h2
