package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// DataKeySize is the length in bytes of a data key: an AES-256 key.
const DataKeySize = 32

// Sealed format, version 1:
//
//	version (1 byte) | key ID (8 bytes) | nonce (12 bytes) | ciphertext+tag
//
// The key ID is the first 8 bytes of HMAC-SHA256(data key, keyIDLabel).
// It reveals nothing useful about a 256-bit key, and it lets Open tell
// "sealed with another data key" from "damaged", which AES-GCM alone
// cannot. Version and key ID are authenticated as additional data (so a
// damaged key ID reads as a wrong key, which is still a refusal).
//
// Nonces are random. With 96-bit random nonces one key may seal about
// 2^32 messages before a collision becomes a concern; a CA seals one key
// per root.
const (
	sealVersion1 = 1
	keyIDSize    = 8
	headerSize   = 1 + keyIDSize
	keyIDLabel   = "crosslogic pki data key id v1"
)

// ErrWrongDataKey is returned by Open (and so by LoadCA) when the sealed
// data was sealed with another data key.
var ErrWrongDataKey = errors.New("pki: sealed with a different data key")

// ErrSealedCorrupt is returned by Open when the sealed data is truncated,
// of an unknown version, or was altered.
var ErrSealedCorrupt = errors.New("pki: sealed data is corrupt or was altered")

// ErrNoDataKey is returned by LoadDataKey when it is given neither a value
// nor a file.
var ErrNoDataKey = errors.New("pki: no data key configured")

// LoadDataKey returns the data key from envValue if it is not empty, else
// from the file named by file. Either holds 32 bytes in base64 (standard
// or URL alphabet, padded or not) or hex; surrounding white space,
// including a trailing newline, is ignored. Errors never contain the key.
func LoadDataKey(envValue string, file string) ([]byte, error) {
	if strings.TrimSpace(envValue) != "" {
		key, err := decodeDataKey(envValue)
		if err != nil {
			return nil, fmt.Errorf("pki: data key from environment: %w", err)
		}
		return key, nil
	}
	if file == "" {
		return nil, ErrNoDataKey
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pki: read data key file: %w", err)
	}
	key, err := decodeDataKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("pki: data key file %s: %w", file, err)
	}
	return key, nil
}

// decodeDataKey decodes s as hex, then as each base64 variant, and keeps
// the first decoding of exactly DataKeySize bytes. Hex goes first because
// 64 hex digits are also valid base64 (of 48 bytes).
func decodeDataKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == hex.EncodedLen(DataKeySize) {
		if key, err := hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	encodings := []*base64.Encoding{
		base64.StdEncoding, base64.URLEncoding,
		base64.RawStdEncoding, base64.RawURLEncoding,
	}
	for _, enc := range encodings {
		if key, err := enc.DecodeString(s); err == nil && len(key) == DataKeySize {
			return key, nil
		}
	}
	return nil, fmt.Errorf("not %d bytes in base64 or hex", DataKeySize)
}

// GenerateDataKeyFile makes a random data key and writes it in base64 to a
// new file at path, readable by its owner only (0600). It refuses to
// overwrite an existing file, since the key it holds may be the only way
// to open a sealed root key; the error then wraps fs.ErrExist.
func GenerateDataKeyFile(path string) ([]byte, error) {
	key := make([]byte, DataKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("pki: generate data key: %w", err)
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pki: create data key file: %w", err)
	}
	// The umask may have taken bits away; say exactly what we mean.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("pki: write data key file: %w", err)
	}
	return key, nil
}

// Seal encrypts and authenticates plaintext with dataKey using AES-256-GCM
// and a random nonce, in a versioned format that Open reads.
func Seal(dataKey, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	header := make([]byte, 0, headerSize)
	header = append(header, sealVersion1)
	header = append(header, dataKeyID(dataKey)...)

	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pki: seal: read nonce: %w", err)
	}
	out := make([]byte, 0, headerSize+len(nonce)+len(plaintext)+aead.Overhead())
	out = append(out, header...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, header), nil
}

// Open decrypts what Seal sealed. It returns an error wrapping
// ErrWrongDataKey if dataKey is not the key it was sealed with, and
// ErrSealedCorrupt if sealed was damaged or altered.
func Open(dataKey, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	if len(sealed) < headerSize+aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrSealedCorrupt, len(sealed))
	}
	if sealed[0] != sealVersion1 {
		return nil, fmt.Errorf("%w: unknown version %d", ErrSealedCorrupt, sealed[0])
	}
	header := sealed[:headerSize]
	if !hmac.Equal(header[1:], dataKeyID(dataKey)) {
		return nil, ErrWrongDataKey
	}

	nonce := sealed[headerSize : headerSize+aead.NonceSize()]
	ciphertext := sealed[headerSize+aead.NonceSize():]
	plaintext, err := aead.Open(nil, nonce, ciphertext, header)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSealedCorrupt, err)
	}
	return plaintext, nil
}

func newAEAD(dataKey []byte) (cipher.AEAD, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("pki: data key is %d bytes, want %d",
			len(dataKey), DataKeySize)
	}
	block, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, fmt.Errorf("pki: data key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pki: data key: %w", err)
	}
	return aead, nil
}

// dataKeyID returns the key ID written in the sealed header.
func dataKeyID(dataKey []byte) []byte {
	mac := hmac.New(sha256.New, dataKey)
	mac.Write([]byte(keyIDLabel))
	return mac.Sum(nil)[:keyIDSize]
}
