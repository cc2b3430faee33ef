package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/proxy/rawhttp"
)

// BodyBytes is the size of every response body in the bench.
const BodyBytes = 1024

// ServeBackend is the bench's backend: it answers every request with 200
// and a fixed 1 KB body, with keep-alive, until ctx ends. weftbench runs it
// as its own process (`weftbench backend ADDR`) so that its CPU is not the
// load generator's.
func ServeBackend(ctx context.Context, addr string) error {
	body := []byte(strings.Repeat("x", BodyBytes-1) + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("backend: %w", err)
	}
	return nil
}

// serveRelay serves one hop of the go-relay row: rawhttp's featureless
// relay on addr, to upstream, until ctx ends.
func serveRelay(ctx context.Context, addr, upstream string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if err := rawhttp.ServeRelay(ln, upstream); err != nil && ctx.Err() == nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}
