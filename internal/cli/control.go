package cli

import (
	"context"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/control"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

func init() { commands = append(commands, newControlCmd) }

func newControlCmd(g *globals) *cobra.Command {
	opts := control.Options{}
	var memLimitMB int64
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane: config store, registry and xDS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			opts.Logger = g.logger()
			opts.DataDir = g.dataDir
			opts.MemoryLimit = memLimitMB << 20
			return control.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.XDSAddr, "xds-addr", "127.0.0.1:15010", "address to serve xDS (ADS) on")
	f.StringVar(&opts.APIAddr, "api-addr", "127.0.0.1:15014", "address to serve the local API on")
	f.DurationVar(&opts.Debounce, "debounce", 100*time.Millisecond, "how long to wait for more changes before pushing")
	f.DurationVar(&opts.Grace, "endpoint-grace", 5*time.Second, "how long a disconnected proxy's endpoints stay")
	f.StringVar(&opts.VIPRange, "vip-range", registry.DefaultVIPRange, "range service VIPs are allocated from")
	f.StringVar(&opts.Mesh.OutboundTrafficPolicy, "outbound-traffic-policy", snapshot.AllowAny,
		"what transparent workloads may reach outside the mesh: ALLOW_ANY or REGISTRY_ONLY")
	f.BoolVar(&opts.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the API address")
	f.Int64Var(&memLimitMB, "memory-limit-mb", 0,
		"soft memory limit for the Go runtime in MiB, as GOMEMLIMIT (0: none, or GOMEMLIMIT from the environment)")
	return cmd
}
