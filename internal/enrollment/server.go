// Package enrollment is the control plane's side of the agent API
// (package agentapi): nodes join with a join token and a CSR, then
// heartbeat, renew their certificate and leave over mutual TLS.
//
// It also makes and parses join tokens.
//
// What each call proves:
//
//   - Register: the caller holds a valid join token. The control plane
//     assigns the node ID and signs the node's CSR with an identity it
//     chose; an identity the CSR asks for is refused.
//   - Heartbeat, Renew, Deregister: the caller holds a certificate from
//     our CA naming node N, and N is still in the registry. A removed
//     node is refused, so it can neither renew nor heartbeat.
package enrollment

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store"
)

// maxBodyBytes bounds an agent API request; a CSR is about 500 bytes.
const maxBodyBytes = 64 << 10

// Server serves the agent API. Its handler must be behind a TLS listener
// configured with pki.ServerConfigOptionalClient, which verifies a client
// certificate when one is presented.
type Server struct {
	// Store persists nodes and consumes join tokens.
	Store store.Store
	// Registry is where joined nodes are routed from.
	Registry *registry.Registry
	// CA signs node certificates.
	CA *pki.CA
	// NodeTransport returns the transport the gateway uses to reach a
	// node: mutual TLS expecting that node's identity.
	NodeTransport func(nodeID string) http.RoundTripper
	// NodeStreamTransport, when set, returns the HTTP/2 transport for the
	// node's streaming requests, with the same mutual TLS.
	NodeStreamTransport func(nodeID string) http.RoundTripper
	// HeartbeatInterval is what agents are told; zero means 5s.
	HeartbeatInterval time.Duration
	// CertLifetime of node certificates; zero means pki.DefaultLeafLifetime.
	CertLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handler returns the agent API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentapi.PathRegister, s.register)
	mux.HandleFunc("POST "+agentapi.PathHeartbeat, s.withNode(s.heartbeat))
	mux.HandleFunc("POST "+agentapi.PathRenew, s.withNode(s.renew))
	mux.HandleFunc("POST "+agentapi.PathDeregister, s.withNode(s.deregister))
	return mux
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger.With("component", "enrollment")
}

func (s *Server) interval() time.Duration {
	if s.HeartbeatInterval > 0 {
		return s.HeartbeatInterval
	}
	return 5 * time.Second
}

