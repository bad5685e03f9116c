package agent

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/crosslogic/crosslogic/internal/pki"
)

// Files in Config.StateDir. node.json is written last when joining: it
// is the mark that a join completed, so a directory without it holds no
// identity, whatever else it holds.
const (
	keyFile    = "key.pem"    // the node's private key, 0600; never leaves the machine
	certFile   = "cert.pem"   // the node's current certificate
	bundleFile = "bundle.pem" // the roots the node trusts
	nodeFile   = "node.json"  // nodeRecord
)

// nodeRecord is node.json: what the agent learnt when it joined.
type nodeRecord struct {
	NodeID       string    `json:"node_id"`
	ControlPlane string    `json:"control_plane"`
	Endpoint     string    `json:"endpoint"`
	JoinedAt     time.Time `json:"joined_at"`
	// HeartbeatIntervalMS is the interval the control plane asked for
	// at the join, until a heartbeat says otherwise.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms,omitempty"`
}

// identity is what a node proves itself with, as held in memory.
type identity struct {
	record nodeRecord
	key    crypto.Signer
	cert   *tls.Certificate // Leaf is set
	bundle *pki.Bundle
}

// loadIdentity reads the identity stored in dir. It returns nil and no
// error if dir holds none (no node.json), and ErrCertificateExpired,
// wrapped, if the certificate has expired at now.
func loadIdentity(dir string, now time.Time) (*identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, nodeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: read state: %w", err)
	}
	damaged := func(err error) error {
		return fmt.Errorf("agent: state in %s is damaged (%w); remove it and join again "+
			"with a new token", dir, err)
	}

	var rec nodeRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.NodeID == "" {
		if err == nil {
			err = errors.New("no node_id")
		}
		return nil, damaged(fmt.Errorf("%s: %w", nodeFile, err))
	}
	read := func(name string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, name))
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return nil, damaged(err)
	}
	key, err := pki.DecodeKeyPEM(keyPEM)
	if err != nil {
		return nil, damaged(err)
	}
	certPEM, err := read(certFile)
	if err != nil {
		return nil, damaged(err)
	}
	bundlePEM, err := read(bundleFile)
	if err != nil {
		return nil, damaged(err)
	}
	cert, bundle, err := acceptCertificate(key, rec.NodeID, certPEM, bundlePEM)
	if err != nil {
		return nil, damaged(err)
	}

	if leaf := cert.Leaf; !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: node %s, certificate expired at %s",
			ErrCertificateExpired, rec.NodeID, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &identity{record: rec, key: key, cert: cert, bundle: bundle}, nil
}

// acceptCertificate parses a certificate and bundle the control plane
// sent for key and checks that they belong together: the certificate
// certifies key, names node nodeID and chains to the bundle.
func acceptCertificate(key crypto.Signer, nodeID string, certPEM, bundlePEM []byte) (
	*tls.Certificate, *pki.Bundle, error) {
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	bundle, err := pki.ParseBundle(bundlePEM)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, nil, errors.New("certificate is not for the node's key")
	}
	if id, ok := pki.NodeIDOf(leaf); !ok || id != nodeID {
		return nil, nil, fmt.Errorf("certificate names node %q, want %q", id, nodeID)
	}
	// Checked at the certificate's own start, not now: whether it has
	// expired is the caller's question, with its own clock.
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       bundle.Pool(),
		CurrentTime: leaf.NotBefore,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("certificate does not chain to the bundle: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	return cert, bundle, nil
}

// saveIdentity writes id to dir, creating dir (0700) if needed. Each file
// is replaced atomically, and node.json goes last, so that a crash midway
// leaves no identity rather than half of one.
func saveIdentity(dir string, id *identity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: make state directory: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone; the key must
	// not be listed, let alone read, by others.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("agent: protect state directory: %w", err)
	}
	keyPEM, err := pki.EncodeKeyPEM(id.key)
	if err != nil {
		return fmt.Errorf("agent: encode key: %w", err)
	}
	rec, err := json.MarshalIndent(id.record, "", "  ")
	if err != nil {
		return fmt.Errorf("agent: encode %s: %w", nodeFile, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := saveCertificate(dir, id.cert, id.bundle); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, nodeFile), append(rec, '\n'), 0o600)
}

// saveCertificate replaces the certificate and bundle in dir. The bundle
// goes first: a crash in between then leaves the old certificate with a
// bundle that, during a root rotation, trusts both roots.
func saveCertificate(dir string, cert *tls.Certificate, bundle *pki.Bundle) error {
	if err := writeFileAtomic(filepath.Join(dir, bundleFile), bundle.PEM(), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certFile), pki.CertPEM(cert.Leaf), 0o644)
}

// writeFileAtomic replaces the file at path with data: it writes a
// temporary file in the same directory, syncs it, and renames it over
// path, so that a reader (or a restart after a crash) sees the old
// content or the new, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir, name := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("agent: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed

	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("agent: write %s: %w", name, err)
	}
	// The rename is durable only once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// removeIdentity deletes the identity in dir: node.json first, so that
// a failure midway leaves no identity rather than half of one.
func removeIdentity(dir string) error {
	for _, name := range []string{nodeFile, certFile, keyFile, bundleFile} {
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("agent: remove %s: %w", name, err)
		}
	}
	return nil
}
