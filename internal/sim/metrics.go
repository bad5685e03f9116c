package sim

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newMetrics returns the /metrics handler: vLLM's metric names and
// labels over a private registry. Every value is read from the
// server's own atomic counters at scrape time, so requests pay nothing
// for metrics beyond those counters.
func (s *Server) newMetrics() http.Handler {
	// vLLM labels every series with the first served model name and,
	// since its V1 engine, the engine index.
	labels := prometheus.Labels{"model_name": s.models[0].name, "engine": "0"}
	with := func(extra prometheus.Labels) prometheus.Labels {
		l := prometheus.Labels{}
		for k, v := range labels {
			l[k] = v
		}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(
			prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, l prometheus.Labels,
		f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(
			prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l}, f)
	}
	load := func(v interface{ Load() int64 }) func() float64 {
		return func() float64 { return float64(v.Load()) }
	}

	const successHelp = "Count of successfully processed requests."
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
			load(&s.adm.running)),
		gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
			load(&s.adm.waiting)),
		// vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; readers
		// of either name exist, so both are exported.
		gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.",
			s.cacheUsage),
		gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
			s.cacheUsage),
		counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.",
			labels, load(&s.stats.promptTokens)),
		counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
			labels, load(&s.stats.generationTokens)),
		counter("vllm:request_success_total", successHelp,
			with(prometheus.Labels{"finished_reason": finishStop}),
			load(&s.stats.finishedStop)),
		counter("vllm:request_success_total", successHelp,
			with(prometheus.Labels{"finished_reason": finishLength}),
			load(&s.stats.finishedLength)),
		counter("vllm:request_success_total", successHelp,
			with(prometheus.Labels{"finished_reason": "abort"}),
			load(&s.stats.cancelled)),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// cacheUsage simulates KV cache usage as the share of sequence slots in
// use, 0 to 1. Without a MaxNumSeqs limit it is measured against vLLM's
// default of 256 sequences.
func (s *Server) cacheUsage() float64 {
	seqs := s.cfg.MaxNumSeqs
	if seqs == 0 {
		seqs = nominalSeqs
	}
	return min(float64(s.adm.running.Load())/float64(seqs), 1)
}
