package main

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// failed stands for the latency of a request that did not succeed, so
// that failures rank above every success instead of vanishing from the
// percentiles.
const failed = time.Duration(math.MaxInt64)

// dist is a latency distribution: every sample of one step, sorted.
type dist []time.Duration

// newDist sorts samples in place and returns them as a dist.
func newDist(samples []time.Duration) dist {
	slices.Sort(samples)
	return dist(samples)
}

// at returns the p-th percentile (0 < p ≤ 100) by the nearest-rank
// method: the smallest sample at or above p percent of all samples.
func (d dist) at(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// micros is a duration in microseconds. +Inf stands for a failed
// request and is written as null in JSON, which has no infinity.
type micros float64

func (m micros) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(m), 0) || math.IsNaN(float64(m)) {
		return []byte("null"), nil
	}
	return json.Marshal(math.Round(float64(m)*10) / 10)
}

func (m *micros) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*m = micros(math.Inf(1))
		return nil
	}
	return json.Unmarshal(b, (*float64)(m))
}

// failedAt reports whether the value stands for a failed request.
func (m micros) failedAt() bool { return math.IsInf(float64(m), 1) }

// summary is the percentiles reported for one distribution.
type summary struct {
	P50  micros `json:"p50_us"`
	P90  micros `json:"p90_us"`
	P99  micros `json:"p99_us"`
	P999 micros `json:"p99_9_us"`
	Max  micros `json:"max_us"`
}

func (d dist) summary() summary {
	return summary{P50: us(d.at(50)), P90: us(d.at(90)), P99: us(d.at(99)),
		P999: us(d.at(99.9)), Max: us(d.at(100))}
}

// spectrumPoints are the percentiles plotted for a distribution: dense
// towards the tail, where proxies differ.
var spectrumPoints = []float64{1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90,
	92.5, 95, 96, 97, 98, 99, 99.5, 99.7, 99.8, 99.9}

// spectrum returns [percentile, microseconds] pairs for the plot,
// stopping at the first failed request.
func (d dist) spectrum() [][2]float64 {
	var pts [][2]float64
	for _, p := range spectrumPoints {
		v := d.at(p)
		if v == failed {
			break
		}
		pts = append(pts, [2]float64{p, float64(us(v))})
	}
	return pts
}

// us converts to microseconds; failed becomes +Inf.
func us(d time.Duration) micros {
	if d == failed {
		return micros(math.Inf(1))
	}
	return micros(float64(d) / float64(time.Microsecond))
}
