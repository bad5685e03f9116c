// Command gatewayprof is `crosslogic server` with net/http/pprof served
// on a second, loopback-only listener, so that bench/cmd/proxybench can
// profile the gateway under the same load as the benchmark. It wires
// the control plane exactly as cmd/crosslogic does; the pprof listener
// is the only difference, and no request of the benchmark reaches it.
//
// Usage:
//
//	gatewayprof server [crosslogic server flags] --pprof-addr 127.0.0.1:6060
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gatewayprof:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("gatewayprof (crosslogic server with pprof)")
		return nil
	}
	if len(args) == 0 || args[0] != "server" {
		return errors.New("usage: gatewayprof server [flags] --pprof-addr ADDR")
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	flags := config.RegisterFlags(fs)
	pprofAddr := fs.String("pprof-addr", "127.0.0.1:6060",
		"loopback `address` serving /debug/pprof/")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(flags, os.Getenv)
	if err != nil {
		return err
	}

	// The profiler's listener first: a profile is no secret to hide, but
	// it is not for any other machine either.
	host, _, err := net.SplitHostPort(*pprofAddr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--pprof-addr %s is not a loopback address", *pprofAddr)
	}
	pl, err := net.Listen("tcp", *pprofAddr)
	if err != nil {
		return fmt.Errorf("listen for pprof: %w", err)
	}
	psrv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = psrv.Serve(pl) }()
	defer psrv.Close()

	// From here on, what cmd/crosslogic's runServer does.
	log := cfg.NewLogger(os.Stderr)
	cp, err := controlplane.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
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
