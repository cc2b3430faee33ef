package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/xdsserver"
)

func init() { commands = append(commands, newProxyConfigCmd) }

// proxyConfigTypes are the resource types proxy-config shows, in the order
// `proxy-config all` prints them.
var proxyConfigTypes = []string{"clusters", "listeners", "routes", "endpoints"}

// proxyConfigOptions are the flags of weft proxy-config.
type proxyConfigOptions struct {
	output string // short or json
}

func newProxyConfigCmd(g *globals) *cobra.Command {
	opts := &proxyConfigOptions{}
	cmd := &cobra.Command{
		Use:     "proxy-config (listeners|routes|clusters|endpoints|all) PROXY",
		Aliases: []string{"pc"},
		Short:   "Show the xDS configuration the control plane sent a proxy",
		Long: "Show the listeners, routes, clusters or endpoints that the control plane last sent\n" +
			"to a proxy. PROXY is a name as `weft proxy-status` prints it (workload.namespace),\n" +
			"or a unique prefix of one.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVarP(&opts.output, "output", "o", "short", "output format: short or json")
	for _, typ := range append(append([]string(nil), proxyConfigTypes...), "all") {
		types := []string{typ}
		if typ == "all" {
			types = proxyConfigTypes
		}
		cmd.AddCommand(&cobra.Command{
			Use:     typ + " PROXY",
			Aliases: []string{strings.TrimSuffix(typ, "s")},
			Short:   "Show the " + typ + " the control plane sent a proxy",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runProxyConfig(cmd.Context(), g, opts, types, args[0])
			},
		})
	}
	return cmd
}

func runProxyConfig(ctx context.Context, g *globals, opts *proxyConfigOptions, types []string, name string) error {
	if opts.output != "short" && opts.output != "json" {
		return fmt.Errorf("output format %q: want short or json", opts.output)
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	list, err := c.ProxyStatus(ctx)
	if err != nil {
		return err
	}
	proxy, err := resolveProxy(list, name)
	if err != nil {
		return err
	}
	var all []json.RawMessage
	for i, typ := range types {
		pc, err := c.ProxyConfig(ctx, proxy.ID, typ)
		if err != nil {
			return err
		}
		if opts.output == "json" {
			all = append(all, pc.Resources...)
			continue
		}
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		if err := printProxyConfig(g.stdout, typ, pc.Resources); err != nil {
			return fmt.Errorf("%s of %s: %w", typ, proxyName(proxy), err)
		}
	}
	if opts.output == "json" {
		if all == nil {
			all = []json.RawMessage{}
		}
		b, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			return fmt.Errorf("encode %s of %s: %w", strings.Join(types, ", "), proxyName(proxy), err)
		}
		fmt.Fprintf(g.stdout, "%s\n", b)
	}
	return nil
}

// proxyName is a proxy's name as proxy-status prints it.
func proxyName(p xdsserver.ProxyStatus) string { return p.Workload + "." + p.Namespace }

