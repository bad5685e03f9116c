// Package config reads the server's configuration from, in rising order of
// precedence: built-in defaults, a YAML file, CROSSLOGIC_* environment
// variables and command-line flags.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/crosslogic/crosslogic/internal/balancer"
)

// Config is the whole server configuration. Every field's zero value means
// the default stated in its comment.
type Config struct {
	// Addr is the listen address of the public and admin API.
	// Default "127.0.0.1:8080". Env CROSSLOGIC_ADDR.
	Addr string `yaml:"addr"`
	// DataDir holds the embedded store. Default ".crosslogic/data".
	// Env CROSSLOGIC_DATA_DIR.
	DataDir string `yaml:"data_dir"`
	// AdminToken protects /admin/. Empty disables the admin API. Prefer
	// AdminTokenFile or env CROSSLOGIC_ADMIN_TOKEN to keep it out of the
	// config file.
	AdminToken string `yaml:"admin_token"`
	// AdminTokenFile is a file holding the admin token (trailing newline
	// ignored); it wins over AdminToken in the file, while env
	// CROSSLOGIC_ADMIN_TOKEN and the --admin-token flag win over it.
	AdminTokenFile string `yaml:"admin_token_file"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Gateway tunes the request path.
	Gateway Gateway `yaml:"gateway"`
	// Health tunes active health checks of nodes.
	Health Health `yaml:"health"`
	// KeyReloadInterval is how often keys are reloaded from the store, so
	// that a change made through another replica takes effect. Default
	// 10s. Changes made through this process take effect at once.
	KeyReloadInterval time.Duration `yaml:"key_reload_interval"`
	// DrainTimeout bounds how long shutdown waits for requests in flight.
	// Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Nodes are declared here instead of through the admin API.
	Nodes []Node `yaml:"nodes"`
	// AgentAddr is the listen address of the agent API, where agents
	// join, heartbeat and renew over TLS. Default "127.0.0.1:8443"; set
	// it to a public address for nodes outside this machine. Env
	// CROSSLOGIC_AGENT_ADDR.
	AgentAddr string `yaml:"agent_addr"`
	// PKI configures the internal CA.
	PKI PKI `yaml:"pki"`
	// Heartbeat configures agent heartbeats.
	Heartbeat Heartbeat `yaml:"heartbeat"`
	// MetricsAddr is where Prometheus metrics are served at /metrics;
	// empty (the default) serves none. Env CROSSLOGIC_METRICS_ADDR.
	MetricsAddr string `yaml:"metrics_addr"`
}

// PKI configures the internal CA.
type PKI struct {
	// DataKeyFile holds the 32-byte key (base64 or hex) that encrypts the
	// CA's private key at rest. Env CROSSLOGIC_DATA_KEY, holding the key
	// itself, wins. When neither is set, data_dir/data.key is made on
	// first start (mode 0600) and a warning logged: a key next to the
	// data it protects guards only against copies of the database.
	DataKeyFile string `yaml:"data_key_file"`
	// CertLifetime is the lifetime of node, gateway and control plane
	// certificates; they are renewed at about two thirds of it. Default
	// 24h.
	CertLifetime time.Duration `yaml:"cert_lifetime"`
}

// Heartbeat configures agent heartbeats.
type Heartbeat struct {
	// Interval is what agents are told to use (they add ±10% jitter).
	// Default 5s.
	Interval time.Duration `yaml:"interval"`
	// TTL is how long a node may go without a heartbeat before it is
	// unhealthy. Default 15s: three missed heartbeats.
	TTL time.Duration `yaml:"ttl"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info. Env
	// CROSSLOGIC_LOG_LEVEL.
	Level string `yaml:"level"`
	// Format is text or json. Default text. Env CROSSLOGIC_LOG_FORMAT.
	Format string `yaml:"format"`
}

