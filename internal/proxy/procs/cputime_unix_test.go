//go:build unix

package procs

import "testing"

// TestCPUTime: the process's own CPU time, read with getrusage, grows
// while it works.
func TestCPUTime(t *testing.T) {
	before, ok := cpuTime()
	if !ok {
		t.Fatal("getrusage failed")
	}
	x := 0
	for after := before; after == before; after, _ = cpuTime() {
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
}
