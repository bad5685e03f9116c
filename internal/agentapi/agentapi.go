// Package agentapi is the protocol between a node's agent and the control
// plane: JSON over HTTPS under /agent/v1/.
//
// The first call, Register, is made over HTTPS with the control plane's CA
// pinned by fingerprint and a join token as bearer credential. Every later
// call is made over mutual TLS with the node's own certificate, whose URI
// SAN (spiffe://crosslogic/node/<id>) is the node's identity: the control
// plane takes the node ID from the certificate, never from the body.
//
// Errors are answered in OpenAI's error shape ({"error":{…}}) with a code
// from this package's Code constants, so the agent can tell a refusal it
// must not retry (a bad token, a removed node) from a passing failure.
package agentapi

import "time"

// Paths of the agent API.
const (
	PathRegister   = "/agent/v1/register"
	PathHeartbeat  = "/agent/v1/heartbeat"
	PathRenew      = "/agent/v1/renew"
	PathDeregister = "/agent/v1/deregister"
)

// Error codes the control plane answers, in the "code" field.
const (
	// CodeInvalidToken: the join token is unknown, expired, used up or
	// revoked. 401. Retrying with the same token cannot succeed.
	CodeInvalidToken = "invalid_join_token"
	// CodeInvalidCSR: the CSR is malformed, its signature is wrong, or it
	// asks for an identity other than the node's. 400.
	CodeInvalidCSR = "invalid_csr"
	// CodeInvalidRequest: another field is wrong. 400.
	CodeInvalidRequest = "invalid_request"
	// CodeNodeGone: the node was removed; it must stop and join again
	// with a new token. 403.
	CodeNodeGone = "node_gone"
	// CodeNotAuthenticated: no valid client certificate. 401.
	CodeNotAuthenticated = "not_authenticated"
)

// Facts describe the machine a node runs on. All are free-form and
// optional except Models.
type Facts struct {
	Provider     string   `json:"provider,omitempty"`      // aws, gcp, azure, onprem, local
	Region       string   `json:"region,omitempty"`        // e.g. us-east-1
	Zone         string   `json:"zone,omitempty"`          // e.g. us-east-1a
	InstanceType string   `json:"instance_type,omitempty"` // e.g. g5.xlarge
	Spot         bool     `json:"spot,omitempty"`          // whether the machine can be reclaimed
	GPU          string   `json:"gpu,omitempty"`           // e.g. "1x A10G"
	Engine       string   `json:"engine,omitempty"`        // vllm, sglang, sim
	Models       []string `json:"models"`                  // model names the engine serves
}

// RegisterRequest is the body of POST PathRegister. The join token goes in
// the Authorization header as a bearer token, never in the body.
type RegisterRequest struct {
	// CSR is a PEM "CERTIFICATE REQUEST" signed by the key the agent made
	// on the node. Its URI SANs must be empty; its DNS and IP SANs must
	// cover the host of Endpoint.
	CSR string `json:"csr"`
	// Endpoint is the https:// base URL where the agent serves the engine
	// to the gateway, e.g. "https://203.0.113.7:8443".
	Endpoint string `json:"endpoint"`
	// Name is an optional human hint for the node ID (e.g. the hostname);
	// the control plane makes the ID unique.
	Name  string `json:"name,omitempty"`
	Facts Facts  `json:"facts"`
}

// Certificate is what the control plane returns when it signs a CSR.
type Certificate struct {
	// NodeID is the node's identity, as named in the certificate.
	NodeID string `json:"node_id"`
	// Certificate is the PEM leaf certificate.
	Certificate string `json:"certificate"`
	// Bundle is the PEM trust bundle: one or, during a root rotation, two
	// CA certificates. The agent trusts exactly these for the gateway's
	// and the control plane's certificates.
	Bundle string `json:"bundle"`
	// NotAfter is when Certificate expires.
	NotAfter time.Time `json:"not_after"`
	// HeartbeatInterval is how often the control plane wants heartbeats,
	// in milliseconds. The agent adds jitter.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
}

// RegisterResponse is the answer to a successful Register: 201.
type RegisterResponse = Certificate

// RenewRequest is the body of POST PathRenew, made over mTLS with the
// current certificate before it expires.
type RenewRequest struct {
	// CSR as in RegisterRequest. The agent may keep its key or make a new
	// one.
	CSR string `json:"csr"`
}

// RenewResponse is the answer to a successful Renew.
type RenewResponse = Certificate

// NodeState is the state an agent reports for its node.
type NodeState string

// States an agent reports.
const (
	// StateStarting: the engine is not ready yet (loading weights).
	StateStarting NodeState = "starting"
	// StateReady: the engine answers its health check and model list.
	StateReady NodeState = "ready"
	// StateDraining: the node is going away (SIGTERM, spot interruption);
	// it finishes requests in flight and must get no new ones.
	StateDraining NodeState = "draining"
	// StateUnhealthy: the engine stopped answering or crashed.
	StateUnhealthy NodeState = "unhealthy"
)

// Load is the engine's load as scraped from its /metrics.
type Load struct {
	// Running is the requests being generated (vllm:num_requests_running,
	// sglang:num_running_reqs).
	Running float64 `json:"running"`
	// Waiting is the requests queued (vllm:num_requests_waiting,
	// sglang:num_queue_reqs).
	Waiting float64 `json:"waiting"`
	// KVCacheUsage is the KV-cache use, 0 to 1 (vllm:gpu_cache_usage_perc
	// or vllm:kv_cache_usage_perc, sglang:token_usage).
	KVCacheUsage float64 `json:"kv_cache_usage"`
}

// HeartbeatRequest is the body of POST PathHeartbeat.
type HeartbeatRequest struct {
	State NodeState `json:"state"`
	Load  Load      `json:"load"`
	// Reason explains a state other than ready, for operators.
	Reason string `json:"reason,omitempty"`
}

// HeartbeatResponse is the answer to a heartbeat.
type HeartbeatResponse struct {
	// HeartbeatIntervalMS is the interval the control plane wants now.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
}

// DeregisterRequest is the body of POST PathDeregister: the node leaves
// for good (after draining). The control plane removes it.
type DeregisterRequest struct {
	Reason string `json:"reason,omitempty"`
}
