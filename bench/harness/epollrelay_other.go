//go:build !linux

package harness

import "errors"

func serveEpollRelay(addr, upstream string) error {
	return errors.New("the go-epoll row's relay needs Linux (epoll)")
}
