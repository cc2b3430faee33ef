// Command weft is Weft's control plane and command-line interface.
package main

import (
	"os"

	"github.com/weftmesh/weft/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
