package grpcweb

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/chain"
)

// frame is a gRPC length-prefixed message with flags.
func frame(flags byte, payload string) []byte {
	b := make([]byte, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	copy(b[5:], payload)
	return b
}

// echo is a gRPC server as the filter's next handler sees one: it records
// the request and answers with its body as one message, then trailers.
type echo struct {
	ctype, te, clen string
	body            []byte
}

func (e *echo) Serve(x *chain.Exchange) {
	r, w := x.R, x.W
	e.ctype, e.te, e.clen = r.Header.Get("Content-Type"), r.Header.Get("Te"), r.Header.Get("Content-Length")
	e.body, _ = io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/grpc+proto")
	w.Header().Set("Content-Length", "999") // wrong once converted: must go
	w.WriteHeader(http.StatusOK)
	w.Write(e.body)
	w.(http.Flusher).Flush()
	w.Header()[http.TrailerPrefix+"Grpc-Status"] = []string{"0"}
	w.Header()[http.TrailerPrefix+"Grpc-Message"] = []string{"ok"}
}

func TestGRPCWebBinaryAndText(t *testing.T) {
	msg := string(frame(0, "hello"))
	for _, tc := range []struct {
		name, ctype, body, wantType string
		text                        bool
	}{
		{"binary", "application/grpc-web+proto", msg, "application/grpc-web+proto", false},
		{"binary without suffix", "application/grpc-web", msg, "application/grpc-web+proto", false},
		{"text", "application/grpc-web-text+proto", base64.StdEncoding.EncodeToString([]byte(msg)), "application/grpc-web-text+proto", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &echo{}
			f := New(e)
			r := httptest.NewRequest("POST", "/pkg.Service/Method", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ctype)
			r.Header.Set("Content-Length", "123")
			if tc.text {
				r.Header.Set("Accept", "application/grpc-web-text") // as text clients send it
			}
			w := httptest.NewRecorder()
			x := &chain.Exchange{W: w, R: r}
			f.Serve(x)
			if x.W != w {
				t.Error("the exchange's writer was not restored")
			}
			wantUp := "application/grpc" + strings.TrimPrefix(strings.TrimPrefix(tc.ctype, "application/grpc-web"), "-text")
			if e.ctype != wantUp || e.te != "trailers" || e.clen != "" || string(e.body) != msg {
				t.Errorf("upstream saw Content-Type %q, TE %q, Content-Length %q, body %q; want %q, trailers, none, the message",
					e.ctype, e.te, e.clen, e.body, wantUp)
			}
			resp := w.Result()
			if got := resp.Header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("response Content-Type %q, want %q", got, tc.wantType)
			}
			if resp.Header.Get("Content-Length") != "" || len(resp.Trailer) != 0 || resp.Header.Get("Trailer:Grpc-Status") != "" {
				t.Errorf("response has Content-Length %q, trailers %v: the trailers belong in the body", resp.Header.Get("Content-Length"), resp.Trailer)
			}
			body := w.Body.Bytes()
			if tc.text {
				body = decodeChunks(t, string(body))
			}
			want := append([]byte(msg), frame(0x80, "grpc-message:ok\r\ngrpc-status:0\r\n")...)
			if !bytes.Equal(body, want) {
				t.Errorf("response body %q, want the message then the trailer message %q", body, want)
			}
		})
	}
}

// decodeChunks decodes base64 text made of padded chunks, as a gRPC-Web
// text answer is: every group of four characters decodes on its own.
func decodeChunks(t *testing.T, s string) []byte {
	t.Helper()
	if len(s)%4 != 0 {
		t.Fatalf("base64 text of %d characters: %q", len(s), s)
	}
	var out []byte
	for i := 0; i < len(s); i += 4 {
		b, err := base64.StdEncoding.DecodeString(s[i : i+4])
		if err != nil {
			t.Fatalf("not base64 at %d: %v (%q)", i, err, s)
		}
		out = append(out, b...)
	}
	return out
}

