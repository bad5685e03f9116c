package pki

import (
	"math"
	"testing"
	"time"
)

func TestRenewAt(t *testing.T) {
	notBefore := testNow
	notAfter := notBefore.Add(24 * time.Hour)
	tests := []struct {
		name string
		r    float64
		want time.Duration // after notBefore
	}{
		// 24h × (2/3 − 0.05) = 24h × 0.61666… = 14h48m
		{"r=0, earliest", 0, 14*time.Hour + 48*time.Minute},
		// 24h × 2/3 = 16h
		{"r=0.5, two thirds", 0.5, 16 * time.Hour},
		// 24h × (2/3 + 0.05) = 24h × 0.71666… = 17h12m
		{"r→1, latest", math.Nextafter(1, 0), 17*time.Hour + 12*time.Minute},
		{"r<0 clamps to 0", -3, 14*time.Hour + 48*time.Minute},
		{"r>1 clamps to 1", 7, 17*time.Hour + 12*time.Minute},
		{"NaN clamps to 0", math.NaN(), 14*time.Hour + 48*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RenewAt(notBefore, notAfter, tt.r).Sub(notBefore)
			if diff := (got - tt.want).Abs(); diff > time.Millisecond {
				t.Errorf("RenewAt(r=%v) = notBefore+%v, want notBefore+%v", tt.r, got, tt.want)
			}
		})
	}
}

func TestRenewAtBounds(t *testing.T) {
	notBefore := testNow
	lifetime := time.Hour
	notAfter := notBefore.Add(lifetime)
	lo := notBefore.Add(time.Duration(float64(lifetime) * 0.6166))
	hi := notBefore.Add(time.Duration(float64(lifetime) * 0.7167))

	prev := notBefore
	for i := range 1000 {
		r := float64(i) / 1000
		got := RenewAt(notBefore, notAfter, r)
		if got.Before(lo) || got.After(hi) {
			t.Fatalf("RenewAt(r=%v) = %v, want within [%v, %v]", r, got, lo, hi)
		}
		if got.Before(prev) {
			t.Fatalf("RenewAt(r=%v) = %v, before RenewAt of a smaller r, %v", r, got, prev)
		}
		prev = got
	}
}

func TestRenewAtNoLifetime(t *testing.T) {
	if got, want := RenewAt(testNow, testNow, 0.5), testNow; !got.Equal(want) {
		t.Errorf("RenewAt(empty lifetime) = %v, want %v", got, want)
	}
	past := testNow.Add(-time.Hour)
	if got, want := RenewAt(testNow, past, 0.5), testNow; !got.Equal(want) {
		t.Errorf("RenewAt(negative lifetime) = %v, want %v", got, want)
	}
}
