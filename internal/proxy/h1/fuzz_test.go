package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
	"testing/iotest"
)

// The differential fuzz tests feed the same bytes to net/http and to this
// package and require the same verdict, the same fields and the same body
// bytes, message after message on one connection (so that the reuse of
// objects and caches between messages is exercised too). The seed corpora
// under testdata/fuzz hold the cases that matter for request smuggling:
// Content-Length with Transfer-Encoding, duplicate and invalid lengths,
// transfer codings other than chunked, bad bytes, bare LF line endings,
// obs-fold, absolute-form, asterisk and authority-form targets, and heads
// larger than the read buffer.

// maxFuzzBody bounds the body bytes compared per message.
const maxFuzzBody = 64 << 10

// fuzzReaders returns two readers of data that behave alike: the buffer
// size and whether the source returns one byte at a time come from mode,
// so that heads straddle buffer refills in different ways.
func fuzzReaders(data []byte, mode uint16) (*bufio.Reader, *bufio.Reader) {
	return fuzzReader(data, mode), fuzzReader(data, mode)
}

// fuzzReader is one of fuzzReaders' readers.
func fuzzReader(data []byte, mode uint16) *bufio.Reader {
	size := []int{16, 64, 4096, 257}[mode&3]
	var src io.Reader = bytes.NewReader(data)
	if mode&4 != 0 {
		src = iotest.OneByteReader(src)
	}
	return bufio.NewReaderSize(src, size)
}

// sameError requires both parsers to fail alike: same message, and the
// same answer to the EOF checks callers make.
func sameError(t *testing.T, what string, want, got error) {
	t.Helper()
	if (want == nil) != (got == nil) {
		t.Fatalf("%s: net/http error %v, ours %v", what, want, got)
	}
	if want == nil {
		return
	}
	if want.Error() != got.Error() {
		t.Fatalf("%s: net/http error %q, ours %q", what, want, got)
	}
	for _, e := range []error{io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(want, e) != errors.Is(got, e) {
			t.Fatalf("%s: net/http error %v, ours %v (%v differs)", what, want, got, e)
		}
	}
}

// show formats v for a failure message, shortened.
func show(v any) string {
	s := fmt.Sprintf("%#v", v)
	if b, ok := v.([]byte); ok {
		s = fmt.Sprintf("%q", b)
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// readBody reads up to maxFuzzBody bytes of b.
func readBody(b io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(b, maxFuzzBody))
}

func FuzzRequestHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(0))
	f.Fuzz(checkRequests)
}

// checkRequests reads up to three requests from data with both parsers.
func checkRequests(t *testing.T, data []byte, mode uint16) {
	std, ours := fuzzReaders(data, mode)
	var rr RequestReader
	for i := 0; i < 3; i++ {
		want, werr := http.ReadRequest(std)
		got, gerr := rr.ReadRequest(ours)
		sameError(t, "request", werr, gerr)
		if werr != nil {
			return
		}
		for _, c := range []struct {
			name      string
			want, got any
		}{
			{"Method", want.Method, got.Method},
			{"URL", *want.URL, *got.URL},
			{"RequestURI", want.RequestURI, got.RequestURI},
			{"Proto", want.Proto, got.Proto},
			{"ProtoMajor", want.ProtoMajor, got.ProtoMajor},
			{"ProtoMinor", want.ProtoMinor, got.ProtoMinor},
			{"Header", want.Header, got.Header},
			{"Host", want.Host, got.Host},
			{"ContentLength", want.ContentLength, got.ContentLength},
			{"TransferEncoding", want.TransferEncoding, got.TransferEncoding},
			{"Close", want.Close, got.Close},
			{"Trailer", want.Trailer, got.Trailer},
			{"NoBody", want.Body == http.NoBody, got.Body == http.NoBody},
		} {
			if !reflect.DeepEqual(c.want, c.got) {
				t.Fatalf("request %d: %s: net/http %s, ours %s", i, c.name, show(c.want), show(c.got))
			}
		}
		wb, werr := readBody(want.Body)
		gb, gerr := readBody(got.Body)
		sameError(t, "body", werr, gerr)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("request %d body: net/http %s, ours %s", i, show(wb), show(gb))
		}
		if !reflect.DeepEqual(want.Trailer, got.Trailer) {
			t.Fatalf("request %d trailer: net/http %s, ours %s", i, show(want.Trailer), show(got.Trailer))
		}
		if werr != nil || len(wb) == maxFuzzBody {
			return
		}
	}
}

func FuzzResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false, uint16(0))
	f.Fuzz(checkResponses)
}

// checkResponses reads up to three responses to a GET or HEAD from data
// with both parsers, ours with and without Lazy (whose Header must be
// empty or complete, and complete once loaded).
func checkResponses(t *testing.T, data []byte, head bool, mode uint16) {
	t.Run("eager", func(t *testing.T) { checkResponsesWith(t, data, head, mode, false) })
	t.Run("lazy", func(t *testing.T) { checkResponsesWith(t, data, head, mode, true) })
}

func checkResponsesWith(t *testing.T, data []byte, head bool, mode uint16, lazy bool) {
	std, ours := fuzzReaders(data, mode)
	req := &http.Request{Method: "GET"}
	if head {
		req.Method = "HEAD"
	}
	rr := ResponseReader{Lazy: lazy}
	for i := 0; i < 3; i++ {
		want, werr := http.ReadResponse(std, req)
		got, gerr := rr.ReadResponse(ours, req)
		sameError(t, "response", werr, gerr)
		if werr != nil {
			return
		}
		if fields, ok := rr.Fields(); ok {
			if len(got.Header) != 0 {
				t.Fatalf("response %d: unloaded, but the Header holds %s", i, show(got.Header))
			}
			// The fields in order are the values in order.
			h := http.Header{}
			for _, f := range fields {
				h[f.Name] = append(h[f.Name], f.Value)
			}
			if !reflect.DeepEqual(want.Header, h) {
				t.Fatalf("response %d: Fields: net/http %s, ours %s", i, show(want.Header), show(fields))
			}
			rr.LoadHeader()
		}
		for _, c := range []struct {
			name      string
			want, got any
		}{
			{"Status", want.Status, got.Status},
			{"StatusCode", want.StatusCode, got.StatusCode},
			{"Proto", want.Proto, got.Proto},
			{"ProtoMajor", want.ProtoMajor, got.ProtoMajor},
			{"ProtoMinor", want.ProtoMinor, got.ProtoMinor},
			{"Header", want.Header, got.Header},
			{"ContentLength", want.ContentLength, got.ContentLength},
			{"TransferEncoding", want.TransferEncoding, got.TransferEncoding},
			{"Close", want.Close, got.Close},
			{"Trailer", want.Trailer, got.Trailer},
			{"NoBody", want.Body == http.NoBody, got.Body == http.NoBody},
			{"Request", want.Request == req, got.Request == req},
		} {
			if !reflect.DeepEqual(c.want, c.got) {
				t.Fatalf("response %d: %s: net/http %s, ours %s", i, c.name, show(c.want), show(c.got))
			}
		}
		wb, werr := readBody(want.Body)
		gb, gerr := readBody(got.Body)
		sameError(t, "body", werr, gerr)
		if !bytes.Equal(wb, gb) {
			t.Fatalf("response %d body: net/http %s, ours %s", i, show(wb), show(gb))
		}
		if !reflect.DeepEqual(want.Trailer, got.Trailer) {
			t.Fatalf("response %d trailer: net/http %s, ours %s", i, show(want.Trailer), show(got.Trailer))
		}
		if werr != nil || len(wb) == maxFuzzBody {
			return
		}
	}
}
