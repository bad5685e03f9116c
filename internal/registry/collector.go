package registry

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the registry's nodes as Prometheus gauges, read at
// scrape time so the request path pays nothing for them.
type Collector struct {
	r *Registry

	state, inflight, running, waiting, kv, ejected, certExpiry *prometheus.Desc
}

// NewCollector returns a collector of r's nodes.
func NewCollector(r *Registry) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("crosslogic_node_"+name, help,
			append([]string{"node", "model"}, labels...), nil)
	}
	return &Collector{r: r,
		state:      d("state", "1 for the node's current state.", "state"),
		inflight:   d("inflight_requests", "Requests this gateway has open to the node."),
		running:    d("engine_running_requests", "Requests the engine reported running."),
		waiting:    d("engine_waiting_requests", "Requests the engine reported queued."),
		kv:         d("engine_kv_cache_usage_ratio", "KV-cache use the engine reported, 0 to 1."),
		ejected:    d("ejected", "1 while passive outlier detection ejects the node."),
		certExpiry: d("certificate_expiry_timestamp_seconds", "When the node's certificate expires."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.inflight, c.running, c.waiting, c.kv,
		c.ejected, c.certExpiry} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.r.now()
	c.r.mu.Lock()
	type row struct {
		st   Status
		node *Node
	}
	rows := make([]row, 0, len(c.r.nodes))
	for _, e := range c.r.nodes {
		rows = append(rows, row{e.status(), e.node})
	}
	c.r.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range rows {
		for _, m := range r.st.Models {
			id := r.st.ID
			for _, s := range []State{StateJoining, StateReady, StateDraining, StateUnhealthy} {
				v := 0.0
				if r.st.State == s {
					v = 1
				}
				gauge(c.state, v, id, m, string(s))
			}
			gauge(c.inflight, float64(r.st.Inflight), id, m)
			gauge(c.running, r.st.Load.Running, id, m)
			gauge(c.waiting, r.st.Load.Waiting, id, m)
			gauge(c.kv, r.st.Load.KVCacheUsage, id, m)
			ej := 0.0
			if r.node.Ejected(now) {
				ej = 1
			}
			gauge(c.ejected, ej, id, m)
			if !r.st.CertNotAfter.IsZero() {
				gauge(c.certExpiry, float64(r.st.CertNotAfter.Unix()), id, m)
			}
		}
	}
}