// resolveProxy finds the proxy called name: a name as proxy-status prints
// it, a node ID, or a prefix of exactly one name.
func resolveProxy(list []xdsserver.ProxyStatus, name string) (xdsserver.ProxyStatus, error) {
	var matches []xdsserver.ProxyStatus
	for _, p := range list {
		if proxyName(p) == name || p.ID == name {
			return p, nil
		}
		if strings.HasPrefix(proxyName(p), name) {
			matches = append(matches, p)
		}
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	if len(list) == 0 {
		return xdsserver.ProxyStatus{}, fmt.Errorf("proxy %q not found: no proxies are connected", name)
	}
	known, what := list, fmt.Sprintf("proxy %q not found; connected proxies:", name)
	if len(matches) > 1 {
		known, what = matches, fmt.Sprintf("proxy %q is ambiguous; it matches:", name)
	}
	var b strings.Builder
	b.WriteString(what)
	for _, p := range known {
		b.WriteString("\n  " + proxyName(p))
	}
	return xdsserver.ProxyStatus{}, fmt.Errorf("%s", b.String())
}

// printProxyConfig prints resources, protojson-encoded Anys of type typ,
// as a table.
func printProxyConfig(w io.Writer, typ string, resources []json.RawMessage) error {
	msgs := make([]proto.Message, 0, len(resources))
	for _, raw := range resources {
		var a anypb.Any
		if err := protojson.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("decode resource: %w", err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
		}
		msgs = append(msgs, m)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	switch typ {
	case "clusters":
		printClusters(tw, only[*clusterv3.Cluster](msgs))
	case "listeners":
		printListeners(tw, only[*listenerv3.Listener](msgs))
	case "routes":
		printRoutes(tw, only[*routev3.RouteConfiguration](msgs))
	case "endpoints":
		printEndpoints(tw, only[*endpointv3.ClusterLoadAssignment](msgs))
	default:
		return fmt.Errorf("unknown type %q", typ)
	}
	return tw.Flush()
}

// only returns the messages of type T.
func only[T proto.Message](msgs []proto.Message) []T {
	var out []T
	for _, m := range msgs {
		if t, ok := m.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// clusterRow is a cluster's name split as Istio names clusters:
// DIRECTION|PORT|SUBSET|HOST.
type clusterRow struct{ fqdn, port, subset, direction, typ, dr string }

func printClusters(w io.Writer, clusters []*clusterv3.Cluster) {
	rows := make([]clusterRow, 0, len(clusters))
	for _, c := range clusters {
		r := clusterRow{fqdn: c.GetName(), port: "-", subset: "-", direction: "-", typ: c.GetType().String(), dr: configName(c.GetMetadata())}
		if ct := c.GetClusterType(); ct != nil {
			r.typ = ct.GetName()
		}
		if parts := strings.Split(c.GetName(), "|"); len(parts) == 4 && (parts[0] == "outbound" || parts[0] == "inbound") {
			r.direction, r.port, r.fqdn = parts[0], parts[1], parts[3]
			if parts[2] != "" {
				r.subset = parts[2]
			}
		}
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.fqdn != b.fqdn {
			return a.fqdn < b.fqdn
		}
		if a.port != b.port {
			pa, _ := strconv.Atoi(a.port)
			pb, _ := strconv.Atoi(b.port)
			return pa < pb
		}
		if a.subset != b.subset {
			return a.subset < b.subset
		}
		return a.direction < b.direction
	})
	fmt.Fprintln(w, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.fqdn, r.port, r.subset, r.direction, r.typ, r.dr)
	}
}

// configName is the Istio resource that m (a cluster's or a route's
// metadata) says shaped it, in filter_metadata.istio.config, as istioctl
// prints it: NAME.NAMESPACE; "-" for none.
func configName(m *corev3.Metadata) string {
	// /apis/GROUP/VERSION/namespaces/NAMESPACE/KIND/NAME
	parts := strings.Split(m.GetFilterMetadata()["istio"].GetFields()["config"].GetStringValue(), "/")
	if len(parts) != 8 || parts[1] != "apis" || parts[4] != "namespaces" {
		return "-"
	}
	return parts[7] + "." + parts[5]
}

func printListeners(w io.Writer, listeners []*listenerv3.Listener) {
	fmt.Fprintln(w, "NAME\tADDRESS:PORT\tTYPE\tROUTE")
	for _, l := range listeners {
		var types, routes []string
		chains := l.GetFilterChains()
		if d := l.GetDefaultFilterChain(); d != nil {
			chains = append(chains[:len(chains):len(chains)], d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				typ, route := describeFilter(f)
				types, routes = appendNew(types, typ), appendNew(routes, route)
			}
		}
		if l.GetAddress().GetSocketAddress().GetProtocol() == corev3.SocketAddress_UDP {
			types = appendNew(types, "UDP")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", l.GetName(), addressString(l.GetAddress()),
			orDash(strings.Join(types, "+")), orDash(shortList(routes)))
	}
}

// describeFilter returns a network filter's protocol (HTTP, TCP) and where
// it sends requests: the RDS route configuration, an inline one or a cluster.
func describeFilter(f *listenerv3.Filter) (typ, route string) {
	tc := f.GetTypedConfig()
	if tc == nil {
		return "", ""
	}
	switch {
	case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
		var hcm hcmv3.HttpConnectionManager
		if tc.UnmarshalTo(&hcm) != nil {
			return "HTTP", ""
		}
		if rds := hcm.GetRds(); rds != nil {
			return "HTTP", rds.GetRouteConfigName()
		}
		if rc := hcm.GetRouteConfig(); rc != nil {
			return "HTTP", "inline: " + rc.GetName()
		}
		return "HTTP", ""
	case tc.MessageIs(&tcpproxyv3.TcpProxy{}):
		var tp tcpproxyv3.TcpProxy
		if tc.UnmarshalTo(&tp) != nil {
			return "TCP", ""
		}
		if c := tp.GetCluster(); c != "" {
			return "TCP", "cluster: " + c
		}
		return "TCP", "weighted clusters"
	}
	return "", ""
}

func printRoutes(w io.Writer, configs []*routev3.RouteConfiguration) {
	fmt.Fprintln(w, "NAME\tDOMAINS\tMATCH\tACTION\tVIRTUAL SERVICE")
	for _, rc := range configs {
		for _, vh := range rc.GetVirtualHosts() {
			domains := vh.GetDomains()
			dom := "-"
			if len(domains) > 0 {
				dom = domains[0]
				if len(domains) > 1 {
					dom += fmt.Sprintf(" +%d more", len(domains)-1)
				}
			}
			for _, r := range vh.GetRoutes() {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), dom, describeMatch(r.GetMatch()), describeAction(r), configName(r.GetMetadata()))
			}
		}
	}
}

