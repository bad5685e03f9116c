package openai

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Answer is what a client got for one completion request, whole or
// streamed: what a test or the failure harness compares with what one
// healthy node would have answered.
type Answer struct {
	Text     string // the generated text
	Texts    int    // stream chunks that carried text
	ID       string // of the answer, or of a stream's first chunk
	OtherIDs int    // stream chunks with another id
	Usage    *Usage
	Finish   string // the last finish_reason
	// Done counts a stream's [DONE] events, AfterDone the events after
	// the first one.
	Done, AfterDone int
	ErrEvent        string // the data of an error event, if the stream had one
}

// answerChunk is a whole answer or one stream event, chat or completion.
type answerChunk struct {
	ID      string `json:"id"`
	Choices []struct {
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Delta        struct {
			Content string `json:"content"`
		} `json:"delta"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *Usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// ParseAnswer decodes a whole, non-streamed completion.
func ParseAnswer(b []byte) (Answer, error) {
	var ch answerChunk
	if err := json.Unmarshal(b, &ch); err != nil || len(ch.Choices) == 0 {
		return Answer{}, fmt.Errorf("answer %.80q: not a completion (%v)", b, err)
	}
	a := Answer{ID: ch.ID, Usage: ch.Usage,
		Text: ch.Choices[0].Message.Content + ch.Choices[0].Text}
	if fr := ch.Choices[0].FinishReason; fr != nil {
		a.Finish = *fr
	}
	return a, nil
}

// ReadStream reads a server-sent event stream of completion chunks to
// its end. onText, when not nil, is called after each chunk that carries
// text; when it returns false, reading stops there, as a client that
// leaves would.
func ReadStream(r io.Reader, onText func(*Answer) bool) (Answer, error) {
	var a Answer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			return a, nil
		}
		if err != nil {
			return a, fmt.Errorf("reading stream: %w", err)
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: ")
		if !ok {
			continue
		}
		if a.Done > 0 {
			a.AfterDone++
		}
		if data == "[DONE]" {
			a.Done++
			continue
		}
		var ch answerChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return a, fmt.Errorf("event %.80q: %w", data, err)
		}
		if ch.Error != nil {
			a.ErrEvent = data
			continue
		}
		switch {
		case a.ID == "":
			a.ID = ch.ID
		case ch.ID != a.ID:
			a.OtherIDs++
		}
		if ch.Usage != nil {
			a.Usage = ch.Usage
		}
		if len(ch.Choices) == 0 {
			continue
		}
		c := ch.Choices[0]
		if c.FinishReason != nil {
			a.Finish = *c.FinishReason
		}
		if t := c.Delta.Content + c.Text; t != "" {
			a.Text += t
			a.Texts++
			if onText != nil && !onText(&a) {
				return a, nil
			}
		}
	}
}
