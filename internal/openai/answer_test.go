package openai

import (
	"strings"
	"testing"
)

func TestReadStream(t *testing.T) {
	const stream = "data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n" +
		": comment\n\n" +
		"data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n" +
		"data: {\"id\":\"b\",\"choices\":[{\"text\":\"lo\",\"finish_reason\":\"length\"}]}\n\n" +
		"data: {\"id\":\"a\",\"choices\":[],\"usage\":{\"prompt_tokens\":3," +
		"\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
		"data: {\"error\":{\"message\":\"x\"}}\n\n" +
		"data: [DONE]\n\ndata: [DONE]\n\n"
	a, err := ReadStream(strings.NewReader(stream), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Answer{Text: "Hello", Texts: 2, ID: "a", OtherIDs: 1, Finish: "length",
		Done: 2, AfterDone: 1, ErrEvent: `{"error":{"message":"x"}}`}
	if a.Usage == nil || *a.Usage != (Usage{3, 2, 5}) {
		t.Errorf("usage = %+v, want 3, 2, 5", a.Usage)
	}
	a.Usage = nil
	if a != want {
		t.Errorf("ReadStream = %+v\nwant          %+v", a, want)
	}

	// onText stops the reading, as a client that leaves.
	a, err = ReadStream(strings.NewReader(stream), func(a *Answer) bool { return a.Texts < 1 })
	if err != nil || a.Text != "Hel" || a.Done != 0 {
		t.Errorf("stopped after one chunk: %+v, %v; want text Hel and no [DONE]", a, err)
	}

	if _, err := ReadStream(strings.NewReader("data: {not json\n\n"), nil); err == nil {
		t.Error("ReadStream of a broken event: no error")
	}
}

func TestParseAnswer(t *testing.T) {
	a, err := ParseAnswer([]byte(`{"id":"x","choices":[{"message":{"content":"hi"},` +
		`"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,` +
		`"total_tokens":2}}`))
	if err != nil || a.ID != "x" || a.Text != "hi" || a.Finish != "stop" || a.Usage == nil {
		t.Errorf("ParseAnswer = %+v, %v", a, err)
	}
	for _, bad := range []string{`{"id":"x","choices":[]}`, `not json`} {
		if _, err := ParseAnswer([]byte(bad)); err == nil {
			t.Errorf("ParseAnswer(%s): no error", bad)
		}
	}
}
