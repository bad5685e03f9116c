package agent

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/pki"
)

// ErrNodeGone is matched (with errors.Is) by the error Run returns when
// the control plane answers that the node was removed: the agent stops
// serving, and the machine must join again with a new token.
var ErrNodeGone = errors.New("agent: the node was removed from the control plane; " +
	"join again with a new token")

// ErrCertificateExpired is matched by the error Run returns when the
// node's certificate has expired, at start or because renewal failed
// until it did: nothing will accept it any more, so the machine must
// join again with a new token.
var ErrCertificateExpired = errors.New("agent: the node certificate has expired; " +
	"join again with a new token")

// APIError is the control plane's refusal of an agent API call: an
// answer other than 2xx, with the code from the body when it has the
// OpenAI error shape.
type APIError struct {
	// Op is the call refused: "register", "heartbeat", "renew" or
	// "deregister".
	Op string
	// Status is the HTTP status code.
	Status int
	// Code is one of agentapi's Code constants, or empty if the body had
	// none.
	Code string
	// Message is the control plane's explanation, possibly empty.
	Message string
}

// Error says which call was refused and why, with advice for the codes
// an operator must act on.
func (e *APIError) Error() string {
	s := fmt.Sprintf("agent: %s refused with %d", e.Op, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch e.Code {
	case agentapi.CodeInvalidToken:
		s += " (the join token is unknown, expired, used up or revoked: create a new one)"
	case agentapi.CodeInvalidCSR:
		s += " (the CSR must cover the advertise URL's host: check AdvertiseURL)"
	case agentapi.CodeNodeGone:
		s += " (the node was removed: join again with a new token)"
	}
	return s
}

// Retryable reports whether the same call may succeed later: a server
// error, a rate limit or a timeout, but not a refusal of what was sent.
func (e *APIError) Retryable() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests ||
		e.Status == http.StatusRequestTimeout
}

// Is makes errors.Is(err, ErrNodeGone) hold for a node_gone refusal.
func (e *APIError) Is(target error) bool {
	return target == ErrNodeGone && e.Code == agentapi.CodeNodeGone
}

// retryable reports whether a failed call to the control plane is worth
// retrying: a refusal that says so, or a network failure. A certificate
// that does not verify is not: it will not verify any better later, and
// retrying would hide a wrong fingerprint or bundle behind warnings.
func retryable(err error) bool {
	if apiErr, ok := errors.AsType[*APIError](err); ok {
		return apiErr.Retryable()
	}
	if _, ok := errors.AsType[*pki.PeerError](err); ok {
		return false
	}
	return true
}
