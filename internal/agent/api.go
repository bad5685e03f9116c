package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// callTimeout bounds one call to the control plane. Register signs a
// certificate and writes the store; neither takes seconds.
const callTimeout = 30 * time.Second

// maxAnswer bounds what the agent reads of an answer: a certificate and
// a bundle of two roots are a few KiB.
const maxAnswer = 1 << 20

// newAPIClient returns an HTTP client for the control plane's agent API
// with tlsConfig. It goes through a proxy from the environment
// (HTTPS_PROXY) like any client of a public HTTPS service; TLS, and so
// the pinning or the mutual authentication, is end to end through it.
func newAPIClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSClientConfig:     tlsConfig,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        2,
			IdleConnTimeout:     90 * time.Second,
		},
		// The agent API never redirects; following one would send a
		// join token somewhere it was not meant to go.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// call POSTs in as JSON to path on the control plane and decodes a 2xx
// answer into out, unless out is nil. token, when not empty, is sent as a
// bearer token. A non-2xx answer is returned as an *APIError; op names
// the call in errors.
func (a *Agent) call(ctx context.Context, hc *http.Client, op, path, token string,
	in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("agent: %s: encode request: %w", op, err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		a.cfg.ControlPlane+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("agent: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent: %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("agent: %s: read answer: %w", op, err)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(op, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		// A 2xx answer we cannot read is the control plane's fault, and
		// as worth retrying as a 5xx.
		return &APIError{Op: op, Status: http.StatusBadGateway,
			Message: "undecodable answer: " + err.Error()}
	}
	return nil
}

// decodeAPIError makes an *APIError of a refusal, reading the code and
// message from an OpenAI-shaped body when there is one.
func decodeAPIError(op string, status int, body []byte) *APIError {
	var wire struct {
		Error struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	e := &APIError{Op: op, Status: status}
	if json.Unmarshal(body, &wire) == nil {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
	}
	return e
}
