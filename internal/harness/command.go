package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/crosslogic/crosslogic/internal/config"
)

// Command is `crosslogic harness`: it parses args, runs the scenarios,
// writes the report to stdout and the gateway's and nodes' logs to
// stderr. It returns an error when a scenario did not meet its
// expectations, so that the command exits non-zero.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", "all", "`names` of the scenarios to run, "+
		"comma-separated: all, "+strings.Join(Names(), ", "))
	requests := fs.Int("requests", 300, "requests each scenario sends")
	concurrency := fs.Int("concurrency", 16, "clients sending at once")
	timeout := fs.Duration("timeout", time.Minute, "bound on each scenario")
	output := fs.String("o", "table", "output `format`: table or json")
	level := fs.String("log-level", "error", "level of the gateway's and nodes' logs: "+
		"debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("unknown output format %q (want table or json)", *output)
	}
	lvl, err := config.ParseLevel(*level)
	if err != nil {
		return err
	}
	o := Options{Requests: *requests, Concurrency: *concurrency, Timeout: *timeout,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))}
	if *scenario != "all" {
		o.Scenarios = strings.Split(*scenario, ",")
	}

	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	if *output == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return errors.New("a scenario did not meet its expectations")
	}
	return nil
}