// TestGRPCWebTextStreams: in the text form a flushed message reaches the
// client whole, before the next one is written.
func TestGRPCWebTextStreams(t *testing.T) {
	msg := frame(0, "hello") // 10 bytes: not a whole number of base64 groups
	var seen []byte
	var w *httptest.ResponseRecorder
	f := New(chain.HandlerFunc(func(x *chain.Exchange) {
		x.W.Header().Set("Content-Type", "application/grpc")
		x.W.Write(msg)
		http.NewResponseController(x.W).Flush()
		seen = decodeChunks(t, w.Body.String())
		x.W.Header()[http.TrailerPrefix+"Grpc-Status"] = []string{"0"}
	}))
	r := httptest.NewRequest("POST", "/pkg.Service/Watch", strings.NewReader(base64.StdEncoding.EncodeToString(frame(0, ""))))
	r.Header.Set("Content-Type", "application/grpc-web-text")
	r.Header.Set("Accept", "application/grpc-web-text")
	w = httptest.NewRecorder()
	f.Serve(&chain.Exchange{W: w, R: r})
	if !bytes.Equal(seen, msg) {
		t.Errorf("after the flush the client had %q, want the whole message %q", seen, msg)
	}
	if got, want := decodeChunks(t, w.Body.String()), append(msg, frame(0x80, "grpc-status:0\r\n")...); !bytes.Equal(got, want) {
		t.Errorf("whole answer %q, want %q", got, want)
	}
}

// TestGRPCWebNonGRPCAnswer: an answer that is not gRPC (an error page)
// becomes a trailers-only gRPC-Web answer saying what it said; a binary
// request that accepts text gets text.
func TestGRPCWebNonGRPCAnswer(t *testing.T) {
	f := New(chain.HandlerFunc(func(x *chain.Exchange) {
		x.W.Header().Set("Content-Type", "text/plain")
		x.W.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(x.W, "upstream is down\n")
	}))
	r := httptest.NewRequest("POST", "/pkg.Service/Method", strings.NewReader(string(frame(0, ""))))
	r.Header.Set("Content-Type", "application/grpc-web+proto")
	r.Header.Set("Accept", "application/grpc-web-text")
	w := httptest.NewRecorder()
	f.Serve(&chain.Exchange{W: w, R: r})
	h := w.Header()
	if w.Code != http.StatusOK || h.Get("Content-Type") != "application/grpc-web-text" || h.Get("Grpc-Status") != "14" ||
		h.Get("Grpc-Message") != "upstream is down%0A" || w.Body.Len() != 0 {
		t.Errorf("got %d, Content-Type %q, grpc-status %q, grpc-message %q, body %q; want 200, grpc-web-text, 14, the page's text, no body",
			w.Code, h.Get("Content-Type"), h.Get("Grpc-Status"), h.Get("Grpc-Message"), w.Body.Bytes())
	}
	if got := r.Header.Get("Grpc-Accept-Encoding"); got != "identity" {
		t.Errorf("upstream request grpc-accept-encoding %q, want identity (a browser does not decompress)", got)
	}
}

// TestGRPCWebOthersUntouched: requests that are not gRPC-Web, and a
// trailers-only answer, pass as they are.
func TestGRPCWebOthersUntouched(t *testing.T) {
	for _, ct := range []string{"", "application/grpc", "application/json", "application/grpc-webfoo"} {
		var saw string
		f := New(chain.HandlerFunc(func(x *chain.Exchange) { saw = x.R.Header.Get("Content-Type"); io.WriteString(x.W, "plain") }))
		r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		f.Serve(&chain.Exchange{W: w, R: r})
		if saw != ct || w.Body.String() != "plain" || r.Header.Get("Te") != "" {
			t.Errorf("Content-Type %q: handler saw %q, answered %q, TE %q; want it untouched", ct, saw, w.Body.String(), r.Header.Get("Te"))
		}
	}

	f := New(chain.HandlerFunc(func(x *chain.Exchange) {
		h := x.W.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "14")
		h.Set("Grpc-Message", "no healthy upstream")
		x.W.WriteHeader(http.StatusOK)
	}))
	r := httptest.NewRequest("POST", "/pkg.Service/Method", strings.NewReader(string(frame(0, ""))))
	r.Header.Set("Content-Type", "application/grpc-web+proto")
	w := httptest.NewRecorder()
	f.Serve(&chain.Exchange{W: w, R: r})
	if w.Code != 200 || w.Header().Get("Grpc-Status") != "14" || w.Header().Get("Content-Type") != "application/grpc-web" || w.Body.Len() != 0 {
		t.Errorf("trailers-only answer: %d, grpc-status %q, Content-Type %q, body %q; want it passed on in the head",
			w.Code, w.Header().Get("Grpc-Status"), w.Header().Get("Content-Type"), w.Body.Bytes())
	}
}

