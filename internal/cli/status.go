package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newProxyStatusCmd) }

func newProxyStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "proxy-status",
		Short: "Show whether every proxy has the latest config (SYNCED, STALE, NOT SENT)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.ProxyStatus(cmd.Context())
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Fprintln(g.stdout, "No proxies are connected.")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tCDS\tLDS\tEDS\tRDS\tCONFIG REVISION")
			var nacks []string
			for _, p := range list {
				row := p.Workload + "." + p.Namespace + "\t" + p.Type
				for _, t := range p.Types {
					row += "\t" + t.Status
					if t.Nack != "" {
						nacks = append(nacks, fmt.Sprintf("%s.%s %s NACK (version %s): %s", p.Workload, p.Namespace, t.Type, t.NackVersion, t.Nack))
					}
				}
				fmt.Fprintln(tw, row+"\t"+strconv.FormatInt(p.ConfigRevision, 10))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(nacks) > 0 {
				fmt.Fprintln(g.stdout)
				for _, n := range nacks {
					fmt.Fprintln(g.stdout, n)
				}
			}
			return nil
		},
	}
}
