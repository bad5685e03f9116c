package registry

import "time"

// Outlier configures passive outlier detection: the gateway reports every
// request's outcome, and a node that fails too often in a row is ejected
// for a cooldown, during which balancers prefer other nodes.
type Outlier struct {
	// Consecutive is the failures in a row that eject a node. Zero means
	// 5: enough that a single unlucky request does not eject a node, few
	// enough that a dead node costs at most a handful of retries.
	Consecutive int32
	// BaseEjection is the first cooldown. Zero means 5s. Each ejection in
	// a row doubles it.
	BaseEjection time.Duration
	// MaxEjection caps the cooldown. Zero means 2m.
	MaxEjection time.Duration
}

func (o Outlier) withDefaults() Outlier {
	if o.Consecutive <= 0 {
		o.Consecutive = 5
	}
	if o.BaseEjection <= 0 {
		o.BaseEjection = 5 * time.Second
	}
	if o.MaxEjection <= 0 {
		o.MaxEjection = 2 * time.Minute
	}
	return o
}

// Failed records a failed request to n: a refused or reset connection, a
// timeout or a 5xx answer; never a client's cancellation or a 4xx. It
// returns the end of the cooldown when this failure ejected the node.
//
// The cooldown is BaseEjection × 2^(k-1) for the k-th ejection in a row,
// capped at MaxEjection. When it ends the node takes requests again; the
// first one that fails ejects it again at once (its failure count is still
// at the threshold), and the first that succeeds re-admits it for good.
//
// Concurrent failures at the threshold, a burst from a node that just
// died, eject it once: only the call that moves the end of the cooldown
// ejects.
func (n *Node) Failed(now time.Time, o Outlier) (ejectedUntil time.Time, ejected bool) {
	o = o.withDefaults()
	prev := n.ejectedUntil.Load()
	if n.failures.Add(1) < o.Consecutive || (prev != 0 && now.UnixNano() < prev) {
		return time.Time{}, false
	}
	k := n.ejections.Load() + 1
	// Shift the cap down rather than the base up: BaseEjection << (k-1)
	// overflows to a negative cooldown for a base of 18s at k = 30.
	cooldown := o.MaxEjection
	if k <= 62 && o.BaseEjection <= o.MaxEjection>>(k-1) {
		cooldown = o.BaseEjection << (k - 1)
	}
	until := now.Add(cooldown)
	if !n.ejectedUntil.CompareAndSwap(prev, until.UnixNano()) {
		return time.Time{}, false // another failure ejected it first
	}
	n.ejections.Add(1)
	return until, true
}

// Succeeded records a successful request to n. It reports whether this
// success re-admitted a node that had been ejected.
func (n *Node) Succeeded() (readmitted bool) {
	if n.failures.Load() != 0 {
		n.failures.Store(0)
	}
	if n.ejections.Load() == 0 || n.ejections.Swap(0) == 0 {
		return false // the common case costs one load; Swap picks one winner
	}
	n.ejectedUntil.Store(0)
	return true
}
