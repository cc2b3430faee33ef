package admin

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strings"

	"github.com/weftmesh/weft/internal/proxy/cors"
	"github.com/weftmesh/weft/internal/proxy/fault"
	"github.com/weftmesh/weft/internal/proxy/forward"
	"github.com/weftmesh/weft/internal/proxy/listener"
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
	counter("envoy_cluster_upstream_cx_total", "Upstream TCP connections opened by tcp_proxy.", func(s upstream.StatsSnapshot) uint64 { return s.CxTotal })
	counter("envoy_cluster_upstream_cx_http2_total", "HTTP/2 connections opened to the cluster's endpoints.", func(s upstream.StatsSnapshot) uint64 { return s.CxHTTP2 })
	counter("envoy_cluster_upstream_cx_none_healthy", "Connections closed because the cluster had no endpoint for them.", func(s upstream.StatsSnapshot) uint64 { return s.CxNoneHealthy })
	counter("envoy_cluster_upstream_cx_tx_bytes_total", "Bytes tcp_proxy sent upstream.", func(s upstream.StatsSnapshot) uint64 { return s.TxBytes })
	counter("envoy_cluster_upstream_cx_rx_bytes_total", "Bytes tcp_proxy received from upstream.", func(s upstream.StatsSnapshot) uint64 { return s.RxBytes })
	counter("envoy_cluster_upstream_rq_pending_overflow", "Requests refused by the max_pending_requests or max_requests circuit breaker.", func(s upstream.StatsSnapshot) uint64 { return s.PendingOverflow })
	counter("envoy_cluster_upstream_cx_overflow", "Times the max_connections circuit breaker refused a TCP connection or made a request wait for a connection.", func(s upstream.StatsSnapshot) uint64 { return s.CxOverflow })
	counter("envoy_cluster_upstream_rq_retry_overflow", "Retries not attempted because of the max_retries circuit breaker.", func(s upstream.StatsSnapshot) uint64 { return s.RetryOverflow })
	counter("envoy_cluster_outlier_detection_ejections_enforced_total", "Outlier ejections enforced.", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsEnforced })
	counter("envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx", "Consecutive 5xx ejections enforced.", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsEnforced5xx })
	counter("envoy_cluster_outlier_detection_ejections_detected_consecutive_5xx", "Consecutive 5xx outliers detected (enforced or not).", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsDetected5xx })
	counter("envoy_cluster_outlier_detection_ejections_enforced_consecutive_gateway_failure", "Consecutive gateway failure ejections enforced.", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsEnforcedGatewayFailure })
	counter("envoy_cluster_outlier_detection_ejections_detected_consecutive_gateway_failure", "Consecutive gateway failure outliers detected (enforced or not).", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsDetectedGatewayFailure })
	counter("envoy_cluster_outlier_detection_ejections_enforced_consecutive_local_origin_failure", "Consecutive local origin failure ejections enforced.", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsEnforcedLocalOriginFailure })
	counter("envoy_cluster_outlier_detection_ejections_detected_consecutive_local_origin_failure", "Consecutive local origin failure outliers detected (enforced or not).", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsDetectedLocalOriginFailure })
	counter("envoy_cluster_outlier_detection_ejections_overflow", "Ejections not made because of max_ejection_percent.", func(s upstream.StatsSnapshot) uint64 { return s.EjectionsOverflow })
	counter("envoy_cluster_lb_healthy_panic", "Load balancer picks made in panic mode (too few healthy endpoints).", func(s upstream.StatsSnapshot) uint64 { return s.LBHealthyPanic })
	fmt.Fprint(w, "# HELP envoy_cluster_outlier_detection_ejections_active Endpoints ejected now.\n# TYPE envoy_cluster_outlier_detection_ejections_active gauge\n")
	for _, n := range names {
		fmt.Fprintf(w, "envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name=\"%s\"} %d\n", labelEscaper.Replace(n), stats[n].EjectionsActive)
	}
}

// WriteListenerPrometheus writes listener counters in Prometheus text
// format: Envoy's listener and http_inspector metric names, labelled with
// the listener name, and weft_outbound_blocked_total.
func WriteListenerPrometheus(w io.Writer, st listener.Stats) {
	names := make([]string, 0, len(st.Listeners))
	for n := range st.Listeners {
		names = append(names, n)
	}
	sort.Strings(names)
	counter := func(metric, help string, v func(listener.ListenerStats) uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", metric, help, metric)
		for _, n := range names {
			fmt.Fprintf(w, "%s{envoy_listener_name=\"%s\"} %d\n", metric, labelEscaper.Replace(n), v(st.Listeners[n]))
		}
	}
	counter("envoy_listener_downstream_cx_total", "Connections served by the listener (accepted or handed off to it).", func(s listener.ListenerStats) uint64 { return s.Connections })
	counter("envoy_listener_downstream_pre_cx_timeout", "Connections whose listener filters (HTTP sniffing) timed out.", func(s listener.ListenerStats) uint64 { return s.PreCxTimeouts })
	counter("envoy_listener_no_filter_chain_match", "Connections closed because no filter chain matched.", func(s listener.ListenerStats) uint64 { return s.NoFilterChain })
	counter("envoy_http_inspector_http_found", "Connections the HTTP inspector found to be HTTP.", func(s listener.ListenerStats) uint64 { return s.HTTPFound })
	counter("envoy_http_inspector_http_not_found", "Connections the HTTP inspector found not to be HTTP (or that timed out).", func(s listener.ListenerStats) uint64 { return s.HTTPNotFound })
	counter("envoy_listener_ssl_connection_error", "Connections whose TLS handshake failed.", func(s listener.ListenerStats) uint64 { return s.TLSHandshakeErrors })
	fmt.Fprintf(w, "# HELP weft_outbound_blocked_total Outbound connections refused by BlackHoleCluster (REGISTRY_ONLY).\n# TYPE weft_outbound_blocked_total counter\nweft_outbound_blocked_total %d\n", st.Blocked)
	fmt.Fprintf(w, "# HELP weft_event_loops Event loops serving plain HTTP/1.x connections (--event-loops; 0: a goroutine each).\n# TYPE weft_event_loops gauge\nweft_event_loops %d\n", st.EventLoops)
	fmt.Fprintf(w, "# HELP weft_event_loop_requests_total HTTP/1.1 requests the event loops served (--event-loops).\n# TYPE weft_event_loop_requests_total counter\nweft_event_loop_requests_total %d\n", st.EventLoopRequests)
	fmt.Fprintf(w, "# HELP weft_event_loop_handoffs_total Connections the event loops handed to the goroutine server (a request with a body, an upgrade, a filter, a cluster they cannot reach, a streamed response).\n# TYPE weft_event_loop_handoffs_total counter\nweft_event_loop_handoffs_total %d\n", st.EventLoopHandoffs)
}

