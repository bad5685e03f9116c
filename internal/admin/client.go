package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls the admin API.
type Client struct {
	// Server is the control plane's base URL, e.g. "http://127.0.0.1:8080".
	Server string
	// Token is the admin token.
	Token string
	// HTTP makes the calls; nil means http.DefaultClient.
	HTTP *http.Client
}

// APIError is an error answered by the admin API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("admin: %s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("admin: %s (%d)", e.Message, e.Status)
}

// ListKeys returns every key.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	var out []Key
	return out, c.do(ctx, http.MethodGet, "/admin/keys", nil, &out)
}

// CreateKey makes a key and returns it with its secret.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (CreatedKey, error) {
	var out CreatedKey
	return out, c.do(ctx, http.MethodPost, "/admin/keys", req, &out)
}

// RevokeKey revokes a key by ID.
func (c *Client) RevokeKey(ctx context.Context, id string) (Key, error) {
	var out Key
	return out, c.do(ctx, http.MethodDelete, "/admin/keys/"+url.PathEscape(id), nil, &out)
}

// ListNodes returns every node with its state.
func (c *Client) ListNodes(ctx context.Context) ([]Node, error) {
	var out []Node
	return out, c.do(ctx, http.MethodGet, "/admin/nodes", nil, &out)
}

// AddNode declares a node.
func (c *Client) AddNode(ctx context.Context, req AddNodeRequest) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodPost, "/admin/nodes", req, &out)
}

// RemoveNode removes a node by ID.
func (c *Client) RemoveNode(ctx context.Context, id string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodDelete, "/admin/nodes/"+url.PathEscape(id), nil, &out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method,
		strings.TrimRight(c.Server, "/")+path, body)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		ae := &APIError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			ae.Message = e.Error.Message
			if e.Error.Code != nil {
				ae.Code = *e.Error.Code
			}
		}
		return ae
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin: decode answer: %w", err)
	}
	return nil
}

// GetNode returns one node.
func (c *Client) GetNode(ctx context.Context, id string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodGet, "/admin/nodes/"+url.PathEscape(id), nil, &out)
}

// DrainNode stops new requests to a node.
func (c *Client) DrainNode(ctx context.Context, id string) (Node, error) {
	var out Node
	return out, c.do(ctx, http.MethodPost, "/admin/nodes/"+url.PathEscape(id)+"/drain",
		struct{}{}, &out)
}

// CreateJoinToken makes a join token and returns it with its secret.
func (c *Client) CreateJoinToken(ctx context.Context,
	req CreateJoinTokenRequest) (CreatedJoinToken, error) {
	var out CreatedJoinToken
	return out, c.do(ctx, http.MethodPost, "/admin/tokens", req, &out)
}

// ListJoinTokens returns every join token.
func (c *Client) ListJoinTokens(ctx context.Context) ([]JoinToken, error) {
	var out []JoinToken
	return out, c.do(ctx, http.MethodGet, "/admin/tokens", nil, &out)
}

// RevokeJoinToken revokes a join token by ID.
func (c *Client) RevokeJoinToken(ctx context.Context, id string) (JoinToken, error) {
	var out JoinToken
	return out, c.do(ctx, http.MethodDelete, "/admin/tokens/"+url.PathEscape(id), nil, &out)
}

// CA returns the CA's fingerprint and trust bundle.
func (c *Client) CA(ctx context.Context) (CA, error) {
	var out CA
	return out, c.do(ctx, http.MethodGet, "/admin/ca", nil, &out)
}
