// Package control is the control plane process (`weft control`): it owns
// the config store, the registry and the xDS server, serves the local API
// that the weft CLI uses, and pushes a new snapshot to every proxy after each
// change.
//
// Concurrency: Run starts three goroutines: the xDS gRPC server, the API
// HTTP server and the push loop. The push loop is the only goroutine that
// builds snapshots and calls xdsserver.Server.Push. It wakes on the store's
// subscription channel and the registry's Changes channel (both coalescing,
// buffered 1), waits Debounce for more changes to arrive (but never longer
// than MaxDelay after the first), then reads the store and the registry
// once and pushes. Push may block while xdsserver's limit of proxies with an
// unanswered change is reached (see its doc); changes that arrive meanwhile
// coalesce into the next push. API handlers call into the store, which has
// its own lock; they never touch the push loop's state.
package control
