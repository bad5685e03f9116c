package gateway

import (
	"math"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the gateway's Prometheus counters. They count what goes
// wrong and how the gateway recovered; they are touched only off the
// happy path, so a request that succeeds on its first node costs them
// nothing.
type Metrics struct {
	// Retries counts requests sent again to another node after the node
	// named failed before any byte reached the client.
	Retries *prometheus.CounterVec
	// Failovers counts requests moved off the node named, by phase:
	// "before_first_byte" (a retry) or "mid_stream" (a stream continued
	// on another node).
	Failovers *prometheus.CounterVec
	// FailoverRefusals counts broken streams that could not be continued,
	// by reason.
	FailoverRefusals *prometheus.CounterVec
	// Ejections counts nodes ejected by passive outlier detection.
	Ejections *prometheus.CounterVec
	// Readmissions counts ejected nodes re-admitted after a success.
	Readmissions *prometheus.CounterVec
}

// NewMetrics makes the gateway's counters and registers them with reg
// when reg is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crosslogic_gateway_retries_total",
			Help: "Requests retried on another node after the named node failed " +
				"before any byte reached the client.",
		}, []string{"model", "node"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crosslogic_gateway_failovers_total",
			Help: "Requests moved off the named node, by phase " +
				"(before_first_byte, mid_stream).",
		}, []string{"model", "node", "phase"}),
		FailoverRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crosslogic_gateway_failover_refusals_total",
			Help: "Broken streams that could not be continued, by reason.",
		}, []string{"model", "reason"}),
		Ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crosslogic_gateway_node_ejections_total",
			Help: "Nodes ejected by passive outlier detection.",
		}, []string{"model", "node"}),
		Readmissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crosslogic_gateway_node_readmissions_total",
			Help: "Ejected nodes re-admitted after a successful request.",
		}, []string{"model", "node"}),
	}
	if reg != nil {
		reg.MustRegister(m.Retries, m.Failovers, m.FailoverRefusals, m.Ejections,
			m.Readmissions)
	}
	return m
}

// retryBudget bounds retries and failovers to a share of requests, as a
// token bucket: every request deposits `ratio` of a token, every retry
// withdraws one. The bucket starts with, and holds at most, burst
// tokens: enough to retry every request in flight on a node that dies
// (a busy node holds tens of requests), not enough for a failing fleet to
// bank an unbounded storm. Tokens are counted in thousandths in one
// atomic integer: lock-free.
type retryBudget struct {
	milli    atomic.Int64
	deposit  int64
	capMilli int64
}

// DefaultRetryBurst is the retry budget's bucket size in retries.
const DefaultRetryBurst = 100

func (b *retryBudget) init(ratio float64, burst int) {
	b.deposit = int64(math.Round(ratio * 1000))
	b.capMilli = int64(burst) * 1000
	b.milli.Store(b.capMilli)
}

// request records a request, adding to the budget.
func (b *retryBudget) request() {
	if b.milli.Load() < b.capMilli {
		if v := b.milli.Add(b.deposit); v > b.capMilli {
			b.milli.CompareAndSwap(v, b.capMilli)
		}
	}
}

// withdraw takes one retry from the budget, reporting whether there was
// one to take.
func (b *retryBudget) withdraw() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// CounterSum adds up the series of the counter name gathered from g whose
// labels include every given name, value pair: how the failure harness
// and tests read what the gateway counted.
func CounterSum(g prometheus.Gatherer, name string, labels ...string) (float64, error) {
	families, err := g.Gather()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m.GetLabel(), labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum, nil
}

// hasLabels reports whether have holds every name, value pair of want.
func hasLabels(have []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		if !slices.ContainsFunc(have, func(l *dto.LabelPair) bool {
			return l.GetName() == want[i] && l.GetValue() == want[i+1]
		}) {
			return false
		}
	}
	return true
}
