package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
)

// apiError is a request failure as the client sees it: an HTTP status
// and vLLM's error body, {"error": {message, type, param, code}}.
type apiError struct {
	status int
	typ    string // vLLM's err_type, e.g. "BadRequestError"
	param  string // the offending request field; empty for none
	msg    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("sim: %d %s: %s", e.status, e.typ, e.msg)
}

// badRequest returns a 400 about the request field param.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{
		status: http.StatusBadRequest,
		typ:    "BadRequestError",
		param:  param,
		msg:    fmt.Sprintf(format, args...),
	}
}

// modelNotFound returns vLLM's 404 for a model it does not serve.
func modelNotFound(model string) *apiError {
	return &apiError{
		status: http.StatusNotFound,
		typ:    "NotFoundError",
		param:  "model",
		msg:    "The model `" + model + "` does not exist.",
	}
}

// errInjected is the 500 of Faults.ErrorRate.
var errInjected = &apiError{
	status: http.StatusInternalServerError,
	typ:    "InternalServerError",
	msg:    "Internal server error (injected by the simulator)",
}

// errorBody is vLLM's ErrorResponse.
type errorBody struct {
	Error errorInfo `json:"error"`
}

type errorInfo struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

// writeError answers e. Errors are off the hot path, so encoding/json
// is fine here; it also escapes whatever the client sent back to it.
func writeError(w http.ResponseWriter, e *apiError) {
	body := errorBody{Error: errorInfo{Message: e.msg, Type: e.typ, Code: e.status}}
	if e.param != "" {
		body.Error.Param = &e.param
	}
	b, err := json.Marshal(body)
	if err != nil {
		// Unreachable: the body holds only strings and an int.
		panic(err)
	}
	writeJSON(w, e.status, b)
}

// jsonType is the Content-Type of JSON answers. The slice is shared by
// every answer, saving an allocation each: net/http only reads it.
var jsonType = []string{"application/json"}

// writeJSON answers status with the JSON body b.
func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeDetail answers status with the {"detail": …} body FastAPI, and
// so vLLM, gives for unknown paths and wrong methods.
func writeDetail(w http.ResponseWriter, status int) {
	writeJSON(w, status, []byte(`{"detail":"`+http.StatusText(status)+`"}`))
}

// decodeError turns an encoding/json error into a 400 that names the
// field and the expected kind, never the Go error text.
func decodeError(err error) *apiError {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		api    *apiError
	)
	switch {
	case errors.As(err, &api):
		return api
	case errors.As(err, &syntax):
		return badRequest("", "Invalid JSON body at byte %d.", syntax.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return badRequest(typ.Field, "Field `%s` must be %s, got %s.",
			typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &typ):
		return badRequest("", "The request body must be a JSON object, got %s.", typ.Value)
	default:
		return badRequest("", "Invalid JSON body.")
	}
}

// jsonKind names the JSON kind that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
