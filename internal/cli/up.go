package cli

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/up"
)

func init() { commands = append(commands, newUpCmd, newDownCmd) }

// superviseFlag marks the background supervisor that `weft up --detach`
// starts; it is not for users.
const superviseFlag = "supervise"

func newUpCmd(g *globals) *cobra.Command {
	opts := up.Options{}
	var detach, supervise bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a local mesh: control plane, Bookinfo with sidecars, and an ingress gateway",
		Long: `Run a whole mesh on this machine as ordinary processes, with no Kubernetes,
Docker or root: the control plane, one weft-proxy sidecar per Bookinfo
workload (each starting its app), and an ingress gateway serving
http://127.0.0.1:8080/productpage. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Logger = g.logger()
			opts.Out = g.stdout
			opts.DataDir = g.dataDir
			opts.Command = selfCommand()
			if abs, _ := filepath.Abs(g.dataDir); abs != DefaultDataDir() {
				opts.Command += " --data-dir " + abs
			}
			if detach && !supervise {
				args := append([]string{"up", "--" + superviseFlag}, os.Args[2:]...)
				return up.Detach(cmd.Context(), opts, withoutFlag(args, "--detach"))
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return up.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&detach, "detach", "d", false, "return once the mesh is ready and leave it running (stop it with weft down)")
	f.BoolVar(&supervise, superviseFlag, false, "")
	f.MarkHidden(superviseFlag)
	f.IntVar(&opts.XDSPort, "xds-port", 15010, "control plane xDS port")
	f.IntVar(&opts.APIPort, "api-port", 15014, "control plane API port")
	f.IntVar(&opts.GatewayPort, "gateway-port", 8080, "local port for the gateway's port 80")
	f.StringSliceVar(&opts.Samples, "samples", []string{"bookinfo"}, "sample workloads to run: bookinfo, tcp (an echo server in two versions and a server-first greeter), grpc (a gRPC health server)")
	f.StringVar(&opts.OutboundTrafficPolicy, "outbound-traffic-policy", "", "ALLOW_ANY (default) or REGISTRY_ONLY: may transparent workloads reach destinations outside the mesh")
	f.BoolVar(&opts.NetNS, "netns", false, "run every workload in its own network namespace with its own IP, captured by iptables (needs root)")
	f.StringVar(&opts.Subnet, "subnet", "10.244.0.0/24", "the workloads' network with --netns")
	f.IntVar(&opts.PortBase, "port-base", 16000, "first port for sidecars and apps (each workload takes 4)")
	f.StringVar(&opts.BinDir, "bin-dir", "", "directory holding weft-proxy and bookinfo (default: next to weft)")
	return cmd
}

func withoutFlag(args []string, flag string) []string {
	out := args[:0:0]
	for _, a := range args {
		if a != flag && a != flag+"=true" && a != "-d" {
			out = append(out, a)
		}
	}
	return out
}

func newDownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the local mesh started with weft up --detach",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return up.Down(g.dataDir, g.stdout)
		},
	}
}

// selfCommand is how the user can run this weft binary: "weft" when that
// is what the PATH finds, ./bin/weft under the current directory, else the
// absolute path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "weft"
	}
	if found, err := exec.LookPath("weft"); err == nil {
		if a, _ := filepath.EvalSymlinks(found); a == exe {
			return "weft"
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "./" + rel
		}
	}
	return exe
}
