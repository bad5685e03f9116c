package openai

import "encoding/json"

// Chunk is what the gateway needs from one streamed chunk of a chat or
// text completion (the JSON after "data: "), found in one pass without
// decoding the chunk into Go values. Offsets index the scanned bytes.
type Chunk struct {
	// ID is the [start, end) of the "id" string's contents; zero when
	// absent.
	IDStart, IDEnd int
	// Created is the [start, end) of the "created" number; zero when
	// absent.
	CreatedStart, CreatedEnd int
	// Text is the first choice's new text: delta.content for chat,
	// text for completions. It aliases the chunk unless it held escapes.
	Text []byte
	// HasRole reports whether the first choice's delta carried a role.
	HasRole bool
	// ToolCalls reports whether any choice's delta carried tool calls.
	ToolCalls bool
	// OtherChoice reports whether a choice with an index other than 0
	// appeared (n > 1).
	OtherChoice bool
	// Finished reports whether a choice carried a non-null finish_reason.
	Finished bool
	// Usage is the [start, end) of a non-null "usage" object; zero when
	// absent or null.
	UsageStart, UsageEnd int
	// Error reports whether the chunk is an error object.
	Error bool
}

// ScanChunk scans one streamed chunk. It allocates only when the new text
// holds escape sequences.
func ScanChunk(data []byte) (Chunk, error) {
	s := scanner{b: data}
	var c Chunk
	ok := s.members(0, func(key []byte, vstart int) bool {
		switch string(key) {
		case "id":
			if s.peek() != '"' {
				return s.value(1)
			}
			st, en, _, ok := s.str()
			c.IDStart, c.IDEnd = st, en
			return ok
		case "created":
			c.CreatedStart = vstart
			ok := s.value(1)
			c.CreatedEnd = s.i
			return ok
		case "choices":
			return s.choices(&c)
		case "usage":
			if s.peek() == 'n' {
				return s.value(1)
			}
			c.UsageStart = vstart
			ok := s.value(1)
			c.UsageEnd = s.i
			return ok
		case "error":
			c.Error = true
		}
		return s.value(1)
	})
	if !ok || !s.end() {
		return c, ErrMalformed
	}
	return c, nil
}

// members walks an object at s.i, calling fn for each member with s.i at
// the member's value; fn must consume the value.
func (s *scanner) members(depth int, fn func(key []byte, vstart int) bool) bool {
	s.ws()
	if s.peek() != '{' || depth > maxDepth {
		return false
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		ks, ke, _, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !fn(s.b[ks:ke], s.i) {
			return false
		}
		if more, ok := s.next('}'); !more {
			return ok
		}
	}
}

// choices walks the "choices" array of a chunk.
func (s *scanner) choices(c *Chunk) bool {
	if s.peek() != '[' {
		return s.value(1)
	}
	s.i++
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for first := true; ; first = false {
		s.ws()
		ok := s.members(2, func(key []byte, vstart int) bool {
			switch string(key) {
			case "index":
				ok := s.value(3)
				if string(s.b[vstart:s.i]) != "0" {
					c.OtherChoice = true
				}
				return ok
			case "finish_reason":
				if s.peek() != 'n' {
					c.Finished = true
				}
				return s.value(3)
			case "text":
				ok := s.value(3)
				if first {
					c.Text = stringValue(s.b[vstart:s.i])
				}
				return ok
			case "delta":
				return s.members(3, func(key []byte, vstart int) bool {
					switch string(key) {
					case "content":
						ok := s.value(4)
						if first {
							c.Text = stringValue(s.b[vstart:s.i])
						}
						return ok
					case "role":
						c.HasRole = c.HasRole || first
					case "tool_calls":
						if s.peek() == '[' && s.b[min(s.i+1, len(s.b)-1)] != ']' {
							c.ToolCalls = true
						}
					}
					return s.value(4)
				})
			}
			return s.value(3)
		})
		if !ok {
			return false
		}
		if more, ok := s.next(']'); !more {
			return ok
		}
	}
}

// Usage is OpenAI's token usage object.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ParseUsage decodes a usage object found by ScanChunk.
func ParseUsage(raw []byte) (Usage, error) {
	var u Usage
	err := json.Unmarshal(raw, &u)
	return u, err
}
