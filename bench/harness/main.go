package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// Main is weftbench's command line; it returns the exit code.
// `weftbench backend ADDR` serves the bench's backend, `weftbench relay
// ADDR UPSTREAM` one hop of the go-relay row, and `weftbench epoll-relay
// ADDR UPSTREAM` one of the go-epoll row.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(args) == 2 && args[0] == "backend" {
		if err := ServeBackend(ctx, args[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if len(args) == 3 && args[0] == "epoll-relay" {
		stop() // the event loop never returns: let SIGTERM end the process
		if err := serveEpollRelay(args[1], args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if len(args) == 3 && args[0] == "relay" {
		if err := serveRelay(ctx, args[1], args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if _, err := Run(ctx, *o); err != nil {
		fmt.Fprintf(os.Stderr, "weftbench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*Options, error) {
	fs := flag.NewFlagSet("weftbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o         Options
		rows      string
		verbose   bool
		cpClients string
	)
	fs.BoolVar(&o.Quick, "quick", false, "quick run: fewer and shorter repetitions, 100 ADS clients (about 5 minutes)")
	fs.StringVar(&o.BinDir, "bin-dir", "bin", "`directory` holding weft and weft-proxy")
	fs.StringVar(&o.ResultsDir, "results", "bench/results", "`directory` for latest.md and latency.png")
	fs.IntVar(&o.Reps, "reps", 0, "repetitions of each row (default 2 quick, 5 full)")
	fs.DurationVar(&o.LatencyDuration, "latency-duration", 0, "length of each latency run (default 10s quick, 30s full)")
	fs.DurationVar(&o.CapacityDuration, "capacity-duration", 0, "length of each capacity run (default 5s quick, 15s full)")
	fs.IntVar(&o.Connections, "connections", 0, "`connections` of each latency run (default 16)")
	fs.IntVar(&o.CapacityConnections, "capacity-connections", 0, "`connections` of each capacity run (default 64)")
	fs.StringVar(&rows, "rows", "direct,weft,nginx,haproxy,go-relay", "comma-separated `rows` to run (on request: go-epoll, an event-loop relay; weft-h2, weft with HTTP/2 between its sidecars)")
	fs.StringVar(&o.ProfilePath, "profile", "", "write a CPU profile of the weft client sidecar, taken during an extra (unmeasured) capacity run, to `file`")
	fs.StringVar(&o.ServerProfilePath, "profile-server", "", "write a CPU profile of the weft server sidecar, taken during the same extra capacity run, to `file`")
	fs.Float64Var(&o.ProfileQPS, "profile-qps", 0, "run the profiled run at this `rate` (requests per second over the latency run's connections) instead of the maximum")
	fs.StringVar(&cpClients, "cp-clients", "", "comma-separated ADS client `counts` for the control plane run (default 100 quick, 100,1000 full; none to skip)")
	proxyArgs := fs.String("proxy-args", "", "extra weft-proxy `flags` for both sidecars, e.g. \"--concurrency 2\"")
	fs.BoolVar(&verbose, "v", true, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		// A subcommand with the wrong arguments would otherwise start a
		// whole bench.
		fmt.Fprintf(stderr, "weftbench: unexpected argument %q: the bench takes only flags; the subcommands are `backend ADDR` and `relay ADDR UPSTREAM`\n", fs.Arg(0))
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Connections < 0 || o.CapacityConnections < 0 {
		fmt.Fprintf(stderr, "weftbench: -connections %d, -capacity-connections %d: want a positive count, or 0 for the default\n", o.Connections, o.CapacityConnections)
		return nil, fmt.Errorf("bad connection count")
	}
	o.Rows = strings.Split(rows, ",")
	o.ProxyArgs = strings.Fields(*proxyArgs)
	switch cpClients {
	case "":
	case "none":
		o.ControlClients = []int{}
	default:
		for _, f := range strings.Split(cpClients, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n <= 0 {
				fmt.Fprintf(stderr, "weftbench: -cp-clients %q: want counts such as 100,1000, or none\n", cpClients)
				return nil, fmt.Errorf("bad -cp-clients")
			}
			o.ControlClients = append(o.ControlClients, n)
		}
	}
	o.JSONPath = os.Getenv("BENCH_OUT")
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find weftbench: %w", err)
	}
	o.Self = self
	o.Out = os.Stdout
	if verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return &o, nil
}