// describeMatch prints a route match as istioctl does: a prefix ends in
// "*", then the number of header and query parameter matchers.
func describeMatch(m *routev3.RouteMatch) string {
	var s string
	switch {
	case m.GetPrefix() != "":
		s = m.GetPrefix() + "*"
	case m.GetPath() != "":
		s = m.GetPath()
	case m.GetSafeRegex() != nil:
		s = "regex " + m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		s = m.GetPathSeparatedPrefix() + "/*"
	default:
		s = "-"
	}
	var extra []string
	if n := len(m.GetHeaders()); n > 0 {
		extra = append(extra, plural(n, "header"))
	}
	if n := len(m.GetQueryParameters()); n > 0 {
		extra = append(extra, plural(n, "query param"))
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	}
	return s
}

// redirectCodes are the status codes of RedirectAction's response codes.
var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  301,
	routev3.RedirectAction_FOUND:              302,
	routev3.RedirectAction_SEE_OTHER:          303,
	routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
	routev3.RedirectAction_PERMANENT_REDIRECT: 308,
}

// describeAction says where a route sends a request.
func describeAction(r *routev3.Route) string {
	switch {
	case r.GetRoute() != nil:
		ra := r.GetRoute()
		if c := ra.GetCluster(); c != "" {
			return c
		}
		if h := ra.GetClusterHeader(); h != "" {
			return "cluster from header " + h
		}
		wcs := ra.GetWeightedClusters().GetClusters()
		var total uint64
		for _, wc := range wcs {
			total += uint64(wc.GetWeight().GetValue())
		}
		parts := make([]string, 0, len(wcs))
		for _, wc := range wcs {
			pct := "0%"
			if total > 0 {
				pct = strconv.FormatFloat(float64(wc.GetWeight().GetValue())*100/float64(total), 'f', -1, 64) + "%"
			}
			parts = append(parts, wc.GetName()+" "+pct)
		}
		return orDash(strings.Join(parts, ", "))
	case r.GetRedirect() != nil:
		rd := r.GetRedirect()
		s := fmt.Sprintf("redirect %d", redirectCodes[rd.GetResponseCode()])
		for _, kv := range [][2]string{
			{"scheme", rd.GetSchemeRedirect()}, {"host", rd.GetHostRedirect()},
			{"port", portString(rd.GetPortRedirect())}, {"path", rd.GetPathRedirect()}, {"prefix", rd.GetPrefixRewrite()},
		} {
			if kv[1] != "" {
				s += " " + kv[0] + "=" + kv[1]
			}
		}
		return s
	case r.GetDirectResponse() != nil:
		return fmt.Sprintf("direct response %d", r.GetDirectResponse().GetStatus())
	}
	return "-"
}

func printEndpoints(w io.Writer, clas []*endpointv3.ClusterLoadAssignment) {
	type row struct{ endpoint, cluster, weight string }
	var rows []row
	for _, cla := range clas {
		for _, loc := range cla.GetEndpoints() {
			for _, ep := range loc.GetLbEndpoints() {
				weight := uint32(1) // Envoy's default
				if lw := ep.GetLoadBalancingWeight(); lw != nil {
					weight = lw.GetValue()
				}
				rows = append(rows, row{addressString(ep.GetEndpoint().GetAddress()), cla.GetClusterName(), strconv.FormatUint(uint64(weight), 10)})
			}
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].cluster != rows[j].cluster {
			return rows[i].cluster < rows[j].cluster
		}
		return rows[i].endpoint < rows[j].endpoint
	})
	fmt.Fprintln(w, "ENDPOINT\tCLUSTER\tWEIGHT")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.endpoint, r.cluster, r.weight)
	}
}

// addressString prints a socket address as ip:port, a pipe as its path.
func addressString(a *corev3.Address) string {
	if sa := a.GetSocketAddress(); sa != nil {
		port := strconv.FormatUint(uint64(sa.GetPortValue()), 10)
		if sa.GetNamedPort() != "" {
			port = sa.GetNamedPort()
		}
		host := sa.GetAddress()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return host + ":" + port
	}
	if p := a.GetPipe(); p != nil {
		return p.GetPath()
	}
	return "-"
}

func portString(p uint32) string {
	if p == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(p), 10)
}

// appendNew appends s to list unless it is empty or already there.
func appendNew(list []string, s string) []string {
	if s == "" {
		return list
	}
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
}

// shortList joins up to two items, and counts the rest.
func shortList(items []string) string {
	if len(items) <= 2 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s, %s +%d more", items[0], items[1], len(items)-2)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
