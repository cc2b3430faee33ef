package upstream

import "sync/atomic"

// Stats counts a cluster's requests and TCP connections. A cluster keeps its
// Stats across configuration versions for as long as it exists. All methods
// are safe for concurrent use and lock-free.
type Stats struct {
	total, retries, timeouts, connectFails atomic.Uint64
	classes                                [6]atomic.Uint64 // by status/100
	cxTotal, cxNoneHealthy, cxHTTP2        atomic.Uint64
	txBytes, rxBytes                       atomic.Uint64
	// Circuit breakers.
	pendingOverflow, cxOverflow, retryOverflow atomic.Uint64
	// Outlier detection and load balancing.
	odEnforced, odEnforced5xx, odEnforcedGw, odEnforcedLocal atomic.Uint64
	odDetected5xx, odDetectedGw, odDetectedLocal, odOverflow atomic.Uint64
	odActive                                                 atomic.Int64
	lbHealthyPanic                                           atomic.Uint64
}

// Observe counts a finished request by the status code sent downstream
// (the upstream's, or the proxy's own 503/504).
func (s *Stats) Observe(code int) {
	s.total.Add(1)
	if c := code / 100; c >= 1 && c <= 5 {
		s.classes[c].Add(1)
	}
}

// Retry counts one retry attempt.
func (s *Stats) Retry() { s.retries.Add(1) }

// Timeout counts a request that hit its route timeout.
func (s *Stats) Timeout() { s.timeouts.Add(1) }

// ConnectFail counts a failed connection attempt.
func (s *Stats) ConnectFail() { s.connectFails.Add(1) }

// Connection counts an upstream TCP connection opened by tcp_proxy.
func (s *Stats) Connection() { s.cxTotal.Add(1) }

// NoneHealthy counts a connection refused because the cluster had no
// endpoint to send it to.
func (s *Stats) NoneHealthy() { s.cxNoneHealthy.Add(1) }

// Bytes counts bytes tcp_proxy sent to (tx) and received from (rx) the
// cluster's endpoints.
func (s *Stats) Bytes(tx, rx uint64) {
	s.txBytes.Add(tx)
	s.rxBytes.Add(rx)
}

// StatsSnapshot is a point-in-time copy of Stats.
type StatsSnapshot struct {
	Total, Retries, Timeouts, ConnectFails uint64
	// Classes[c] counts responses with status c00-c99, c from 1 to 5.
	Classes [6]uint64
	// CxTotal, CxNoneHealthy, TxBytes and RxBytes count tcp_proxy
	// connections.
	CxTotal, CxNoneHealthy, TxBytes, RxBytes uint64
	// CxHTTP2 counts the HTTP/2 connections opened to the cluster's
	// endpoints (Envoy's upstream_cx_http2_total).
	CxHTTP2 uint64
	// PendingOverflow counts requests refused by max_pending_requests or
	// max_requests, CxOverflow requests that found max_connections open
	// and had to wait and TCP connections it refused, RetryOverflow retries not attempted because of
	// max_retries (Envoy's upstream_rq_pending_overflow,
	// upstream_cx_overflow, upstream_rq_retry_overflow).
	PendingOverflow, CxOverflow, RetryOverflow uint64
	// Outlier detection: ejections enforced (in all, and by detector),
	// detected (enforced or not), refused by max_ejection_percent, and
	// the endpoints ejected now.
	EjectionsEnforced, EjectionsEnforced5xx, EjectionsEnforcedGatewayFailure uint64
	EjectionsEnforcedLocalOriginFailure                                      uint64
	EjectionsDetected5xx, EjectionsDetectedGatewayFailure, EjectionsOverflow uint64
	EjectionsDetectedLocalOriginFailure                                      uint64
	EjectionsActive                                                          int64
	// LBHealthyPanic counts picks made among all endpoints because too few
	// were healthy (healthy_panic_threshold).
	LBHealthyPanic uint64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{Total: s.total.Load(), Retries: s.retries.Load(), Timeouts: s.timeouts.Load(), ConnectFails: s.connectFails.Load(),
		CxTotal: s.cxTotal.Load(), CxNoneHealthy: s.cxNoneHealthy.Load(), CxHTTP2: s.cxHTTP2.Load(), TxBytes: s.txBytes.Load(), RxBytes: s.rxBytes.Load(),
		PendingOverflow: s.pendingOverflow.Load(), CxOverflow: s.cxOverflow.Load(), RetryOverflow: s.retryOverflow.Load(),
		EjectionsEnforced: s.odEnforced.Load(), EjectionsEnforced5xx: s.odEnforced5xx.Load(), EjectionsEnforcedGatewayFailure: s.odEnforcedGw.Load(),
		EjectionsDetected5xx: s.odDetected5xx.Load(), EjectionsDetectedGatewayFailure: s.odDetectedGw.Load(), EjectionsOverflow: s.odOverflow.Load(),
		EjectionsEnforcedLocalOriginFailure: s.odEnforcedLocal.Load(), EjectionsDetectedLocalOriginFailure: s.odDetectedLocal.Load(),
		EjectionsActive: s.odActive.Load(), LBHealthyPanic: s.lbHealthyPanic.Load()}
	for i := range s.classes {
		out.Classes[i] = s.classes[i].Load()
	}
	return out
}
