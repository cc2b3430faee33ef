package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection, the first wrapped.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	w := New(c)
	if _, ok := w.(*Conn); !ok {
		t.Fatalf("New(%T) = %T, want *Conn", c, w)
	}
	return w, peer
}

func TestReadWrite(t *testing.T) {
	c, peer := pair(t)
	// More than the socket buffers hold, so Write must wait for the
	// reader (EAGAIN, then the netpoller) and still write everything.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := c.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("the peer read different bytes than were written")
	}

	// Read waits until data arrives.
	go func() {
		time.Sleep(20 * time.Millisecond)
		peer.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}

	// A half-close reaches the peer; the peer's close is EOF here.
	if err := c.(*Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := peer.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("peer after CloseWrite: %d, %v; want EOF", n, err)
	}
	peer.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed: %d, %v; want 0, EOF", n, err)
	}
}

// TestConcurrent reads and writes from several goroutines at once, as an
// HTTP/2 server does (run it with -race).
func TestConcurrent(t *testing.T) {
	c, peer := pair(t)
	const writers, msgs, size = 4, 200, 1000
	go io.Copy(peer, peer) // echo
	errs := make(chan error, writers+1)
	for i := range writers {
		go func() {
			msg := bytes.Repeat([]byte{byte('a' + i)}, size)
			for range msgs {
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	counts := map[byte]int{}
	go func() {
		buf := make([]byte, 4096)
		total := 0
		for total < writers*msgs*size {
			n, err := c.Read(buf)
			if err != nil {
				errs <- err
				return
			}
			for _, b := range buf[:n] {
				counts[b]++
			}
			total += n
		}
		errs <- nil
	}()
	for range writers + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range writers {
		if got := counts[byte('a'+i)]; got != msgs*size {
			t.Errorf("writer %d: %d bytes echoed, want %d", i, got, msgs*size)
		}
	}
}

func TestErrorsLikeNetConn(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 8))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %v; want a timeout net.Error", err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v; want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v; want net.ErrClosed", err)
	}
}

func TestResetIsAnError(t *testing.T) {
	c, peer := pair(t)
	// Closing with unread data sends a reset.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(10 * time.Millisecond)
	_, err := c.Read(make([]byte, 8))
	var oe *net.OpError
	if err == nil || err == io.EOF || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset: %v; want a read *net.OpError", err)
	}
	// Writing to a reset connection raises SIGPIPE, which must not kill
	// the process; the write fails instead.
	for range 3 {
		if _, err = c.Write([]byte("x")); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("writes to a reset connection succeeded")
	}
}

func TestNoFileDescriptor(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := New(a); got != a {
		t.Fatalf("New(pipe) = %T, want the pipe itself", got)
	}
}

func TestZeroAllocs(t *testing.T) {
	c, peer := pair(t)
	msg := []byte("ping")
	buf := make([]byte, 8)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read allocate %.1f times, want 0", allocs)
	}
}

// A held write leaves with the next Read, which then returns the answer.
func TestHeldWriteLeavesWithTheRead(t *testing.T) {
	c, peer := pair(t)
	c.(*Conn).HoldNextWrite()
	if n, err := c.Write([]byte("request")); n != 7 || err != nil {
		t.Fatalf("held Write = %d, %v; want 7, nil", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := peer.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the peer read %q (%v) before the Read that sends it", buf[:n], err)
	}
	peer.SetReadDeadline(time.Time{})
	go func() {
		n, err := io.ReadFull(peer, buf[:7])
		if err == nil && string(buf[:n]) == "request" {
			peer.Write([]byte("answer"))
		}
	}()
	got := make([]byte, 64)
	n, err := c.Read(got)
	if err != nil || string(got[:n]) != "answer" {
		t.Fatalf("Read after a held write = %q, %v; want answer", got[:n], err)
	}

	// The hold is over: the next write leaves at once.
	if _, err := c.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(peer, buf[:4]); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("the peer read %q, %v after an ordinary write; want next", buf[:n], err)
	}
}

// A held write larger than the socket buffers is finished the ordinary
// way, and the answer still arrives.
func TestHeldWriteLargerThanTheSendBuffer(t *testing.T) {
	c, peer := pair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go func() {
		got := make([]byte, len(big))
		if _, err := io.ReadFull(peer, got); err == nil && bytes.Equal(got, big) {
			peer.Write([]byte("all of it"))
		} else {
			peer.Write([]byte("short"))
		}
	}()
	c.(*Conn).HoldNextWrite()
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64)
	n, err := c.Read(got)
	if err != nil || string(got[:n]) != "all of it" {
		t.Fatalf("Read = %q, %v; want the peer's answer to all 4 MiB", got[:n], err)
	}
}

// A held write to a peer that reset the connection fails the Read.
func TestHeldWriteToAResetPeer(t *testing.T) {
	c, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0) // close with a reset
	peer.Close()
	time.Sleep(20 * time.Millisecond) // let the reset arrive
	c.(*Conn).HoldNextWrite()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatalf("held Write: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 64))
		done <- err
	}()
	select {
	case err := <-done:
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Fatalf("Read after a held write to a reset peer = %v; want a *net.OpError", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read after a held write to a reset peer still waits")
	}
}

// HoldNextWrite with no Write before the Read ends at that Read.
func TestHoldEndsAtTheNextRead(t *testing.T) {
	c, peer := pair(t)
	c.(*Conn).HoldNextWrite()
	peer.Write([]byte("hi"))
	buf := make([]byte, 8)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if _, err := c.Write([]byte("sent")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(peer, buf[:4]); err != nil || string(buf[:n]) != "sent" {
		t.Fatalf("the peer read %q, %v; want the write after the Read to leave at once", buf[:n], err)
	}
}
