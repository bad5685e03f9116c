package sim

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults for the zero values of [Config].
const (
	// DefaultOutputTokens is how many tokens a request without max_tokens
	// generates when Config.OutputTokens is zero.
	DefaultOutputTokens = 16
	// DefaultEmbeddingDims is the embedding length when
	// Config.EmbeddingDims is zero.
	DefaultEmbeddingDims = 16
	// DefaultMaxModelLen is the context length when Config.MaxModelLen
	// is zero.
	DefaultMaxModelLen = 8192
)

// nominalSeqs stands for vLLM's default --max-num-seqs when reporting
// KV cache usage of a simulator without a MaxNumSeqs limit.
const nominalSeqs = 256

// Config describes one simulated engine. The zero value of every field
// but Models is usable.
type Config struct {
	// Models are the served model names, like vllm serve's
	// --served-model-name. The first is used for requests that name no
	// model, and as the model_name label of every metric. Required.
	Models []string

	// APIKey, when not empty, is required as "Authorization: Bearer
	// <APIKey>" on every /v1/ path, like vllm serve --api-key. /health
	// and /metrics stay open.
	APIKey string

	// TimeToFirstToken is how long a running request waits before its
	// first token (prefill time; for embeddings, the whole answer). Zero
	// means no wait.
	TimeToFirstToken time.Duration

	// TimeBetweenTokens is how long a running request waits before each
	// token after the first. Zero means no wait. Non-streamed requests
	// wait the same total before answering.
	TimeBetweenTokens time.Duration

	// OutputTokens is how many tokens a request generates when it sets
	// neither max_tokens nor max_completion_tokens; it then finishes
	// with "stop". Zero means DefaultOutputTokens.
	OutputTokens int

	// MaxNumSeqs is how many requests run at once, like vllm serve
	// --max-num-seqs; the rest wait in a FIFO queue. Zero means no
	// limit.
	MaxNumSeqs int

	// MaxModelLen is the context length in tokens, like vllm serve
	// --max-model-len: a request whose prompt plus max_tokens exceeds it
	// is answered 400. Zero means DefaultMaxModelLen.
	MaxModelLen int

	// EmbeddingDims is the length of every embedding. Zero means
	// DefaultEmbeddingDims.
	EmbeddingDims int

	// Seed seeds failure injection draws. It does not affect generated
	// text, which depends only on the request (see the package doc).
	Seed uint64

	// Faults is the failure injection in force at start; change it later
	// with Server.SetFaults.
	Faults Faults

	// Logger receives the simulator's logs. Nil discards them.
	Logger *slog.Logger
}

// Faults describes failure injection. Rates are shares of inference
// requests (chat, completions, embeddings), from 0 (never) to 1
// (always); each request draws once, and at most one fault hits it,
// checked in the order error, hang, break. The zero value injects
// nothing.
type Faults struct {
	// ErrorRate is the share of requests answered 500 with vLLM's
	// InternalServerError body, before queueing and before any byte of
	// a stream.
	ErrorRate float64

	// BreakRate is the share of requests whose connection is aborted
	// midway. A stream is cut after BreakAfter token events, without the
	// final chunk or [DONE], so the client sees an unexpected EOF; a
	// non-streamed request is cut before any byte of the answer, after
	// generating as many tokens.
	BreakRate float64

	// BreakAfter is how many tokens a broken request produces before the
	// break, capped at the request's length. Zero means half of them.
	BreakAfter int

	// HangRate is the share of requests never answered: the connection
	// stays open, silent, until the client goes away or the server
	// closes. A hung request takes no MaxNumSeqs slot.
	HangRate float64

	// Unhealthy makes GET /health answer 503, as vLLM does once its
	// engine has died. Inference endpoints are not affected.
	Unhealthy bool
}

// active reports whether f injects anything into inference requests.
func (f Faults) active() bool {
	return f.ErrorRate > 0 || f.BreakRate > 0 || f.HangRate > 0
}

// validate reports the first field of f out of range.
func (f Faults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"error rate", f.ErrorRate},
		{"break rate", f.BreakRate},
		{"hang rate", f.HangRate},
	} {
		// The negated comparison also rejects NaN.
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("sim: %s %v out of [0, 1]", r.name, r.v)
		}
	}
	if f.BreakAfter < 0 {
		return fmt.Errorf("sim: negative break after %d", f.BreakAfter)
	}
	return nil
}

