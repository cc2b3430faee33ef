package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"unsafe"
)

// errMessageTooLarge is textproto's error for an overlong line it quotes.
var errMessageTooLarge = errors.New("message too large")

// headReader reads the lines and header fields of a message head with the
// rules of net/textproto's Reader (ReadLine and ReadMIMEHeader), which is
// what net/http uses, keeping its scratch buffers and string caches from
// one message to the next.
type headReader struct {
	br   *bufio.Reader
	buf  []byte // a header line joined with its obs-fold continuations
	long []byte // a line longer than the bufio buffer
	keys keyCache
	vals valueCache
	// fields receives the fields of a head read without a map (see
	// readHeader); reused from one head to the next.
	fields []Field
}

// Field is a header field as read: its canonical name and its value.
type Field struct{ Name, Value string }

// readLine returns the next line without its line ending (CRLF or LF), as
// textproto.Reader.readLineSlice does. The slice is valid until the next
// read.
func (r *headReader) readLine() ([]byte, error) { return r.readLineLimit(-1) }

// readLineLimit is readLine failing with errMessageTooLarge as soon as the
// line is longer than lim (when lim >= 0), as textproto does.
func (r *headReader) readLineLimit(lim int) ([]byte, error) {
	started := false
	for {
		l, more, err := r.br.ReadLine()
		if err != nil {
			return nil, err
		}
		if lim >= 0 && (started && len(r.long) > lim-len(l) || !started && len(l) > lim) {
			return nil, errMessageTooLarge
		}
		if !started && !more {
			return l, nil
		}
		if !started {
			r.long = r.long[:0]
			started = true
		}
		r.long = append(r.long, l...)
		if !more {
			return r.long, nil
		}
	}
}

// readContinuedLine returns the next header line joined with its obs-fold
// continuation lines, as textproto.Reader.readContinuedLineSlice does with
// the "must have a colon" validation.
func (r *headReader) readContinuedLine() ([]byte, error) {
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return line, nil
	}
	if bytes.IndexByte(line, ':') < 0 {
		return nil, textproto.ProtocolError(fmt.Sprintf("malformed MIME header: missing colon: %q", line))
	}
	// The next line is buffered and starts a new field or ends the head:
	// no continuation, no copy.
	if r.br.Buffered() > 1 {
		peek, _ := r.br.Peek(2)
		if len(peek) > 0 && (isASCIILetter(peek[0]) || peek[0] == '\n') ||
			len(peek) == 2 && peek[0] == '\r' && peek[1] == '\n' {
			return trim(line), nil
		}
	}
	r.buf = append(r.buf[:0], trim(line)...)
	for r.skipSpace() > 0 {
		r.buf = append(r.buf, ' ')
		line, err := r.readLine()
		if err != nil {
			break
		}
		r.buf = append(r.buf, trim(line)...)
	}
	return r.buf, nil
}

// skipSpace consumes spaces and tabs and says how many there were.
func (r *headReader) skipSpace() int {
	n := 0
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			break
		}
		if c != ' ' && c != '\t' {
			r.br.UnreadByte()
			break
		}
		n++
	}
	return n
}

// present records which of the header fields that the framing rules
// read a head holds, so that those rules skip the map lookups for the
// others: most heads hold none of them but Content-Length.
type present uint8

const (
	hasHost present = 1 << iota
	hasContentLength
	hasTransferEncoding
	hasTrailer
	hasConnection
	hasPragma
)

// note returns p with key's bit set, if key is one of the fields present
// records.
func (p present) note(key string) present {
	switch key {
	case "Host":
		return p | hasHost
	case "Content-Length":
		return p | hasContentLength
	case "Transfer-Encoding":
		return p | hasTransferEncoding
	case "Trailer":
		return p | hasTrailer
	case "Connection":
		return p | hasConnection
	case "Pragma":
		return p | hasPragma
	}
	return p
}

