// Package sim is an inference engine simulator: a real HTTP server that
// answers vLLM's OpenAI-compatible API closely enough that the gateway,
// the agent and their tests cannot tell it from a vLLM node, without a
// GPU or a model.
//
// A [Server] serves POST /v1/chat/completions, POST /v1/completions,
// POST /v1/embeddings, GET /v1/models, GET /health and GET /metrics,
// with vLLM's JSON shapes, error bodies, SSE framing and Prometheus
// metric names. Use [Server.Handler] to mount it anywhere, [Start] to
// run one on a loopback port for a test, or [Server.ListenAndServe] for
// the `crosslogic sim` command.
//
// # Wire format
//
// Answers, stream events and errors have vLLM's shapes: the fields a
// client reads, with vLLM's nulls for logprobs and stop_reason. Details
// a gateway may notice:
//
//   - A stream's status line and headers (text/event-stream) go out as
//     soon as the request is accepted, before it is scheduled. Events
//     follow, each flushed as made: for chat, a role event with empty
//     content together with the first token; one event per token; a
//     final event with an empty delta (completions: empty text) and the
//     finish_reason (vLLM often puts it on the last token's event
//     instead; a client must take both); a usage event with no choices
//     when stream_options.include_usage holds, which, as in vLLM, is
//     the default once stream_options is given at all; then [DONE].
//   - Errors are {"error": {"message", "type", "param", "code"}}, such as
//     404 NotFoundError for an unknown model; an unknown path or a wrong
//     method gets FastAPI's {"detail": …}; a missing API key gets vLLM's
//     401 {"error": "Unauthorized"}.
//   - The model field of an answer is the name requested, or the first
//     served name when none was. (vLLM answers with its first served
//     name whatever alias was asked for.)
//   - With continue_final_message, vLLM requires add_generation_prompt
//     to be false, and so does the simulator.
//
// # Determinism
//
// Generated text is a pure function of the request's text and seed. A
// token is one word of a fixed built-in vocabulary, emitted with a
// leading space (" word"), so that concatenating tokens reproduces the
// text exactly. The context is every whitespace-separated word of the
// prompt (for chat: of every message content, in order) followed by the
// words generated so far; each next token is chosen by hashing the
// request's seed (0 when absent) with the last four words of that
// context. Nothing else (model name, time, load, server) takes part.
//
// Hence continuation: if prompt P yields tokens t1 … tN, then prompt
// P+t1…tk (completions), or the chat messages of P followed by an
// assistant message t1…tk sent with continue_final_message, yields
// exactly t(k+1) …. A gateway that moves a broken stream to another
// node relies on this, and [Continue] computes the same text offline.
//
// Token counts are word counts: prompt_tokens is the number of words of
// the prompt (for chat: of all message contents), completion_tokens the
// number of tokens generated. A request generates max_tokens (or
// max_completion_tokens) tokens and finishes with "length"; without
// either it generates [Config.OutputTokens] tokens and finishes with
// "stop".
//
// # Scheduling and timing
//
// Like vLLM's --max-num-seqs, at most [Config.MaxNumSeqs] requests run
// at once; the rest wait in a FIFO queue. A running request waits
// [Config.TimeToFirstToken] before its first token and
// [Config.TimeBetweenTokens] before each next one, streamed or not. A
// client that goes away stops its request at once, whether queued or
// running, and frees its slot.
//
// # Failure injection
//
// [Faults], set in [Config] and changed at run time with
// [Server.SetFaults], make a share of inference requests fail: answered
// 500, cut midway (the connection is aborted, so the client sees an
// unexpected EOF, not a clean end), or never answered. Draws come from a
// PCG generator keyed by [Config.Seed] and the request's arrival number,
// so a sequential run is reproducible. [Running.Kill] drops the whole
// node at once.
//
// # Limitations
//
// Only n=1 is supported. Sampling parameters (temperature, top_p, stop,
// logprobs, echo, tools, response_format) are accepted and ignored, as
// are chat roles: only message contents are context. Token-id prompts
// and inputs are rejected with 400. Every served model answers every
// endpoint, generation and embeddings alike. /metrics exposes the
// gauges and counters a gateway or agent reads, not vLLM's histograms.
package sim
