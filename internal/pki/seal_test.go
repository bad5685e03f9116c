package pki

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := newDataKey(t)
	tests := []struct {
		name      string
		plaintext []byte
	}{
		{"empty", nil},
		{"short", []byte("root key")},
		{"large", bytes.Repeat([]byte{0xa5}, 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := Seal(key, tt.plaintext)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.plaintext) > 0 && bytes.Contains(sealed, tt.plaintext) {
				t.Fatal("sealed data contains the plaintext")
			}
			got, err := Open(key, sealed)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %x, want %x", got, tt.plaintext)
			}

			// A random nonce makes every sealing different.
			again, err := Seal(key, tt.plaintext)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again, sealed) {
				t.Error("two sealings of the same plaintext are equal")
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	key := newDataKey(t)
	sealed, err := Seal(key, []byte("the root's private key"))
	if err != nil {
		t.Fatal(err)
	}
	// flip returns sealed with byte i changed.
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}

	tests := []struct {
		name   string
		key    []byte
		sealed []byte
		want   error
	}{
		{"wrong key", newDataKey(t), sealed, ErrWrongDataKey},
		{"version", key, flip(0), ErrSealedCorrupt},
		{"key ID", key, flip(1), ErrWrongDataKey},
		{"nonce", key, flip(headerSize), ErrSealedCorrupt},
		{"ciphertext", key, flip(headerSize + 12), ErrSealedCorrupt},
		{"tag", key, flip(len(sealed) - 1), ErrSealedCorrupt},
		{"truncated", key, sealed[:len(sealed)-1], ErrSealedCorrupt},
		{"header only", key, sealed[:headerSize], ErrSealedCorrupt},
		{"empty", key, nil, ErrSealedCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(tt.key, tt.sealed)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %q, %v; want error %v", got, err, tt.want)
			}
		})
	}
}

func TestSealKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := Seal(make([]byte, n), []byte("x")); err == nil {
			t.Errorf("Seal with a %d-byte key: got nil error, want one", n)
		}
		if _, err := Open(make([]byte, n), make([]byte, 64)); err == nil {
			t.Errorf("Open with a %d-byte key: got nil error, want one", n)
		}
	}
}

func TestLoadDataKey(t *testing.T) {
	// 0xfb 0xff bytes make base64's alphabets differ ('+/' against '-_').
	key := bytes.Repeat([]byte{0xfb, 0xff, 0x01, 0x80}, DataKeySize/4)
	other := newDataKey(t)

	// writeFile writes content to a new file and returns its name.
	dir := t.TempDir()
	n := 0
	writeFile := func(content string) string {
		n++
		name := filepath.Join(dir, "key"+string(rune('a'+n)))
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	otherFile := writeFile(base64.StdEncoding.EncodeToString(other) + "\n")

	tests := []struct {
		name    string
		env     string
		file    string
		want    []byte
		wantErr error // checked with errors.Is when set
	}{
		{name: "hex", env: hex.EncodeToString(key), want: key},
		{name: "hex upper case", env: strings.ToUpper(hex.EncodeToString(key)), want: key},
		{name: "base64", env: base64.StdEncoding.EncodeToString(key), want: key},
		{name: "base64 url", env: base64.URLEncoding.EncodeToString(key), want: key},
		{name: "base64 raw", env: base64.RawStdEncoding.EncodeToString(key), want: key},
		{name: "base64 raw url", env: base64.RawURLEncoding.EncodeToString(key), want: key},
		{name: "env wins over file", env: hex.EncodeToString(key), file: otherFile,
			want: key},
		{name: "file", file: otherFile, want: other},
		{name: "file hex with CRLF", file: writeFile(hex.EncodeToString(key) + "\r\n"),
			want: key},
		{name: "blank env falls back to file", env: " \n", file: otherFile, want: other},
		{name: "neither", wantErr: ErrNoDataKey},
		{name: "missing file", file: filepath.Join(dir, "missing"),
			wantErr: fs.ErrNotExist},
		{name: "16 bytes", env: hex.EncodeToString(key[:16])},
		{name: "48 bytes",
			env: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 48))},
		{name: "not an encoding", env: "not a key at all"},
		{name: "short file", file: writeFile(hex.EncodeToString(key[:31]) + "\n")},
		{name: "bad env does not fall back", env: "zz", file: otherFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadDataKey(tt.env, tt.file)
			if tt.want != nil {
				if err != nil {
					t.Fatalf("LoadDataKey: %v", err)
				}
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("LoadDataKey = %x, want %x", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadDataKey = %x, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadDataKey error = %v, want %v", err, tt.wantErr)
			}
			if tt.env != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.env)) {
				t.Fatalf("error %q repeats the key", err)
			}
		})
	}
}

func TestGenerateDataKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.key")
	key, err := GenerateDataKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(key), DataKeySize; got != want {
		t.Fatalf("key length = %d, want %d", got, want)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.Mode().Perm(), fs.FileMode(0o600); got != want {
		t.Errorf("file mode = %v, want %v", got, want)
	}
	loaded, err := LoadDataKey("", path)
	if err != nil {
		t.Fatalf("LoadDataKey: %v", err)
	}
	if !bytes.Equal(loaded, key) {
		t.Errorf("LoadDataKey = %x, want %x", loaded, key)
	}

	// A second call must not replace the key: it may be the only way to
	// open the sealed root key.
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateDataKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateDataKeyFile error = %v, want %v", err, fs.ErrExist)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Error("second GenerateDataKeyFile changed the file")
	}
}