// A text request without Accept gets a binary answer, as from Envoy: the
// answer's form follows Accept alone.
func TestGRPCWebTextRequestBinaryAnswer(t *testing.T) {
	e := &echo{}
	r := httptest.NewRequest("POST", "/pkg.Service/Method", strings.NewReader(base64.StdEncoding.EncodeToString(frame(0, "hi"))))
	r.Header.Set("Content-Type", "application/grpc-web-text")
	w := httptest.NewRecorder()
	New(e).Serve(&chain.Exchange{W: w, R: r})
	if ct := w.Result().Header.Get("Content-Type"); ct != "application/grpc-web+proto" || !bytes.HasPrefix(w.Body.Bytes(), frame(0, "hi")) {
		t.Errorf("answer %q, body %q; want application/grpc-web+proto with the message as it is", ct, w.Body.Bytes())
	}
}

// A text request may come as chunks padded one by one (a streaming client
// encodes each message on its own); decoded whole or as it is read, the
// upstream sees the messages back to back.
func TestGRPCWebTextPaddedChunks(t *testing.T) {
	m1, m2 := frame(0, "a"), frame(0, "hello there")
	enc := base64.StdEncoding.EncodeToString
	body := enc(m1) + enc(m2) // "AAAAAAFh" has no padding, the second has
	if !strings.Contains(enc(m2), "=") {
		t.Fatal("the test wants a padded chunk")
	}
	body = enc(frame(0, "ab")) + body // a padded chunk first
	want := string(frame(0, "ab")) + string(m1) + string(m2)
	for _, tc := range []struct {
		name   string
		length int64 // -1: streamed
	}{{"known length", int64(len(body))}, {"streamed", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			e := &echo{}
			r := httptest.NewRequest("POST", "/pkg.Service/Method", io.NopCloser(iotestHalfReader{strings.NewReader(body)}))
			r.ContentLength = tc.length
			r.Header.Set("Content-Type", "application/grpc-web-text")
			w := httptest.NewRecorder()
			New(e).Serve(&chain.Exchange{W: w, R: r})
			if string(e.body) != want {
				t.Fatalf("upstream got %q, want %q", e.body, want)
			}
		})
	}
}

// iotestHalfReader reads at most 3 bytes at a time, so that base64 groups
// straddle reads.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:min(len(p), 3)]) }

// Invalid base64 in a text request of known length is refused before
// anything goes upstream, with a gRPC-Web answer that says where, as
// Envoy answers it (400, so grpc-status 13).
func TestGRPCWebTextInvalid(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"bad character", "AAAA*AAA", "invalid base64 at byte 4 of the body"},
		{"cut short", "AAAAAAFhY", "the body's 9 characters of base64 are not a whole number of groups of 4"},
		{"line break", "AAAA\nAAA", "invalid base64 at byte 4 of the body (a line break)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			next := chain.HandlerFunc(func(x *chain.Exchange) { called = true })
			r := httptest.NewRequest("POST", "/pkg.Service/Method", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/grpc-web-text")
			r.Header.Set("Accept", "application/grpc-web-text")
			w := httptest.NewRecorder()
			New(next).Serve(&chain.Exchange{W: w, R: r})
			if called {
				t.Fatal("an invalid body went upstream")
			}
			h := w.Result().Header
			if w.Code != http.StatusOK || h.Get("Grpc-Status") != "13" || !strings.Contains(h.Get("Grpc-Message"), tc.want) ||
				h.Get("Content-Type") != "application/grpc-web-text" {
				t.Fatalf("answer %d, Content-Type %q, grpc-status %q, grpc-message %q; want 200, text, 13 and a message with %q",
					w.Code, h.Get("Content-Type"), h.Get("Grpc-Status"), h.Get("Grpc-Message"), tc.want)
			}
		})
	}
}

// A streamed text body is decoded as it is read: invalid base64 in it
// fails the read, with the same message.
func TestGRPCWebTextInvalidStreamed(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"AAAAAAAA*AAA", "invalid base64 at byte 8 of the body"},
		{"AAAAAAFhY", "the body's 9 characters of base64 are not a whole number of groups of 4"},
	} {
		var got error
		next := chain.HandlerFunc(func(x *chain.Exchange) { _, got = io.ReadAll(x.R.Body) })
		r := httptest.NewRequest("POST", "/pkg.Service/Method", io.NopCloser(iotestHalfReader{strings.NewReader(tc.body)}))
		r.ContentLength = -1
		r.Header.Set("Content-Type", "application/grpc-web-text")
		New(next).Serve(&chain.Exchange{W: httptest.NewRecorder(), R: r})
		if got == nil || got.Error() != tc.want {
			t.Errorf("body %q: read error %v, want %q", tc.body, got, tc.want)
		}
	}
}
