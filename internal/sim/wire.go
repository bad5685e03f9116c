package sim

import (
	"strconv"
	"sync"
)

// wire holds the fixed JSON fragments of one response family, so that
// answers and stream events are built by appending to a reused buffer
// rather than by reflection. The fragments follow vLLM's field order
// and its null fields; generated text never needs escaping, since it is
// made of vocabulary words.
type wire struct {
	idPrefix    string // request id prefix, as vLLM's
	object      string // object of a whole answer
	chunkObject string // object of a stream event

	// A whole answer's choices: open, the text, finish, the finish
	// reason, close.
	answerOpen, answerFinish, answerClose string

	// roleEvent is the choice of a stream's first event, empty when
	// the family has none.
	roleEvent string
	// A token event's choice: open, the token, close.
	tokenOpen, tokenClose string
	// The last event's choice: open, the finish reason, close.
	finishOpen, finishClose string
}

// chatWire is the wire format of /v1/chat/completions.
var chatWire = wire{
	idPrefix:     "chatcmpl-",
	object:       "chat.completion",
	chunkObject:  "chat.completion.chunk",
	answerOpen:   `{"index":0,"message":{"role":"assistant","content":"`,
	answerFinish: `","tool_calls":[]},"logprobs":null,"finish_reason":"`,
	answerClose:  `","stop_reason":null}]`,
	roleEvent: `{"index":0,"delta":{"role":"assistant","content":""},` +
		`"logprobs":null,"finish_reason":null}`,
	tokenOpen:   `{"index":0,"delta":{"content":"`,
	tokenClose:  `"},"logprobs":null,"finish_reason":null}`,
	finishOpen:  `{"index":0,"delta":{},"logprobs":null,"finish_reason":"`,
	finishClose: `","stop_reason":null}`,
}

// completionWire is the wire format of /v1/completions.
var completionWire = wire{
	idPrefix:     "cmpl-",
	object:       "text_completion",
	chunkObject:  "text_completion",
	answerOpen:   `{"index":0,"text":"`,
	answerFinish: `","logprobs":null,"finish_reason":"`,
	answerClose:  `","stop_reason":null,"prompt_logprobs":null}]`,
	tokenOpen:    `{"index":0,"text":"`,
	tokenClose:   `","logprobs":null,"finish_reason":null,"stop_reason":null}`,
	finishOpen:   `{"index":0,"text":"","logprobs":null,"finish_reason":"`,
	finishClose:  `","stop_reason":null}`,
}

// Stream framing: every event is one "data:" line and a blank line.
const (
	eventOpen  = "data: "
	eventClose = "]}\n\n" // closes the choices array and the object
	eventDone  = "data: [DONE]\n\n"
)

// bufPool recycles response buffers. 4 KiB holds a typical whole answer;
// larger ones grow and are kept, up to maxPooledBuf.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

// maxPooledBuf keeps a rare huge answer from pinning its memory.
const maxPooledBuf = 1 << 20

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// appendID appends a request id: the family's prefix and 32 hex digits,
// the length of vLLM's random UUIDs.
func appendID(b []byte, prefix string, base, seq uint64) []byte {
	b = append(b, prefix...)
	b = appendHex64(b, base)
	return appendHex64(b, seq)
}

// appendHex64 appends v as 16 lowercase hex digits.
func appendHex64(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

// appendUsage appends a usage object in vLLM's field order.
func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	return append(b, '}')
}