// register admits a node that presents a valid join token.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	log := s.log()

	// The token first: nothing else is looked at for a caller without one.
	presented, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tokenID, digest, err := ParseToken(presented)
	if err != nil {
		log.Info("join refused", "reason", "malformed token", "remote", r.RemoteAddr)
		refuse(w, http.StatusUnauthorized, agentapi.CodeInvalidToken, "The join token is malformed.")
		return
	}
	var req agentapi.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	now := s.now()
	tok, err := s.Store.GetJoinToken(r.Context(), tokenID)
	if err == nil {
		err = usable(tok, digest[:], now)
	} else if errors.Is(err, store.ErrNotFound) {
		err = errors.New("unknown join token")
	}
	if err != nil {
		log.Info("join refused", "token_id", tokenID, "reason", err.Error(), "remote", r.RemoteAddr)
		refuse(w, http.StatusUnauthorized, agentapi.CodeInvalidToken,
			"The join token is not usable: "+err.Error()+".")
		return
	}

	// The request: what the node claims to serve and where.
	endpoint, host, err := checkEndpoint(req.Endpoint)
	if err != nil {
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidRequest, err.Error())
		return
	}
	if len(req.Facts.Models) == 0 || slices.Contains(req.Facts.Models, "") {
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidRequest,
			"facts.models must list the models the engine serves.")
		return
	}
	for _, m := range req.Facts.Models {
		if len(tok.Models) > 0 && !slices.Contains(tok.Models, m) {
			log.Info("join refused", "token_id", tokenID, "reason", "model not allowed",
				"model", m)
			refuse(w, http.StatusUnauthorized, agentapi.CodeInvalidToken,
				"The join token does not allow model "+m+".")
			return
		}
	}
	csr, err := checkCSR(req.CSR, "")
	if err != nil {
		log.Info("join refused", "token_id", tokenID, "reason", err.Error())
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidCSR, err.Error())
		return
	}

	// Consume the token and store the node in one transaction: two
	// agents racing for a token's last use cannot both get in.
	nodeID := newNodeID(req.Name)
	rec := store.Node{ID: nodeID, Endpoint: endpoint, Models: req.Facts.Models,
		Provider: req.Facts.Provider, Region: req.Facts.Region, Kind: "agent",
		Zone: req.Facts.Zone, InstanceType: req.Facts.InstanceType, Spot: req.Facts.Spot,
		GPU: req.Facts.GPU, Engine: req.Facts.Engine, Labels: tok.Labels,
		JoinTokenID: tokenID, CreatedAt: now.UTC()}
	if _, err := s.Store.JoinNode(r.Context(), tokenID, digest[:], now, rec); err != nil {
		if errors.Is(err, store.ErrTokenUnusable) {
			log.Info("join refused", "token_id", tokenID, "reason", err.Error())
			refuse(w, http.StatusUnauthorized, agentapi.CodeInvalidToken,
				"The join token is not usable.")
			return
		}
		internal(w, log, "store node", err)
		return
	}

	// Only now is a certificate made, so a refused join never holds one.
	dns, ips := sans(host)
	cert, err := s.CA.SignCSR(csr, pki.NodeIdentity(nodeID), dns, ips, s.CertLifetime)
	if err == nil {
		err = s.Store.UpdateNodeCert(r.Context(), nodeID, cert.NotAfter)
	}
	if err != nil {
		_ = s.Store.DeleteNode(context.WithoutCancel(r.Context()), nodeID)
		internal(w, log, "sign node certificate", err)
		return
	}
	spec := registry.Spec{ID: nodeID, Endpoint: endpoint, Models: req.Facts.Models,
		Provider: req.Facts.Provider, Region: req.Facts.Region, Source: registry.SourceAgent,
		Facts: registry.Facts{Zone: req.Facts.Zone, InstanceType: req.Facts.InstanceType,
			Spot: req.Facts.Spot, GPU: req.Facts.GPU, Engine: req.Facts.Engine,
			Labels: tok.Labels},
		CertNotAfter: cert.NotAfter, Transport: s.NodeTransport(nodeID)}
	if s.NodeStreamTransport != nil {
		spec.StreamTransport = s.NodeStreamTransport(nodeID)
	}
	if err := s.Registry.Add(spec); err != nil {
		internal(w, log, "register node", err)
		return
	}
	log.Info("node joined", "node_id", nodeID, "token_id", tokenID, "endpoint", endpoint,
		"models", req.Facts.Models, "provider", req.Facts.Provider, "spot", req.Facts.Spot,
		"cert_not_after", cert.NotAfter)
	writeJSON(w, http.StatusCreated, s.certificate(nodeID, cert))
}

// usable reports why a token cannot be used, if it cannot. JoinNode checks
// the same again inside its transaction; this early check only keeps an
// unusable token from costing a CSR parse.
func usable(t store.JoinToken, digest []byte, now time.Time) error {
	switch {
	case subtle.ConstantTimeCompare(t.Hash, digest) != 1:
		return errors.New("unknown join token")
	case !t.RevokedAt.IsZero():
		return errors.New("join token revoked")
	case !now.Before(t.ExpiresAt):
		return errors.New("join token expired")
	case t.Uses >= t.MaxUses:
		return errors.New("join token already used")
	}
	return nil
}

// certificate is the answer carrying a freshly signed certificate.
func (s *Server) certificate(nodeID string, cert *x509.Certificate) agentapi.Certificate {
	return agentapi.Certificate{NodeID: nodeID, Certificate: string(pki.CertPEM(cert)),
		Bundle: string(s.CA.Bundle().PEM()), NotAfter: cert.NotAfter,
		HeartbeatIntervalMS: s.interval().Milliseconds()}
}

