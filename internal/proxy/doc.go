// Package proxy is weft-proxy, Weft's data plane: Main parses the command
// line, Run wires the pieces together.
//
// # Pieces
//
//   - xdsclient: the ADS stream to the control plane.
//   - model: compiles accepted xDS resources into an immutable Model.
//   - listener: binds the Model's listeners; hands captured connections
//     (use_original_dst, reading SO_ORIGINAL_DST through origdst) to the
//     listener of their original destination; sniffs HTTP (http_inspector);
//     selects the filter chain; serves HTTP or tcp_proxy; runs the DNS
//     listener with the dns package.
//   - chain, forward: the per-request handler chain; forward is its last
//     handler and sends requests upstream.
//   - upstream: clusters, load balancers, connection pools.
//   - admin: /ready, /config_dump, /stats/prometheus, /quitquitquit on
//     loopback.
//
// # Goroutines
//
//   - The xDS goroutine (xdsclient.Client.Run) owns the stream. It receives a
//     response, calls model.Compiler.Apply, which compiles it and, when the
//     configuration is complete, builds a Model, stores it in an
//     atomic.Pointer and calls listener.Manager.Apply, all on this
//     goroutine; then it sends the ACK or NACK. So configuration changes are
//     strictly sequential and never block requests.
//   - listener.Manager runs, per bound address, an accept goroutine and an
//     http.Server fed through a channel with the h2c connections. Each
//     accepted connection gets a goroutine that reads its original
//     destination, sniffs it when the listener has the HTTP inspector, picks
//     the filter chain and then either serves HTTP/1.x requests one after
//     the other (the lean server: the chain, and the upstream round trip
//     through upstream's lean client pool, run on this goroutine) or, for
//     tcp_proxy, copies bytes both ways (one more goroutine for the second
//     direction) until both ends have closed. Requests and connections load the current Model
//     through an atomic.Pointer and take no lock; the handler chain and
//     clusters they use are immutable.
//   - The DNS listener (dns.Server) has its own UDP and TCP goroutines; a
//     new version swaps its table atomically.
//   - A bind that fails is retried by a time.AfterFunc timer, which takes
//     the Manager's mutex like Apply does.
//   - Run's readiness watcher polls until the proxy is ready, logging what
//     it waits for, calls Options.OnReady once and exits.
//   - The admin server runs its own http.Server.
//   - In child mode (Main with `-- CMD`), one goroutine locked to its OS
//     thread starts the child and waits for it (Pdeathsig is tied to that
//     thread); Main's goroutine forwards signals to the child.
//
// # Locks
//
//   - model.Compiler.mu guards the accepted resources so the admin server
//     can dump them; held during Apply.
//   - listener.Manager.mu guards the socket table; held during Apply, bind
//     retries and Shutdown.
//   - upstream.Pools.mu guards the endpoint and stats tables; held only while
//     building a Model and while the admin server copies counters. Picking
//     an endpoint and counting a request are lock-free (atomics).
//   - xdsclient.Client.mu guards its Status.
//
// # Shutdown
//
// When Run's context ends (SIGTERM/SIGINT, /quitquitquit, or the child
// exiting), /ready turns 503, every listener stops accepting, in-flight
// requests get up to the drain timeout, then the xDS stream and the admin
// server stop and Run returns.
package proxy
