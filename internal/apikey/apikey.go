// Package apikey makes customer API keys and checks them on the request
// path.
//
// A key is "sk-cl-" followed by 48 base64url characters: 36 random bytes,
// 288 bits. Only its SHA-256 digest is stored. A fast hash is the right
// one here: passwords need a slow hash because people choose guessable
// ones, but a 288-bit random key cannot be guessed, so the digest only has
// to be one-way. The first four random characters are kept as a hint so
// people can tell keys apart in lists; 264 bits stay secret.
//
// The request path authenticates against a Keyring: an immutable map in
// memory, swapped atomically whenever keys change, so checking a key never
// touches the database or takes a lock.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Prefix begins every key CrossLogic makes, so that secret scanners and
// people recognise one.
const Prefix = "sk-cl-"

// secretBytes is the key's entropy. 36 bytes encode to 48 base64 characters
// without padding, and leave 264 secret bits after the four-character hint.
const secretBytes = 36

// hintChars is how many characters after the prefix a hint reveals.
const hintChars = 4

// Digest is the SHA-256 of a key: what is stored and compared.
type Digest [sha256.Size]byte

// Sum returns the digest of a presented key.
func Sum(key string) Digest {
	return sha256.Sum256([]byte(key))
}

// New is a freshly made key, returned once: the secret is shown to its
// owner and then forgotten.
type New struct {
	// Secret is the whole key the client sends as a bearer token.
	Secret string
	// Digest is what the store keeps.
	Digest Digest
	// Hint is the key's recognisable beginning, safe to list.
	Hint string
}

// Generate makes a new random key.
func Generate() (New, error) {
	var raw [secretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return New{}, fmt.Errorf("apikey: read random: %w", err)
	}
	secret := Prefix + base64.RawURLEncoding.EncodeToString(raw[:])
	return New{Secret: secret, Digest: Sum(secret), Hint: Hint(secret)}, nil
}

// Hint returns the part of a key that may be shown in lists: the prefix
// and the first few characters after it. A key given from outside (the
// demo's --api-key) may be short; its hint reveals at most a quarter of it.
func Hint(key string) string {
	n := len(Prefix) + hintChars
	if len(key) >= len(Prefix) && key[:len(Prefix)] == Prefix {
		if len(key)-len(Prefix) < 4*hintChars {
			n = len(Prefix) + (len(key)-len(Prefix))/4
		}
	} else {
		n = min(hintChars, len(key)/4)
	}
	return key[:min(n, len(key))] + "…"
}

// NewID returns a random key ID such as "key_1f2e3d4c5b6a7988". IDs are not
// secret and are unrelated to the key's secret.
func NewID() (string, error) {
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("apikey: read random: %w", err)
	}
	return "key_" + hex.EncodeToString(raw[:]), nil
}
