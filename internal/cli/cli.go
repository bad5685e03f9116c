// Package cli implements the admin commands of the crosslogic binary
// (`crosslogic keys …`, `crosslogic nodes …`): flag parsing, calls to the
// admin API and output as tables for people or JSON for scripts.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
)

// Env is what a command runs with; tests replace each part.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// OSEnv is the process's own environment.
func OSEnv() Env { return Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv} }

// ErrUsage reports a command line that could not be understood; the usage
// has been printed.
var ErrUsage = errors.New("usage")

// common are the flags every admin command takes.
type common struct {
	server, token, output *string
	stdout                io.Writer
}

func addCommon(fs *flag.FlagSet, env Env) common {
	server := env.Getenv("CROSSLOGIC_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	return common{
		server: fs.String("server", server, "control plane `URL` (env CROSSLOGIC_SERVER)"),
		token: fs.String("admin-token", env.Getenv("CROSSLOGIC_ADMIN_TOKEN"),
			"admin `token` (env CROSSLOGIC_ADMIN_TOKEN)"),
		output: fs.String("o", "table", "output `format`: table or json"),
		stdout: env.Stdout,
	}
}

// call runs one admin command: it parses the command line (args, with
// the given number of positional arguments), calls the admin API with do
// and prints the answer, as JSON with -o json and with text otherwise.
// do takes the client first so that method expressions such as
// (*admin.Client).ListKeys fit it.
func call[T any](ctx context.Context, fs *flag.FlagSet, c common, args []string,
	positional int, do func(*admin.Client, context.Context) (T, error),
	text func(w io.Writer, v T) error) error {
	if err := parse(fs, args, positional); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	v, err := do(cl, ctx)
	if err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(c.stdout, v)
	}
	return text(c.stdout, v)
}

// say returns a text printer of one line made from the answer.
func say[T any](line func(T) string) func(io.Writer, T) error {
	return func(w io.Writer, v T) error {
		_, err := fmt.Fprintln(w, line(v))
		return err
	}
}

func (c common) client() (*admin.Client, error) {
	if *c.token == "" {
		return nil, errors.New("no admin token: pass --admin-token or set CROSSLOGIC_ADMIN_TOKEN")
	}
	if *c.output != "table" && *c.output != "json" {
		return nil, fmt.Errorf("output format %q: want table or json", *c.output)
	}
	return &admin.Client{Server: *c.server, Token: *c.token}, nil
}

// Keys runs `crosslogic keys create|list|revoke`.
func Keys(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "usage: crosslogic keys create|list|revoke [flags]")
		return ErrUsage
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := addCommon(fs, env)
	switch args[0] {
	case "list":
		return call(ctx, fs, c, args[1:], 0, (*admin.Client).ListKeys,
			func(w io.Writer, keys []admin.Key) error {
				tw := table(w, "ID", "NAME", "KEY", "MODELS", "STATE", "CREATED", "EXPIRES")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Hint,
						models(k.Models), k.State, when(&k.CreatedAt), when(k.ExpiresAt))
				}
				return tw.Flush()
			})

	case "create":
		name := fs.String("name", "", "key `name` (required)")
		model := fs.String("models", "", "comma-separated `models` the key may use (default all)")
		ttl := fs.Duration("ttl", 0, "key lifetime, e.g. 720h (default never expires)")
		return call(ctx, fs, c, args[1:], 0,
			func(cl *admin.Client, ctx context.Context) (admin.CreatedKey, error) {
				req := admin.CreateKeyRequest{Name: *name, Models: split(*model)}
				if *ttl > 0 {
					t := time.Now().Add(*ttl).UTC()
					req.ExpiresAt = &t
				}
				return cl.CreateKey(ctx, req)
			},
			func(w io.Writer, k admin.CreatedKey) error {
				_, err := fmt.Fprintf(w, "Created key %s (%s).\n"+
					"Copy it now; it is not shown again:\n\n  %s\n\n", k.ID, k.Name, k.Secret)
				return err
			})

	case "revoke":
		return call(ctx, fs, c, args[1:], 1,
			func(cl *admin.Client, ctx context.Context) (admin.Key, error) {
				return cl.RevokeKey(ctx, fs.Arg(0))
			},
			say(func(k admin.Key) string { return "Revoked key " + k.ID + " (" + k.Name + ")." }))
	}
	fmt.Fprintf(env.Stderr, "crosslogic keys: unknown command %q\n", args[0])
	return ErrUsage
}

