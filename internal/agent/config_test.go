package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
)

func validConfig() Config {
	return Config{
		ControlPlane: "https://cp.example:8444",
		StateDir:     "/var/lib/crosslogic-agent",
		ListenAddr:   "0.0.0.0:8443",
		AdvertiseURL: "https://203.0.113.7:8443",
		Facts:        agentapi.Facts{Models: []string{"m"}},
		EngineCmd:    "vllm serve m",
	}
}

func TestNewChecksConfig(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // empty: valid
		edit    func(*Config)
	}{
		{"valid", "", func(*Config) {}},
		{"attach mode", "",
			func(c *Config) { c.EngineCmd, c.EngineURL = "", "http://127.0.0.1:30000" }},
		{"no control plane", "control plane", func(c *Config) { c.ControlPlane = "" }},
		{"plain http control plane", "https", func(c *Config) { c.ControlPlane = "http://cp" }},
		{"no state dir", "state directory", func(c *Config) { c.StateDir = "" }},
		{"no listen address", "listen", func(c *Config) { c.ListenAddr = "" }},
		{"no models", "model", func(c *Config) { c.Facts.Models = nil }},
		{"no engine", "engine", func(c *Config) { c.EngineCmd = "" }},
		{"https engine", "engine URL", func(c *Config) { c.EngineURL = "https://127.0.0.1:1" }},
		{"http advertise URL", "advertise",
			func(c *Config) { c.AdvertiseURL = "http://203.0.113.7" }},
		{"unspecified advertise host", "advertise",
			func(c *Config) { c.AdvertiseURL = "https://0.0.0.0:8443" }},
		{"unknown spot provider", "spot", func(c *Config) { c.Spot = "azure" }},
		{"negative drain timeout", "negative", func(c *Config) { c.DrainTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.edit(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: got %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	a, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := a.cfg
	if c.EngineURL != "http://127.0.0.1:8000" || c.DrainTimeout != DefaultDrainTimeout ||
		c.EngineCheckInterval != DefaultEngineCheckInterval ||
		c.SpotCheckInterval != DefaultSpotCheckInterval || c.Clock == nil || c.Rand == nil {
		t.Errorf("defaults: got %+v", c)
	}
	if a.supervisor == nil {
		t.Error("no supervisor for an engine command")
	}
}

func TestSANs(t *testing.T) {
	tests := []struct {
		url      string
		wantDNS  []string
		wantIPs  []net.IP
		wantFail bool
	}{
		{url: "https://203.0.113.7:8443", wantIPs: []net.IP{net.ParseIP("203.0.113.7")}},
		{url: "https://[2001:db8::1]:8443", wantIPs: []net.IP{net.ParseIP("2001:db8::1")}},
		{url: "https://node-7.example.com", wantDNS: []string{"node-7.example.com"}},
		{url: "https://[::]:8443", wantFail: true},
		{url: "ftp://node", wantFail: true},
	}
	for _, tt := range tests {
		dns, ips, err := sans(tt.url)
		if tt.wantFail {
			if err == nil {
				t.Errorf("sans(%q): got no error", tt.url)
			}
			continue
		}
		if err != nil || !slices.Equal(dns, tt.wantDNS) ||
			!slices.EqualFunc(ips, tt.wantIPs, net.IP.Equal) {
			t.Errorf("sans(%q): got %v %v %v; want %v %v", tt.url, dns, ips, err,
				tt.wantDNS, tt.wantIPs)
		}
	}
}

func TestEngineEnvDropsTheJoinToken(t *testing.T) {
	environ := []string{"PATH=/bin", "CROSSLOGIC_JOIN_TOKEN=jt_x", "OTHER=jt_x", "HOME=/root"}
	got := engineEnv(environ, "jt_x")
	if want := []string{"PATH=/bin", "HOME=/root"}; !slices.Equal(got, want) {
		t.Errorf("engineEnv: got %v, want %v", got, want)
	}
	if len(environ) != 4 {
		t.Error("engineEnv changed its argument")
	}
	if got := engineEnv(environ, ""); !slices.Equal(got, environ) {
		t.Errorf("engineEnv without a token: got %v, want all", got)
	}
}

func TestNextHeartbeat(t *testing.T) {
	tests := []struct {
		r    float64
		want time.Duration
	}{
		{0, 9 * time.Second},
		{0.5, 10 * time.Second},
		{0.999, 10*time.Second + 998*time.Millisecond},
	}
	for _, tt := range tests {
		if got := NextHeartbeat(10*time.Second, tt.r).Round(time.Millisecond); got != tt.want {
			t.Errorf("NextHeartbeat(10s, %v): got %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: time.Second, max: 5 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.next(0.5))
	}
	want := []time.Duration{1, 2, 4, 5, 5}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("waits: got %v, want %v", got, want)
	}
	if lo, hi := b.next(0), b.next(0.999); lo != 4*time.Second || hi < 5990*time.Millisecond {
		t.Errorf("jitter at the cap: got %v and %v, want 4s and about 6s", lo, hi)
	}
	b.reset()
	if got := b.next(0.5); got != time.Second {
		t.Errorf("after reset: got %v, want 1s", got)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := writeFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("content: got %q, want %q", b, content)
		}
	}
	if got := fileMode(t, path); got != 0o600 {
		t.Errorf("mode: got %v, want 0600", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}

func TestLoadIdentityOfDamagedState(t *testing.T) {
	dir := t.TempDir()
	err := os.WriteFile(filepath.Join(dir, nodeFile), []byte(`{"node_id":"n"}`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = loadIdentity(dir, time.Now())
	if err == nil || !strings.Contains(err.Error(), "damaged") ||
		errors.Is(err, ErrCertificateExpired) {
		t.Errorf("loadIdentity: got %v, want a damaged state error", err)
	}
	if id, err := loadIdentity(t.TempDir(), time.Now()); id != nil || err != nil {
		t.Errorf("loadIdentity of an empty dir: got %v, %v; want nothing", id, err)
	}
}
