// Package harness is `make bench`: it measures what Weft's sidecars cost
// next to the alternatives a user would pick instead. It runs the same
// HTTP/1.1 workload (1 KB body, keep-alive) from fortio's library through
// five rows (direct, weft, nginx, haproxy, and go-relay, the floor for a Go
// proxy) against one Go backend, interleaving the rows over several
// repetitions and reporting medians, and then a synthetic control plane run
// with many lightweight ADS clients.
//
// Concurrency: Run drives everything from one goroutine. Each load run
// starts fortio's worker goroutines and one RSS sampler goroutine, and waits
// for both before returning. The control plane run starts one goroutine per
// ADS client; each owns its stream and reports its timings through a
// channel. Every started process is recorded in a procSet, which stops them
// all (process groups, SIGTERM then SIGKILL) when Run returns, on error or
// on Ctrl-C.
package harness