// Nodes runs `crosslogic nodes list|show|add|drain|remove`.
func Nodes(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "usage: crosslogic nodes list|show|add|drain|remove [flags]")
		return ErrUsage
	}
	fs := flag.NewFlagSet("nodes "+args[0], flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := addCommon(fs, env)
	byID := func(op func(*admin.Client, context.Context, string) (admin.Node, error)) func(
		*admin.Client, context.Context) (admin.Node, error) {
		return func(cl *admin.Client, ctx context.Context) (admin.Node, error) {
			return op(cl, ctx, fs.Arg(0))
		}
	}
	switch args[0] {
	case "list":
		return call(ctx, fs, c, args[1:], 0, (*admin.Client).ListNodes,
			func(w io.Writer, nodes []admin.Node) error {
				tw := table(w, "ID", "ENDPOINT", "MODELS", "STATE", "INFLIGHT", "PROVIDER",
					"REGION", "SOURCE", "CERT EXPIRES")
				for _, n := range nodes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.Endpoint,
						models(n.Models), n.State, n.Inflight, n.Provider, dash(n.Region),
						n.Source, when(n.CertNotAfter))
				}
				return tw.Flush()
			})

	case "show":
		return call(ctx, fs, c, args[1:], 1, byID((*admin.Client).GetNode), printNode)

	case "drain":
		return call(ctx, fs, c, args[1:], 1, byID((*admin.Client).DrainNode),
			say(func(n admin.Node) string {
				return "Node " + n.ID + " is draining: it gets no new requests."
			}))

	case "remove":
		return call(ctx, fs, c, args[1:], 1, byID((*admin.Client).RemoveNode),
			say(func(n admin.Node) string { return "Removed node " + n.ID + "." }))

	case "add":
		id := fs.String("id", "", "node `id` (required)")
		endpoint := fs.String("endpoint", "", "engine base `URL`, e.g. https://10.0.0.5:8000")
		model := fs.String("models", "", "comma-separated `models` served (required)")
		provider := fs.String("provider", "manual", "`provider` that runs the machine")
		region := fs.String("region", "", "`region` of the machine")
		keyEnv := fs.String("upstream-key-env", "",
			"environment `variable` holding the engine's bearer key")
		return call(ctx, fs, c, args[1:], 0,
			func(cl *admin.Client, ctx context.Context) (admin.Node, error) {
				req := admin.AddNodeRequest{ID: *id, Endpoint: *endpoint,
					Models: split(*model), Provider: *provider, Region: *region}
				if *keyEnv != "" {
					// From the environment, so the key is not in shell history.
					if req.UpstreamKey = env.Getenv(*keyEnv); req.UpstreamKey == "" {
						return admin.Node{}, fmt.Errorf("environment variable %s is empty",
							*keyEnv)
					}
				}
				return cl.AddNode(ctx, req)
			},
			say(func(n admin.Node) string {
				return fmt.Sprintf("Added node %s (%s), state %s.", n.ID, n.Endpoint, n.State)
			}))
	}
	fmt.Fprintf(env.Stderr, "crosslogic nodes: unknown command %q\n", args[0])
	return ErrUsage
}

// parse parses flags and checks the number of positional arguments.
// Flags may follow positional arguments (`keys revoke ID -o json`).
func parse(fs *flag.FlagSet, args []string, positional int) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return ErrUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != positional {
		fmt.Fprintf(fs.Output(), "%s: want %d argument(s), got %d\n", fs.Name(), positional,
			len(pos))
		return ErrUsage
	}
	return fs.Parse(pos) // leave the positional arguments in fs.Args
}