// Gateway tunes the request path.
type Gateway struct {
	// MaxBodyBytes limits a request body. Default 16 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ConnectTimeout bounds dialing a node. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseHeaderTimeout bounds the wait for a node's status line,
	// which for a non-streaming request comes after the whole generation.
	// Default 10m.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// Balancer is power_of_two, round_robin or least_outstanding.
	// Default power_of_two.
	Balancer string `yaml:"balancer"`
	// RetryAfter is the Retry-After in seconds when a model has no ready
	// node. Default 5.
	RetryAfter int `yaml:"retry_after"`
	// Timeouts bound each phase of a request to a node; ModelTimeouts
	// override them per model (a zero field keeps the general value).
	Timeouts      Timeouts            `yaml:"timeouts"`
	ModelTimeouts map[string]Timeouts `yaml:"model_timeouts"`
	// MaxRetries is how many other nodes a request may be tried on, and
	// how many times a broken stream may be continued. Default 2; -1
	// disables both.
	MaxRetries int `yaml:"max_retries"`
	// RetryBudget is the share of extra load retries and failovers may
	// add. Default 0.2.
	RetryBudget float64 `yaml:"retry_budget"`
	// RetryBurst is the most retries the budget holds at once. Default
	// 100.
	RetryBurst int `yaml:"retry_burst"`
	// DisableFailover stops continuing broken streams on another node.
	DisableFailover bool `yaml:"disable_failover"`
	// PrefixAffinity sends requests sharing a prompt prefix to the same
	// node while its load allows. Default false; X-Session-Id affinity is
	// always on.
	PrefixAffinity bool `yaml:"prefix_affinity"`
	// Outlier configures passive outlier detection.
	Outlier Outlier `yaml:"outlier"`
}

// Timeouts bound the phases of a request to a node.
type Timeouts struct {
	// FirstByte bounds the wait for a node's status line; for
	// non-streaming requests it covers the whole generation. Default 10m.
	FirstByte time.Duration `yaml:"first_byte"`
	// Idle bounds the silence between stream events; a silent node is
	// taken for hung and the stream continued elsewhere. Default 60s.
	Idle time.Duration `yaml:"idle"`
	// Total bounds a request, retries included. Default 30m.
	Total time.Duration `yaml:"total"`
}

// Outlier configures passive outlier detection.
type Outlier struct {
	// Consecutive failures that eject a node. Default 5.
	Consecutive int32 `yaml:"consecutive"`
	// BaseEjection is the first cooldown, doubled for each ejection in a
	// row. Default 5s.
	BaseEjection time.Duration `yaml:"base_ejection"`
	// MaxEjection caps the cooldown. Default 2m.
	MaxEjection time.Duration `yaml:"max_ejection"`
}

// Health tunes active health checks.
type Health struct {
	// Interval between checks of each node. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// FailureThreshold is the consecutive failures that make a node
	// unhealthy. Default 2.
	FailureThreshold int `yaml:"failure_threshold"`
}

