package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/xdsserver"
)

func init() { commands = append(commands, newApplyCmd, newGetCmd, newDeleteCmd) }

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var wait, dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Validate and store configuration (all documents or none)",
		Example: `  weft apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
  weft apply -f samples/bookinfo/networking/ --wait
  cat vs.yaml | weft apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readFiles(files, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.Apply(ctx, controlapi.ApplyRequest{Files: in, DryRun: dryRun})
			if err != nil {
				return reportInvalid(g, err)
			}
			for _, w := range resp.Warnings {
				fmt.Fprintln(g.stderr, w)
			}
			for _, r := range resp.Results {
				fmt.Fprintf(g.stdout, "%s/%s %s\n", strings.ToLower(r.Kind), r.Name, r.Action)
			}
			if wait && !dryRun {
				return waitSynced(ctx, g, c, resp.Revision, timeout)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory (its .yaml, .yml and .json files) or - for standard input; repeatable")
	cmd.Flags().BoolVar(&wait, "wait", false, "return only when every connected proxy has ACKed the new config")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long --wait waits")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and analyze only; store nothing")
	cmd.MarkFlagRequired("filename")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var files []string
	var namespace string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME)",
		Short: "Delete configuration",
		Example: `  weft delete -f samples/bookinfo/networking/virtual-service-all-v1.yaml
  weft delete virtualservice reviews`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := controlapi.DeleteRequest{Namespace: namespace}
			switch {
			case len(files) > 0 && len(args) == 0:
				in, err := readFiles(files, cmd.InOrStdin())
				if err != nil {
					return err
				}
				req.Files = in
			case len(files) == 0 && len(args) == 2:
				req.Kind, req.Name = args[0], args[1]
			default:
				return errors.New("delete takes -f FILE or KIND NAME")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resp, err := c.Delete(cmd.Context(), req)
			if err != nil {
				return reportInvalid(g, err)
			}
			for _, r := range resp.Results {
				fmt.Fprintf(g.stdout, "%s/%s %s\n", strings.ToLower(r.Kind), r.Name, r.Action)
			}
			if wait {
				return waitSynced(cmd.Context(), g, c, resp.Revision, timeout)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - for standard input")
	cmd.Flags().BoolVar(&wait, "wait", false, "return only when every connected proxy has ACKed the change")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long --wait waits")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of KIND NAME")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var output, namespace string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show stored configuration",
		Example: `  weft get virtualservices
  weft get vs reviews -o yaml`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := namespace
			if all {
				ns = ""
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			items, err := c.Get(cmd.Context(), args[0], ns, name)
			if err != nil {
				return err
			}
			return printResources(g.stdout, items, output, name != "")
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default: a table)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	return cmd
}

// object is the part of a stored resource the table shows.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name              string    `json:"name"`
		Namespace         string    `json:"namespace"`
		CreationTimestamp time.Time `json:"creationTimestamp"`
	} `json:"metadata"`
	Spec struct {
		Hosts    []string `json:"hosts"`
		Host     string   `json:"host"`
		Gateways []string `json:"gateways"`
		Servers  []struct {
			Hosts []string `json:"hosts"`
		} `json:"servers"`
		Address string `json:"address"`
	} `json:"spec"`
}

func printResources(w io.Writer, items []json.RawMessage, format string, single bool) error {
	switch format {
	case "json", "yaml":
		var v any = items
		if single && len(items) == 1 {
			v = items[0]
		} else {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if format == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
		} else {
			b = append(b, '\n')
		}
		_, err = w.Write(b)
		return err
	case "":
	default:
		return fmt.Errorf("unknown output format %q: use yaml or json", format)
	}
	if len(items) == 0 {
		fmt.Fprintln(w, "No resources found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tHOSTS\tGATEWAYS\tAGE")
	for _, raw := range items {
		var o object
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("decode resource: %w", err)
		}
		hosts := o.Spec.Hosts
		switch {
		case o.Spec.Host != "": // DestinationRule
			hosts = []string{o.Spec.Host}
		case o.Spec.Address != "": // WorkloadEntry
			hosts = []string{o.Spec.Address}
		}
		for _, s := range o.Spec.Servers { // Gateway
			hosts = append(hosts, s.Hosts...)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Metadata.Namespace, o.Kind, o.Metadata.Name,
			listOrDash(hosts), listOrDash(o.Spec.Gateways), age(o.Metadata.CreationTimestamp))
	}
	return tw.Flush()
}

func listOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// readFiles reads every -f argument: a file, a directory's .yaml, .yml and
// .json files (sorted), or - for stdin.
func readFiles(args []string, stdin io.Reader) ([]controlapi.File, error) {
	var out []controlapi.File
	for _, a := range args {
		if a == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			out = append(out, controlapi.File{Name: "<stdin>", Content: string(b)})
			continue
		}
		fi, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", a, err)
		}
		paths := []string{a}
		if fi.IsDir() {
			entries, err := os.ReadDir(a)
			if err != nil {
				return nil, fmt.Errorf("read directory %s: %w", a, err)
			}
			paths = paths[:0]
			for _, e := range entries {
				switch filepath.Ext(e.Name()) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						paths = append(paths, filepath.Join(a, e.Name()))
					}
				}
			}
			sort.Strings(paths)
			if len(paths) == 0 {
				return nil, fmt.Errorf("directory %s has no .yaml, .yml or .json files", a)
			}
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			out = append(out, controlapi.File{Name: p, Content: string(b)})
		}
	}
	return out, nil
}

// reportInvalid prints every validation error and turns them into exit 1.
func reportInvalid(g *globals, err error) error {
	var inv *controlapi.InvalidError
	if !errors.As(err, &inv) {
		return err
	}
	for _, e := range inv.Errors {
		fmt.Fprintf(g.stderr, "error: %s\n", e.Text)
	}
	noun := "errors"
	if len(inv.Errors) == 1 {
		noun = "error"
	}
	fmt.Fprintf(g.stderr, "%d %s; nothing was applied\n", len(inv.Errors), noun)
	return exitError{code: 1}
}

// waitSynced waits until every connected proxy has ACKed revision rev, one
// NACKs, or timeout passes. The control plane holds each question until
// the answer is yes (or a while has passed), so it returns as soon as the
// last proxy answers.
func waitSynced(ctx context.Context, g *globals, c *controlapi.Client, rev int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rep *xdsserver.SyncReport
	for {
		// Ask for less than the client's own deadline, and end a little
		// before ours to report who is late.
		wait := syncAskFor
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl)-syncMargin)
		}
		if wait <= 0 {
			break
		}
		asked := time.Now()
		r, err := c.SyncWait(ctx, rev, wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		rep = r
		if rep.Done {
			return reportSynced(g, rep, rev)
		}
		// A control plane that answers at once (one older than ?wait=)
		// is asked again at most every 200 ms.
		if rest := 200*time.Millisecond - time.Since(asked); rest > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(rest):
			}
		}
	}
	// The last held question may have ended with our deadline: ask once
	// more, for an answer now, to name who is late.
	qctx, qcancel := context.WithTimeout(context.Background(), 2*time.Second)
	if r, err := c.SyncWait(qctx, rev, 0); err == nil {
		rep = r
	}
	qcancel()
	if rep != nil && rep.Done {
		return reportSynced(g, rep, rev)
	}
	var late []string
	if rep != nil {
		for _, p := range rep.Proxies {
			if !p.Synced && p.Nack == "" {
				late = append(late, p.ID)
			}
		}
	}
	return fmt.Errorf("timed out after %s waiting for revision %d; not yet ACKed by: %s", timeout, rev, strings.Join(late, ", "))
}

// syncAskFor is how long one question of waitSynced may be held, well
// under controlapi's 30-second client timeout; syncMargin is how much of
// the last one waitSynced keeps to report who is late.
const (
	syncAskFor = 10 * time.Second
	syncMargin = 20 * time.Millisecond
)

// reportSynced reports a done sync report: every proxy has ACKed
// revision rev, or some rejected it.
func reportSynced(g *globals, rep *xdsserver.SyncReport, rev int64) error {
	var nacks []string
	for _, p := range rep.Proxies {
		if p.Nack != "" {
			nacks = append(nacks, fmt.Sprintf("  %s rejected the config: %s", p.ID, p.Nack))
		}
	}
	if len(nacks) > 0 {
		fmt.Fprintln(g.stderr, strings.Join(nacks, "\n"))
		return fmt.Errorf("%d proxies rejected revision %d; they keep serving their last good config", len(nacks), rev)
	}
	fmt.Fprintf(g.stdout, "revision %d is ACKed by all %d proxies\n", rev, len(rep.Proxies))
	return nil
}
