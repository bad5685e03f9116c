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
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		keys, err := cl.ListKeys(ctx)
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, keys)
		}
		tw := table(env.Stdout, "ID", "NAME", "KEY", "MODELS", "STATE", "CREATED", "EXPIRES")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Hint,
				models(k.Models), k.State, when(&k.CreatedAt), when(k.ExpiresAt))
		}
		return tw.Flush()

	case "create":
		name := fs.String("name", "", "key `name` (required)")
		model := fs.String("models", "", "comma-separated `models` the key may use (default all)")
		ttl := fs.Duration("ttl", 0, "key lifetime, e.g. 720h (default never expires)")
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		req := admin.CreateKeyRequest{Name: *name, Models: split(*model)}
		if *ttl > 0 {
			t := time.Now().Add(*ttl).UTC()
			req.ExpiresAt = &t
		}
		k, err := cl.CreateKey(ctx, req)
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, k)
		}
		fmt.Fprintf(env.Stdout, "Created key %s (%s).\n", k.ID, k.Name)
		fmt.Fprintf(env.Stdout, "Copy it now; it is not shown again:\n\n  %s\n\n", k.Secret)
		return nil

	case "revoke":
		if err := parse(fs, args[1:], 1); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		k, err := cl.RevokeKey(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, k)
		}
		fmt.Fprintf(env.Stdout, "Revoked key %s (%s).\n", k.ID, k.Name)
		return nil
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
	switch args[0] {
	case "list":
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		nodes, err := cl.ListNodes(ctx)
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, nodes)
		}
		tw := table(env.Stdout, "ID", "ENDPOINT", "MODELS", "STATE", "INFLIGHT", "PROVIDER",
			"REGION", "SOURCE", "CERT EXPIRES")
		for _, n := range nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.Endpoint,
				models(n.Models), n.State, n.Inflight, n.Provider, dash(n.Region), n.Source,
				when(n.CertNotAfter))
		}
		return tw.Flush()

	case "show", "drain":
		if err := parse(fs, args[1:], 1); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		var n admin.Node
		if args[0] == "show" {
			n, err = cl.GetNode(ctx, fs.Arg(0))
		} else {
			n, err = cl.DrainNode(ctx, fs.Arg(0))
		}
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, n)
		}
		if args[0] == "drain" {
			fmt.Fprintf(env.Stdout, "Node %s is draining: it gets no new requests.\n", n.ID)
			return nil
		}
		return printNode(env.Stdout, n)

	case "add":
		id := fs.String("id", "", "node `id` (required)")
		endpoint := fs.String("endpoint", "", "engine base `URL`, e.g. https://10.0.0.5:8000")
		model := fs.String("models", "", "comma-separated `models` served (required)")
		provider := fs.String("provider", "manual", "`provider` that runs the machine")
		region := fs.String("region", "", "`region` of the machine")
		keyEnv := fs.String("upstream-key-env", "",
			"environment `variable` holding the engine's bearer key")
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		req := admin.AddNodeRequest{ID: *id, Endpoint: *endpoint, Models: split(*model),
			Provider: *provider, Region: *region}
		if *keyEnv != "" {
			// Read from the environment so the key is not in shell history.
			if req.UpstreamKey = env.Getenv(*keyEnv); req.UpstreamKey == "" {
				return fmt.Errorf("environment variable %s is empty", *keyEnv)
			}
		}
		n, err := cl.AddNode(ctx, req)
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, n)
		}
		fmt.Fprintf(env.Stdout, "Added node %s (%s), state %s.\n", n.ID, n.Endpoint, n.State)
		return nil

	case "remove":
		if err := parse(fs, args[1:], 1); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		n, err := cl.RemoveNode(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, n)
		}
		fmt.Fprintf(env.Stdout, "Removed node %s.\n", n.ID)
		return nil
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
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		t, err := cl.CreateJoinToken(ctx, admin.CreateJoinTokenRequest{
			TTLSeconds: int64(ttl.Seconds()), MaxUses: *uses, Models: split(*model),
			Labels: labels.m})
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, t)
		}
		fmt.Fprintf(env.Stdout, "Created join token %s: %d use(s), expires %s.\n", t.ID,
			t.MaxUses, when(&t.ExpiresAt))
		fmt.Fprintf(env.Stdout, "Copy it now; it is not shown again:\n\n  %s\n\n", t.Secret)
		return nil

	case "list":
		if err := parse(fs, args[1:], 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		tokens, err := cl.ListJoinTokens(ctx)
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, tokens)
		}
		tw := table(env.Stdout, "ID", "STATE", "USES", "MODELS", "LABELS", "EXPIRES")
		for _, t := range tokens {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.ID, t.State, t.Uses, t.MaxUses,
				models(t.Models), labelString(t.Labels), when(&t.ExpiresAt))
		}
		return tw.Flush()

	case "revoke":
		if err := parse(fs, args[1:], 1); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		t, err := cl.RevokeJoinToken(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if *c.output == "json" {
			return printJSON(env.Stdout, t)
		}
		fmt.Fprintf(env.Stdout, "Revoked join token %s.\n", t.ID)
		return nil
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
	if err := parse(fs, args[1:], 0); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	ca, err := cl.CA(ctx)
	if err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(env.Stdout, ca)
	}
	fmt.Fprintf(env.Stdout, "Fingerprint: %s\n\n%s", ca.Fingerprint, ca.Bundle)
	return nil
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
