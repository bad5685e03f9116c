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
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/agent"
	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/registry"
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

// Run starts the control plane and gateway, then the simulated nodes as
// real agents that join with join tokens and serve their engines over
// mutual TLS, and serves until ctx is done. Then the gateway drains, the
// agents drain and leave, and Run returns.
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

	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.AdminToken = o.Addr, o.DataDir, o.AdminToken
	cfg.Health.Interval = 2 * time.Second
	cfg.Heartbeat.Interval = 2 * time.Second
	cfg.Heartbeat.TTL = 6 * time.Second
	cfg.DrainTimeout = 15 * time.Second
	cp, err := controlplane.New(ctx, cfg, o.Logger)
	if err != nil {
		return err
	}
	if err := forgetOldAgents(ctx, cp); err != nil {
		return err
	}
	key, err := demoKey(ctx, cp.Admin(), o.APIKey)
	if err != nil {
		return err
	}

	// The public listener and the agent API, then the control plane.
	public, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("demo: listen: %w", err)
	}
	agentAPI, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		public.Close()
		return fmt.Errorf("demo: listen for agents: %w", err)
	}
	agentCtx, stopAgents := context.WithCancel(context.WithoutCancel(ctx))
	var agents sync.WaitGroup
	cp.OnDrained = func() { stopAgents(); agents.Wait() }
	served := make(chan error, 1)
	go func() { served <- cp.Serve(ctx, public, agentAPI) }()

	// Each node: an engine on loopback and an agent that joins with a
	// token of its own and serves the engine over mTLS.
	for _, n := range fleet {
		engineURL, stop, err := startEngine(n, o)
		if err != nil {
			stopAgents()
			return err
		}
		defer stop()
		tok, err := cp.Admin().CreateJoinToken(ctx, admin.CreateJoinTokenRequest{
			TTLSeconds: 600, MaxUses: 1, Models: []string{n.model},
			Labels: map[string]string{"demo": "true"}})
		if err != nil {
			stopAgents()
			return fmt.Errorf("demo: join token: %w", err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stopAgents()
			return fmt.Errorf("demo: listen for node %s: %w", n.id, err)
		}
		stateDir := filepath.Join(o.DataDir, "agents", n.id)
		_ = os.RemoveAll(stateDir) // a new identity each run: ports change
		a, err := agent.New(agent.Config{
			ControlPlane:  "https://" + agentAPI.Addr().String(),
			JoinToken:     tok.Secret,
			CAFingerprint: cp.Fingerprint(),
			StateDir:      stateDir,
			Listener:      ln,
			AdvertiseURL:  "https://" + ln.Addr().String(),
			Name:          n.id,
			Facts: agentapi.Facts{Provider: "local", Region: "loopback", Engine: "sim",
				GPU: "simulated", Models: []string{n.model}},
			EngineURL:    engineURL,
			DrainTimeout: 10 * time.Second,
			Logger:       o.Logger.With("agent", n.id),
		})
		if err != nil {
			stopAgents()
			return fmt.Errorf("demo: agent %s: %w", n.id, err)
		}
		agents.Go(func() {
			if err := a.Run(agentCtx); err != nil {
				o.Logger.Warn("agent stopped", "agent", n.id, "error", err)
			}
		})
	}

	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = cp.WaitReady(readyCtx, ModelLlama, ModelMistral)
	cancel()
	if err != nil {
		stopAgents()
		<-served
		return err
	}
	printBanner(o.Stdout, public.Addr().String(), key, o.AdminToken)
	if o.Ready != nil {
		o.Ready(public.Addr().String())
	}
	err = <-served
	stopAgents()
	agents.Wait()
	return err
}

// forgetOldAgents removes agent nodes left by an earlier run that did not
// stop cleanly: their ports are gone, and each run joins afresh.
func forgetOldAgents(ctx context.Context, cp *controlplane.Server) error {
	for _, n := range cp.Registry().List() {
		if n.Source == registry.SourceAgent {
			if err := cp.RemoveNode(ctx, n.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// startEngine serves a simulator engine for n on a loopback port.
func startEngine(n node, o Options) (url string, stop func(), err error) {
	ttft, itl := o.TimeToFirstToken, o.TimeBetweenTokens
	s, err := sim.New(sim.Config{Models: []string{n.model}, TimeToFirstToken: ttft,
		TimeBetweenTokens: itl, OutputTokens: 48, MaxNumSeqs: 64,
		Logger: o.Logger.With("node", n.id)})
	if err != nil {
		return "", nil, fmt.Errorf("demo: engine %s: %w", n.id, err)
	}
	r, err := s.Start("127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo: engine %s: %w", n.id, err)
	}
	return r.URL, func() { _ = r.Close() }, nil
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
Each node runs the agent: it joined with a join token and serves its
engine over mutual TLS.

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
