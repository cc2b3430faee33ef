package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
)

func init() { commands = append(commands, newAnalyzeCmd) }

// CodeSchemaValidationError is istioctl's code for a resource that does not
// validate.
const CodeSchemaValidationError = "IST0106"

func newAnalyzeCmd(g *globals) *cobra.Command {
	var opts analyzeOptions
	cmd := &cobra.Command{
		Use:   "analyze [-f FILE|DIR|- ...]",
		Short: "Find problems in the stored configuration, and in files as if they were applied",
		Long: `Analyze looks at the configuration stored in the control plane, with the
resources in the given files in place of stored ones of the same kind,
namespace and name (as if the files were applied), and at the services and
workloads in the live registry. It prints one line per finding, as istioctl
analyze does, and exits non-zero only when a file is invalid.`,
		Example: `  weft analyze
  weft analyze -f samples/bookinfo/networking/virtual-service-reviews-v3.yaml
  weft analyze -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readFiles(opts.files, cmd.InOrStdin())
			if err != nil {
				return err
			}
			opts.in = in
			c, err := g.client()
			if err != nil {
				return err
			}
			return runAnalyze(cmd.Context(), g, c, opts)
		},
	}
	cmd.Flags().StringArrayVarP(&opts.files, "filename", "f", nil, "file, directory (its .yaml, .yml and .json files) or - for standard input; repeatable")
	cmd.Flags().StringVarP(&opts.namespace, "namespace", "n", "default", "namespace whose resources to report on")
	cmd.Flags().BoolVarP(&opts.all, "all-namespaces", "A", false, "report on every namespace")
	return cmd
}

// analyzeOptions are the flags of weft analyze.
type analyzeOptions struct {
	files     []string
	in        []controlapi.File
	namespace string
	all       bool
}

// runAnalyze analyzes the stored config overlaid with opts.in and prints
// the findings for the namespace asked about.
func runAnalyze(ctx context.Context, g *globals, c *controlapi.Client, opts analyzeOptions) error {
	incoming, ok := decodeForAnalysis(g.stdout, opts.in)
	if !ok {
		return exitError{code: 1}
	}
	stored, err := c.Get(ctx, "", "", "")
	if err != nil {
		return fmt.Errorf("read stored config: %w", err)
	}
	overridden := map[config.Key]bool{}
	for _, r := range incoming {
		overridden[r.Key()] = true
	}
	all := incoming
	for _, raw := range stored {
		r, err := config.UnmarshalResource(raw)
		if err != nil {
			return fmt.Errorf("decode stored resource: %w", err)
		}
		if !overridden[r.Key()] {
			all = append(all, r)
		}
	}
	workloads, err := c.Workloads(ctx)
	if err != nil {
		return err
	}
	mesh := meshOptions(all, workloads)
	found := 0
	for _, w := range config.AnalyzeMesh(mesh) {
		if opts.all || w.Namespace == opts.namespace {
			fmt.Fprintln(g.stdout, w)
			found++
		}
	}
	if found == 0 {
		where := "namespace: " + opts.namespace
		if opts.all {
			where = "all namespaces"
		}
		fmt.Fprintf(g.stdout, "\u2714 No validation issues found when analyzing %s.\n", where)
	}
	return nil
}

// decodeForAnalysis decodes and validates files, printing each problem as
// an Error line; ok is false when there was one.
func decodeForAnalysis(w io.Writer, files []controlapi.File) (rs []*config.Resource, ok bool) {
	ok = true
	for _, f := range files {
		got, err := config.Decode(f.Name, []byte(f.Content))
		if err == nil {
			rs = append(rs, got...)
			continue
		}
		ok = false
		var list config.ErrorList
		if !errors.As(err, &list) {
			fmt.Fprintf(w, "Error [%s] Schema validation error: %s: %v\n", CodeSchemaValidationError, f.Name, err)
			continue
		}
		for _, e := range list {
			fmt.Fprintln(w, schemaError(e))
		}
	}
	return rs, ok
}

// schemaError formats a validation error as istioctl does:
// "Error [IST0106] (VirtualService default/reviews) Schema validation error: FILE document N: PATH: MESSAGE".
func schemaError(e *config.Error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Error [%s] ", CodeSchemaValidationError)
	if e.Kind != "" && e.Name != "" {
		fmt.Fprintf(&b, "(%s %s/%s) ", e.Kind, e.Namespace, e.Name)
	}
	b.WriteString("Schema validation error: ")
	if e.File != "" {
		fmt.Fprintf(&b, "%s document %d: ", e.File, e.Index+1)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// meshOptions builds what the analyzers look at from the config and the
// registry's workloads: the services the control plane would build from
// them (registry.Services), and the gateway workloads.
func meshOptions(all []*config.Resource, workloads []controlapi.Workload) config.MeshOptions {
	ses, wes := config.OfKind(all, config.KindServiceEntry), config.OfKind(all, config.KindWorkloadEntry)
	opts := config.MeshOptions{Resources: all}
	var reg []registry.Workload
	for _, w := range workloads {
		if w.Type == nodemeta.TypeRouter {
			opts.Gateways = append(opts.Gateways, config.Workload{Namespace: w.Namespace, Name: w.Name, Labels: w.Labels})
			continue
		}
		reg = append(reg, registry.Workload{ID: w.Namespace + "/" + w.Name, Meta: nodemeta.Metadata{
			Type: w.Type, Namespace: w.Namespace, Service: w.Service, WorkloadName: w.Name, Labels: w.Labels,
		}})
	}
	for _, s := range registry.Services(reg, ses, wes) {
		svc := config.Service{Hostname: s.Hostname}
		for _, ep := range s.Endpoints {
			svc.Workloads = append(svc.Workloads, config.Workload{Namespace: s.Namespace, Name: ep.Workload, Labels: ep.Labels})
		}
		opts.Services = append(opts.Services, svc)
	}
	return opts
}
