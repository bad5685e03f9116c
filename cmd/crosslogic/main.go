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
	"syscall"
	"time"

	"github.com/crosslogic/crosslogic/internal/cli"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/demo"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `crosslogic: serve LLM inference from spot GPU nodes across clouds.

Usage:
  crosslogic server [flags]                    control plane and gateway
  crosslogic demo [flags]                      gateway + simulated nodes, ready for curl
  crosslogic sim [flags]                       simulator engine (OpenAI-compatible, vLLM-like)
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
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
