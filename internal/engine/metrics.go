package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/crosslogic/crosslogic/internal/agentapi"
)

// The gauges ParseLoad reads, by engine.
const (
	vllmRunning     = "vllm:num_requests_running"
	vllmWaiting     = "vllm:num_requests_waiting"
	vllmKVCache     = "vllm:kv_cache_usage_perc"  // vLLM 0.10 and later
	vllmGPUCache    = "vllm:gpu_cache_usage_perc" // earlier name, still exported by some
	sglangRunning   = "sglang:num_running_reqs"
	sglangWaiting   = "sglang:num_queue_reqs"
	sglangTokenUsed = "sglang:token_usage"
)

// ErrNoLoadMetrics is returned by ParseLoad for a metrics page without any
// gauge it knows: not vLLM's nor SGLang's, or SGLang without
// --enable-metrics behind a proxy that answers 200 anyway.
var ErrNoLoadMetrics = errors.New("engine: no load metrics in the metrics page")

// gauge accumulates one metric over its label sets.
type gauge struct {
	sum float64
	n   int
}

func (g *gauge) add(v float64) { g.sum += v; g.n++ }

// mean returns the average over label sets, or 0 for none.
func (g *gauge) mean() float64 {
	if g.n == 0 {
		return 0
	}
	return g.sum / float64(g.n)
}

// ParseLoad reads a metrics page in Prometheus' text exposition format
// (or OpenMetrics, whose sample lines are the same) and returns the load
// it reports.
//
// Running and Waiting are summed over every label set of vLLM's and
// SGLang's gauges: one node may run several engines (vLLM's data-parallel
// "engine" label, SGLang's dp ranks) or serve several models, and the
// node's load is their total. KVCacheUsage is a share, so it is their
// mean instead: two engines each half full leave half the node's cache
// free. vLLM's kv_cache_usage_perc is preferred to the older
// gpu_cache_usage_perc when a page has both, so that one cache is not
// counted twice. Samples that are not finite numbers are ignored.
func ParseLoad(r io.Reader) (agentapi.Load, error) {
	gauges := map[string]*gauge{
		vllmRunning: {}, vllmWaiting: {}, vllmKVCache: {}, vllmGPUCache: {},
		sglangRunning: {}, sglangWaiting: {}, sglangTokenUsed: {},
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, v, err := parseSample(line)
		if err != nil {
			return agentapi.Load{}, err
		}
		g := gauges[name]
		if g == nil || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		g.add(v)
	}
	if err := sc.Err(); err != nil {
		return agentapi.Load{}, fmt.Errorf("engine: read metrics: %w", err)
	}

	found := false
	for _, g := range gauges {
		found = found || g.n > 0
	}
	if !found {
		return agentapi.Load{}, ErrNoLoadMetrics
	}

	kv := gauges[vllmKVCache]
	if kv.n == 0 {
		kv = gauges[vllmGPUCache]
	}
	if kv.n == 0 {
		kv = gauges[sglangTokenUsed]
	}
	return agentapi.Load{
		Running:      gauges[vllmRunning].sum + gauges[sglangRunning].sum,
		Waiting:      gauges[vllmWaiting].sum + gauges[sglangWaiting].sum,
		KVCacheUsage: min(max(kv.mean(), 0), 1),
	}, nil
}

// parseSample splits a sample line, `name{labels} value [timestamp]`,
// into its metric name and value. Labels are skipped, minding quoted
// values that may hold '}' or escaped quotes.
func parseSample(line string) (name string, v float64, err error) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", 0, fmt.Errorf("engine: malformed metrics line %q", line)
	}
	name, rest := line[:end], line[end:]

	if rest[0] == '{' {
		j := labelsEnd(rest)
		if j < 0 {
			return "", 0, fmt.Errorf("engine: unterminated labels in metrics line %q", line)
		}
		rest = rest[j+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", 0, fmt.Errorf("engine: no value in metrics line %q", line)
	}
	v, err = strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", 0, fmt.Errorf("engine: bad value in metrics line %q: %w", line, err)
	}
	return name, v, nil
}

// labelsEnd returns the index of the '}' closing the label set that s
// opens, or -1.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // the escaped character cannot end the string
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}