func (s *Server) prometheus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var stats map[string]upstream.StatsSnapshot
	if s.opts.Stats != nil {
		stats = s.opts.Stats()
	}
	WritePrometheus(w, stats)
	if s.opts.Listeners != nil {
		WriteListenerPrometheus(w, s.opts.Listeners())
	}
	if s.opts.Faults != nil {
		WriteFaultPrometheus(w, s.opts.Faults())
	}
	if s.opts.Cors != nil {
		WriteCorsPrometheus(w, s.opts.Cors())
	}
	if s.opts.Mirrors != nil {
		WriteMirrorPrometheus(w, s.opts.Mirrors())
	}
	// Envoy's server.concurrency: the threads running the proxy's Go code,
	// which a sidecar fits to its load (package procs).
	fmt.Fprintf(w, "# HELP envoy_server_concurrency Threads running the proxy's code (GOMAXPROCS).\n# TYPE envoy_server_concurrency gauge\nenvoy_server_concurrency %d\n", runtime.GOMAXPROCS(0))
}

// WriteFaultPrometheus writes the fault filter counters in Prometheus text
// format, with Envoy's names (http.PREFIX.fault.*) labelled by the
// connection manager's stat prefix.
func WriteFaultPrometheus(w io.Writer, stats map[string]fault.Stats) {
	prefixes := make([]string, 0, len(stats))
	for p := range stats {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	metric := func(name, kind, help string, v func(fault.Stats) int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
		for _, p := range prefixes {
			fmt.Fprintf(w, "%s{envoy_http_conn_manager_prefix=\"%s\"} %d\n", name, labelEscaper.Replace(p), v(stats[p]))
		}
	}
	metric("envoy_http_fault_delays_injected", "counter", "Requests delayed by fault injection.", func(s fault.Stats) int64 { return int64(s.DelaysInjected) })
	metric("envoy_http_fault_aborts_injected", "counter", "Requests aborted by fault injection.", func(s fault.Stats) int64 { return int64(s.AbortsInjected) })
	metric("envoy_http_fault_faults_overflow", "counter", "Faults not injected because max_active_faults were active.", func(s fault.Stats) int64 { return int64(s.FaultsOverflow) })
	metric("envoy_http_fault_active_faults", "gauge", "Faults in progress.", func(s fault.Stats) int64 { return s.ActiveFaults })
}

// WriteCorsPrometheus writes the CORS filter counters in Prometheus text
// format, with Envoy's names (http.PREFIX.cors.*) labelled by the
// connection manager's stat prefix.
func WriteCorsPrometheus(w io.Writer, stats map[string]cors.Stats) {
	prefixes := make([]string, 0, len(stats))
	for p := range stats {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, m := range []struct {
		name, help string
		v          func(cors.Stats) uint64
	}{
		{"envoy_http_cors_origin_valid", "Requests whose Origin a CORS policy allowed.", func(s cors.Stats) uint64 { return s.OriginValid }},
		{"envoy_http_cors_origin_invalid", "Requests whose Origin a CORS policy did not allow.", func(s cors.Stats) uint64 { return s.OriginInvalid }},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
		for _, p := range prefixes {
			fmt.Fprintf(w, "%s{envoy_http_conn_manager_prefix=\"%s\"} %d\n", m.name, labelEscaper.Replace(p), m.v(stats[p]))
		}
	}
}

// WriteMirrorPrometheus writes the request mirroring counters.
func WriteMirrorPrometheus(w io.Writer, st forward.MirrorStats) {
	for _, m := range []struct {
		name, kind, help string
		v                int64
	}{
		{"weft_mirror_requests_sent_total", "counter", "Shadow requests that got a response.", int64(st.Sent)},
		{"weft_mirror_requests_failed_total", "counter", "Shadow requests sent that got no response.", int64(st.Failed)},
		{"weft_mirror_requests_dropped_total", "counter", "Shadow requests not sent (too many in flight, no endpoint, or a streamed body).", int64(st.Dropped)},
		{"weft_mirror_requests_in_flight", "gauge", "Shadow requests in progress.", st.InFlight},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", m.name, m.help, m.name, m.kind, m.name, m.v)
	}
}