// readHeader reads header fields up to the blank line that ends the head
// into h, which must be empty, as textproto.Reader.ReadMIMEHeader does,
// taking the value slices from s; with h nil, into r.fields instead, in
// the order they arrive. It says which of the fields present records the
// head holds.
func (r *headReader) readHeader(h http.Header, s *slab) (present, error) {
	r.fields = r.fields[:0]
	if seen, ok := r.readBufferedHeader(h, s); ok {
		return seen, nil
	}
	var seen present
	// The first line cannot start with a leading space.
	if buf, err := r.br.Peek(1); err == nil && (buf[0] == ' ' || buf[0] == '\t') {
		line, err := r.readLineLimit(80)
		if err != nil {
			return 0, err
		}
		return 0, textproto.ProtocolError(fmt.Sprintf("malformed MIME header initial line: %q", line))
	}
	for i := 0; ; i++ {
		kv, err := r.readContinuedLine()
		if len(kv) == 0 {
			return seen, err
		}
		key, ok := r.addField(h, s, i, kv)
		if !ok {
			return 0, textproto.ProtocolError(fmt.Sprintf("malformed MIME header line: %q", kv))
		}
		seen = seen.note(key)
		if err != nil {
			return seen, err
		}
	}
}

// readBufferedHeader is readHeader for the common head: wholly in the read
// buffer already, one line per field, every field valid. It finds the
// lines in the buffered bytes in one pass instead of reading them one by
// one, and consumes the head only when it read all of it. Anything else
// (a head still arriving, obs-fold, a malformed line) it leaves, with h
// empty again, to readHeader's line-by-line reading, which also reports
// the errors.
func (r *headReader) readBufferedHeader(h http.Header, s *slab) (present, bool) {
	buf, _ := r.br.Peek(r.br.Buffered())
	var seen present
	for i, pos := 0, 0; ; i++ {
		j := bytes.IndexByte(buf[pos:], '\n')
		if j < 0 {
			break
		}
		next := pos + j + 1
		line := buf[pos : next-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			r.br.Discard(next)
			return seen, true
		}
		if !isASCIILetter(line[0]) {
			break // a first line that starts with a space is an error
		}
		// A field continues on the next line unless that line starts
		// another field (a letter) or ends the head, as readContinuedLine
		// decides.
		if next >= len(buf) || !(isASCIILetter(buf[next]) || buf[next] == '\n' || buf[next] == '\r') {
			break
		}
		key, ok := r.addField(h, s, i, trim(line))
		if !ok {
			break
		}
		seen = seen.note(key)
		pos = next
	}
	clear(h)
	r.fields = r.fields[:0]
	return 0, false
}

// addField adds kv, the i-th field line of its head (trimmed, obs-folds
// joined), to h, taking the value slices from s (or to r.fields when h is
// nil), and returns its canonical name; it reports false, and adds
// nothing, for a line that is not a valid field.
func (r *headReader) addField(h http.Header, s *slab, i int, kv []byte) (string, bool) {
	k, v, ok := bytes.Cut(kv, []byte{':'})
	if !ok {
		return "", false
	}
	key, ok := r.canonicalKey(i, k)
	if !ok {
		return "", false
	}
	for _, c := range v {
		if !validHeaderValueByte(c) {
			return "", false
		}
	}
	value := r.vals.intern(i, key, trimLeft(v))
	if h == nil {
		r.fields = append(r.fields, Field{key, value})
		return key, true
	}
	addValue(h, s, key, value)
	return key, true
}

// addValue adds value to the values of key in h, taking the slice of a
// first value from s.
func addValue(h http.Header, s *slab, key, value string) {
	if vv := h[key]; vv == nil {
		h[key] = s.one(value)
	} else {
		h[key] = append(vv, value)
	}
}

// canonicalKey returns the canonical form of header name a, the i-th of
// its head, as textproto's canonicalMIMEHeaderKey does (including its
// acceptance, without canonicalization, of names with a space), interned.
// Like textproto, it canonicalizes a in place.
func (r *headReader) canonicalKey(i int, a []byte) (string, bool) {
	// The name this connection sent in the same place last time.
	if key, ok := r.keys.lookup(i, a); ok {
		copy(a, key)
		return key, true
	}
	if len(a) == 0 {
		return "", false
	}
	noCanon := false
	for _, c := range a {
		if validHeaderFieldByte(c) {
			continue
		}
		if c == ' ' {
			noCanon = true
			continue
		}
		return "", false
	}
	if noCanon {
		return string(a), true
	}
	raw := r.keys.raw(i, a)
	upper := true
	for j, c := range a {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		a[j] = c
		upper = c == '-'
	}
	key, ok := commonKeys[string(a)]
	if !ok {
		key = string(a)
	}
	r.keys.store(i, raw, key)
	return key, true
}