func table(w io.Writer, headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	return tw
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func models(m []string) string {
	if len(m) == 0 {
		return "*"
	}
	return strings.Join(m, ",")
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printNode prints one node for people.
func printNode(w io.Writer, n admin.Node) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("ID", n.ID)
	row("Endpoint", n.Endpoint)
	row("Models", models(n.Models))
	row("State", fmt.Sprintf("%s since %s", n.State, when(&n.StateAt)))
	if n.LastError != "" {
		row("Last error", n.LastError)
	}
	row("Source", n.Source)
	row("Provider", fmt.Sprintf("%s / %s / %s", n.Provider, dash(n.Region), dash(n.Facts.Zone)))
	if n.Facts.InstanceType != "" || n.Facts.GPU != "" {
		row("Machine", fmt.Sprintf("%s, %s, spot=%v", dash(n.Facts.InstanceType),
			dash(n.Facts.GPU), n.Facts.Spot))
	}
	if n.Facts.Engine != "" {
		row("Engine", n.Facts.Engine)
	}
	row("In flight", fmt.Sprint(n.Inflight))
	if n.LastHeartbeat != nil {
		row("Load", fmt.Sprintf("running %.0f, waiting %.0f, KV cache %.0f%%",
			n.Load.Running, n.Load.Waiting, 100*n.Load.KVCacheUsage))
		row("Last heartbeat", when(n.LastHeartbeat))
	}
	if n.CertNotAfter != nil {
		row("Certificate expires", when(n.CertNotAfter))
	}
	return tw.Flush()
}

// Tokens runs `crosslogic tokens create|list|revoke`.
func Tokens(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "usage: crosslogic tokens create|list|revoke [flags]")
		return ErrUsage
	}
	fs := flag.NewFlagSet("tokens "+args[0], flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := addCommon(fs, env)
	switch args[0] {
	case "create":
		ttl := fs.Duration("ttl", time.Hour, "how long the token can be used")
		uses := fs.Int("uses", 1, "how many nodes may join with it")
		model := fs.String("model", "", "comma-separated `models` joining nodes may serve "+
			"(default any)")
		var labels labelFlag
		fs.Var(&labels, "label", "`key=value` copied to the node; repeatable")
		return call(ctx, fs, c, args[1:], 0,
			func(cl *admin.Client, ctx context.Context) (admin.CreatedJoinToken, error) {
				return cl.CreateJoinToken(ctx, admin.CreateJoinTokenRequest{
					TTLSeconds: int64(ttl.Seconds()), MaxUses: *uses, Models: split(*model),
					Labels: labels.m})
			},
			func(w io.Writer, t admin.CreatedJoinToken) error {
				_, err := fmt.Fprintf(w, "Created join token %s: %d use(s), expires %s.\n"+
					"Copy it now; it is not shown again:\n\n  %s\n\n", t.ID, t.MaxUses,
					when(&t.ExpiresAt), t.Secret)
				return err
			})

	case "list":
		return call(ctx, fs, c, args[1:], 0, (*admin.Client).ListJoinTokens,
			func(w io.Writer, tokens []admin.JoinToken) error {
				tw := table(w, "ID", "STATE", "USES", "MODELS", "LABELS", "EXPIRES")
				for _, t := range tokens {
					fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.ID, t.State, t.Uses,
						t.MaxUses, models(t.Models), labelString(t.Labels), when(&t.ExpiresAt))
				}
				return tw.Flush()
			})

	case "revoke":
		return call(ctx, fs, c, args[1:], 1,
			func(cl *admin.Client, ctx context.Context) (admin.JoinToken, error) {
				return cl.RevokeJoinToken(ctx, fs.Arg(0))
			},
			say(func(t admin.JoinToken) string { return "Revoked join token " + t.ID + "." }))
	}
	fmt.Fprintf(env.Stderr, "crosslogic tokens: unknown command %q\n", args[0])
	return ErrUsage
}

// CA runs `crosslogic ca show`.
func CA(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprintln(env.Stderr, "usage: crosslogic ca show [flags]")
		return ErrUsage
	}
	fs := flag.NewFlagSet("ca show", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := addCommon(fs, env)
	return call(ctx, fs, c, args[1:], 0, (*admin.Client).CA,
		func(w io.Writer, ca admin.CA) error {
			_, err := fmt.Fprintf(w, "Fingerprint: %s\n\n%s", ca.Fingerprint, ca.Bundle)
			return err
		})
}

// labelFlag collects repeated --label key=value flags.
type labelFlag struct{ m map[string]string }

func (l *labelFlag) String() string { return labelString(l.m) }

func (l *labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", v)
	}
	if l.m == nil {
		l.m = map[string]string{}
	}
	l.m[k] = val
	return nil
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
