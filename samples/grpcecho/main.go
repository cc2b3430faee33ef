// Command grpcecho is a gRPC sample for the mesh. It serves gRPC's standard
// health service (grpc.health.v1.Health), with the server and the service
// "grpc-echo" SERVING, and server reflection, so that any gRPC client can
// call it without its protos:
//
//	grpcurl -plaintext -d '{"service":"grpc-echo"}' grpc-echo:7070 grpc.health.v1.Health/Check
//
// It listens on --port (or PORT), default 7070.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Service is the name the health service reports SERVING.
const Service = "grpc-echo"

func main() {
	fs := flag.NewFlagSet("grpcecho", flag.ExitOnError)
	port := 7070
	if p, err := strconv.Atoi(os.Getenv("PORT")); err == nil {
		port = p
	}
	fs.IntVar(&port, "port", port, "port to listen on")
	fs.Parse(os.Args[1:])
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus(Service, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		hs.Shutdown() // NOT_SERVING to watchers, then stop
		// A Watch stream never ends on its own: give calls 5 s.
		time.AfterFunc(5*time.Second, srv.Stop)
		srv.GracefulStop()
	}()
	log.Info("serving", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
