// Package xdsserver serves the mesh's configuration to proxies over ADS
// (xDS v3, state of the world) with go-control-plane, and tracks, per proxy
// and per resource type, which version was sent and which was ACKed or
// NACKed. That record is what `weft proxy-status` shows and what
// `weft apply --wait` waits on.
//
// Concurrency: go-control-plane runs one goroutine per stream and calls the
// stream callbacks (onStreamRequest, onStreamResponse, onStreamClosed) from
// them. The push loop of the owner (package control) calls Push from a
// single goroutine. Server.mu guards the proxies table and the latest
// snapshot; it is held only to read or update that bookkeeping, never while
// translating or calling into the cache, so a slow push never blocks a
// stream's ACK. Translation runs outside the lock on the immutable snapshot.
package xdsserver
