// Package openai holds the parts of OpenAI's wire format that the gateway
// itself speaks: the error shape, the model list and a scanner that finds
// the routing fields of a request body without decoding it.
//
// The gateway forwards request and response bodies as bytes; it never
// builds them from Go structs on the request path. This package is what it
// needs to answer on its own behalf.
package openai

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types used in the "type" field, as OpenAI names them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUnavailable    = "service_unavailable_error"
	TypeTimeout        = "timeout_error"
)

// Error is an error answered to a client in OpenAI's shape:
//
//	{"error":{"message":…,"type":…,"param":…,"code":…}}
//
// It is also a Go error, so code paths can return it and have the HTTP
// layer write it. Message is shown to the client: it never holds a Go
// error string, a secret or prompt text.
type Error struct {
	// Status is the HTTP status code answered.
	Status int
	// Message is the human-readable explanation.
	Message string
	// Type is the error class, one of the Type constants.
	Type string
	// Param names the request field at fault; empty is written as null.
	Param string
	// Code is a machine-readable code such as "model_not_found"; empty is
	// written as null.
	Code string
	// RetryAfter, when positive, is sent as the Retry-After header, in
	// whole seconds.
	RetryAfter int
}

// Error returns the message, for logs and error wrapping.
func (e *Error) Error() string {
	return "openai: " + strconv.Itoa(e.Status) + " " + e.Type + ": " + e.Message
}

// wireError is Error as it appears on the wire.
type wireError struct {
	Error wireErrorBody `json:"error"`
}

type wireErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// JSON returns the error's body in OpenAI's shape.
func (e *Error) JSON() []byte {
	body := wireErrorBody{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		body.Param = &e.Param
	}
	if e.Code != "" {
		body.Code = &e.Code
	}
	b, err := json.Marshal(wireError{Error: body})
	if err != nil {
		// Marshalling strings and nil pointers cannot fail.
		panic("openai: marshal error: " + err.Error())
	}
	return b
}

// Write answers the error on w.
func (e *Error) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(e.JSON())
}

// StreamEvent returns the error as a server-sent event, for a stream whose
// status line has already gone out. OpenAI's own clients read an object
// with an "error" member in a data line as a failed stream.
func (e *Error) StreamEvent() []byte {
	b := make([]byte, 0, 160)
	b = append(b, "data: "...)
	b = append(b, e.JSON()...)
	b = append(b, "\n\n"...)
	return b
}

// Errors the gateway answers. Each call returns a fresh value so callers
// may set fields on it.

// InvalidRequest is a 400 for a body or parameter the gateway cannot use.
func InvalidRequest(param, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest,
		Param: param, Message: msg}
}

// InvalidAPIKey is a 401 for a missing, unknown, revoked or expired key.
func InvalidAPIKey(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Type: TypeInvalidRequest,
		Code: "invalid_api_key", Message: msg}
}

// ModelNotFound is the 404 OpenAI answers both for a model that does not
// exist and for one the key may not use, so that a key cannot probe which
// models exist.
func ModelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest,
		Param: "model", Code: "model_not_found",
		Message: "The model `" + model + "` does not exist or you do not have access to it."}
}

// NotFound is a 404 for a path the API does not have.
func NotFound(path string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest,
		Code: "unknown_url", Message: "Unknown request URL: " + path + "."}
}

// MethodNotAllowed is a 405 for a known path called with the wrong method.
func MethodNotAllowed(method, path string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Type: TypeInvalidRequest,
		Code:    "method_not_allowed",
		Message: "Method " + method + " is not allowed on " + path + "."}
}

// BodyTooLarge is a 413 for a body over the configured limit.
func BodyTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Type: TypeInvalidRequest,
		Code: "request_too_large",
		Message: "The request body exceeds the limit of " +
			strconv.FormatInt(limit, 10) + " bytes."}
}

// NoCapacity is a 503 for a known model with no ready node; retryAfter is
// in seconds.
func NoCapacity(model string, retryAfter int) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: TypeUnavailable,
		Code: "no_ready_node", RetryAfter: retryAfter,
		Message: "No node is ready to serve model `" + model + "` right now. Retry shortly."}
}

// BadGateway is a 502 for a node that refused, reset or answered garbage.
func BadGateway() *Error {
	return &Error{Status: http.StatusBadGateway, Type: TypeServer,
		Code:    "upstream_error",
		Message: "The node serving this request failed. Retry the request."}
}

// GatewayTimeout is a 504 for a node that did not answer in time.
func GatewayTimeout() *Error {
	return &Error{Status: http.StatusGatewayTimeout, Type: TypeTimeout,
		Code:    "upstream_timeout",
		Message: "The node serving this request did not answer in time. Retry the request."}
}

// Unavailable is a 503 for a gateway that is shutting down.
func Unavailable(msg string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: TypeUnavailable,
		Code: "unavailable", RetryAfter: 1, Message: msg}
}
