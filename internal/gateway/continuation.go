package gateway

import (
	"encoding/json"
	"errors"
	"strconv"
)

// continuation builds the request that asks another node to go on with a
// stream from where it broke.
//
// For /v1/completions it is the original request with the text generated
// so far appended to the prompt. For /v1/chat/completions the text becomes
// a final, partial assistant message that the engine is asked to continue
// (vLLM and SGLang: "continue_final_message": true with
// "add_generation_prompt": false), extending a final assistant message the
// client itself sent for continuing. Either way max_tokens (or
// max_completion_tokens) is reduced by what was already produced.
//
// It refuses what it cannot continue faithfully: more than one choice, a
// prompt that is not a single string, echo (the engine would echo the
// text already sent), and a request with nothing left to produce.
func continuation(path string, body []byte, st *streamState) ([]byte, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errors.New("request not an object")
	}
	if n, ok := req["n"]; ok && string(n) != "1" && string(n) != "null" {
		return nil, errors.New("n > 1")
	}
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		raw, ok := req[k]
		if !ok || string(raw) == "null" {
			continue
		}
		v, err := strconv.Atoi(string(raw))
		if err != nil {
			return nil, errors.New(k + " not an integer")
		}
		if v-st.tokens < 1 {
			return nil, errors.New("nothing left to generate")
		}
		req[k] = json.RawMessage(strconv.Itoa(v - st.tokens))
	}
	text := string(st.text)

	switch path {
	case "/v1/completions":
		if e, ok := req["echo"]; ok && string(e) == "true" {
			return nil, errors.New("echo")
		}
		var prompt string
		if err := json.Unmarshal(req["prompt"], &prompt); err != nil {
			return nil, errors.New("prompt not a string")
		}
		req["prompt"] = mustJSON(prompt + text)

	case "/v1/chat/completions":
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(req["messages"], &msgs); err != nil || len(msgs) == 0 {
			return nil, errors.New("messages not a list")
		}
		continuing := string(req["continue_final_message"]) == "true"
		last := msgs[len(msgs)-1]
		if continuing && string(last["role"]) == `"assistant"` {
			var prev string
			if err := json.Unmarshal(last["content"], &prev); err != nil {
				return nil, errors.New("final message content not a string")
			}
			last["content"] = mustJSON(prev + text)
		} else {
			msgs = append(msgs, map[string]json.RawMessage{
				"role": json.RawMessage(`"assistant"`), "content": mustJSON(text)})
		}
		req["messages"] = mustJSON(msgs)
		req["continue_final_message"] = json.RawMessage("true")
		req["add_generation_prompt"] = json.RawMessage("false")

	default:
		return nil, errors.New("not a completion endpoint")
	}
	return json.Marshal(req)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: marshal: " + err.Error())
	}
	return b
}
