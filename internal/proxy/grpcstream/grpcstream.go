// Package grpcstream is a gRPC client for one bidirectional stream on a
// connection of its own, spoken over weft-proxy's HTTP/2 client (package
// h2): what the sidecar's ADS client needs, and nothing more.
//
// A sidecar talks gRPC to one address, on one stream at a time, in
// plaintext. grpc-go's client would bring name resolution, load balancing,
// service configs, channelz and a second HTTP/2 implementation, about
// 2 MB of every sidecar's resident memory (docs/performance-log.md,
// "Memory: an ADS client without grpc-go"). This package sends the request
// headers a gRPC server expects, frames messages as gRPC's HTTP/2 protocol
// has them (a compressed-flag byte, a 4-byte big-endian length, the
// protobuf encoding), and reads the call's status from the response's
// trailers, or from its headers when the server answers trailers-only.
//
// Concurrency: Send and Recv may run on two goroutines at once, but Send
// must not be called concurrently with itself, nor Recv with itself.
package grpcstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/proxy/grpcreply"
	"github.com/weftmesh/weft/internal/proxy/h2"
)

// Code is a gRPC status code.
type Code uint32

// The gRPC status codes.
const (
	OK Code = iota
	Canceled
	Unknown
	InvalidArgument
	DeadlineExceeded
	NotFound
	AlreadyExists
	PermissionDenied
	ResourceExhausted
	FailedPrecondition
	Aborted
	OutOfRange
	Unimplemented
	Internal
	Unavailable
	DataLoss
	Unauthenticated
)

var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Status is the status other than OK that a server ended a call with.
type Status struct {
	Code    Code
	Message string
}

func (s *Status) Error() string { return s.Code.String() + ": " + s.Message }

// CodeOf returns err's status code: OK for nil, Unknown for an error that
// carries no Status.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var st *Status
	if errors.As(err, &st) {
		return st.Code
	}
	return Unknown
}

// Options configures Open.
type Options struct {
	// Address is the server's host:port.
	Address string
	// Method is the full method name, "/package.Service/Method".
	Method string
	// UserAgent is sent as user-agent.
	UserAgent string
	// MaxMessage bounds the size of a received message (default 16 MiB;
	// grpc-go's default is 4 MiB).
	MaxMessage int
	// DialTimeout bounds the TCP connect (default 20 s, grpc-go's).
	DialTimeout time.Duration
}

// Stream is one call. Close it when done.
type Stream struct {
	opts   Options
	cc     *h2.ClientConn
	pw     *io.PipeWriter
	cancel context.CancelFunc

	// arrived is closed once resp or err is set: the response head came,
	// or the call failed before it did.
	arrived chan struct{}
	resp    *http.Response
	err     error

	hdr [5]byte
	out []byte // Send's buffer
}

// Open dials opts.Address and starts a call of opts.Method on a new
// connection. The call ends with ctx, or when Close is called. Open
// returns once the connection is up; the request's headers go out at
// once, and the response's are awaited by the first Recv (a gRPC server
// may send them only with its first message).
func Open(ctx context.Context, opts Options) (*Stream, error) {
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 16 << 20
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 20 * time.Second
	}
	d := net.Dialer{Timeout: opts.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", opts.Address)
	if err != nil {
		return nil, err
	}
	cc := h2.NewClientConn(nc)
	// A server that accepts the connection but never speaks HTTP/2 (a
	// process that hangs, a proxy that holds the connection) fails here,
	// within the dial timeout, as with grpc-go, rather than leave Recv
	// waiting forever.
	t := time.NewTimer(opts.DialTimeout)
	select {
	case <-cc.Settled():
		t.Stop()
	case <-t.C:
		cc.Close()
		return nil, fmt.Errorf("no HTTP/2 settings from the server within %v", opts.DialTimeout)
	case <-ctx.Done():
		t.Stop()
		cc.Close()
		return nil, ctx.Err()
	}
	if !cc.Reserve() {
		cc.Close()
		select {
		case <-cc.Done():
			return nil, errors.New("the connection ended before the stream opened")
		default:
		}
		return nil, errors.New("the new connection takes no stream")
	}
	sctx, cancel := context.WithCancel(ctx)
	// The call's end closes the connection, which also frees a Send
	// blocked in a socket write to a server that stopped reading.
	context.AfterFunc(sctx, func() { cc.Close() })
	pr, pw := io.Pipe()
	req := (&http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "http", Host: opts.Address, Path: opts.Method},
		Host:   opts.Address,
		Header: http.Header{
			"Content-Type": {"application/grpc"},
			"Te":           {"trailers"},
			"User-Agent":   {opts.UserAgent},
		},
		Body: pr,
	}).WithContext(sctx)
	s := &Stream{opts: opts, cc: cc, pw: pw, cancel: cancel, arrived: make(chan struct{})}
	go func() {
		// RoundTrip sends the body as it is written, while it waits.
		s.resp, s.err = cc.RoundTrip(req)
		close(s.arrived)
	}()
	return s, nil
}

