package upstream

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// OutlierDetection is a cluster's outlier_detection, with Envoy's meanings,
// for the consecutive 5xx, consecutive gateway failure and consecutive
// local origin failure detectors. Use DefaultOutlierDetection for Envoy's
// defaults.
type OutlierDetection struct {
	Consecutive5xx            uint32
	ConsecutiveGatewayFailure uint32
	// SplitLocalOrigin (split_external_local_origin_errors) counts the
	// failures of requests that got no response (a connect failure, a
	// reset, a timeout) on a detector of their own, with
	// ConsecutiveLocalOriginFailure; the 5xx and gateway failure
	// detectors then see only responses. Without it, a connect failure
	// or reset counts as a 503 and a timeout as a 504.
	SplitLocalOrigin              bool
	ConsecutiveLocalOriginFailure uint32
	// Enforcing* are the percent chances that a detection ejects the host.
	Enforcing5xx                uint32
	EnforcingGatewayFailure     uint32
	EnforcingLocalOriginFailure uint32
	// Interval is how often ejected hosts are checked for their return
	// (and ejection backoffs decay).
	Interval time.Duration
	// An endpoint's n-th ejection lasts min(n × BaseEjectionTime,
	// max(BaseEjectionTime, MaxEjectionTime)), plus up to
	// MaxEjectionTimeJitter.
	BaseEjectionTime      time.Duration
	MaxEjectionTime       time.Duration
	MaxEjectionTimeJitter time.Duration
	// MaxEjectionPercent bounds the share of the cluster's endpoints
	// ejected at once; AlwaysEjectOneHost lets one be ejected regardless.
	MaxEjectionPercent uint32
	AlwaysEjectOneHost bool
}

// DefaultOutlierDetection returns Envoy's defaults.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{Consecutive5xx: 5, ConsecutiveGatewayFailure: 5, Enforcing5xx: 100, EnforcingGatewayFailure: 0,
		ConsecutiveLocalOriginFailure: 5, EnforcingLocalOriginFailure: 100,
		Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second, MaxEjectionPercent: 10}
}

// DefaultPanicThreshold is Envoy's default healthy_panic_threshold, in
// percent.
const DefaultPanicThreshold = 50

// detector is one cluster's outlier detector. It lives for as long as a
// cluster of its name has outlier detection, across configuration versions,
// so ejections survive a change that keeps the endpoint. One timer per
// detector (not per endpoint) returns ejected hosts.
//
// mu guards cfg, hosts, timer and every host's ejection bookkeeping; it is
// taken for a failed request (a 5xx or a local failure), on each interval
// and by Build, never for a successful request. active and each host's ejected flag are
// read lock-free by the load balancer.
type detector struct {
	stats  *Stats
	active atomic.Int64 // hosts ejected now
	// split is cfg.SplitLocalOrigin, read without mu.
	split atomic.Bool

	mu     sync.Mutex
	cfg    OutlierDetection
	hosts  []*hostState
	timer  *time.Timer
	gen    int // the timer generation: a stale timer's tick does nothing
	closed bool
}

// hostState is one endpoint's outlier detection state.
type hostState struct {
	d           *detector
	c5xx, cgw   atomic.Uint32
	clocal      atomic.Uint32 // consecutive local origin failures (split only)
	ejected     atomic.Bool
	ejectedAt   time.Time     // under d.mu
	ejectFor    time.Duration // under d.mu
	backoff     int64         // under d.mu: the ejection time multiplier
	unejectedAt time.Time     // under d.mu
}

// report counts one response from the host by its status.
func (h *hostState) report(code int) {
	if h.clocal.Load() != 0 {
		h.clocal.Store(0) // a response: the host is reachable
	}
	if code < 500 || code > 599 {
		if h.c5xx.Load() != 0 {
			h.c5xx.Store(0)
		}
		if h.cgw.Load() != 0 {
			h.cgw.Store(0)
		}
		return
	}
	if h.ejected.Load() {
		return
	}
	if code == 502 || code == 503 || code == 504 {
		h.d.counted(h, &h.cgw, detectGateway)
	} else if h.cgw.Load() != 0 {
		h.cgw.Store(0)
	}
	h.d.counted(h, &h.c5xx, detect5xx)
}

// reportLocal counts a request to the host that got no response.
func (h *hostState) reportLocal(f LocalFailure) {
	if !h.d.split.Load() {
		if f == TimedOut {
			h.report(504)
		} else {
			h.report(503)
		}
		return
	}
	if h.ejected.Load() {
		return
	}
	if f != ConnectFailed {
		// A connection was made, which Envoy counts as a local origin
		// success before the failure: only failures to connect add up.
		h.clocal.Store(0)
	}
	h.d.counted(h, &h.clocal, detectLocal)
}

// LocalFailure is how a request to an endpoint failed without a response.
type LocalFailure uint8

