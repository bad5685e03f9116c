package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
)

// headBufPool holds the buffers requests are written from: the head and,
// when it is small, the body, so that most requests take one write.
var headBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// headersSetHere are written by writeRequest itself, whatever the
// request's Header says.
var headersSetHere = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "Trailer": true,
}

// writeRequest writes req to w as HTTP/1.1.
func writeRequest(w io.Writer, req *http.Request) error {
	bp := headBufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 2*maxInlineBody {
			headBufPool.Put(bp)
		}
	}()
	b := (*bp)[:0]

	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validToken(method) {
		return fmt.Errorf("upstream: invalid method %q", method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validValue(host) {
		return errors.New("upstream: invalid host")
	}
	uri := req.URL.RequestURI()
	if !validValue(uri) {
		return errors.New("upstream: invalid request URI")
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vv := range req.Header {
		if headersSetHere[k] || headersSetHere[textproto.CanonicalMIMEHeaderKey(k)] {
			continue
		}
		if !validToken(k) {
			return fmt.Errorf("upstream: invalid header name %q", k)
		}
		for _, v := range vv {
			if !validValue(v) {
				return fmt.Errorf("upstream: invalid value of header %s", k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody || req.ContentLength > 0 || method == http.MethodPost ||
		method == http.MethodPut || method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, max(req.ContentLength, 0), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)

	if !hasBody || req.ContentLength == 0 {
		*bp = b
		_, err := w.Write(b)
		return err
	}
	if req.ContentLength <= maxInlineBody {
		head := len(b)
		b = append(b, make([]byte, req.ContentLength)...)
		*bp = b
		if _, err := io.ReadFull(req.Body, b[head:]); err != nil {
			return fmt.Errorf("upstream: read request body: %w", err)
		}
		_, err := w.Write(b)
		return err
	}
	*bp = b
	if _, err := w.Write(b); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(req.Body, req.ContentLength))
	if err == nil && n < req.ContentLength {
		err = fmt.Errorf("upstream: request body is %d bytes, not %d", n, req.ContentLength)
	}
	return err
}

// validToken reports whether s is an HTTP token (RFC 9110, 5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || isDelimiter(c) {
			return false
		}
	}
	return true
}

func isDelimiter(c byte) bool {
	switch c {
	case '"', '(', ')', ',', '/', ':', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}':
		return true
	}
	return false
}

// validValue reports whether s may be sent as a header value: no control
// characters but tab, so that no value can end its line early.
func validValue(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ValidHeader reports whether a header with name k and value v may be
// written on an HTTP/1.1 connection: a token for a name, and no control
// character but tab in the value.
func ValidHeader(k, v string) bool { return validToken(k) && validValue(v) }