// Close ends the call and its connection. After an error from Recv, the
// stream is good only for Close.
func (s *Stream) Close() {
	s.cancel()
	s.pw.CloseWithError(io.ErrClosedPipe)
	s.cc.Close()
	<-s.arrived
	if s.resp != nil {
		s.resp.Body.Close()
	}
}

// Send sends m. It returns io.EOF when the call has ended; Recv then
// tells why.
func (s *Stream) Send(m proto.Message) error {
	b := append(s.out[:0], 0, 0, 0, 0, 0)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return fmt.Errorf("grpc: encoding %T: %w", m, err)
	}
	if len(b)-5 > 1<<32-1 {
		return fmt.Errorf("grpc: %T of %d bytes is too large to send", m, len(b)-5)
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	// The pipe hands b to the goroutine that sends the body, which has
	// copied all of it once Write returns.
	_, err = s.pw.Write(b)
	if len(b) <= 64<<10 {
		s.out = b // keep small buffers only
	}
	if err != nil {
		return io.EOF
	}
	return nil
}

// Recv receives the next message into m. When the call has ended it
// returns the server's status as a *Status (io.EOF for OK), or the error
// that ended the connection.
func (s *Stream) Recv(m proto.Message) error {
	<-s.arrived
	if s.err != nil {
		return s.err
	}
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Grpc-Status") != "" {
		return s.headStatus()
	}
	if ct := s.resp.Header.Get("Content-Type"); !grpcreply.IsContentType(ct) {
		return &Status{Code: Internal, Message: fmt.Sprintf("grpc: the server answered with content-type %q, not gRPC", ct)}
	}
	body := s.resp.Body
	if _, err := io.ReadFull(body, s.hdr[:]); err != nil {
		if err == io.EOF {
			return trailerStatus(s.resp.Trailer, "the response's trailers")
		}
		return fmt.Errorf("grpc: reading a message: %w", err)
	}
	if s.hdr[0] != 0 {
		return &Status{Code: Internal, Message: "grpc: the server sent a compressed message, which was not asked for"}
	}
	n := binary.BigEndian.Uint32(s.hdr[1:])
	if uint64(n) > uint64(s.opts.MaxMessage) {
		return &Status{Code: ResourceExhausted, Message: fmt.Sprintf("grpc: received message of %d bytes, larger than the limit of %d", n, s.opts.MaxMessage)}
	}
	// A buffer per message: messages are few, and a large one is not
	// kept once decoded.
	buf := make([]byte, n)
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("grpc: reading a message of %d bytes: %w", n, err)
	}
	if err := proto.Unmarshal(buf, m); err != nil {
		return &Status{Code: Internal, Message: fmt.Sprintf("grpc: decoding %T: %v", m, err)}
	}
	return nil
}

// headStatus is the status of a response whose head ends the call: a
// trailers-only answer, or one that is not gRPC.
func (s *Stream) headStatus() error {
	h := s.resp.Header
	if h.Get("Grpc-Status") != "" {
		return trailerStatus(h, "the response's headers")
	}
	// As gRPC's clients map an HTTP status without a gRPC one.
	return &Status{Code: Code(grpcreply.FromHTTP(s.resp.StatusCode)), Message: fmt.Sprintf("grpc: the server answered HTTP status %d (content-type %q)", s.resp.StatusCode, h.Get("Content-Type"))}
}

// trailerStatus reads grpc-status and grpc-message from h: io.EOF for OK.
func trailerStatus(h http.Header, where string) error {
	v := h.Get("Grpc-Status")
	if v == "" {
		return &Status{Code: Internal, Message: "grpc: the call ended without a status in " + where}
	}
	c, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return &Status{Code: Internal, Message: fmt.Sprintf("grpc: malformed grpc-status %q in %s", v, where)}
	}
	if c == 0 {
		return io.EOF
	}
	msg := h.Get("Grpc-Message")
	if strings.IndexByte(msg, '%') >= 0 {
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
	}
	return &Status{Code: Code(c), Message: msg}
}
