package cli

import (
	"context"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/control"
)

func init() { commands = append(commands, newControlCmd) }

func newControlCmd(g *globals) *cobra.Command {
	opts := control.Options{}
	cmd := &cobra.Command{
		Use:   "control",
		Short: "Run the control plane: config store, registry and xDS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			opts.Logger = g.logger()
			opts.DataDir = g.dataDir
			return control.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.XDSAddr, "xds-addr", "127.0.0.1:15010", "address to serve xDS (ADS) on")
	f.StringVar(&opts.APIAddr, "api-addr", "127.0.0.1:15014", "address to serve the local API on")
	f.DurationVar(&opts.Debounce, "debounce", 100*time.Millisecond, "how long to wait for more changes before pushing")
	f.DurationVar(&opts.Grace, "endpoint-grace", 5*time.Second, "how long a disconnected proxy's endpoints stay")
	return cmd
}