// trim returns s without leading and trailing spaces and tabs. It is
// bytes.Trim(s, " \t") without building a cutset per call, which showed
// in profiles of the request path.
func trim(s []byte) []byte {
	return trimRight(trimLeft(s))
}

// trimLeft returns s without leading spaces and tabs.
func trimLeft(s []byte) []byte {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return s[i:]
}

// trimRight returns s without trailing spaces and tabs.
func trimRight(s []byte) []byte {
	i := len(s)
	for i > 0 && (s[i-1] == ' ' || s[i-1] == '\t') {
		i--
	}
	return s[:i]
}

func isASCIILetter(b byte) bool {
	b |= 0x20
	return 'a' <= b && b <= 'z'
}

// validHeaderFieldByte reports whether c may appear in a header name (an
// RFC 7230 token character).
func validHeaderFieldByte(c byte) bool {
	return c < 0x80 && tokenTable[c]
}

// validHeaderValueByte reports whether c may appear in a header value:
// anything but control characters other than tab, as textproto checks.
func validHeaderValueByte(c byte) bool {
	return c >= 0x20 && c != 0x7f || c == '\t'
}

var tokenTable = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// maxCached bounds the entries of a per-connection string cache; slot i
// holds what the i-th header of the last message used.
const maxCached = 32

// maxCachedValue bounds the length of a cached value, so that an idle
// connection keeps little memory alive.
const maxCachedValue = 512

// keyCache remembers, for the i-th header of the last message, the name
// as sent and its canonical form, so that a connection repeating its
// headers skips validation, canonicalization and the common-name lookup.
type keyCache struct {
	e [maxCached]struct{ raw, key string }
}

func (c *keyCache) lookup(i int, a []byte) (string, bool) {
	if i >= maxCached {
		return "", false
	}
	e := &c.e[i]
	if e.raw == "" || e.raw != string(a) {
		return "", false
	}
	return e.key, true
}

// raw returns a as a string to store in slot i, reusing the one already
// there when equal; "" when a is not to be cached.
func (c *keyCache) raw(i int, a []byte) string {
	if i >= maxCached || len(a) > maxCachedValue {
		return ""
	}
	for j := range c.e {
		if c.e[j].raw == string(a) {
			return c.e[j].raw
		}
	}
	return string(a)
}

func (c *keyCache) store(i int, raw, key string) {
	if i < maxCached && raw != "" {
		c.e[i].raw, c.e[i].key = raw, key
	}
}

// valueCache interns header values by header name and content. A value
// that changes from one message to the next in the same place (a request
// id, a trace context) is cut from a block of bytes it shares with the
// next such values, rather than allocated on its own.
type valueCache struct {
	e     [maxCached]struct{ key, val string }
	block []byte // the unused rest of the current block
}

// valueBlock is the size of the blocks changing values are cut from, and
// maxBlockValue the longest value cut from one. Each byte of a block is
// written once, before the string over it is made, so a string cut from
// it stays as it is for as long as anything holds it, and holds the block
// with it. A connection keeps its current block alive, and each block a
// cached value was cut from: values that change with every message come
// from the last block or two, but a field that changed once and then kept
// its value keeps its older block, so maxCached blocks (16 KB) at worst.
const (
	valueBlock    = 512
	maxBlockValue = 64
)

// intern returns a string equal to b, the value of header key at position
// i of its head, reusing one the connection saw for the same key.
func (c *valueCache) intern(i int, key string, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxCachedValue {
		return string(b)
	}
	if i < maxCached {
		if e := &c.e[i]; e.key == key {
			if e.val == string(b) {
				return e.val
			}
			if len(b) <= maxBlockValue {
				// The same field in the same place with a new value:
				// one that changes with every message, which no other
				// place holds.
				e.val = c.cut(b)
				return e.val
			}
		}
	}
	for j := range c.e {
		if e := &c.e[j]; e.key == key && e.val == string(b) {
			return e.val
		}
	}
	s := string(b)
	if i < maxCached {
		c.e[i].key, c.e[i].val = key, s
	}
	return s
}

