package inflight

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	var c Counter
	if err := c.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with nothing in flight = %v, want nil", err)
	}
	c.Add()
	c.Add()
	if got := c.Count(); got != 2 {
		t.Fatalf("Count = %d, want 2", got)
	}

	// A waiter returns only once both are done.
	waited := make(chan error, 1)
	go func() { waited <- c.Wait(context.Background()) }()
	c.Done()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v with one request in flight", err)
	default:
	}
	c.Done()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the last Done")
	}

	// A cancelled wait returns the context's error.
	c.Add()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
}
