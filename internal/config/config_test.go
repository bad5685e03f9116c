package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeFile writes data to a new file in a temporary directory and
// returns its path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load runs Load as the server does: flags registered on a fresh FlagSet,
// parsed from args, and env as the whole environment.
func load(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return Load(f, func(k string) string { return env[k] })
}

// mustLoad is load for a configuration that must be valid.
func mustLoad(t *testing.T, env map[string]string, args ...string) Config {
	t.Helper()
	cfg, err := load(t, env, args...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate(): got %v, want nil", err)
	}
	got := mustLoad(t, nil)
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load with nothing set:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "crosslogic.yaml", `
addr: file:1
data_dir: /from/file
admin_token: file-token
log:
  level: warn
  format: json
`)
	// fields are the settings every layer can set.
	type fields struct{ addr, dataDir, token, level, format string }
	got := func(c Config) fields {
		return fields{c.Addr, c.DataDir, c.AdminToken, c.Log.Level, c.Log.Format}
	}
	allEnv := map[string]string{
		"CROSSLOGIC_ADDR": "env:1", "CROSSLOGIC_DATA_DIR": "/from/env",
		"CROSSLOGIC_ADMIN_TOKEN": "env-token", "CROSSLOGIC_LOG_LEVEL": "error",
		"CROSSLOGIC_LOG_FORMAT": "text",
	}
	allFlags := []string{"--addr", "flag:1", "--data-dir", "/from/flag",
		"--admin-token", "flag-token", "--log-level", "debug", "--log-format", "json"}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want fields
	}{
		{"defaults", nil, nil,
			fields{"127.0.0.1:8080", ".crosslogic/data", "", "info", "text"}},
		{"file over defaults", nil, []string{"--config", file},
			fields{"file:1", "/from/file", "file-token", "warn", "json"}},
		{"file named by env", map[string]string{"CROSSLOGIC_CONFIG": file}, nil,
			fields{"file:1", "/from/file", "file-token", "warn", "json"}},
		{"config flag over config env",
			map[string]string{"CROSSLOGIC_CONFIG": "/does/not/exist.yaml"},
			[]string{"--config", file},
			fields{"file:1", "/from/file", "file-token", "warn", "json"}},
		{"env over defaults", allEnv, nil,
			fields{"env:1", "/from/env", "env-token", "error", "text"}},
		{"env over file", allEnv, []string{"--config", file},
			fields{"env:1", "/from/env", "env-token", "error", "text"}},
		{"flags over env and file", allEnv, append([]string{"--config", file}, allFlags...),
			fields{"flag:1", "/from/flag", "flag-token", "debug", "json"}},
		{"flags over defaults", nil, allFlags,
			fields{"flag:1", "/from/flag", "flag-token", "debug", "json"}},
		{"one env over file, rest from file",
			map[string]string{"CROSSLOGIC_ADDR": "env:1"}, []string{"--config", file},
			fields{"env:1", "/from/file", "file-token", "warn", "json"}},
		{"one flag over env, rest from env", allEnv, []string{"--log-level", "warn"},
			fields{"env:1", "/from/env", "env-token", "warn", "text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g := got(mustLoad(t, tt.env, tt.args...)); g != tt.want {
				t.Errorf("got %+v, want %+v", g, tt.want)
			}
		})
	}
}

