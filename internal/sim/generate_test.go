package sim

import (
	"strings"
	"testing"
	"unicode"
)

func TestFeedCountsLikeFields(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"only spaces", " \t\n\v\f\r "},
		{"one word", "hello"},
		{"surrounding space", "  hello   world  "},
		{"ascii whitespace", "a\tb\nc\vd\fe\rf g"},
		{"no-break space", "a\u00a0b"},
		{"ideographic space", "一\u3000二"},
		{"next line", "a\u0085b"},
		{"non-ascii words", "héllo wörld ünïcode"},
		{"invalid utf-8", "a\xffb c\xfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := CountTokens(tt.text), len(strings.Fields(tt.text)); got != want {
				t.Errorf("CountTokens(%q) = %d, want %d", tt.text, got, want)
			}
		})
	}
}

// TestFeedHashesWordsAlike checks that the context depends only on the
// sequence of words, not on how they are spaced or split between
// messages, and that a prompt word hashes like the same word generated.
func TestFeedHashesWordsAlike(t *testing.T) {
	feed := func(parts ...string) [window]uint64 {
		t.Helper()
		var g generator
		for _, p := range parts {
			g.feed(p)
		}
		return g.last
	}
	want := feed("one two three four five")
	for _, parts := range [][]string{
		{"one two", "three four five"},
		{"  one\ttwo\nthree  ", "four", "five\n"},
		{"zero one two three four five"},
	} {
		if got := feed(parts...); got != want {
			t.Errorf("context of %q = %x, want %x", parts, got, want)
		}
	}

	var g generator
	g.feed("x")
	tok := g.next()
	if got, want := g.last[window-1], hashWord(strings.TrimSpace(tok)); got != want {
		t.Errorf("hash of generated %q = %x, want %x", tok, got, want)
	}
}

func TestVocabulary(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range vocabulary {
		if seen[w] {
			t.Errorf("word %q appears twice", w)
		}
		seen[w] = true
		if w == "" {
			t.Errorf("empty word")
		}
		for _, r := range w {
			// Words go into JSON unescaped and must split as one word.
			if r > unicode.MaxASCII || r < ' ' || r == '"' || r == '\\' || unicode.IsSpace(r) {
				t.Errorf("word %q holds %q", w, r)
			}
		}
	}
}

func TestContinueIsConsistent(t *testing.T) {
	contexts := [][]string{
		nil,
		{"Tell me a story"},
		{"You are terse.", "Tell me a story", " the story"},
	}
	for _, ctx := range contexts {
		for _, seed := range []int64{0, 7, -3} {
			const n = 40
			full := Continue(seed, n, ctx...)
			if got := len(strings.Fields(full)); got != n {
				t.Fatalf("Continue(%d, %d, %q) has %d words, want %d", seed, n, ctx, got, n)
			}
			for k := range n {
				head := Continue(seed, k, ctx...)
				tail := Continue(seed, n-k, append(append([]string(nil), ctx...), head)...)
				if head+tail != full {
					t.Fatalf("seed %d, context %q, split at %d: got %q, want %q",
						seed, ctx, k, head+tail, full)
				}
			}
		}
	}
	if Continue(0, 20, "same prompt") == Continue(1, 20, "same prompt") {
		t.Errorf("seeds 0 and 1 generate the same text")
	}
}
