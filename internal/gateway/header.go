package gateway

import (
	"math/rand/v2"
	"net/http"
	"strings"
)

// hopHeaders are not forwarded in either direction (RFC 9110, 7.6.1).
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// privateRequestHeaders are request headers meant for the gateway alone.
var privateRequestHeaders = map[string]bool{
	"Authorization":   true, // the customer's key; the node gets its own
	"Cookie":          true,
	"Accept-Encoding": true, // see Gateway: engines must answer uncompressed
	"Content-Length":  true, // set from the body actually sent
	"X-Request-Id":    true, // set by the gateway
}

// copyRequestHeader copies the client's end-to-end headers to a request
// for a node.
func copyRequestHeader(dst, src http.Header) {
	for k, vv := range src {
		if hopHeaders[k] || privateRequestHeaders[k] || listedInConnection(src, k) {
			continue
		}
		dst[k] = vv
	}
}

// copyResponseHeader copies a node's end-to-end headers to the client.
func copyResponseHeader(dst, src http.Header) {
	for k, vv := range src {
		if hopHeaders[k] || k == "Server" || k == "X-Request-Id" ||
			listedInConnection(src, k) {
			continue
		}
		dst[k] = vv
	}
}

// listedInConnection reports whether a Connection header names k as
// hop-by-hop. It is rare, so the common case costs one map lookup.
func listedInConnection(h http.Header, k string) bool {
	conn, ok := h["Connection"]
	if !ok {
		return false
	}
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}

// maxRequestIDLen bounds a client's request ID, which is logged and
// echoed.
const maxRequestIDLen = 128

// setRequestID keeps the client's X-Request-Id when it is usable, makes a
// new one otherwise, sets it on the answer and returns it.
func setRequestID(w http.ResponseWriter, r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header()["X-Request-Id"] = []string{id}
	return id
}

// validRequestID accepts visible ASCII without spaces or quotes, so an ID
// cannot forge log fields or headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := range len(id) {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// newRequestID returns "req_" and 24 random hex digits. Request IDs need
// to be unique, not secret, so the fast per-thread generator is enough.
func newRequestID() string {
	const hex = "0123456789abcdef"
	var b [4 + 24]byte
	copy(b[:], "req_")
	hi, lo := rand.Uint64(), rand.Uint32()
	for i := range 16 {
		b[4+i] = hex[hi>>(4*i)&0xf]
	}
	for i := range 8 {
		b[20+i] = hex[lo>>(4*i)&0xf]
	}
	return string(b[:])
}