const (
	// ConnectFailed: no connection could be made.
	ConnectFailed LocalFailure = iota
	// Reset: the connection broke (a reset, an end of stream) before the
	// response came.
	Reset
	// TimedOut: no response came within the request's timeout.
	TimedOut
)

// detection names a detector.
type detection uint8

const (
	detect5xx detection = iota
	detectGateway
	detectLocal
)

// counted increments a consecutive-failure counter and runs the detection
// when it reaches its threshold.
func (d *detector) counted(h *hostState, ctr *atomic.Uint32, kind detection) {
	n := ctr.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	var threshold, enforcing uint32
	var detected, enforced *atomic.Uint64
	switch kind {
	case detect5xx:
		threshold, enforcing = d.cfg.Consecutive5xx, d.cfg.Enforcing5xx
		detected, enforced = &d.stats.odDetected5xx, &d.stats.odEnforced5xx
	case detectGateway:
		threshold, enforcing = d.cfg.ConsecutiveGatewayFailure, d.cfg.EnforcingGatewayFailure
		detected, enforced = &d.stats.odDetectedGw, &d.stats.odEnforcedGw
	default:
		threshold, enforcing = d.cfg.ConsecutiveLocalOriginFailure, d.cfg.EnforcingLocalOriginFailure
		detected, enforced = &d.stats.odDetectedLocal, &d.stats.odEnforcedLocal
	}
	// A threshold of 0 turns the detector off, as in Envoy (the count
	// never equals it).
	if threshold == 0 || n < threshold || h.ejected.Load() || d.closed {
		return
	}
	// Detected: start counting the next bout afresh.
	ctr.Store(0)
	detected.Add(1)
	if enforcing < 100 && uint32(rand.IntN(100)) >= enforcing {
		return
	}
	active := d.active.Load()
	if n := int64(len(d.hosts)); n == 0 || (100*(active+1) > int64(d.cfg.MaxEjectionPercent)*n && !(d.cfg.AlwaysEjectOneHost && active == 0)) {
		d.stats.odOverflow.Add(1)
		return
	}
	d.eject(h, time.Now())
	enforced.Add(1)
}

// eject ejects h; d.mu is held.
func (d *detector) eject(h *hostState, now time.Time) {
	base := d.cfg.BaseEjectionTime
	limit := max(base, d.cfg.MaxEjectionTime)
	if time.Duration(h.backoff)*base < limit {
		h.backoff++
	}
	h.ejectFor = min(time.Duration(h.backoff)*base, limit)
	if j := d.cfg.MaxEjectionTimeJitter; j > 0 {
		h.ejectFor += time.Duration(rand.Int64N(int64(j)))
	}
	h.ejectedAt = now
	h.ejected.Store(true)
	h.c5xx.Store(0)
	h.cgw.Store(0)
	h.clocal.Store(0)
	d.active.Add(1)
	d.stats.odActive.Add(1)
	d.stats.odEnforced.Add(1)
}

// tick returns hosts whose ejection time is over and decays the backoff
// of hosts that stayed healthy for an interval, then re-arms the timer.
func (d *detector) tick(gen int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || gen != d.gen {
		return
	}
	now := time.Now()
	for _, h := range d.hosts {
		if !h.ejected.Load() {
			if h.backoff > 0 && now.Sub(h.unejectedAt) >= d.cfg.Interval {
				h.backoff--
				h.unejectedAt = now
			}
			continue
		}
		if now.Sub(h.ejectedAt) >= h.ejectFor {
			d.uneject(h, now)
		}
	}
	d.arm()
}

// arm starts the interval timer; d.mu is held.
func (d *detector) arm() {
	if d.timer != nil {
		d.timer.Stop()
	}
	d.gen++
	gen := d.gen
	d.timer = time.AfterFunc(d.cfg.Interval, func() { d.tick(gen) })
}

// uneject returns h to service; d.mu is held.
func (d *detector) uneject(h *hostState, now time.Time) {
	h.ejected.Store(false)
	h.unejectedAt = now
	h.c5xx.Store(0)
	h.cgw.Store(0)
	h.clocal.Store(0)
	d.active.Add(-1)
	d.stats.odActive.Add(-1)
}

// update installs a configuration version's settings and hosts; hosts no
// longer present are forgotten (and no longer count as ejected).
func (d *detector) update(cfg OutlierDetection, hosts []*hostState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := make(map[*hostState]bool, len(hosts))
	for _, h := range hosts {
		keep[h] = true
	}
	for _, h := range d.hosts {
		if !keep[h] && h.ejected.Load() {
			d.uneject(h, time.Now())
		}
	}
	d.hosts = hosts
	rearm := d.timer == nil || cfg.Interval != d.cfg.Interval
	d.cfg = cfg
	d.split.Store(cfg.SplitLocalOrigin)
	if rearm {
		d.arm()
	}
}

// close stops the detector; its hosts are no longer ejected.
func (d *detector) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
	}
	for _, h := range d.hosts {
		if h.ejected.Load() {
			d.uneject(h, time.Now())
		}
	}
	d.hosts = nil
}
