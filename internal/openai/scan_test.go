package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestScan(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantErr    error
		wantModel  string // "" with wantHas false: absent
		wantHas    bool
		wantStream bool
	}{
		{name: "plain", body: `{"model":"m1","messages":[]}`,
			wantModel: "m1", wantHas: true},
		{name: "stream true", body: `{"stream":true,"model":"m"}`,
			wantModel: "m", wantHas: true, wantStream: true},
		{name: "stream false", body: `{"model":"m","stream":false}`,
			wantModel: "m", wantHas: true},
		{name: "stream string is not true", body: `{"model":"m","stream":"true"}`,
			wantModel: "m", wantHas: true},
		{name: "whitespace", body: " \n{ \"model\" :\t\"a b\" } \r\n",
			wantModel: "a b", wantHas: true},
		{name: "escaped model", body: `{"model":"meta\/llama\u0031"}`,
			wantModel: "meta/llama1", wantHas: true},
		{name: "nested model ignored",
			body:      `{"messages":[{"model":"x"}],"model":"y"}`,
			wantModel: "y", wantHas: true},
		{name: "last duplicate wins", body: `{"model":"a","model":"b"}`,
			wantModel: "b", wantHas: true},
		{name: "model not a string", body: `{"model":42}`, wantHas: true},
		{name: "escaped key is the same member", body: `{"model":"a","mod\u0065l":"b"}`,
			wantModel: "b", wantHas: true},
		{name: "no model", body: `{"prompt":"hi","n":1.5e3}`},
		{name: "empty object", body: `{}`},
		{name: "empty", body: ``, wantErr: ErrMalformed},
		{name: "truncated", body: `{"model":"m"`, wantErr: ErrMalformed},
		{name: "trailing garbage", body: `{"model":"m"} x`, wantErr: ErrMalformed},
		{name: "trailing comma", body: `{"model":"m",}`, wantErr: ErrMalformed},
		{name: "single quotes", body: `{'model':'m'}`, wantErr: ErrMalformed},
		{name: "bad literal", body: `{"stream":tru}`, wantErr: ErrMalformed},
		{name: "bad number", body: `{"n":01}`, wantErr: ErrMalformed},
		{name: "control char", body: "{\"model\":\"a\x01\"}", wantErr: ErrMalformed},
		{name: "bad escape", body: `{"model":"\x"}`, wantErr: ErrMalformed},
		{name: "array", body: `[{"model":"m"}]`, wantErr: ErrNotObject},
		{name: "string", body: `"model"`, wantErr: ErrNotObject},
		{name: "deep nesting", body: `{"a":` + strings.Repeat("[", 600) +
			strings.Repeat("]", 600) + `}`, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Scan([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Scan error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if string(f.Model) != tt.wantModel || f.HasModel != tt.wantHas {
				t.Errorf("model = %q (present %v), want %q (present %v)",
					f.Model, f.HasModel, tt.wantModel, tt.wantHas)
			}
			if f.Stream != tt.wantStream {
				t.Errorf("stream = %v, want %v", f.Stream, tt.wantStream)
			}
		})
	}
}

// FuzzScan checks Scan against encoding/json: it accepts exactly the valid
// documents that are objects, and finds the model encoding/json finds.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","stream":true}`, `{"a":[1,2,{"b":null}],"model":"\u00e9"}`,
		`[]`, `{"model":1e5}`, `{"x":-0.5E-3}`, `{"model":"a","model":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := Scan(body)
		if !json.Valid(body) {
			if err == nil {
				t.Fatalf("Scan accepted invalid JSON %q", body)
			}
			return
		}
		// A map, not a struct: struct fields match names case-insensitively,
		// while engines (and Scan) match them exactly.
		var probe map[string]any
		trimmed := strings.TrimLeft(string(body), " \t\r\n")
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber() // 1e700 is valid JSON, just not a float64
		if !strings.HasPrefix(trimmed, "{") || dec.Decode(&probe) != nil {
			// Valid, but not an object.
			if !errors.Is(err, ErrNotObject) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Scan(%q) = %v, want an error", body, err)
			}
			return
		}
		if err != nil {
			if strings.Count(string(body), "[")+strings.Count(string(body), "{") > maxDepth {
				return // deeper than we follow, by design
			}
			t.Fatalf("Scan rejected valid object %q: %v", body, err)
		}
		// encoding/json replaces invalid UTF-8 with U+FFFD; Scan keeps the
		// bytes, which then match no model name. Either is a refusal.
		if s, ok := probe["model"].(string); ok && utf8.Valid(fields.Model) &&
			string(fields.Model) != s {
			t.Fatalf("model = %q, want %q", fields.Model, s)
		}
		if fields.Stream != (probe["stream"] == true) {
			t.Fatalf("stream = %v, want %v", fields.Stream, probe["stream"])
		}
	})
}

func BenchmarkScan(b *testing.B) {
	body := []byte(`{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[` +
		`{"role":"system","content":"You are a helpful assistant."},` +
		`{"role":"user","content":"` + strings.Repeat("tell me about spot GPUs ", 40) +
		`"}],"max_tokens":128,"temperature":0.7,"stream":false}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Scan(body); err != nil {
			b.Fatal(err)
		}
	}
}
