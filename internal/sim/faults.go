package sim

import (
	"context"
	"math/rand/v2"
)

// faultKind is the failure injected into one request.
type faultKind uint8

const (
	faultNone faultKind = iota
	faultError
	faultHang
	faultBreak
)

// drawFault decides the fault of one inference request that would
// produce tokens tokens, and for a break after how many tokens it cuts.
//
// Each request gets its own PCG stream keyed by the fault seed and its
// arrival number, so draws need no lock and a sequential run always
// injects the same faults into the same requests.
func (s *Server) drawFault(tokens int) (kind faultKind, breakAt int) {
	f := s.faults.Load()
	if !f.active() {
		return faultNone, 0
	}
	src := rand.NewPCG(s.cfg.Seed, s.draws.Add(1))
	switch {
	case uniform(src) < f.ErrorRate:
		return faultError, 0
	case uniform(src) < f.HangRate:
		return faultHang, 0
	case uniform(src) < f.BreakRate:
		breakAt = tokens / 2
		if f.BreakAfter > 0 {
			breakAt = min(f.BreakAfter, tokens)
		}
		return faultBreak, breakAt
	}
	return faultNone, 0
}

// uniform returns a float64 in [0, 1) from src: 53 random bits, the
// way math/rand/v2's Float64 makes one.
func uniform(src *rand.PCG) float64 {
	return float64(src.Uint64()>>11) / (1 << 53)
}

// hang holds a request unanswered until its client goes away or the
// server closes.
func (s *Server) hang(ctx context.Context, res *result) {
	s.stats.injectedHangs.Add(1)
	res.outcome = outcomeHang
	<-ctx.Done()
}
