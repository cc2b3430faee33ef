package proxy

import "syscall"

// childSysProcAttr makes the kernel kill the child when the proxy dies.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
