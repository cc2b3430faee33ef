// Command bookinfo runs one of the Bookinfo sample services, a Go rewrite of
// Istio's Bookinfo:
//
//	bookinfo productpage|details|reviews|ratings [--port N] [--addr HOST]
//
// The port defaults to PORT or 9080, the address to BIND_ADDR or all
// interfaces. SIGTERM or SIGINT shuts it down gracefully.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/samples/bookinfo/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := app.Run(ctx, app.RunOptions{Args: os.Args[1:], Getenv: os.Getenv, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bookinfo:", err)
		os.Exit(2)
	}
}
