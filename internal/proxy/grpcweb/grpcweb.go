// Package grpcweb is weft-proxy's gRPC-Web filter, Envoy's
// envoy.filters.http.grpc_web: it lets a browser's gRPC-Web client call a
// gRPC server, by the gRPC-Web protocol
// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md).
//
// A request whose Content-Type is application/grpc-web (binary, "+proto"
// and the like) or application/grpc-web-text (base64) goes on as a gRPC
// request: Content-Type application/grpc with the same suffix, the body
// decoded from base64 for the text form (any base64 group may be padded,
// and a small body is decoded whole first, so that invalid base64 is
// refused before the request goes on), and "TE: trailers". The response goes back as gRPC-Web: its Content-Type
// application/grpc-web or application/grpc-web-text with the response's
// suffix, its messages as they come (base64 for the text form), and its
// trailers as a last message flagged 0x80 whose payload is the trailer
// fields as "name:value\r\n" lines, since a browser cannot read HTTP
// trailers. A trailers-only answer (grpc-status in the head, no body)
// passes as it is, and an answer that is not gRPC (an error page) becomes
// one, its HTTP status mapped to a grpc-status and its body the
// grpc-message, as Envoy does. Other requests pass untouched.
//
// Like the other filters, a Filter is immutable and safe for concurrent
// use; a request that is not gRPC-Web costs a header lookup.
package grpcweb

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/grpcreply"
)

// Filter converts gRPC-Web exchanges to gRPC for Next.
type Filter struct{ next chain.Handler }

// New returns a Filter in front of next.
func New(next chain.Handler) *Filter { return &Filter{next: next} }

const (
	ctWeb     = "application/grpc-web"
	ctWebText = "application/grpc-web-text"
	ctGRPC    = "application/grpc"
)

// Header values shared by every converted request: a handler changing a
// header replaces its value slice (see package chain).
var (
	valTrailers = []string{"trailers"}
	valIdentity = []string{"identity"}
)

// Serve implements chain.Handler.
func (f *Filter) Serve(x *chain.Exchange) {
	r := x.R
	ct := r.Header["Content-Type"]
	if len(ct) == 0 || !strings.HasPrefix(ct[0], ctWeb) {
		f.next.Serve(x)
		return
	}
	text, suffix := false, ""
	switch rest := ct[0][len(ctWeb):]; {
	case strings.HasPrefix(rest, "-text"):
		text, suffix = true, rest[len("-text"):]
	default:
		suffix = rest
	}
	if suffix != "" && suffix[0] != '+' && suffix[0] != ';' {
		f.next.Serve(x) // application/grpc-webfoo: not ours
		return
	}
	h := r.Header
	h["Content-Type"] = []string{ctGRPC + suffix}
	h["Te"] = valTrailers
	delete(h, "Content-Length")
	if len(h["Grpc-Accept-Encoding"]) == 0 {
		// A browser cannot decompress messages itself.
		h["Grpc-Accept-Encoding"] = valIdentity
	}
	// The answer is text when the client asks for it, as in Envoy: by
	// Accept, whatever the request's own form (gRPC-Web's text clients
	// send "Accept: application/grpc-web-text").
	textOut := len(h["Accept"]) > 0 && (h["Accept"][0] == ctWebText || h["Accept"][0] == ctWebText+"+proto")
	w := &writer{ResponseWriter: x.W, text: textOut}
	x.W = w
	defer func() { x.W = w.ResponseWriter }()
	if text {
		if err := decodeBody(r); err != nil {
			// As Envoy: a 400, which the writer turns into a gRPC-Web
			// answer (grpc-status 13, INTERNAL) saying what was wrong.
			w.Header()["Content-Type"] = []string{"text/plain"}
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "Bad gRPC-web request: "+err.Error())
			w.finish()
			return
		}
	}
	f.next.Serve(x)
	w.finish()
}

// maxDecodedAtOnce bounds the text request bodies read and decoded whole
// before the request goes on (a unary call's is a few hundred bytes).
const maxDecodedAtOnce = 64 << 10

// decodeBody replaces the base64 body of a text request with the bytes it
// stands for. A body of known length up to maxDecodedAtOnce is decoded
// whole, so that invalid base64 is refused before anything is sent
// upstream and the decoded body has a length; a larger or streamed one is
// decoded as it is read, and invalid base64 in it fails the request's body
// upstream.
func decodeBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		r.ContentLength = 0
		return nil
	}
	if r.ContentLength < 0 || r.ContentLength > maxDecodedAtOnce {
		r.Body = &textBody{src: r.Body}
		r.ContentLength = -1
		return nil
	}
	raw := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, raw)
	r.Body.Close()
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	dec, rest, err := decodeText(make([]byte, 0, base64.StdEncoding.DecodedLen(len(raw))), raw, 0)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return errUnfinished(len(raw))
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(dec)), int64(len(dec))
	return nil
}

