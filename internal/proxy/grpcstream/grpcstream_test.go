package grpcstream

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The tests talk to a real grpc-go server over loopback: an echo service
// with one bidirectional method.
const echoMethod = "/weft.test.Echo/Chat"

// chat answers each message with "echo: " and the message; "fail" ends
// the call with PermissionDenied, "big" answers with 2 KiB, "end" ends it
// with OK.
func chat(_ any, ss grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	if ua := md.Get("user-agent"); len(ua) == 0 || !strings.HasPrefix(ua[0], "weft-test") {
		return status.Errorf(codes.InvalidArgument, "user-agent %q", ua)
	}
	for {
		in := new(wrapperspb.StringValue)
		if err := ss.RecvMsg(in); err != nil {
			return err
		}
		switch in.Value {
		case "fail":
			return status.Error(codes.PermissionDenied, "not you: 100% sure")
		case "end":
			return nil
		case "big":
			in.Value = strings.Repeat("x", 2048)
		}
		if err := ss.SendMsg(wrapperspb.String("echo: " + in.Value)); err != nil {
			return err
		}
	}
}

// startServer serves the echo service on a loopback port until the test
// ends, and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	addr, _ := startEchoServer(t)
	return addr
}

// startEchoServer is startServer, also returning the server (to stop it
// early).
func startEchoServer(t *testing.T) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "weft.test.Echo",
		HandlerType: (*any)(nil),
		Streams:     []grpc.StreamDesc{{StreamName: "Chat", Handler: chat, ServerStreams: true, ClientStreams: true}},
	}, struct{}{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s
}

func open(t *testing.T, addr, method string, maxMessage int) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	s, err := Open(ctx, Options{Address: addr, Method: method, UserAgent: "weft-test", MaxMessage: maxMessage})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func roundTrip(t *testing.T, s *Stream, msg string) (string, error) {
	t.Helper()
	if err := s.Send(wrapperspb.String(msg)); err != nil {
		t.Fatalf("Send(%q): %v", msg, err)
	}
	out := new(wrapperspb.StringValue)
	err := s.Recv(out)
	return out.Value, err
}

func TestMessagesBothWays(t *testing.T) {
	s := open(t, startServer(t), echoMethod, 0)
	for _, msg := range []string{"one", "two", "", strings.Repeat("y", 100<<10)} {
		got, err := roundTrip(t, s, msg)
		if err != nil || got != "echo: "+msg {
			t.Fatalf("round trip of %d bytes: %d bytes back, %v", len(msg), len(got), err)
		}
	}
	// The server ends the call with OK: Recv says io.EOF, and a Send
	// after it fails with io.EOF too.
	if _, err := roundTrip(t, s, "end"); err != io.EOF {
		t.Fatalf("after the server ended the call with OK: %v, want io.EOF", err)
	}
}

func TestStatusFromTrailers(t *testing.T) {
	s := open(t, startServer(t), echoMethod, 0)
	if _, err := roundTrip(t, s, "hello"); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(t, s, "fail")
	var st *Status
	if !errors.As(err, &st) || st.Code != PermissionDenied || st.Message != "not you: 100% sure" {
		t.Fatalf("got %v, want PermissionDenied with the percent-decoded message", err)
	}
	if CodeOf(err) != PermissionDenied || err.Error() != "PermissionDenied: not you: 100% sure" {
		t.Errorf("CodeOf = %v, Error() = %q", CodeOf(err), err.Error())
	}
	// A Send after the end may still succeed (the message is dropped) or
	// say io.EOF; either way, Recv tells the status again.
	if err := s.Send(wrapperspb.String("again")); err != nil && err != io.EOF {
		t.Errorf("Send after the end: %v, want nil or io.EOF", err)
	}
	if err := s.Recv(new(wrapperspb.StringValue)); CodeOf(err) != PermissionDenied {
		t.Errorf("Recv after the end: %v, want the status again", err)
	}
}

func TestUnknownMethodIsUnimplemented(t *testing.T) {
	s := open(t, startServer(t), "/weft.test.Echo/Nope", 0)
	s.Send(wrapperspb.String("hello"))
	err := s.Recv(new(wrapperspb.StringValue))
	if CodeOf(err) != Unimplemented {
		t.Fatalf("got %v, want Unimplemented (a trailers-only answer)", err)
	}
}

func TestMessageLargerThanTheLimit(t *testing.T) {
	s := open(t, startServer(t), echoMethod, 1024)
	_, err := roundTrip(t, s, "big")
	if CodeOf(err) != ResourceExhausted || !strings.Contains(err.Error(), "larger than the limit of 1024") {
		t.Fatalf("got %v, want ResourceExhausted naming the limit", err)
	}
}

func TestNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Open(context.Background(), Options{Address: addr, Method: echoMethod})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Open to a closed port: %v, want connection refused", err)
	}
}

// A server that accepts the connection but never speaks HTTP/2 fails Open
// within the dial timeout, instead of leaving Recv waiting forever.
func TestSilentServerFailsOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	_, err = Open(context.Background(), Options{Address: ln.Addr().String(), Method: echoMethod, DialTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no HTTP/2 settings from the server within 200ms") {
		t.Fatalf("Open to a silent server: %v, want a timeout waiting for its settings", err)
	}
}

func TestServerGoesAway(t *testing.T) {
	addr, srv := startEchoServer(t)
	s := open(t, addr, echoMethod, 0)
	if _, err := roundTrip(t, s, "hello"); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // closes the connection under the call
	err := s.Recv(new(wrapperspb.StringValue))
	if err == nil || err == io.EOF || CodeOf(err) != Unknown {
		t.Fatalf("Recv after the server went away: %v, want the connection's error", err)
	}
}

func TestCloseEndsABlockedRecv(t *testing.T) {
	s := open(t, startServer(t), echoMethod, 0)
	if _, err := roundTrip(t, s, "hello"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Recv(new(wrapperspb.StringValue)) }()
	// The server sends nothing more: Recv waits.
	select {
	case err := <-done:
		t.Fatalf("Recv returned %v with nothing sent", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Recv returned a message after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Recv still blocked 10 s after Close")
	}
}

func TestCodeNames(t *testing.T) {
	if Unavailable.String() != "Unavailable" || Unauthenticated.String() != "Unauthenticated" || Code(99).String() != "Code(99)" {
		t.Errorf("names: %v %v %v", Unavailable, Unauthenticated, Code(99))
	}
	if CodeOf(nil) != OK || CodeOf(errors.New("x")) != Unknown {
		t.Error("CodeOf of nil or a plain error")
	}
}
