// Package demo runs `crosslogic demo`: a gateway on the embedded store in
// front of simulated nodes, ready for a curl, in one process.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// The models the demo serves, named like the real ones they stand for.
const (
	ModelLlama   = "meta-llama/Llama-3.1-8B-Instruct"
	ModelMistral = "mistralai/Mistral-7B-Instruct-v0.3"
)

// DefaultDataDir is where the demo keeps its store unless told otherwise.
const DefaultDataDir = ".crosslogic/demo"

// Options configure a demo run.
type Options struct {
	// Addr is the gateway's listen address; default 127.0.0.1:8080.
	Addr string
	// APIKey is imported as the demo's key; empty makes a new one.
	APIKey string
	// AdminToken protects the admin API; empty makes a random one.
	AdminToken string
	// DataDir holds the store; default DefaultDataDir.
	DataDir string
	// TimeToFirstToken and TimeBetweenTokens pace the simulated engines.
	TimeToFirstToken, TimeBetweenTokens time.Duration
	// Stdout receives the banner with the key and the curl line.
	Stdout io.Writer
	// Logger receives the process's logs; nil discards.
	Logger *slog.Logger
	// Ready, if set, is called with the gateway's address once it serves.
	Ready func(addr string)
}

// node is one simulated node of the demo.
type node struct {
	id, model string
}

var fleet = []node{
	{"sim-llama-1", ModelLlama},
	{"sim-llama-2", ModelLlama},
	{"sim-mistral-1", ModelMistral},
}

// Run starts the simulated nodes and the gateway and serves until ctx is
// done, then drains in-flight requests and stops.
func Run(ctx context.Context, o Options) error {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8080"
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.AdminToken == "" {
		o.AdminToken = randomToken()
	}

	// The simulated engines, each on its own loopback port.
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.AdminToken = o.Addr, o.DataDir, o.AdminToken
	cfg.Health.Interval = 2 * time.Second
	cfg.DrainTimeout = 15 * time.Second
	for _, n := range fleet {
		url, stop, err := startEngine(n, o)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Nodes = append(cfg.Nodes, config.Node{ID: n.id, Endpoint: url,
			Models: []string{n.model}, Provider: "local", Region: "loopback"})
	}

	cp, err := controlplane.New(ctx, cfg, o.Logger)
	if err != nil {
		return err
	}
	key, err := demoKey(ctx, cp.Admin(), o.APIKey)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("demo: listen: %w", err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = cp.WaitReady(readyCtx, ModelLlama, ModelMistral)
	cancel()
	if err != nil {
		ln.Close()
		return err
	}
	printBanner(o.Stdout, ln.Addr().String(), key, o.AdminToken)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}
	return cp.Serve(ctx, ln, nil)
}

// startEngine serves a simulator engine for n on a loopback port.
func startEngine(n node, o Options) (url string, stop func(), err error) {
	ttft, itl := o.TimeToFirstToken, o.TimeBetweenTokens
	s, err := sim.New(sim.Config{Models: []string{n.model}, TimeToFirstToken: ttft,
		TimeBetweenTokens: itl, OutputTokens: 48, MaxNumSeqs: 64,
		Logger: o.Logger.With("node_id", n.id)})
	if err != nil {
		return "", nil, fmt.Errorf("demo: engine %s: %w", n.id, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo: engine %s: %w", n.id, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// demoKey imports the given key, or makes a new one.
func demoKey(ctx context.Context, a *admin.Server, given string) (string, error) {
	k, err := a.CreateKey(ctx, admin.CreateKeyRequest{Name: "demo", Secret: given})
	var apiErr *openai.Error
	if errors.As(err, &apiErr) && apiErr.Code == "key_exists" {
		return given, nil // imported on an earlier run
	}
	if err != nil {
		return "", fmt.Errorf("demo: make key: %w", err)
	}
	return k.Secret, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func printBanner(w io.Writer, addr, key, adminToken string) {
	base := "http://" + addr
	fmt.Fprintf(w, `CrossLogic demo: gateway on %[1]s, 3 simulated nodes serving
  %[2]s (2 nodes) and %[3]s (1 node).

API key:     %[4]s
Admin token: %[5]s

Try it:

  curl %[1]s/v1/chat/completions \
    -H "Authorization: Bearer %[4]s" \
    -H "Content-Type: application/json" \
    -d '{"model":"%[2]s","messages":[{"role":"user","content":"Hello!"}]}'

Stream it: add "stream": true to the body and -N to curl.
Nodes:     crosslogic nodes list --server %[1]s --admin-token %[5]s
Keys:      crosslogic keys list --server %[1]s --admin-token %[5]s

Ctrl-C drains in-flight requests and stops.
`, base, ModelLlama, ModelMistral, key, adminToken)
}
