package openai

import (
	"encoding/json"
	"errors"
)

// maxDepth bounds the nesting the scanner follows, so that a hostile body
// of ten million '[' cannot exhaust the stack. encoding/json allows 10000;
// no OpenAI request comes near 100.
const maxDepth = 512

// ErrMalformed reports that a body is not valid JSON.
var ErrMalformed = errors.New("openai: malformed JSON body")

// ErrNotObject reports that a body is valid JSON but not an object.
var ErrNotObject = errors.New("openai: body is not a JSON object")

// Fields are the top-level members of a request body that the gateway
// routes on. Everything else in the body is forwarded untouched.
type Fields struct {
	// Model is the "model" member's string value. It aliases the scanned
	// body unless the value contained escapes; nil when absent or not a
	// string.
	Model []byte
	// HasModel reports whether a "model" member was present at all.
	HasModel bool
	// Stream reports whether "stream" was the literal true.
	Stream bool
}

// Scan validates body as JSON and returns its routing fields in a single
// pass, without building any Go value for the rest of the document. It
// accepts exactly what encoding/json.Valid accepts, restricted to objects
// at the top level. When a member appears twice the last one wins, as in
// encoding/json and in the engines the gateway forwards to.
//
// Scan allocates only when the model name contains escape sequences.
func Scan(body []byte) (Fields, error) {
	s := scanner{b: body}
	var f Fields
	s.ws()
	if s.peek() != '{' {
		if s.i >= len(s.b) || !s.value(0) || !s.end() {
			return f, ErrMalformed
		}
		return f, ErrNotObject
	}
	ok := s.members(0, func(key []byte, vstart int) bool {
		if !s.value(1) {
			return false
		}
		// An escaped key ("mod\u0065l") is the same member to the engine,
		// so it must be to the gateway too, or a body could route on one
		// model and run another.
		switch string(unescapeKey(key)) {
		case "model":
			f.HasModel = true
			f.Model = stringValue(s.b[vstart:s.i])
		case "stream":
			f.Stream = string(s.b[vstart:s.i]) == "true"
		}
		return true
	})
	if !ok || !s.end() {
		return f, ErrMalformed
	}
	return f, nil
}

// unescapeKey returns a member name without its escapes. Names without
// escapes, all of them in practice, are returned as they are.
func unescapeKey(raw []byte) []byte {
	for _, c := range raw {
		if c == '\\' {
			var v string
			quoted := make([]byte, 0, len(raw)+2)
			quoted = append(append(append(quoted, '"'), raw...), '"')
			if json.Unmarshal(quoted, &v) != nil {
				return nil
			}
			return []byte(v)
		}
	}
	return raw
}

// stringValue returns the contents of a scanned JSON string token, or nil
// when raw is another kind of value. Only escaped strings allocate.
func stringValue(raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' {
		return nil
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return nil
			}
			return []byte(v)
		}
	}
	return inner
}

// scanner walks a JSON document. Each method advances i past what it
// accepted and reports whether the input was well formed.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// value skips one value of any kind.
func (s *scanner) value(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch s.peek() {
	case '"':
		_, _, _, ok := s.str()
		return ok
	case '{':
		return s.object(depth + 1)
	case '[':
		return s.array(depth + 1)
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

func (s *scanner) object(depth int) bool {
	return s.members(depth, func([]byte, int) bool { return s.value(depth) })
}

func (s *scanner) array(depth int) bool {
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		s.ws()
		if !s.value(depth) {
			return false
		}
		if more, ok := s.next(']'); !more {
			return ok
		}
	}
}

// next moves past what follows a member or an element: a comma, when
// more follow, or close, which ends the object or array. ok is false when
// it is neither.
func (s *scanner) next(close byte) (more, ok bool) {
	s.ws()
	switch s.peek() {
	case ',':
		s.i++
		return true, true
	case close:
		s.i++
		return false, true
	}
	return false, false
}

// str skips a string and returns the bounds of its contents and whether
// it held escape sequences.
func (s *scanner) str() (start, end int, escaped, ok bool) {
	if s.peek() != '"' {
		return 0, 0, false, false
	}
	s.i++
	start = s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			end = s.i
			s.i++
			return start, end, escaped, true
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return 0, 0, false, false
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if s.i+4 >= len(s.b) {
					return 0, 0, false, false
				}
				for _, h := range s.b[s.i+1 : s.i+5] {
					if !isHex(h) {
						return 0, 0, false, false
					}
				}
				s.i += 5
			default:
				return 0, 0, false, false
			}
		case c < 0x20:
			return 0, 0, false, false
		default:
			s.i++
		}
	}
	return 0, 0, false, false
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits skips one or more decimal digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
