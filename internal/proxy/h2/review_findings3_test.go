package h2

import "runtime"

type runtimeMem struct{ runtime.MemStats }

func (m *runtimeMem) read() { runtime.GC(); runtime.ReadMemStats(&m.MemStats) }
