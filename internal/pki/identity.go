package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// TrustDomain is the SPIFFE trust domain of every CrossLogic identity.
const TrustDomain = "crosslogic"

// Identities of the components that are not nodes.
const (
	// GatewayIdentity is the identity of every gateway replica. Agents
	// accept connections only from it.
	GatewayIdentity = "spiffe://crosslogic/gateway"
	// ControlPlaneIdentity is the identity of the control plane's agent
	// API, which an agent checks on first contact and afterwards.
	ControlPlaneIdentity = "spiffe://crosslogic/control-plane"
)

// identityPrefix begins every identity. Because it ends in "/", a string
// that has it cannot carry a user, a port or another host.
const identityPrefix = "spiffe://" + TrustDomain + "/"

// nodePrefix begins every node identity.
const nodePrefix = identityPrefix + "node/"

// NodeIdentity returns the identity of the node nodeID. It does not check
// nodeID; CheckIdentity does.
func NodeIdentity(nodeID string) string {
	return nodePrefix + nodeID
}

// CheckIdentity reports why identity is not an identity this package
// issues, or nil if it is one. An identity is "spiffe://crosslogic/"
// followed by a path of one or more segments of letters, digits, '.', '-'
// and '_', none of them empty, "." or "..", as SPIFFE IDs require.
func CheckIdentity(identity string) error {
	path, ok := strings.CutPrefix(identity, identityPrefix)
	if !ok {
		return fmt.Errorf("pki: identity %q does not begin with %q",
			identity, identityPrefix)
	}
	for seg := range strings.SplitSeq(path, "/") {
		if err := checkSegment(seg); err != nil {
			return fmt.Errorf("pki: identity %q: %w", identity, err)
		}
	}
	return nil
}

func checkSegment(seg string) error {
	switch seg {
	case "":
		return errors.New("empty path segment")
	case ".", "..":
		return fmt.Errorf("path segment %q", seg)
	}
	for _, c := range seg {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
			'0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("character %q not allowed in a path segment", c)
		}
	}
	return nil
}

// IdentityOf returns the identity cert proves: its single URI SAN in the
// crosslogic trust domain. It reports false if cert has none, has several,
// or has one that is not a well-formed identity. URI SANs of other trust
// domains are ignored.
func IdentityOf(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	var found string
	n := 0
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, identityPrefix) {
			found = s
			n++
		}
	}
	if n != 1 || CheckIdentity(found) != nil {
		return "", false
	}
	return found, true
}

// NodeIDOf returns the node ID of cert's identity. It reports false if
// cert has no identity or its identity is not a node's.
func NodeIDOf(cert *x509.Certificate) (string, bool) {
	id, ok := IdentityOf(cert)
	if !ok {
		return "", false
	}
	nodeID, ok := strings.CutPrefix(id, nodePrefix)
	if !ok || nodeID == "" || strings.Contains(nodeID, "/") {
		return "", false
	}
	return nodeID, true
}
