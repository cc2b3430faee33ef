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
