package h1

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// slab hands out one-element header value slices cut from one array, as
// textproto does, so that a head costs one allocation for its values, or
// none when the array is reused.
type slab struct {
	s    []string
	n    int
	hint int // size of a new array
}

// reuse starts a message whose values may overwrite the last message's.
func (s *slab) reuse() { s.n = 0 }

// fresh starts a message whose values must not overwrite the last
// message's (a caller may still hold them): the next value takes a new
// array.
func (s *slab) fresh() {
	if s.n > s.hint {
		s.hint = s.n
	}
	s.s, s.n = nil, 0
}

// one returns a slice of length and capacity one holding v.
func (s *slab) one(v string) []string {
	if s.n == len(s.s) {
		s.s, s.n = make([]string, max(s.hint, 2*len(s.s), 8)), 0
	}
	s.s[s.n] = v
	out := s.s[s.n : s.n+1 : s.n+1]
	s.n++
	return out
}

// framing is what net/http's readTransfer decides about a message body.
type framing struct {
	chunked bool
	// length is the body length: -1 for chunked or until close.
	length        int64
	contentLength int64 // the message's ContentLength field
	close         bool
	trailer       http.Header
}

type unsupportedTEError struct{ err string }

func (e *unsupportedTEError) Error() string { return e.err }

// readFraming applies net/http's readTransfer rules to a parsed head: it
// reads Transfer-Encoding (removing it), validates and deduplicates
// Content-Length, and decides the body length, the Close flag and the
// declared trailers. For a response, method is the request's method. close
// is the Close flag as computed from the head; seen says which framing
// fields the head holds, and lens its Content-Length values (nil without
// one).
func readFraming(h http.Header, seen present, lens []string, s *slab, isResponse bool, status int, method string, major, minor int, close bool) (framing, error) {
	f := framing{close: close}
	if major == 0 && minor == 0 {
		major, minor = 1, 1
	}
	// Transfer-Encoding: only a single "chunked" is supported (HTTP/1.1+).
	if seen&hasTransferEncoding != 0 {
		raw := h["Transfer-Encoding"]
		delete(h, "Transfer-Encoding")
		if major > 1 || major == 1 && minor >= 1 {
			if len(raw) != 1 {
				return f, &unsupportedTEError{fmt.Sprintf("too many transfer encodings: %q", raw)}
			}
			if !asciiEqualFold(raw[0], "chunked") {
				return f, &unsupportedTEError{fmt.Sprintf("unsupported transfer encoding: %q", raw[0])}
			}
			f.chunked = true
		}
	}

	n, err := fixLength(h, lens, s, isResponse, status, method, f.chunked)
	if err != nil {
		return f, err
	}
	f.length = n
	f.contentLength = n
	if isResponse && method == "HEAD" {
		if f.contentLength, err = parseContentLength(lens); err != nil {
			return f, err
		}
	}

	if f.trailer, err = fixTrailer(h, f.chunked && seen&hasTrailer != 0); err != nil {
		return f, err
	}
	if isResponse && n == -1 && !f.chunked && bodyAllowedForStatus(status) {
		f.close = true // the body ends when the connection does
	}
	return f, nil
}

// fixLength is net/http's: the body length from Content-Length, the
// status and the method (RFC 9112 section 6.3), rejecting conflicting or
// invalid Content-Length values; contentLens are the Content-Length values
// of h.
func fixLength(h http.Header, contentLens []string, s *slab, isResponse bool, status int, method string, chunked bool) (int64, error) {
	if len(contentLens) > 1 {
		// Identical duplicates are folded into one; different ones are
		// a smuggling attempt.
		first := textproto.TrimString(contentLens[0])
		for _, ct := range contentLens[1:] {
			if first != textproto.TrimString(ct) {
				return 0, fmt.Errorf("http: message cannot contain multiple Content-Length headers; got %q", contentLens)
			}
		}
		h["Content-Length"] = s.one(first)
		contentLens = h["Content-Length"]
	}
	var n int64
	if len(contentLens) > 0 {
		var err error
		if n, err = parseContentLength(contentLens); err != nil {
			return -1, err
		}
	}
	if isResponse && method == "HEAD" {
		return 0, nil
	}
	if status/100 == 1 || status == 204 || status == 304 {
		return 0, nil
	}
	if chunked {
		delete(h, "Content-Length")
		return -1, nil
	}
	if len(contentLens) > 0 {
		return n, nil
	}
	delete(h, "Content-Length")
	if !isResponse {
		return 0, nil
	}
	return -1, nil
}

func parseContentLength(cl []string) (int64, error) {
	if len(cl) == 0 {
		return -1, nil
	}
	v := textproto.TrimString(cl[0])
	if v == "" {
		return 0, badStringError("invalid empty Content-Length", v)
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, badStringError("bad Content-Length", v)
	}
	return int64(n), nil
}

// fixTrailer returns the trailers a chunked message declares, removing the
// Trailer header; a message that is not chunked keeps it. declared is
// whether the message is chunked and has a Trailer header.
func fixTrailer(h http.Header, declared bool) (http.Header, error) {
	if !declared {
		return nil, nil
	}
	vv := h["Trailer"]
	delete(h, "Trailer")
	trailer := make(http.Header)
	var err error
	for _, v := range vv {
		v = textproto.TrimString(v)
		if v == "" {
			continue
		}
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f == "" {
				continue
			}
			key := http.CanonicalHeaderKey(f)
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				if err == nil {
					err = badStringError("bad trailer key", key)
				}
				continue
			}
			trailer[key] = nil
		}
	}
	if err != nil {
		return nil, err
	}
	if len(trailer) == 0 {
		return nil, nil
	}
	return trailer, nil
}

// shouldClose reports whether the connection closes after the message;
// for a response with Connection: close, that header is removed.
func shouldClose(major, minor int, h http.Header, seen present, removeCloseHeader bool) bool {
	if major < 1 {
		return true
	}
	var conv []string
	if seen&hasConnection != 0 {
		conv = h["Connection"]
	}
	hasClose := httpguts.HeaderValuesContainsToken(conv, "close")
	if major == 1 && minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(conv, "keep-alive")
	}
	if hasClose && removeCloseHeader {
		delete(h, "Connection")
	}
	return hasClose
}

// contentLengths returns the Content-Length values of h, a head with the
// fields seen.
func contentLengths(h http.Header, seen present) []string {
	if seen&hasContentLength == 0 {
		return nil
	}
	return h["Content-Length"]
}

// fixPragmaCacheControl treats Pragma: no-cache as Cache-Control: no-cache
// (RFC 7234 section 5.4), as net/http does.
func fixPragmaCacheControl(h http.Header, seen present, s *slab) {
	if seen&hasPragma == 0 {
		return
	}
	if hp := h["Pragma"]; len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = s.one("no-cache")
		}
	}
}

func bodyAllowedForStatus(status int) bool {
	return !(status >= 100 && status <= 199 || status == 204 || status == 304)
}

func badStringError(what, val string) error { return fmt.Errorf("%s %q", what, val) }

// asciiEqualFold is strings.EqualFold for ASCII only: "chunKed" with a
// Kelvin sign is not "chunked".
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(t[i]) {
			return false
		}
	}
	return true
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}
