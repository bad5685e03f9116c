package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/cli"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store/sqlite"
)

const adminToken = "cli-test-admin-token"

// fixture is a real admin API on loopback for the commands to call.
type fixture struct {
	url      string
	keys     *apikey.Keyring
	registry *registry.Registry
	// env is the environment the commands see: the server and the admin
	// token are set, as an operator would.
	env map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{keys: new(apikey.Keyring), registry: registry.New(nil)}
	srv := httptest.NewServer(admin.NewServer(admin.Options{Store: st, Keys: f.keys,
		Registry: f.registry, Token: adminToken}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.env = map[string]string{"CROSSLOGIC_SERVER": srv.URL, "CROSSLOGIC_ADMIN_TOKEN": adminToken}
	return f
}

// command is cli.Keys or cli.Nodes.
type command func(context.Context, []string, cli.Env) error

// run runs a command with env as its whole environment and returns what it
// printed.
func run(t *testing.T, cmd command, env map[string]string, args ...string) (
	stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := cli.Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	err = cmd(context.Background(), args, e)
	return out.String(), errOut.String(), err
}

// mustRun is run for a command that must succeed.
func mustRun(t *testing.T, cmd command, env map[string]string, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, cmd, env, args...)
	if err != nil {
		t.Fatalf("%v: %v\nstderr: %s", args, err, errOut)
	}
	return out
}

// createKey runs `keys create -o json` and returns the key made.
func (f *fixture) createKey(t *testing.T, name string) admin.CreatedKey {
	t.Helper()
	out := mustRun(t, cli.Keys, f.env, "create", "--name", name, "-o", "json")
	var k admin.CreatedKey
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("keys create -o json: %v\n%s", err, out)
	}
	return k
}

func TestKeysCreatePrintsSecretOnce(t *testing.T) {
	f := newFixture(t)
	out := mustRun(t, cli.Keys, f.env, "create", "--name", "acme",
		"--models", "m1, m2,", "--ttl", "24h")

	var secret string
	for _, field := range strings.Fields(out) {
		if strings.HasPrefix(field, apikey.Prefix) {
			secret = field
		}
	}
	if secret == "" {
		t.Fatalf("no secret in output:\n%s", out)
	}
	if got := strings.Count(out, secret); got != 1 {
		t.Errorf("secret printed %d times, want 1:\n%s", got, out)
	}
	key, err := f.keys.Authenticate(secret, time.Now())
	if err != nil {
		t.Fatalf("Authenticate(printed secret): %v", err)
	}
	if !strings.Contains(out, key.ID) {
		t.Errorf("output does not name key %s:\n%s", key.ID, out)
	}
	if !key.AllowsName("m1") || !key.AllowsName("m2") || key.AllowsName("m3") {
		t.Errorf("key models: got %v, want [m1 m2]", key.Models)
	}
	_, err = f.keys.Authenticate(secret, time.Now().Add(25*time.Hour))
	if !errors.Is(err, apikey.ErrExpired) {
		t.Errorf("Authenticate after ttl: got %v, want %v", err, apikey.ErrExpired)
	}

	// The list shows the key, never its secret.
	for _, format := range []string{"table", "json"} {
		list := mustRun(t, cli.Keys, f.env, "list", "-o", format)
		if strings.Contains(list, secret) {
			t.Errorf("keys list -o %s shows the secret:\n%s", format, list)
		}
	}
}