// withNode authenticates a call made with a node certificate and passes
// the node's ID on. The TLS layer has verified the chain and validity; the
// registry decides whether the node still exists.
func (s *Server) withNode(h func(http.ResponseWriter, *http.Request, registry.Status)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		identity, ok := pki.PeerIdentity(r.TLS)
		nodeID, isNode := strings.CutPrefix(identity, pki.NodeIdentity(""))
		if !ok || !isNode || nodeID == "" {
			refuse(w, http.StatusUnauthorized, agentapi.CodeNotAuthenticated,
				"A node certificate from this control plane's CA is required.")
			return
		}
		st, ok := s.Registry.Get(nodeID)
		if !ok {
			s.log().Info("call from a removed node refused", "node_id", nodeID,
				"path", r.URL.Path)
			refuse(w, http.StatusForbidden, agentapi.CodeNodeGone,
				"Node "+nodeID+" was removed; join again with a new token.")
			return
		}
		h(w, r, st)
	}
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, node registry.Status) {
	var req agentapi.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	switch req.State {
	case agentapi.StateStarting, agentapi.StateReady, agentapi.StateDraining,
		agentapi.StateUnhealthy:
	default:
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidRequest,
			fmt.Sprintf("Unknown node state %q.", req.State))
		return
	}
	load := registry.Load{Running: req.Load.Running, Waiting: req.Load.Waiting,
		KVCacheUsage: req.Load.KVCacheUsage}
	if err := s.Registry.Heartbeat(node.ID, string(req.State), req.Reason, load); err != nil {
		refuse(w, http.StatusForbidden, agentapi.CodeNodeGone, "Node "+node.ID+" was removed.")
		return
	}
	writeJSON(w, http.StatusOK, agentapi.HeartbeatResponse{
		HeartbeatIntervalMS: s.interval().Milliseconds()})
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request, node registry.Status) {
	log := s.log()
	var req agentapi.RenewRequest
	if !decode(w, r, &req) {
		return
	}
	csr, err := checkCSR(req.CSR, pki.NodeIdentity(node.ID))
	if err != nil {
		log.Info("renewal refused", "node_id", node.ID, "reason", err.Error())
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidCSR, err.Error())
		return
	}
	_, host, _ := checkEndpoint(node.Endpoint)
	dns, ips := sans(host)
	cert, err := s.CA.SignCSR(csr, pki.NodeIdentity(node.ID), dns, ips, s.CertLifetime)
	if err != nil {
		internal(w, log, "sign node certificate", err)
		return
	}
	if err := s.Store.UpdateNodeCert(r.Context(), node.ID, cert.NotAfter); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			refuse(w, http.StatusForbidden, agentapi.CodeNodeGone, "Node "+node.ID+" was removed.")
			return
		}
		internal(w, log, "store certificate expiry", err)
		return
	}
	s.Registry.SetCertExpiry(node.ID, cert.NotAfter)
	log.Info("certificate renewed", "node_id", node.ID, "cert_not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, s.certificate(node.ID, cert))
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request, node registry.Status) {
	var req agentapi.DeregisterRequest
	if !decode(w, r, &req) {
		return
	}
	if err := s.Store.DeleteNode(r.Context(), node.ID); err != nil &&
		!errors.Is(err, store.ErrNotFound) {
		internal(w, s.log(), "delete node", err)
		return
	}
	_ = s.Registry.Remove(node.ID)
	s.log().Info("node left", "node_id", node.ID, "reason", req.Reason)
	w.WriteHeader(http.StatusNoContent)
}

// checkEndpoint validates an agent's advertised endpoint and returns it
// normalised with its host.
func checkEndpoint(raw string) (endpoint, host string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", "", fmt.Errorf("endpoint %q must be an https URL with a host and no path", raw)
	}
	return "https://" + u.Host, u.Hostname(), nil
}

// checkCSR parses a CSR and refuses one that asks for an identity: the
// control plane assigns identities. A renewal may repeat its own.
func checkCSR(pemText, own string) (*x509.CertificateRequest, error) {
	csr, err := pki.ParseCSR([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("the CSR is not valid: %v", err)
	}
	for _, u := range csr.URIs {
		if u.String() != own || own == "" {
			return nil, fmt.Errorf("the CSR asks for identity %s; identities are assigned "+
				"by the control plane", u)
		}
	}
	return csr, nil
}

// sans returns the SANs for a node reached at host.
func sans(host string) (dns []string, ips []net.IP) {
	if ip := net.ParseIP(host); ip != nil {
		return nil, []net.IP{ip}
	}
	return []string{host}, nil
}

var unsafeID = regexp.MustCompile(`[^a-z0-9-]+`)

// newNodeID makes a unique node ID from an agent's name hint: the hint
// cleaned to [a-z0-9-], at most 40 characters, and 6 random hex digits.
func newNodeID(hint string) string {
	base := strings.Trim(unsafeID.ReplaceAllString(strings.ToLower(hint), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	if base == "" {
		base = "node"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return base + "-" + hex.EncodeToString(b[:])
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err := dec.Decode(v); err != nil {
		refuse(w, http.StatusBadRequest, agentapi.CodeInvalidRequest,
			"Invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func refuse(w http.ResponseWriter, status int, code, msg string) {
	typ := openai.TypeInvalidRequest
	switch status {
	case http.StatusUnauthorized:
		typ = openai.TypeAuthentication
	case http.StatusForbidden:
		typ = openai.TypePermission
	}
	(&openai.Error{Status: status, Type: typ, Code: code, Message: msg}).Write(w)
}

func internal(w http.ResponseWriter, log *slog.Logger, op string, err error) {
	log.Error("agent API operation failed", "op", op, "error", err)
	(&openai.Error{Status: http.StatusInternalServerError, Type: openai.TypeServer,
		Message: "The control plane failed to " + op + "."}).Write(w)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
