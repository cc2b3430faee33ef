// Package up runs a whole mesh on one machine as ordinary processes: the
// control plane, one weft-proxy sidecar per sample workload (each wrapping
// its application in child mode), and an ingress gateway. It is what
// `weft up` and `weft down` do.
//
// Concurrency: the supervisor (Run) is one goroutine that starts the
// processes in order, waits for them to be ready, records them in
// DATA_DIR/up.json, and then waits for a signal or for any process to exit.
// Each child has a goroutine blocked in cmd.Wait that reports on the exited
// channel. Children get Pdeathsig=SIGKILL, so a supervisor that dies
// without cleaning up takes them with it; a later Run also kills whatever
// an earlier crashed run left in up.json.
package up
