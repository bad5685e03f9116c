package pki

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed time tests run at. Every CA and TLS configuration
// in the tests reads this clock (or one derived from it), never the wall
// clock, so certificate validity is decided by the test alone.
var testNow = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

// ioTimeout bounds every network operation of a test, so that a bug shows
// as a failure rather than a hung test. It is a deadline, not a sleep.
const ioTimeout = 10 * time.Second

// clock returns a func that always answers t.
func clock(t time.Time) func() time.Time {
	return func() time.Time { return t }
}

// newDataKey returns a random data key.
func newDataKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, DataKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

// newRoot makes a root at now, sealed with dataKey.
func newRoot(t *testing.T, dataKey []byte, now time.Time) RootMaterial {
	t.Helper()
	root, err := NewRoot(dataKey, now)
	if err != nil {
		t.Fatalf("NewRoot: %v", err)
	}
	return root
}

// newCA makes a CA with a fresh root made at testNow, on the clock now.
func newCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	dataKey := newDataKey(t)
	return loadCA(t, dataKey, now, newRoot(t, dataKey, testNow))
}

// loadCA loads roots with dataKey on the clock now.
func loadCA(t *testing.T, dataKey []byte, now time.Time, roots ...RootMaterial) *CA {
	t.Helper()
	ca, err := LoadCA(roots, dataKey, Options{Now: clock(now)})
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return ca
}

// issue issues a leaf for identity with the default lifetime.
func issue(t *testing.T, ca *CA, identity string) *tls.Certificate {
	t.Helper()
	cert, err := ca.Issue(identity, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatalf("Issue(%q): %v", identity, err)
	}
	return cert
}

// source returns a Source with a fixed certificate (nil for none), bundle
// and clock.
func source(cert *tls.Certificate, bundle *Bundle, now time.Time) Source {
	src := Source{Bundle: func() *Bundle { return bundle }, Now: clock(now)}
	if cert != nil {
		src.Certificate = func() *tls.Certificate { return cert }
	}
	return src
}

// testServer is a TLS server on 127.0.0.1 that answers every line a client
// sends with the identity PeerIdentity saw ("-" for none).
type testServer struct {
	addr string
	// handshakes receives the result of every server-side handshake.
	handshakes chan error
	wg         sync.WaitGroup
}

// noPeer is what testServer answers when the client has no identity.
const noPeer = "-"

// startServer serves cfg until the test ends.
func startServer(t *testing.T, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), handshakes: make(chan error, 16)}
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})

	s.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(tls.Server(conn, cfg)) })
		}
	})
	return s
}

func (s *testServer) serve(conn *tls.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	err := conn.Handshake()
	select {
	case s.handshakes <- err:
	default: // nobody is looking at this one
	}
	if err != nil {
		return
	}

	state := conn.ConnectionState()
	identity, ok := PeerIdentity(&state)
	if !ok {
		identity = noPeer
	}
	r := bufio.NewReader(conn)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := conn.Write([]byte(identity + "\n")); err != nil {
			return
		}
	}
}

// handshakeErr returns the result of the server's next handshake.
func (s *testServer) handshakeErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.handshakes:
		return err
	case <-time.After(ioTimeout):
		t.Fatal("server did not finish a handshake")
		return nil
	}
}

// dial connects to s with cfg and completes the client's handshake. The
// connection is closed when the test ends.
func dial(t *testing.T, s *testServer, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: cfg}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(ioTimeout))
	return conn, nil
}

// exchange sends a line on conn and returns the server's answer: the
// identity it saw. In TLS 1.3 the client's handshake ends before the
// server has checked the client certificate, so a refused client
// certificate shows up here, not in dial.
func exchange(conn *tls.Conn) (string, error) {
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 2 {
		return "", errors.New("short answer")
	}
	return line[:len(line)-1], nil
}

// roundTrip dials s, exchanges one line and returns the identity the
// server saw.
func roundTrip(t *testing.T, s *testServer, cfg *tls.Config) (string, error) {
	t.Helper()
	conn, err := dial(t, s, cfg)
	if err != nil {
		return "", err
	}
	return exchange(conn)
}