// withDefaults validates c and returns a copy with every zero value
// replaced by its default.
func (c Config) withDefaults() (Config, error) {
	if len(c.Models) == 0 {
		return c, errors.New("sim: no model names")
	}
	seen := make(map[string]bool, len(c.Models))
	for _, m := range c.Models {
		if strings.TrimSpace(m) == "" {
			return c, errors.New("sim: empty model name")
		}
		if seen[m] {
			return c, fmt.Errorf("sim: duplicate model name %q", m)
		}
		seen[m] = true
	}
	c.Models = append([]string(nil), c.Models...)

	switch {
	case c.TimeToFirstToken < 0:
		return c, fmt.Errorf("sim: negative time to first token %v", c.TimeToFirstToken)
	case c.TimeBetweenTokens < 0:
		return c, fmt.Errorf("sim: negative time between tokens %v", c.TimeBetweenTokens)
	case c.OutputTokens < 0:
		return c, fmt.Errorf("sim: negative output tokens %d", c.OutputTokens)
	case c.MaxNumSeqs < 0:
		return c, fmt.Errorf("sim: negative max num seqs %d", c.MaxNumSeqs)
	case c.MaxModelLen < 0:
		return c, fmt.Errorf("sim: negative max model len %d", c.MaxModelLen)
	case c.EmbeddingDims < 0:
		return c, fmt.Errorf("sim: negative embedding dims %d", c.EmbeddingDims)
	}
	if err := c.Faults.validate(); err != nil {
		return c, err
	}

	if c.OutputTokens == 0 {
		c.OutputTokens = DefaultOutputTokens
	}
	if c.MaxModelLen == 0 {
		c.MaxModelLen = DefaultMaxModelLen
	}
	if c.EmbeddingDims == 0 {
		c.EmbeddingDims = DefaultEmbeddingDims
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// RegisterFlags defines flags on fs that set c's fields, for the
// `crosslogic sim` command. Flags are named after vllm serve's where
// one exists (-served-model-name, -api-key, -max-num-seqs,
// -max-model-len); the values c holds when RegisterFlags is called are
// the flags' defaults. -served-model-name takes a comma-separated list
// and may be repeated; its first use replaces the default list. The
// listen address and the logger are left to the caller.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	modelsSet := false
	fs.Func("served-model-name",
		"comma-separated `names` of the served models; the first is the default "+
			defaultNote(strings.Join(c.Models, ",")),
		func(v string) error {
			if !modelsSet {
				c.Models, modelsSet = nil, true
			}
			for m := range strings.SplitSeq(v, ",") {
				if m = strings.TrimSpace(m); m != "" {
					c.Models = append(c.Models, m)
				}
			}
			return nil
		})
	fs.StringVar(&c.APIKey, "api-key", c.APIKey,
		"require this bearer `key` on /v1/ paths (empty: no authentication)")
	fs.DurationVar(&c.TimeToFirstToken, "time-to-first-token", c.TimeToFirstToken,
		"wait before the first token of each request")
	fs.DurationVar(&c.TimeBetweenTokens, "time-between-tokens", c.TimeBetweenTokens,
		"wait between tokens")
	fs.IntVar(&c.OutputTokens, "output-tokens", c.OutputTokens,
		"tokens generated when a request has no max_tokens (0: 16)")
	fs.IntVar(&c.MaxNumSeqs, "max-num-seqs", c.MaxNumSeqs,
		"requests running at once; more wait in a FIFO queue (0: no limit)")
	fs.IntVar(&c.MaxModelLen, "max-model-len", c.MaxModelLen,
		"context length in tokens (0: 8192)")
	fs.IntVar(&c.EmbeddingDims, "embedding-dims", c.EmbeddingDims,
		"length of embeddings (0: 16)")
	fs.Uint64Var(&c.Seed, "fault-seed", c.Seed,
		"seed of failure injection draws (not of the generated text)")
	fs.Float64Var(&c.Faults.ErrorRate, "error-rate", c.Faults.ErrorRate,
		"share of requests answered 500, 0 to 1")
	fs.Float64Var(&c.Faults.BreakRate, "break-rate", c.Faults.BreakRate,
		"share of requests whose connection is aborted midway, 0 to 1")
	fs.IntVar(&c.Faults.BreakAfter, "break-after", c.Faults.BreakAfter,
		"tokens sent before a break (0: half of the request's tokens)")
	fs.Float64Var(&c.Faults.HangRate, "hang-rate", c.Faults.HangRate,
		"share of requests never answered, 0 to 1")
	fs.BoolVar(&c.Faults.Unhealthy, "unhealthy", c.Faults.Unhealthy,
		"answer 503 on /health")
}

// defaultNote renders a flag.Func default the way the flag package
// renders the defaults of its own flag kinds.
func defaultNote(v string) string {
	if v == "" {
		return "(required)"
	}
	return fmt.Sprintf("(default %q)", v)
}