// Node declares a node in the config file.
type Node struct {
	ID       string   `yaml:"id"`
	Endpoint string   `yaml:"endpoint"`
	Models   []string `yaml:"models"`
	Provider string   `yaml:"provider"`
	Region   string   `yaml:"region"`
	// UpstreamKeyEnv names an environment variable holding the bearer key
	// the node's engine expects, so the key stays out of the file.
	UpstreamKeyEnv string `yaml:"upstream_key_env"`
	// HTTP2 says the endpoint speaks HTTP/2 as well: for an http
	// endpoint, cleartext HTTP/2 with prior knowledge (h2c). Streams then
	// share a few multiplexed connections instead of holding one each;
	// other requests keep using HTTP/1.1. vLLM and SGLang speak
	// HTTP/1.1 only; the simulator speaks both.
	HTTP2 bool `yaml:"http2"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		DataDir:           ".crosslogic/data",
		Log:               Log{Level: "info", Format: "text"},
		KeyReloadInterval: 10 * time.Second,
		DrainTimeout:      30 * time.Second,
		Gateway: Gateway{
			MaxBodyBytes:          16 << 20,
			ConnectTimeout:        5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Minute,
			Balancer:              balancer.NamePowerOfTwo,
			RetryAfter:            5,
		},
		Health: Health{Interval: 5 * time.Second, Timeout: 2 * time.Second,
			FailureThreshold: 2},
		AgentAddr: "127.0.0.1:8443",
		PKI:       PKI{CertLifetime: 24 * time.Hour},
		Heartbeat: Heartbeat{Interval: 5 * time.Second, TTL: 15 * time.Second},
	}
}

// Flags are the command-line flags that override the configuration.
type Flags struct {
	path                                  *string
	addr, dataDir, adminToken, level, fmt *string
	agentAddr, metricsAddr                *string
}

// RegisterFlags adds the server's flags to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	return &Flags{
		path:       fs.String("config", "", "YAML config `file` (env CROSSLOGIC_CONFIG)"),
		addr:       fs.String("addr", "", "listen `address` (default 127.0.0.1:8080)"),
		dataDir:    fs.String("data-dir", "", "data `directory` (default .crosslogic/data)"),
		adminToken: fs.String("admin-token", "", "admin API `token` (env CROSSLOGIC_ADMIN_TOKEN)"),
		level:      fs.String("log-level", "", "debug, info, warn or error"),
		fmt:        fs.String("log-format", "", "text or json"),
		agentAddr: fs.String("agent-addr", "",
			"agent API listen `address` (default 127.0.0.1:8443)"),
		metricsAddr: fs.String("metrics-addr", "",
			"Prometheus /metrics listen `address` (default none)"),
	}
}

// Load builds the configuration from defaults, the file named by the
// --config flag or CROSSLOGIC_CONFIG, the environment and the flags.
// getenv is os.Getenv outside tests.
func Load(f *Flags, getenv func(string) string) (Config, error) {
	cfg := Default()

	path := *f.path
	if path == "" {
		path = getenv("CROSSLOGIC_CONFIG")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := Parse(data, &cfg); err != nil {
			return cfg, fmt.Errorf("config: %s: %w", path, err)
		}
	}

	for _, o := range []struct {
		dst        *string
		env, flagv string
	}{
		{&cfg.Addr, "CROSSLOGIC_ADDR", *f.addr},
		{&cfg.DataDir, "CROSSLOGIC_DATA_DIR", *f.dataDir},
		{&cfg.AdminToken, "CROSSLOGIC_ADMIN_TOKEN", *f.adminToken},
		{&cfg.Log.Level, "CROSSLOGIC_LOG_LEVEL", *f.level},
		{&cfg.Log.Format, "CROSSLOGIC_LOG_FORMAT", *f.fmt},
		{&cfg.AgentAddr, "CROSSLOGIC_AGENT_ADDR", *f.agentAddr},
		{&cfg.MetricsAddr, "CROSSLOGIC_METRICS_ADDR", *f.metricsAddr},
	} {
		if v := getenv(o.env); v != "" {
			*o.dst = v
		}
		if o.flagv != "" {
			*o.dst = o.flagv
		}
	}
	// The token file is part of the file layer: the env and the flag,
	// which rank above it, win.
	if cfg.AdminTokenFile != "" && *f.adminToken == "" &&
		getenv("CROSSLOGIC_ADMIN_TOKEN") == "" {
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return cfg, fmt.Errorf("config: admin token file: %w", err)
		}
		cfg.AdminToken = strings.TrimRight(string(b), "\r\n")
	}
	return cfg, cfg.Validate()
}

// Parse decodes YAML into cfg, refusing unknown fields so that a typo is
// an error instead of a silently ignored setting.
func Parse(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("config: addr is empty")
	}
	if c.DataDir == "" {
		return errors.New("config: data_dir is empty")
	}
	if c.Heartbeat.Interval <= 0 || c.Heartbeat.TTL < c.Heartbeat.Interval {
		return errors.New("config: heartbeat interval must be positive and ttl at least the interval")
	}
	if c.PKI.CertLifetime < 10*time.Second {
		return errors.New("config: pki cert_lifetime must be at least 10s")
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		return err
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("config: log format %q: want text or json", c.Log.Format)
	}
	if _, err := balancer.New(c.Gateway.Balancer); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	seen := map[string]bool{}
	for i, n := range c.Nodes {
		if n.ID == "" {
			return fmt.Errorf("config: nodes[%d] has no id", i)
		}
		if seen[n.ID] {
			return fmt.Errorf("config: node %s declared twice", n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}

// ParseLevel maps a level name to its slog level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("config: log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the logger the configuration asks for, writing to w.
func (c Config) NewLogger(w io.Writer) *slog.Logger {
	level, _ := ParseLevel(c.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