func TestFileSettings(t *testing.T) {
	file := writeFile(t, "crosslogic.yaml", `
key_reload_interval: 30s
drain_timeout: 1m30s
gateway:
  max_body_bytes: 1048576
  connect_timeout: 1500ms
  response_header_timeout: 2h
  balancer: round_robin
  retry_after: 9
health:
  interval: 5s
  timeout: 250ms
  failure_threshold: 4
nodes:
  - id: gpu-1
    endpoint: https://10.0.0.5:8000
    models: [m1, m2]
    provider: skypilot
    region: eu-west-1
    upstream_key_env: GPU1_KEY
  - id: gpu-2
    endpoint: http://10.0.0.6:8000
    models: [m1]
`)
	got := mustLoad(t, nil, "--config", file)

	want := Default()
	want.KeyReloadInterval = 30 * time.Second
	want.DrainTimeout = 90 * time.Second
	want.Gateway = Gateway{MaxBodyBytes: 1 << 20, ConnectTimeout: 1500 * time.Millisecond,
		ResponseHeaderTimeout: 2 * time.Hour, Balancer: "round_robin", RetryAfter: 9}
	want.Health = Health{Interval: 5 * time.Second, Timeout: 250 * time.Millisecond,
		FailureThreshold: 4}
	want.Nodes = []Node{
		{ID: "gpu-1", Endpoint: "https://10.0.0.5:8000", Models: []string{"m1", "m2"},
			Provider: "skypilot", Region: "eu-west-1", UpstreamKeyEnv: "GPU1_KEY"},
		{ID: "gpu-2", Endpoint: "http://10.0.0.6:8000", Models: []string{"m1"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	file := writeFile(t, "crosslogic.yaml", "health:\n  interval: 1s\n")
	got := mustLoad(t, nil, "--config", file)
	want := Default()
	want.Health.Interval = time.Second
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n"} {
		file := writeFile(t, "crosslogic.yaml", data)
		if got := mustLoad(t, nil, "--config", file); !reflect.DeepEqual(got, Default()) {
			t.Errorf("file %q: got %+v, want the defaults", data, got)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string // YAML; "" for no file
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"unknown field", "adr: 127.0.0.1:9000\n", nil, nil, "adr"},
		{"unknown nested field", "health:\n  intervall: 5s\n", nil, nil, "intervall"},
		{"unknown node field", "nodes:\n  - id: a\n    upstream_key: secret\n", nil, nil,
			"upstream_key"},
		{"bad duration", "drain_timeout: 5 parsecs\n", nil, nil, "time.Duration"},
		// A bare number would otherwise be nanoseconds.
		{"duration without unit", "health:\n  timeout: 5\n", nil, nil, "time.Duration"},
		{"not yaml", "addr: [unclosed\n", nil, nil, "config:"},
		{"invalid log level in file", "log:\n  level: loud\n", nil, nil, `log level "loud"`},
		{"invalid log level in env", "", map[string]string{"CROSSLOGIC_LOG_LEVEL": "verbose"},
			nil, `log level "verbose"`},
		{"invalid log level flag", "", nil, []string{"--log-level", "trace"},
			`log level "trace"`},
		{"invalid log format", "log:\n  format: xml\n", nil, nil, `log format "xml"`},
		{"invalid log format flag", "", nil, []string{"--log-format", "yaml"},
			`log format "yaml"`},
		{"invalid balancer", "gateway:\n  balancer: random\n", nil, nil, `"random"`},
		{"duplicate node id",
			"nodes:\n  - id: a\n    endpoint: http://h1\n  - id: a\n    endpoint: http://h2\n",
			nil, nil, "node a declared twice"},
		{"node without id", "nodes:\n  - endpoint: http://h1\n", nil, nil, "nodes[0] has no id"},
		{"empty addr", "addr: \"\"\n", nil, nil, "addr is empty"},
		{"empty data dir", "data_dir: \"\"\n", nil, nil, "data_dir is empty"},
		{"missing admin token file", "admin_token_file: /does/not/exist\n", nil, nil,
			"admin token file"},
		{"missing config file (flag)", "", nil, []string{"--config", "/does/not/exist.yaml"},
			"/does/not/exist.yaml"},
		{"missing config file (env)", "",
			map[string]string{"CROSSLOGIC_CONFIG": "/does/not/exist.yaml"}, nil,
			"/does/not/exist.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tt.file)}, args...)
			}
			_, err := load(t, tt.env, args...)
			if err == nil {
				t.Fatalf("got no error, want one mentioning %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %q, want it to mention %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("got error %q, want the prefix %q", err, "config: ")
			}
		})
	}
}

func TestAdminTokenFile(t *testing.T) {
	tests := []struct {
		name      string
		content   string // of the token file
		fileToken string // admin_token beside admin_token_file in the YAML
		env       map[string]string
		args      []string
		want      string
	}{
		{"trailing newline trimmed", "s3cret\n", "", nil, nil, "s3cret"},
		{"trailing crlf trimmed", "s3cret\r\n", "", nil, nil, "s3cret"},
		{"no newline", "s3cret", "", nil, nil, "s3cret"},
		{"inner spaces kept", "s3 cret\n", "", nil, nil, "s3 cret"},
		{"file wins over admin_token", "from-file\n", "inline", nil, nil, "from-file"},
		{"env wins over file", "from-file\n", "",
			map[string]string{"CROSSLOGIC_ADMIN_TOKEN": "from-env"}, nil, "from-env"},
		{"flag wins over file", "from-file\n", "", nil,
			[]string{"--admin-token", "from-flag"}, "from-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokenFile := writeFile(t, "admin-token", tt.content)
			yaml := "admin_token_file: " + tokenFile + "\n"
			if tt.fileToken != "" {
				yaml += "admin_token: " + tt.fileToken + "\n"
			}
			args := append([]string{"--config", writeFile(t, "c.yaml", yaml)}, tt.args...)
			cfg := mustLoad(t, tt.env, args...)
			if cfg.AdminToken != tt.want {
				t.Errorf("admin token: got %q, want %q", cfg.AdminToken, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"debug", false}, {"info", false}, {"warn", false}, {"error", false},
		{"INFO", false}, {"", true}, {"loud", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Errorf("ParseLevel(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			}
		})
	}
}