// cut returns a string equal to b, at most maxBlockValue bytes long, cut
// from the current block.
func (c *valueCache) cut(b []byte) string {
	if len(c.block) < len(b) {
		c.block = make([]byte, valueBlock)
	}
	n := copy(c.block, b)
	s := unsafe.String(&c.block[0], n)
	c.block = c.block[n:]
	return s
}

// commonKeys interns the canonical names of common headers: net/textproto's
// list and those a mesh sees on most requests.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		// net/textproto's table.
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Cache-Control", "Cc", "Connection", "Content-Id", "Content-Language", "Content-Length",
		"Content-Transfer-Encoding", "Content-Type", "Cookie", "Date", "Dkim-Signature", "Etag",
		"Expires", "From", "Host", "If-Modified-Since", "If-None-Match", "In-Reply-To",
		"Last-Modified", "Location", "Message-Id", "Mime-Version", "Pragma", "Received",
		"Return-Path", "Server", "Set-Cookie", "Subject", "To", "User-Agent", "Via",
		"X-Forwarded-For", "X-Imforwards", "X-Powered-By",
		// HTTP semantics and framing.
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin",
		"Access-Control-Expose-Headers", "Access-Control-Max-Age",
		"Access-Control-Request-Headers", "Access-Control-Request-Method",
		"Age", "Allow", "Alt-Svc", "Authorization", "Content-Disposition", "Content-Encoding",
		"Content-Range", "Content-Security-Policy", "Expect", "Forwarded", "If-Match", "If-Range",
		"If-Unmodified-Since", "Keep-Alive", "Link", "Origin", "Priority", "Proxy-Authenticate",
		"Proxy-Authorization", "Proxy-Connection", "Range", "Referer", "Retry-After",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Strict-Transport-Security", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "Upgrade-Insecure-Requests", "Vary",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Requested-With",
		// Proxies, meshes and tracing.
		"X-Forwarded-Client-Cert", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto",
		"X-Real-Ip", "X-Request-Id", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid",
		"X-B3-Sampled", "X-B3-Flags", "B3", "Traceparent", "Tracestate", "Baggage",
		"X-Ot-Span-Context", "X-Cloud-Trace-Context", "Grpc-Timeout", "Grpc-Encoding",
		"Grpc-Accept-Encoding", "Grpc-Status", "Grpc-Message", "X-Envoy-Attempt-Count",
		"X-Envoy-Upstream-Service-Time", "X-Envoy-Decorator-Operation", "X-Envoy-Expected-Rq-Timeout-Ms",
		"X-Envoy-Original-Path", "X-Envoy-Peer-Metadata", "X-Envoy-Peer-Metadata-Id",
	} {
		m[k] = k
	}
	return m
}()

// HeadEnd returns the length of the message head b begins with, through
// the empty line that ends it (empty lines before the start line count as
// part of it), or -1 while the head is not all there. Lines end in LF or
// CRLF, as the readers take them. An event loop finds with it whether a
// head has arrived whole before it has a reader parse it.
func HeadEnd(b []byte) int {
	end, _ := HeadEndFrom(b, 0)
	return end
}

// HeadEndFrom is HeadEnd for a head whose first from bytes were scanned
// already, from being the next of that earlier scan (0 the first time):
// when the head is not all there, next says where a scan of more of it is
// to resume, so that a head arriving a little at a time is scanned once.
func HeadEndFrom(b []byte, from int) (end, next int) {
	start := from == 0 // no line but empty ones yet
	i := from
	for i < len(b) {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		line := b[i : i+j]
		empty := len(line) == 0 || len(line) == 1 && line[0] == '\r'
		if empty && !start {
			return i + j + 1, 0
		}
		if !empty {
			start = false
		}
		i += j + 1
	}
	if start {
		return -1, 0 // (only empty lines: short, scanned again)
	}
	return -1, i
}