func TestKeysList(t *testing.T) {
	f := newFixture(t)
	a := f.createKey(t, "alpha")
	b := f.createKey(t, "beta")

	t.Run("table", func(t *testing.T) {
		out := mustRun(t, cli.Keys, f.env, "list")
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("got %d lines, want a header and 2 keys:\n%s", len(lines), out)
		}
		want := []string{"ID", "NAME", "KEY", "MODELS", "STATE", "CREATED", "EXPIRES"}
		if got := strings.Fields(lines[0]); !hasPrefix(got, want) {
			t.Errorf("header: got %v, want it to begin with %v", got, want)
		}
		for _, k := range []admin.CreatedKey{a, b} {
			if !strings.Contains(out, k.ID) || !strings.Contains(out, k.Hint) {
				t.Errorf("table lacks key %s (hint %s):\n%s", k.ID, k.Hint, out)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		out := mustRun(t, cli.Keys, f.env, "list", "-o", "json")
		var keys []admin.Key
		if err := json.Unmarshal([]byte(out), &keys); err != nil {
			t.Fatalf("keys list -o json: %v\n%s", err, out)
		}
		if len(keys) != 2 {
			t.Fatalf("got %d keys, want 2", len(keys))
		}
		ids := map[string]bool{keys[0].ID: true, keys[1].ID: true}
		if !ids[a.ID] || !ids[b.ID] {
			t.Errorf("ids: got %v, want %s and %s", ids, a.ID, b.ID)
		}
	})
}

func TestKeysRevoke(t *testing.T) {
	tests := []struct {
		name string
		args func(id string) []string
		json bool
	}{
		{"plain", func(id string) []string { return []string{"revoke", id} }, false},
		{"flags after id", func(id string) []string {
			return []string{"revoke", id, "-o", "json"}
		}, true},
		{"flags before id", func(id string) []string {
			return []string{"revoke", "-o", "json", id}
		}, true},
		{"flags around id", func(id string) []string {
			return []string{"revoke", "-o", "json", id, "--admin-token", adminToken}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			k := f.createKey(t, "doomed")
			out := mustRun(t, cli.Keys, f.env, tt.args(k.ID)...)
			if tt.json {
				var got admin.Key
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("revoke -o json: %v\n%s", err, out)
				}
				if got.ID != k.ID || got.State != admin.KeyRevoked {
					t.Errorf("got %s %s, want %s %s", got.ID, got.State, k.ID, admin.KeyRevoked)
				}
			} else if want := "Revoked key " + k.ID; !strings.Contains(out, want) {
				t.Errorf("output: got %q, want it to contain %q", out, want)
			}
			_, err := f.keys.Authenticate(k.Secret, time.Now())
			if !errors.Is(err, apikey.ErrRevoked) {
				t.Errorf("Authenticate(revoked): got %v, want %v", err, apikey.ErrRevoked)
			}
		})
	}
}

func TestServerAndTokenSources(t *testing.T) {
	f := newFixture(t)
	// Nothing listens on port 1 of loopback: a call sent there fails.
	const dead = "http://127.0.0.1:1"

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string // "" for success
	}{
		{"env only", f.env, nil, ""},
		{"flags only", nil, []string{"--server", f.url, "--admin-token", adminToken}, ""},
		{"flags win over env",
			map[string]string{"CROSSLOGIC_SERVER": dead, "CROSSLOGIC_ADMIN_TOKEN": "stale"},
			[]string{"--server", f.url, "--admin-token", adminToken}, ""},
		{"server flag wins over env", map[string]string{"CROSSLOGIC_SERVER": dead,
			"CROSSLOGIC_ADMIN_TOKEN": adminToken}, []string{"--server", f.url}, ""},
		{"token flag wins over env", map[string]string{"CROSSLOGIC_SERVER": f.url,
			"CROSSLOGIC_ADMIN_TOKEN": "stale"}, []string{"--admin-token", adminToken}, ""},
		{"env server used", map[string]string{"CROSSLOGIC_SERVER": dead,
			"CROSSLOGIC_ADMIN_TOKEN": adminToken}, nil, "127.0.0.1:1"},
		{"no token", map[string]string{"CROSSLOGIC_SERVER": f.url}, nil, "no admin token"},
		{"empty token flag", map[string]string{"CROSSLOGIC_SERVER": f.url},
			[]string{"--admin-token", ""}, "no admin token"},
	}
	for _, tt := range tests {
		for _, cmd := range []struct {
			name string
			run  command
		}{{"keys", cli.Keys}, {"nodes", cli.Nodes}} {
			t.Run(tt.name+"/"+cmd.name, func(t *testing.T) {
				args := append([]string{"list", "-o", "json"}, tt.args...)
				out, _, err := run(t, cmd.run, tt.env, args...)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("got error %v, want success", err)
					}
					if !json.Valid([]byte(out)) {
						t.Errorf("output is not JSON: %q", out)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("got error %v, want one mentioning %q", err, tt.wantErr)
				}
			})
		}
	}
}

func TestUsageErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		cmd     command
		args    []string
		isUsage bool   // the error is cli.ErrUsage
		wantErr string // else the error mentions this
	}{
		{"keys without subcommand", cli.Keys, nil, true, ""},
		{"nodes without subcommand", cli.Nodes, nil, true, ""},
		{"keys unknown subcommand", cli.Keys, []string{"frobnicate"}, true, ""},
		{"nodes unknown subcommand", cli.Nodes, []string{"frobnicate", "n1"}, true, ""},
		{"unknown flag", cli.Keys, []string{"list", "--colour"}, true, ""},
		{"help flag", cli.Keys, []string{"list", "-h"}, true, ""},
		{"revoke without id", cli.Keys, []string{"revoke"}, true, ""},
		{"revoke two ids", cli.Keys, []string{"revoke", "a", "b"}, true, ""},
		{"list with argument", cli.Keys, []string{"list", "extra"}, true, ""},
		{"remove without id", cli.Nodes, []string{"remove", "-o", "json"}, true, ""},
		{"bad output format", cli.Keys, []string{"list", "-o", "yaml"}, false,
			`output format "yaml"`},
		{"bad output format on nodes", cli.Nodes, []string{"list", "-o", "xml"}, false,
			`output format "xml"`},
		{"bad ttl", cli.Keys, []string{"create", "--name", "k", "--ttl", "forever"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, tt.cmd, f.env, tt.args...)
			if err == nil {
				t.Fatalf("got success (stdout %q), want an error", out)
			}
			if tt.isUsage {
				if !errors.Is(err, cli.ErrUsage) {
					t.Errorf("got error %v, want %v", err, cli.ErrUsage)
				}
				if errOut == "" {
					t.Error("nothing printed to stderr for a usage error")
				}
			} else if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout: got %q, want nothing", out)
			}
		})
	}
}

func TestWrongTokenShowsAPIMessage(t *testing.T) {
	f := newFixture(t)
	env := map[string]string{"CROSSLOGIC_SERVER": f.url, "CROSSLOGIC_ADMIN_TOKEN": "wrong"}
	for _, args := range [][]string{
		{"keys", "list"},
		{"keys", "create", "--name", "k"},
		{"nodes", "list"},
		{"nodes", "remove", "n1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := cli.Keys
			if args[0] == "nodes" {
				cmd = cli.Nodes
			}
			out, _, err := run(t, cmd, env, args[1:]...)
			if err == nil {
				t.Fatalf("got success (%q), want an error", out)
			}
			msg := err.Error()
			if !strings.Contains(msg, "A valid admin token is required.") {
				t.Errorf("error %q does not carry the API's message", msg)
			}
			if strings.Contains(msg, "goroutine") || strings.Contains(msg, ".go:") {
				t.Errorf("error %q looks like a Go stack", msg)
			}
			var ae *admin.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
				t.Errorf("got %#v, want an *admin.APIError with status 401", err)
			}
		})
	}
}

