// Package engine is the agent's side of the inference engine on a node:
// vLLM, SGLang or the simulator, reached over loopback HTTP.
//
// A [Supervisor] runs the engine from a command line, in a process group
// of its own so that every process it spawns is stopped with it, writes
// its output to the log line by line and restarts it when it dies. An
// engine the agent does not start (attach mode) needs no Supervisor: a
// [Client] with its URL is all the agent uses.
//
// A [Client] tells whether the engine is ready and how loaded it is. Ready
// means more than alive: vLLM answers /health while it still loads
// weights on some versions, so the model list must name every expected
// model too. Load is read from the engine's Prometheus /metrics, with
// vLLM's and SGLang's metric names (see [ParseLoad]).
//
// # Limitations
//
// A Supervisor stops its engine when its Run returns, but if the agent
// itself dies (SIGKILL, OOM) the engine's process group lives on, still
// holding the GPU and the port; the next agent's engine then fails to
// bind. TODO: start the engine with a parent-death signal or under a
// systemd scope so that it cannot outlive the agent.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
)

// DefaultTimeout bounds one readiness check or metrics scrape when
// Client.Timeout is zero. The engine is on loopback: an answer that takes
// longer means it is stuck, not far away.
const DefaultTimeout = 5 * time.Second

// maxBody bounds what the client reads of a model list or a metrics page.
// vLLM's /metrics with all its histograms is about 100 KiB.
const maxBody = 8 << 20

// Client asks an engine whether it is ready and how loaded it is. Its
// methods are safe for concurrent use; set its fields before the first
// call and do not change them afterwards.
type Client struct {
	// URL is the engine's base URL on loopback, without a trailing slash,
	// e.g. "http://127.0.0.1:8000". Required.
	URL string

	// Models are the model names the engine must list in GET /v1/models
	// to be ready. Empty means the list is not checked.
	Models []string

	// HTTP makes the requests. Nil means a client that never goes through
	// a proxy, which is right for loopback.
	HTTP *http.Client

	// Timeout bounds one Ready or Load call. Zero means DefaultTimeout.
	Timeout time.Duration
}

// loopbackClient is the default HTTP client: no proxy from the
// environment (an HTTP_PROXY meant for the internet must not see
// loopback traffic) and small, fast connections.
var loopbackClient = &http.Client{Transport: NewTransport()}

// NewTransport returns an HTTP transport for talking to an engine on
// loopback: no proxy, a short dial timeout, no response timeout (a
// generation may take minutes) and enough idle connections for a
// gateway's worth of concurrent streams.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// Engines answer plain HTTP/1.1; compression would only cost CPU
		// on loopback and would hide SSE events in gzip blocks.
		DisableCompression: true,
	}
}

// Ready reports, as a nil error, whether the engine answers GET /health
// with 200 and lists every expected model in GET /v1/models. A non-nil
// error says what is missing, in words fit for an operator.
func (c *Client) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()

	resp, err := c.get(ctx, "/health", "")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("engine: GET /health answered %d", resp.StatusCode)
	}

	if len(c.Models) == 0 {
		return nil
	}
	listed, err := c.listModels(ctx)
	if err != nil {
		return err
	}
	for _, m := range c.Models {
		if !slices.Contains(listed, m) {
			return fmt.Errorf("engine: model %q not listed by GET /v1/models (listed: %s)",
				m, strings.Join(listed, ", "))
		}
	}
	return nil
}

// listModels returns the IDs in the engine's GET /v1/models.
func (c *Client) listModels(ctx context.Context) ([]string, error) {
	resp, err := c.get(ctx, "/v1/models", "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("engine: GET /v1/models answered %d", resp.StatusCode)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&list); err != nil {
		return nil, fmt.Errorf("engine: decode GET /v1/models: %w", err)
	}
	ids := make([]string, 0, len(list.Data))
	for _, d := range list.Data {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

// Load scrapes the engine's GET /metrics and returns its load, as
// ParseLoad reads it.
func (c *Client) Load(ctx context.Context) (agentapi.Load, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()

	// Ask for the classic text format: Python's prometheus_client answers
	// OpenMetrics only when asked, and never protobuf.
	resp, err := c.get(ctx, "/metrics", "text/plain;version=0.0.4")
	if err != nil {
		return agentapi.Load{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// SGLang serves /metrics only with --enable-metrics.
		return agentapi.Load{}, fmt.Errorf("engine: GET /metrics answered %d", resp.StatusCode)
	}
	return ParseLoad(io.LimitReader(resp.Body, maxBody))
}

// get sends GET path to the engine.
func (c *Client) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("engine: GET %s: %w", path, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	hc := c.HTTP
	if hc == nil {
		hc = loopbackClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("engine: GET %s: %w", path, err)
	}
	return resp, nil
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}
