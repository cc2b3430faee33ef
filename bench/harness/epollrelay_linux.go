//go:build linux

package harness

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"
)

// serveEpollRelay serves one hop of the go-epoll row until the process is
// killed: a relay of the go-relay row's function (each client connection
// gets its own upstream connection, and bytes pass unchanged) written as an
// event loop. One locked thread waits in epoll_wait and reads and writes
// with raw system calls: no goroutine per connection and no netpoller, as
// nginx's workers do it. It is the floor for a Go proxy that leaves the
// runtime's scheduler out of its data path. It does not parse HTTP, so it
// is a floor, not a proxy to ship.
func serveEpollRelay(addr, upstream string) error {
	runtime.LockOSThread()
	listen, err := sockaddr4(addr)
	if err != nil {
		return err
	}
	up, err := sockaddr4(upstream)
	if err != nil {
		return err
	}
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("epoll relay: %w", err)
	}
	syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(lfd, listen); err != nil {
		return fmt.Errorf("epoll relay: bind %s: %w", addr, err)
	}
	if err := syscall.Listen(lfd, 1024); err != nil {
		return fmt.Errorf("epoll relay: listen %s: %w", addr, err)
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll relay: %w", err)
	}
	watch := func(fd int) error {
		return syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)})
	}
	if err := watch(lfd); err != nil {
		return fmt.Errorf("epoll relay: %w", err)
	}
	peer := map[int]int{} // both directions of every relayed pair
	closePair := func(fd int) {
		p := peer[fd]
		delete(peer, fd)
		delete(peer, p)
		syscall.Close(fd)
		syscall.Close(p)
	}
	buf := make([]byte, 64<<10)
	events := make([]syscall.EpollEvent, 128)
	for {
		// Level-triggered: whatever one read leaves comes back next time.
		// A raw call, like the reads and writes: the thread keeps its P
		// while it waits, so no other thread is woken to take it over.
		r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("epoll relay: epoll_wait: %w", errno)
		}
		n := int(r)
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					c, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
					if err != nil {
						break // EAGAIN: all accepted
					}
					u, err := dialUpstream(up)
					if err != nil {
						syscall.Close(c)
						continue
					}
					peer[c], peer[u] = u, c
					if watch(c) != nil || watch(u) != nil {
						closePair(c)
					}
				}
				continue
			}
			to, ok := peer[fd]
			if !ok {
				continue
			}
			r, errno := rawRead(fd, buf)
			switch {
			case errno == syscall.EAGAIN:
			case errno != 0 || r == 0:
				closePair(fd)
			case rawWriteAll(to, buf[:r]) != 0:
				closePair(fd)
			}
		}
	}
}

func sockaddr4(s string) (*syscall.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("epoll relay: %q is not an IPv4 address and port", s)
	}
	return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

// dialUpstream connects (blocking: loopback connects at once) and then
// makes the socket non-blocking, with Nagle off as nginx has it.
func dialUpstream(up *syscall.SockaddrInet4) (int, error) {
	u, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(u, up); err != nil {
		syscall.Close(u)
		return -1, err
	}
	syscall.SetNonblock(u, true)
	syscall.SetsockoptInt(u, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	return u, nil
}

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// rawWriteAll writes all of b; a full send buffer (never, for the bench's
// 1 KB messages) is retried at once.
func rawWriteAll(fd int, b []byte) syscall.Errno {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			b = b[n:]
		case syscall.EAGAIN, syscall.EINTR:
		default:
			return e
		}
	}
	return 0
}