// decodeText appends to dst, which must have room for it, what src decodes
// to, and returns the bytes of src it did not take (at most three: a group
// not yet whole). Base64 comes
// in groups of four characters, and any group may end in padding: a client
// may send its messages as chunks padded one by one, which one decoder
// over the whole would refuse. off is src's offset in the body, for the
// error.
func decodeText(dst, src []byte, off int) ([]byte, []byte, error) {
	for len(src) >= 4 {
		end := len(src) &^ 3
		if i := bytes.IndexByte(src[:end], '='); i >= 0 {
			end = min(end, i&^3+4) // through the padded group
		}
		if i := bytes.IndexAny(src[:end], "\r\n"); i >= 0 {
			// The standard decoder would skip them, and the groups counted
			// here would no longer be its groups; Envoy refuses them too.
			return dst, src, fmt.Errorf("invalid base64 at byte %d of the body (a line break)", off+i)
		}
		n, err := base64.StdEncoding.Decode(dst[len(dst):cap(dst)], src[:end])
		if err != nil {
			var bad base64.CorruptInputError
			if errors.As(err, &bad) {
				return dst, src, fmt.Errorf("invalid base64 at byte %d of the body", off+int(bad))
			}
			return dst, src, err
		}
		dst, src, off = dst[:len(dst)+n], src[end:], off+end
	}
	return dst, src, nil
}

// errUnfinished is the error of a body of n characters whose last base64
// group is cut short.
func errUnfinished(n int) error {
	return fmt.Errorf("the body's %d characters of base64 are not a whole number of groups of 4", n)
}

// textBody decodes a base64 request body as it is read, and closes the
// original.
type textBody struct {
	src   io.ReadCloser
	left  [3]byte // read, not yet decoded: a group not yet whole
	nleft int
	out   []byte // decoded, not yet returned
	off   int    // bytes of the body decoded
	err   error
	buf   [4 << 10]byte
	dbuf  [3 << 10]byte
}

func (b *textBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			if b.err == io.EOF && b.nleft > 0 {
				b.err = errUnfinished(b.off + b.nleft)
			}
			return 0, b.err
		}
		n := copy(b.buf[:], b.left[:b.nleft])
		m, err := b.src.Read(b.buf[n:])
		b.err = err
		dec, rest, derr := decodeText(b.dbuf[:0], b.buf[:n+m], b.off)
		if derr != nil {
			b.err = derr
			return 0, derr
		}
		b.off += n + m - len(rest)
		b.nleft = copy(b.left[:], rest)
		b.out = dec
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *textBody) Close() error { return b.src.Close() }

// writer turns a gRPC response into a gRPC-Web one.
type writer struct {
	http.ResponseWriter
	text        bool
	wroteHeader bool
	enc         io.WriteCloser // base64 encoder over ResponseWriter (text)
	// plain is set for an answer that is not gRPC (an error page): its
	// status and the start of its body become a gRPC-Web trailers-only
	// answer at finish, as Envoy makes them.
	plain  bool
	status int
	body   []byte
}

// maxMessage bounds the grpc-message taken from a non-gRPC answer's body.
const maxMessage = 16 << 10

func (w *writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	h := w.Header()
	ct := h["Content-Type"]
	if len(ct) == 0 || !strings.HasPrefix(ct[0], ctGRPC) {
		w.plain, w.status = true, code
		return // answered at finish
	}
	h["Content-Type"] = []string{w.webType() + ct[0][len(ctGRPC):]}
	// The body grows by the trailer message (and by base64).
	delete(h, "Content-Length")
	w.ResponseWriter.WriteHeader(code)
}

// webType is the content type of the answer, without a suffix.
func (w *writer) webType() string {
	if w.text {
		return ctWebText
	}
	return ctWeb
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.plain {
		if room := maxMessage - len(w.body); room > 0 {
			w.body = append(w.body, p[:min(len(p), room)]...)
		}
		return len(p), nil
	}
	if !w.text {
		return w.ResponseWriter.Write(p)
	}
	if w.enc == nil {
		w.enc = base64.NewEncoder(base64.StdEncoding, w.ResponseWriter)
	}
	return w.enc.Write(p)
}

// Flush sends what has been written. In the text form that ends a base64
// chunk (with padding, which the protocol allows between chunks), so that
// a streamed message is not held back waiting for the next.
func (w *writer) Flush() {
	if w.plain {
		return
	}
	if w.enc != nil {
		w.enc.Close()
		w.enc = nil
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the trailers as the last message, once the handler is done.
func (w *writer) finish() {
	h := w.Header()
	var names []string
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			names = append(names, k)
		}
	}
	if w.plain {
		// A trailers-only gRPC-Web answer saying what the error page said.
		for _, k := range names {
			delete(h, k)
		}
		delete(h, "Content-Length")
		grpcreply.SetHeader(h, grpcreply.FromHTTP(w.status), string(w.body))
		h["Content-Type"] = []string{w.webType()}
		w.ResponseWriter.WriteHeader(http.StatusOK)
		return
	}
	if len(names) == 0 {
		if w.enc != nil {
			w.enc.Close()
		}
		return // a trailers-only answer, or no gRPC response at all
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	sort.Strings(names)
	var block strings.Builder
	for _, k := range names {
		for _, v := range h[k] {
			block.WriteString(strings.ToLower(k[len(http.TrailerPrefix):]))
			block.WriteByte(':')
			block.WriteString(v)
			block.WriteString("\r\n")
		}
		delete(h, k) // sent as a message, not as HTTP trailers
	}
	var head [5]byte
	head[0] = 0x80
	binary.BigEndian.PutUint32(head[1:], uint32(block.Len()))
	w.Write(head[:])
	io.WriteString(w, block.String())
	if w.enc != nil {
		w.enc.Close()
	}
}
