//go:build !linux

package proxy

import "syscall"

// childSysProcAttr: only Linux can tie the child's life to the proxy's.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
