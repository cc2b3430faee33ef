package admin

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// labelEscaper escapes a Prometheus label value.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// WritePrometheus writes cluster counters in Prometheus text format, with
// Envoy's metric names so that existing dashboards find them.
func WritePrometheus(w io.Writer, stats map[string]upstream.StatsSnapshot) {
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	counter := func(metric, help string, v func(upstream.StatsSnapshot) uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", metric, help, metric)
		for _, n := range names {
			fmt.Fprintf(w, "%s{envoy_cluster_name=\"%s\"} %d\n", metric, labelEscaper.Replace(n), v(stats[n]))
		}
	}
	counter("envoy_cluster_upstream_rq_total", "Requests sent to the cluster.", func(s upstream.StatsSnapshot) uint64 { return s.Total })
	fmt.Fprint(w, "# HELP envoy_cluster_upstream_rq_xx Responses by status code class.\n# TYPE envoy_cluster_upstream_rq_xx counter\n")
	for _, n := range names {
		for c := 1; c <= 5; c++ {
			if v := stats[n].Classes[c]; v > 0 {
				fmt.Fprintf(w, "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"%d\",envoy_cluster_name=\"%s\"} %d\n", c, labelEscaper.Replace(n), v)
			}
		}
	}
	counter("envoy_cluster_upstream_rq_retry", "Retries.", func(s upstream.StatsSnapshot) uint64 { return s.Retries })
	counter("envoy_cluster_upstream_rq_timeout", "Requests that hit the route timeout.", func(s upstream.StatsSnapshot) uint64 { return s.Timeouts })
	counter("envoy_cluster_upstream_cx_connect_fail", "Failed connection attempts.", func(s upstream.StatsSnapshot) uint64 { return s.ConnectFails })
}

func (s *Server) prometheus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var stats map[string]upstream.StatsSnapshot
	if s.opts.Stats != nil {
		stats = s.opts.Stats()
	}
	WritePrometheus(w, stats)
}
