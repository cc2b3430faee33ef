package upstream

import (
	"strconv"
	"sync/atomic"
)

// Envoy's default circuit breaker thresholds (priority DEFAULT).
const (
	DefaultMaxConnections     = 1024
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultMaxRetries         = 3
)

// CircuitBreakers are a cluster's circuit breaker thresholds
// (circuit_breakers.thresholds with priority DEFAULT), which bound the
// cluster as a whole, across its endpoints. A nil *CircuitBreakers in a
// ClusterSpec means Envoy's defaults.
type CircuitBreakers struct {
	// MaxConnections bounds the cluster's open upstream connections. As in
	// Envoy, each endpoint may still open its first connection, so that
	// requests queued for it can always make progress.
	MaxConnections uint32
	// MaxPendingRequests bounds the requests waiting for a connection.
	MaxPendingRequests uint32
	// MaxRequests bounds the requests in flight.
	MaxRequests uint32
	// MaxRetries bounds the requests retrying at once, unless RetryBudget
	// is set.
	MaxRetries uint32
	// RetryBudget bounds the requests retrying at once by a share of the
	// cluster's requests in flight instead (Envoy's retry_budget):
	// BudgetPercent of them, but never fewer than MinRetryConcurrency.
	RetryBudget         bool
	BudgetPercent       float64
	MinRetryConcurrency uint32
}

// Envoy's retry budget defaults.
const (
	DefaultBudgetPercent       = 20
	DefaultMinRetryConcurrency = 3
)

// DefaultCircuitBreakers returns Envoy's defaults.
func DefaultCircuitBreakers() CircuitBreakers {
	return CircuitBreakers{MaxConnections: DefaultMaxConnections, MaxPendingRequests: DefaultMaxPendingRequests,
		MaxRequests: DefaultMaxRequests, MaxRetries: DefaultMaxRetries}
}

// Limit names a circuit breaker threshold, as Envoy's configuration does.
type Limit int

// The circuit breaker thresholds.
const (
	LimitMaxConnections Limit = iota
	LimitMaxPendingRequests
	LimitMaxRequests
	LimitMaxRetries
)

func (l Limit) String() string {
	switch l {
	case LimitMaxConnections:
		return "max_connections"
	case LimitMaxPendingRequests:
		return "max_pending_requests"
	case LimitMaxRequests:
		return "max_requests"
	case LimitMaxRetries:
		return "max_retries"
	}
	return "Limit(" + strconv.Itoa(int(l)) + ")"
}

// OverflowError is returned when a circuit breaker refuses a request
// (Envoy's reset reason "overflow"). It is never retried.
type OverflowError struct {
	Cluster string
	Limit   Limit
	Value   uint32
}

func (e *OverflowError) Error() string {
	return "cluster " + e.Cluster + " reached its circuit breaker " + e.Limit.String() + " (" + strconv.FormatUint(uint64(e.Value), 10) + ")"
}

// breaker is a cluster's circuit breaker state. It lives, like the
// cluster's Stats, for as long as a cluster of its name exists, so requests
// in flight across a configuration change still count; the limits are
// replaced by each Build. Lock-free.
type breaker struct {
	name                                      string
	stats                                     *Stats
	maxConns, maxPending, maxReqs, maxRetries atomic.Int64
	conns, pending, reqs, retries             atomic.Int64
	// budget is the retry budget, nil without one.
	budget atomic.Pointer[retryBudget]
	// latest is the newest Cluster built with this breaker, whose
	// endpoints a closing TCP connection wakes.
	latest atomic.Pointer[Cluster]
}

func (b *breaker) set(cb CircuitBreakers) {
	b.maxConns.Store(int64(cb.MaxConnections))
	b.maxPending.Store(int64(cb.MaxPendingRequests))
	b.maxReqs.Store(int64(cb.MaxRequests))
	b.maxRetries.Store(int64(cb.MaxRetries))
	if cb.RetryBudget {
		b.budget.Store(&retryBudget{percent: cb.BudgetPercent, min: int64(cb.MinRetryConcurrency)})
	} else {
		b.budget.Store(nil)
	}
}

// retryBudget is a cluster's retry_budget.
type retryBudget struct {
	percent float64
	min     int64
}

// retryLimit is how many requests may be retrying at once now: max_retries,
// or the retry budget's share of the requests in flight.
func (b *breaker) retryLimit() int64 {
	rb := b.budget.Load()
	if rb == nil {
		return b.maxRetries.Load()
	}
	// reqs counts every request in flight, pending ones included.
	return max(int64(rb.percent/100*float64(b.reqs.Load())), rb.min)
}

func (b *breaker) overflow(l Limit, max *atomic.Int64) *OverflowError {
	return &OverflowError{Cluster: b.name, Limit: l, Value: uint32(max.Load())}
}

// beginConnection claims one of max_connections, with no exception for
// an endpoint's first connection (which only a pool that queues requests
// needs).
func (b *breaker) beginConnection() error {
	if b.conns.Add(1) > b.maxConns.Load() {
		b.conns.Add(-1)
		b.stats.cxOverflow.Add(1)
		return b.overflow(LimitMaxConnections, &b.maxConns)
	}
	return nil
}

// beginRequest claims one of max_requests.
func (b *breaker) beginRequest() error {
	if b.reqs.Add(1) > b.maxReqs.Load() {
		b.reqs.Add(-1)
		b.stats.pendingOverflow.Add(1) // Envoy counts max_requests overflows here too
		return b.overflow(LimitMaxRequests, &b.maxReqs)
	}
	return nil
}

func (b *breaker) endRequest() { b.reqs.Add(-1) }

// beginRetry claims one of max_retries (or of the retry budget), counting
// an overflow.
func (b *breaker) beginRetry() bool {
	if b.retries.Add(1) > b.retryLimit() {
		b.retries.Add(-1)
		b.stats.retryOverflow.Add(1)
		return false
	}
	return true
}

func (b *breaker) endRetry() { b.retries.Add(-1) }
