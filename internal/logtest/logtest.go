// Package logtest records a logger's records for tests to search.
package logtest

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Record is one logged record, its attributes and its logger's as
// strings.
type Record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// Recorder is a slog.Handler that keeps every record. Handlers derived
// with WithAttrs share its records.
type Recorder struct {
	mu      *sync.Mutex
	records *[]Record
	attrs   []slog.Attr
}

// New returns a Recorder that prints every record through t if the test
// fails.
func New(t testing.TB) *Recorder {
	h := &Recorder{mu: new(sync.Mutex), records: new([]Record)}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range *h.records {
			t.Logf("log: %v %s %v", r.Level, r.Msg, r.Attrs)
		}
	})
	return h
}

// Enabled reports true: every level is kept.
func (h *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps r.
func (h *Recorder) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.records = append(*h.records, rec)
	h.mu.Unlock()
	return nil
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

// WithGroup ignores the group: tests search attributes by key.
func (h *Recorder) WithGroup(string) slog.Handler { return h }

// Find returns the first record for which match holds.
func (h *Recorder) Find(match func(Record) bool) (Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.IndexFunc(*h.records, match)
	if i < 0 {
		return Record{}, false
	}
	return (*h.records)[i], true
}

// Count returns how many records match.
func (h *Recorder) Count(match func(Record) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range *h.records {
		if match(r) {
			n++
		}
	}
	return n
}

// Has reports whether a record with message msg was logged.
func (h *Recorder) Has(msg string) bool {
	_, ok := h.Find(func(r Record) bool { return r.Msg == msg })
	return ok
}

// HasAttr reports whether a record with message msg and an attribute key
// containing substr was logged.
func (h *Recorder) HasAttr(msg, key, substr string) bool {
	_, ok := h.Find(func(r Record) bool {
		return r.Msg == msg && strings.Contains(r.Attrs[key], substr)
	})
	return ok
}