func TestNodes(t *testing.T) {
	f := newFixture(t)
	env := map[string]string{"NODE_KEY": "engine-bearer-9c2e"}
	for k, v := range f.env {
		env[k] = v
	}

	out := mustRun(t, cli.Nodes, env, "add", "--id", "gpu-1",
		"--endpoint", "https://10.0.0.5:8000", "--models", "m1,m2", "--region", "eu-west",
		"--upstream-key-env", "NODE_KEY")
	want := "Added node gpu-1 (https://10.0.0.5:8000), state joining."
	if !strings.Contains(out, want) {
		t.Errorf("add output: got %q, want it to contain %q", out, want)
	}
	if strings.Contains(out, "engine-bearer-9c2e") {
		t.Errorf("add output shows the upstream key: %q", out)
	}
	var node *registry.Node
	for _, n := range f.registry.Nodes() {
		if n.ID == "gpu-1" {
			node = n
		}
	}
	if node == nil {
		t.Fatal("gpu-1 not in the registry after add")
	}
	if got, want := node.Authorization(), "Bearer engine-bearer-9c2e"; got != want {
		t.Errorf("node authorization: got %q, want %q", got, want)
	}
	if !slices.Equal(node.Models, []string{"m1", "m2"}) || node.Region != "eu-west" ||
		node.Provider != "manual" {
		t.Errorf("node: got models %v region %q provider %q, want [m1 m2] eu-west manual",
			node.Models, node.Region, node.Provider)
	}

	// A second node as JSON, without an upstream key.
	out = mustRun(t, cli.Nodes, env, "add", "-o", "json", "--id", "gpu-2",
		"--endpoint", "http://10.0.0.6:8000", "--models", "m1", "--provider", "skypilot")
	var added admin.Node
	if err := json.Unmarshal([]byte(out), &added); err != nil {
		t.Fatalf("add -o json: %v\n%s", err, out)
	}
	if added.ID != "gpu-2" || added.Provider != "skypilot" || added.State != "joining" {
		t.Errorf("add -o json: got %+v, want gpu-2 skypilot joining", added)
	}

	t.Run("list table", func(t *testing.T) {
		out := mustRun(t, cli.Nodes, env, "list")
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("got %d lines, want a header and 2 nodes:\n%s", len(lines), out)
		}
		// The leading columns; more may follow them.
		header := []string{"ID", "ENDPOINT", "MODELS", "STATE", "INFLIGHT", "PROVIDER",
			"REGION", "SOURCE"}
		if got := strings.Fields(lines[0]); !hasPrefix(got, header) {
			t.Errorf("header: got %v, want it to begin with %v", got, header)
		}
		want := [][]string{
			{"gpu-1", "https://10.0.0.5:8000", "m1,m2", "joining", "0", "manual", "eu-west",
				"admin"},
			{"gpu-2", "http://10.0.0.6:8000", "m1", "joining", "0", "skypilot", "-", "admin"},
		}
		for i, w := range want {
			if got := strings.Fields(lines[i+1]); !hasPrefix(got, w) {
				t.Errorf("row %d: got %v, want it to begin with %v", i, got, w)
			}
		}
		if strings.Contains(out, "engine-bearer-9c2e") {
			t.Errorf("list shows the upstream key:\n%s", out)
		}
	})
	t.Run("list json", func(t *testing.T) {
		out := mustRun(t, cli.Nodes, env, "list", "-o", "json")
		var nodes []admin.Node
		if err := json.Unmarshal([]byte(out), &nodes); err != nil {
			t.Fatalf("list -o json: %v\n%s", err, out)
		}
		if len(nodes) != 2 || nodes[0].ID != "gpu-1" || nodes[1].ID != "gpu-2" {
			t.Errorf("got %+v, want gpu-1 and gpu-2", nodes)
		}
	})

	out = mustRun(t, cli.Nodes, env, "remove", "gpu-1")
	if want := "Removed node gpu-1."; !strings.Contains(out, want) {
		t.Errorf("remove output: got %q, want it to contain %q", out, want)
	}
	out = mustRun(t, cli.Nodes, env, "remove", "gpu-2", "-o", "json")
	var removed admin.Node
	if err := json.Unmarshal([]byte(out), &removed); err != nil || removed.ID != "gpu-2" {
		t.Errorf("remove -o json: got %q (%v), want gpu-2", out, err)
	}
	if got := f.registry.List(); len(got) != 0 {
		t.Errorf("registry after removes: got %+v, want empty", got)
	}

	_, _, err := run(t, cli.Nodes, env, "remove", "gpu-1")
	if err == nil || !strings.Contains(err.Error(), "No node has id gpu-1.") {
		t.Errorf("remove unknown: got %v, want the API's not-found message", err)
	}
}

func TestNodesAddRejects(t *testing.T) {
	f := newFixture(t)
	env := map[string]string{"EMPTY": ""}
	for k, v := range f.env {
		env[k] = v
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"empty upstream key env", []string{"--id", "n", "--endpoint", "http://h",
			"--models", "m", "--upstream-key-env", "EMPTY"}, "EMPTY is empty"},
		{"unset upstream key env", []string{"--id", "n", "--endpoint", "http://h",
			"--models", "m", "--upstream-key-env", "UNSET"}, "UNSET is empty"},
		{"no models", []string{"--id", "n", "--endpoint", "http://h"}, "serves no model"},
		{"bad endpoint", []string{"--id", "n", "--endpoint", "h:80", "--models", "m"},
			"must be an http or https URL"},
		{"no id", []string{"--endpoint", "http://h", "--models", "m"}, "node id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, cli.Nodes, env, append([]string{"add"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
	if got := f.registry.List(); len(got) != 0 {
		t.Errorf("registry after refusals: got %+v, want empty", got)
	}
}

// hasPrefix reports whether fields begins with prefix.
func hasPrefix(fields, prefix []string) bool {
	return len(fields) >= len(prefix) && slices.Equal(fields[:len(prefix)], prefix)
}
