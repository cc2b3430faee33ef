// Command weftbench is `make bench`: it measures Weft's sidecars side by
// side with nginx and HAProxy, and the control plane at scale. See
// docs/performance.md.
package main

import (
	"os"

	"github.com/weftmesh/weft/bench/harness"
)

func main() { os.Exit(harness.Main(os.Args[1:])) }
