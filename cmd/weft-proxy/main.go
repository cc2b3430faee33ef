// Command weft-proxy is Weft's data plane: the sidecar and the gateway.
package main

import (
	"os"

	"github.com/weftmesh/weft/internal/proxy"
)

func main() { os.Exit(proxy.Main(os.Args[1:])) }
