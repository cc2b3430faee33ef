package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// shutdownTimeout bounds how long in-flight requests may finish after a
// stop signal.
const shutdownTimeout = 5 * time.Second

// Usage is the command line synopsis printed on a usage error.
const Usage = "usage: bookinfo productpage|details|reviews|ratings [--port N] [--addr HOST]"

// RunOptions configures Run.
type RunOptions struct {
	// Args are the command line arguments after the program name: the
	// service, then flags.
	Args []string
	// Getenv reads the environment; nil means no environment.
	Getenv func(string) string
	// Logger receives start-up messages and one line per request; nil
	// discards.
	Logger *slog.Logger
	// Listening, when set, is called with the bound address once the
	// server accepts connections.
	Listening func(net.Addr)
}

// Run serves the Bookinfo service named by opts.Args[0] until ctx ends, then
// shuts down gracefully and returns nil. The port comes from --port or
// PORT (default 9080), the address from --addr or BIND_ADDR (default all
// interfaces).
func Run(ctx context.Context, opts RunOptions) error {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	log := loggerOrDiscard(opts.Logger)
	if len(opts.Args) == 0 {
		return errors.New(Usage)
	}
	service := opts.Args[0]

	fs := flag.NewFlagSet("bookinfo "+service, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defPort := 9080
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("PORT=%q: want a port number", p)
		}
		defPort = n
	}
	port := fs.Int("port", defPort, "listen port")
	addr := fs.String("addr", getenv("BIND_ADDR"), "listen address")
	if err := fs.Parse(opts.Args[1:]); err != nil {
		return fmt.Errorf("%w\n%s", err, Usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), Usage)
	}
	if *port < 0 || *port > 65535 {
		return fmt.Errorf("port %d: want 0-65535", *port)
	}

	handler, err := newService(service, getenv, opts.Logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("%s: listen: %w", service, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("bookinfo service listening", "service", service, "addr", ln.Addr().String())
	if opts.Listening != nil {
		opts.Listening(ln.Addr())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("%s: serve: %w", service, err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "service", service)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		log.Warn("shutdown: requests still in flight were cut", "err", err)
	}
	return nil
}

// newService builds the handler of the named service from the environment.
func newService(name string, getenv func(string) string, log *slog.Logger) (http.Handler, error) {
	switch name {
	case "productpage":
		return NewProductPage(ProductPageOptions{
			Logger:     log,
			DetailsURL: serviceURLFromEnv(getenv, "details"),
			ReviewsURL: serviceURLFromEnv(getenv, "reviews"),
			RatingsURL: serviceURLFromEnv(getenv, "ratings"),
		}), nil
	case "details":
		return NewDetails(DetailsOptions{Logger: log}), nil
	case "ratings":
		return NewRatings(RatingsOptions{Logger: log}), nil
	case "reviews":
		opts, err := ReviewsOptionsFromEnv(getenv)
		if err != nil {
			return nil, fmt.Errorf("reviews: %w", err)
		}
		opts.Logger = log
		h, err := NewReviews(opts)
		if err != nil {
			return nil, fmt.Errorf("reviews: %w", err)
		}
		return h, nil
	default:
		return nil, fmt.Errorf("unknown service %q\n%s", name, Usage)
	}
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests logs one line per request.
func logRequests(l *slog.Logger, service string, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		l.Info("request", "service", service, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration", time.Since(start).Round(time.Microsecond),
			"request_id", r.Header.Get("x-request-id"))
	})
}
