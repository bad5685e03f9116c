package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDistAt(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, v := range n {
			d = append(d, time.Duration(v)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"median of odd count", ms(5, 1, 3), 50, 3 * time.Millisecond},
		// Nearest rank: the smallest sample with at least p% at or below.
		{"p50 of even count", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"max", ms(7, 9, 8), 100, 9 * time.Millisecond},
		{"failure ranks last", append(ms(1, 2, 3), failed), 100, failed},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newDist(tt.samples).at(tt.p); got != tt.want {
				t.Errorf("at(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "127.0.0.2:80": true, "[::1]:80": true,
		"10.0.0.1:80": false, "192.168.1.1:80": false, "example.com:80": false,
		"localhost:80": false, // names are not resolved: only literal IPs pass
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want allowed %v", addr, err, ok)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000",
		9900: "9,900", 1234567: "1,234,567", -2000: "-2,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"no file yet", "", beginMarker + "\n\nnew\n" + endMarker + "\n"},
		{"appended after the prose", "# Doc\n",
			"# Doc\n\n" + beginMarker + "\n\nnew\n" + endMarker + "\n"},
		{"replaced between markers, the rest kept",
			"# Doc\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n",
			"# Doc\n" + beginMarker + "\n\nnew\n" + endMarker + "\ntail\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doc.md")
			if tt.doc != "" {
				if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := splice(path, "new"); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
