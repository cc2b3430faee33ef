//go:build !linux

package upstream

// closeLoopIdle closes the idle connections event loops keep to e; there
// are no event loops but on Linux.
func closeLoopIdle(*Endpoint) {}
