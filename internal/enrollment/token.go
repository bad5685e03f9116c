package enrollment

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A join token reads "cljt_<16 hex digits>.<43 base64url characters>".
// The hex part is the token's public ID, by which the control plane finds
// the stored token; the rest is 32 random bytes, of which only the SHA-256
// is stored. A fast hash suffices for the same reason as for API keys:
// the secret is random, not chosen by a person.
const (
	tokenPrefix    = "cljt_"
	tokenIDHex     = 16
	tokenSecretLen = 32
)

// ErrMalformedToken reports a string that is not a join token.
var ErrMalformedToken = errors.New("enrollment: malformed join token")

// NewToken makes a join token and returns it with its ID and digest.
func NewToken() (token, id string, digest [sha256.Size]byte, err error) {
	var raw [tokenIDHex/2 + tokenSecretLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", digest, fmt.Errorf("enrollment: read random: %w", err)
	}
	idHex := hex.EncodeToString(raw[:tokenIDHex/2])
	token = tokenPrefix + idHex + "." + base64.RawURLEncoding.EncodeToString(raw[tokenIDHex/2:])
	return token, "jt_" + idHex, sha256.Sum256([]byte(token)), nil
}

// ParseToken returns a token's ID and digest.
func ParseToken(token string) (id string, digest [sha256.Size]byte, err error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(rest) < tokenIDHex+1 || rest[tokenIDHex] != '.' {
		return "", digest, ErrMalformedToken
	}
	if _, err := hex.DecodeString(rest[:tokenIDHex]); err != nil {
		return "", digest, ErrMalformedToken
	}
	secret := rest[tokenIDHex+1:]
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil ||
		len(b) != tokenSecretLen {
		return "", digest, ErrMalformedToken
	}
	return "jt_" + rest[:tokenIDHex], sha256.Sum256([]byte(token)), nil
}
