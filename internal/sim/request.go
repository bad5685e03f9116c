package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"unicode/utf8"
)

// maxBodyBytes bounds a request body. vLLM sets no limit of its own;
// this one only keeps a broken client from exhausting memory.
const maxBodyBytes = 64 << 20

// body is a reusable request body reader: the buffer and the limiting
// reader in front of the request's body.
type body struct {
	buf   bytes.Buffer
	limit io.LimitedReader
}

// bodyPool recycles request bodies across requests.
var bodyPool = sync.Pool{New: func() any { return new(body) }}

// decodeBody reads r's body and decodes it as JSON into v.
func decodeBody(r *http.Request, v any) *apiError {
	b := bodyPool.Get().(*body)
	defer func() {
		b.limit.R = nil
		bodyPool.Put(b)
	}()
	b.buf.Reset()
	b.limit = io.LimitedReader{R: r.Body, N: maxBodyBytes + 1}
	_, err := b.buf.ReadFrom(&b.limit)
	switch {
	case err != nil:
		return badRequest("", "Could not read the request body.")
	case b.buf.Len() > maxBodyBytes:
		return &apiError{
			status: http.StatusRequestEntityTooLarge,
			typ:    "BadRequestError",
			msg:    "The request body is too large.",
		}
	}
	if err := json.Unmarshal(b.buf.Bytes(), v); err != nil {
		return decodeError(err)
	}
	return nil
}

// streamOptions is the OpenAI stream_options object.
type streamOptions struct {
	IncludeUsage *bool `json:"include_usage"`
}

// chatRequest holds the fields of a chat completion request the
// simulator reads; the others are accepted and ignored, like vLLM
// ignores fields it does not know.
type chatRequest struct {
	Model                string         `json:"model"`
	Messages             []chatMessage  `json:"messages"`
	MaxTokens            *int           `json:"max_tokens"`
	MaxCompletionTokens  *int           `json:"max_completion_tokens"`
	N                    *int           `json:"n"`
	Seed                 *int64         `json:"seed"`
	Stream               bool           `json:"stream"`
	StreamOptions        *streamOptions `json:"stream_options"`
	ContinueFinalMessage bool           `json:"continue_final_message"`
	// AddGenerationPrompt is vLLM's add_generation_prompt, true when
	// absent.
	AddGenerationPrompt *bool `json:"add_generation_prompt"`
}

// chatMessage is one message of a chat; only its role and text matter.
type chatMessage struct {
	Role    string         `json:"role"` // required; empty when absent
	Content messageContent `json:"content"`
}

// messageContent is a message's content: a string, null, or an array
// of text parts.
type messageContent struct {
	text  string   // the content when it is a string
	parts []string // the texts of its parts when it is an array
}

// UnmarshalJSON accepts a string, null or an array of
// {"type": "text", "text": …} parts; other part types are rejected,
// since the simulator has no use for images or audio.
func (c *messageContent) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		return unquote(b, &c.text)
	case 'n':
		return nil
	case '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return badRequest("messages", "Content parts must be objects with a type and a text.")
		}
		c.parts = make([]string, 0, len(parts))
		for _, p := range parts {
			if p.Type != "text" {
				return badRequest("messages",
					"Content part type %q is not supported by the simulator; only \"text\" is.",
					p.Type)
			}
			if p.Text == nil {
				return badRequest("messages", "A text content part has no text.")
			}
			c.parts = append(c.parts, *p.Text)
		}
		return nil
	default:
		return badRequest("messages",
			"Message content must be a string or an array of content parts.")
	}
}

// feed appends the content's words to g and reports how many there
// were.
func (c *messageContent) feed(g *generator) int {
	n := g.feed(c.text)
	for _, p := range c.parts {
		n += g.feed(p)
	}
	return n
}

// completionRequest holds the fields of a (legacy) completion request
// the simulator reads.
type completionRequest struct {
	Model         string         `json:"model"`
	Prompt        texts          `json:"prompt"`
	MaxTokens     *int           `json:"max_tokens"`
	N             *int           `json:"n"`
	Seed          *int64         `json:"seed"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
}

// embeddingRequest holds the fields of an embedding request the
// simulator reads.
type embeddingRequest struct {
	Model          string `json:"model"`
	Input          texts  `json:"input"`
	EncodingFormat string `json:"encoding_format"`
	Dimensions     *int   `json:"dimensions"`
}

// texts is a prompt or an embedding input: a string or an array of
// strings. Token-id arrays, which vLLM also takes, are rejected.
type texts struct {
	list  []string
	set   bool   // whether the field was present and not null
	param string // the field name for error messages, set before decoding
}

// UnmarshalJSON accepts a string, an array of strings, or null for an
// absent field.
func (t *texts) UnmarshalJSON(b []byte) error {
	t.set = b[0] != 'n'
	switch b[0] {
	case 'n':
		return nil
	case '"':
		t.list = make([]string, 1)
		return unquote(b, &t.list[0])
	case '[':
		if err := json.Unmarshal(b, &t.list); err != nil {
			return badRequest(t.param,
				"Token id inputs are not supported by the simulator; send text.")
		}
		return nil
	default:
		return badRequest(t.param, "Field `%s` must be a string or an array of strings.",
			t.param)
	}
}

// unquote decodes the JSON string literal b, which the decoder has
// already validated, into dst. A literal without escapes, the usual
// case, needs no second pass through encoding/json.
func unquote(b []byte, dst *string) error {
	if s := b[1 : len(b)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		*dst = string(s)
		return nil
	}
	return json.Unmarshal(b, dst)
}
