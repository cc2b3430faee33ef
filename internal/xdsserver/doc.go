// Package xdsserver serves the mesh's configuration to proxies over ADS
// (xDS v3, state of the world or incremental) with go-control-plane's gRPC
// server, and
// tracks, per proxy and per resource type, which version was sent and which
// was ACKed or NACKed. That record is what `weft proxy-status` shows and
// what `weft apply --wait` waits on.
//
// The cache behind the server is this package's wireCache, not
// go-control-plane's snapshot cache: each push serializes every resource
// once, into an Any shared by every proxy that gets it, and proxies with
// the same resources of a type share one group of them, so answering a
// stream costs one copy of the bytes rather than a marshal of every
// resource for every proxy.
//
// An incremental (delta) stream gets, on a change, only the resources that
// changed and the names of those removed; a state-of-the-world stream gets
// every resource of each type that changed. With a thousand services, that
// is the difference between a few hundred bytes and about a megabyte per
// proxy per change.
//
// Concurrency: go-control-plane runs one goroutine per stream and calls the
// stream callbacks (onStreamRequest, onDeltaRequest, onStreamResponse,
// onDeltaResponse, onStreamClosed) and the cache's CreateWatch and
// CreateDeltaWatch from them. The push loop of the owner (package
// control) calls Push from a single goroutine. Server.mu guards the proxies
// table and the latest push; it is held only to read or update that
// bookkeeping, never while translating or calling into the cache, so a slow
// push never blocks a stream's ACK. proxyState.pushMu serializes the pushes
// to one proxy (the push loop's and the one a proxy gets when it connects)
// and is taken before Server.mu. Translation runs outside the locks on the
// immutable snapshot; push.mu guards the per-push memo of serialized
// resources and groups. wireCache.mu guards the cache's snapshots and open
// watches; answering a watch sends on the stream's response channel, which
// has room for one response per type.
//
// Flow control: Server.slots holds a token for every proxy with a change in
// flight (MaxInflight in all). Push, and the first config of a proxy that
// connects, take a token before handing a proxy its snapshot; a goroutine
// per change gives it back when the proxy has ACKed or NACKed the change,
// has gone, or after InflightTimeout. A change in flight holds its encoded
// responses in gRPC's buffers until the proxy reads them, so this bounds the
// memory of a push to a mesh of any size.
package xdsserver
