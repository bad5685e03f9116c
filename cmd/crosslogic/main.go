// Command crosslogic is CrossLogic's single binary: the server (control
// plane and gateway), the demo, the simulator engine and the admin CLI.
//
// This file only parses the command line and wires packages together; the
// work is done under internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/crosslogic/crosslogic/internal/agent"
	"github.com/crosslogic/crosslogic/internal/cli"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/demo"
	"github.com/crosslogic/crosslogic/internal/harness"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `crosslogic: serve LLM inference from spot GPU nodes across clouds.

Usage:
  crosslogic server [flags]                    control plane and gateway
  crosslogic demo [flags]                      gateway + simulated nodes, ready for curl
  crosslogic sim [flags]                       simulator engine (OpenAI-compatible, vLLM-like)
  crosslogic harness [flags]                   failure scenarios as a bounded load test on loopback
  crosslogic agent [flags]                     the agent on a node: join, serve the engine over mTLS
  crosslogic keys create|list|revoke [flags]   manage API keys
  crosslogic nodes list|show|add|drain|remove  manage nodes
  crosslogic tokens create|list|revoke         manage join tokens
  crosslogic ca show                           the CA's fingerprint and trust bundle
  crosslogic version

Run 'crosslogic COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "server":
		err = runServer(ctx, args[1:])
	case "demo":
		err = runDemo(ctx, args[1:])
	case "sim":
		err = runSim(ctx, args[1:])
	case "harness":
		err = harness.Command(ctx, args[1:], os.Stdout, os.Stderr)
	case "agent":
		err = runAgent(ctx, args[1:])
	case "keys":
		err = cli.Keys(ctx, args[1:], cli.OSEnv())
	case "nodes":
		err = cli.Nodes(ctx, args[1:], cli.OSEnv())
	case "tokens":
		err = cli.Tokens(ctx, args[1:], cli.OSEnv())
	case "ca":
		err = cli.CA(ctx, args[1:], cli.OSEnv())
	case "version", "--version":
		fmt.Println("crosslogic", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "crosslogic: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cli.ErrUsage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintf(os.Stderr, "crosslogic %s: %v\n", args[0], err)
		return 1
	}
}

func runServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(flags, os.Getenv)
	if err != nil {
		return err
	}
	log := cfg.NewLogger(os.Stderr)
	if cfg.AdminToken == "" {
		log.Warn("no admin token configured: the admin API is disabled")
	}
	cp, err := controlplane.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen for metrics: %w", err)
		}
		msrv := &http.Server{Handler: cp.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
	}
	var agents net.Listener
	if cfg.AgentAddr != "" {
		if agents, err = net.Listen("tcp", cfg.AgentAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen for agents: %w", err)
		}
	}
	return cp.Serve(ctx, ln, agents)
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "gateway listen `address`")
	key := fs.String("api-key", "", "API `key` to accept (default: a new one is made)")
	token := fs.String("admin-token", "", "admin API `token` (default: a random one)")
	dataDir := fs.String("data-dir", demo.DefaultDataDir, "data `directory`")
	ttft := fs.Duration("ttft", 60*time.Millisecond, "simulated time to first token")
	itl := fs.Duration("itl", 20*time.Millisecond, "simulated time between tokens")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lvl, err := config.ParseLevel(*level)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	return demo.Run(ctx, demo.Options{Addr: *addr, APIKey: *key, AdminToken: *token,
		DataDir: *dataDir, TimeToFirstToken: *ttft, TimeBetweenTokens: *itl,
		Stdout: os.Stdout, Logger: log})
}

func runSim(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "listen `address`")
	var cfg sim.Config
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		Protocols: sim.Protocols()}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("simulator engine serving", "addr", ln.Addr().String(), "models", s.Config().Models)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func runAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var c agent.Config
	fs.StringVar(&c.ControlPlane, "control-plane", os.Getenv("CROSSLOGIC_CONTROL_PLANE"),
		"control plane agent API `URL`, e.g. https://cp.example.com:8443")
	token := fs.String("join-token", "", "join `token` (env CROSSLOGIC_JOIN_TOKEN); "+
		"needed only for the first start")
	fs.StringVar(&c.CAFingerprint, "ca-fingerprint", os.Getenv("CROSSLOGIC_CA_FINGERPRINT"),
		"the CA's `sha256:…` fingerprint, from 'crosslogic ca show'")
	fs.StringVar(&c.StateDir, "state-dir", "/var/lib/crosslogic-agent",
		"`directory` keeping the node's key, certificate and identity")
	fs.StringVar(&c.ListenAddr, "listen", "0.0.0.0:8443", "mTLS listen `address`")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", "",
		"https `URL` the gateway dials, e.g. https://203.0.113.7:8443 (required)")
	fs.StringVar(&c.Name, "name", "", "node name hint (default the host name)")
	fs.StringVar(&c.Facts.Provider, "provider", "", "aws, gcp, azure, onprem, …")
	fs.StringVar(&c.Facts.Region, "region", "", "the machine's region")
	fs.StringVar(&c.Facts.Zone, "zone", "", "the machine's zone")
	fs.StringVar(&c.Facts.InstanceType, "instance-type", "", "e.g. g5.xlarge")
	fs.BoolVar(&c.Facts.Spot, "spot", false, "the machine is a spot instance")
	fs.StringVar(&c.Facts.GPU, "gpu", "", `e.g. "1x A10G"`)
	fs.StringVar(&c.Facts.Engine, "engine", "vllm", "vllm, sglang or sim")
	models := fs.String("models", "", "comma-separated `models` the engine serves (required)")
	fs.StringVar(&c.EngineURL, "engine-url", "",
		"attach to the engine at this loopback `URL`, e.g. http://127.0.0.1:8000")
	fs.StringVar(&c.EngineCmd, "engine-cmd", "", "start the engine with this `command`, "+
		"e.g. 'vllm serve Qwen/Qwen3-8B --port 8000'")
	fs.IntVar(&c.EnginePort, "engine-port", 0, "the started engine's port (default 8000)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 0,
		"how long to wait for requests in flight on SIGTERM (default 30s)")
	fs.BoolVar(&c.StayRegistered, "stay-registered", false,
		"on SIGTERM, drain but keep the node's identity (a restart or upgrade)")
	fs.StringVar(&c.Spot, "spot-notice", "", "watch this cloud's spot interruption "+
		"notice: aws or gcp")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.JoinToken = *token
	if c.JoinToken == "" {
		c.JoinToken = os.Getenv("CROSSLOGIC_JOIN_TOKEN")
	}
	for m := range strings.SplitSeq(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			c.Facts.Models = append(c.Facts.Models, m)
		}
	}
	lvl, err := config.ParseLevel(*level)
	if err != nil {
		return err
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	return agent.Run(ctx, c)
}
