package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
	"github.com/crosslogic/crosslogic/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, t.TempDir())
	})
}

// openStore opens the database in dir. The caller closes it.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// openRaw opens the database file in dir without migrating it, to look at
// or tamper with what Open left.
func openRaw(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// appliedVersions returns the versions recorded in schema_migrations.
func appliedVersions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(),
		`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("read schema_migrations: %v", err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return vs
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d]: got version %d, want %d", i, m.version, i+1)
		}
		if m.name == "" || len(m.stmts) == 0 {
			t.Errorf("migration %d: got name %q and %d statements, want both",
				m.version, m.name, len(m.stmts))
		}
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	dir := t.TempDir()
	created := time.Date(2025, time.March, 14, 15, 9, 26, 0, time.UTC)
	key := store.APIKey{ID: "k1", Name: "n", Hash: []byte{1, 2, 3}, Hint: "sk-cl-1",
		CreatedAt: created}
	node := store.Node{ID: "n1", Endpoint: "https://n1", Provider: "manual",
		CreatedAt: created}

	s := openStore(t, dir)
	if err := s.CreateKey(t.Context(), key); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if err := s.CreateNode(t.Context(), node); err != nil {
		t.Fatalf("CreateNode: %v", err)
	}
	closeStore(t, s)

	// Reopening twice more finds every migration applied and applies
	// none again (schema_migrations would refuse a second row).
	for range 2 {
		s = openStore(t, dir)
		keys, err := s.ListKeys(t.Context())
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		if len(keys) != 1 || keys[0].ID != key.ID {
			t.Errorf("got keys %+v, want only %q", keys, key.ID)
		}
		nodes, err := s.ListNodes(t.Context())
		if err != nil {
			t.Fatalf("ListNodes: %v", err)
		}
		if len(nodes) != 1 || nodes[0].ID != node.ID {
			t.Errorf("got nodes %+v, want only %q", nodes, node.ID)
		}
		closeStore(t, s)
	}

	want := make([]int, len(migrations))
	for i, m := range migrations {
		want[i] = m.version
	}
	if got := appliedVersions(t, openRaw(t, dir)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations: got versions %v, want %v", got, want)
	}
}

// TestUpgradeFromVersion1 opens a database that a binary knowing only
// migration 1 wrote, and checks that its records survive the upgrade and
// read back with the defaults of the columns added since.
func TestUpgradeFromVersion1(t *testing.T) {
	dir := t.TempDir()
	created := time.Date(2025, time.March, 14, 15, 9, 26, 0, time.UTC)
	if _, err := createFile(dir); err != nil {
		t.Fatalf("createFile: %v", err)
	}
	db := openRaw(t, dir)
	discard := slog.New(slog.DiscardHandler)
	if err := migrate(t.Context(), db, migrations[:1], discard); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}

	// The statements of the version 1 binary, with its columns only.
	_, err := db.ExecContext(t.Context(), `
		INSERT INTO nodes
			(id, endpoint, models, provider, region, upstream_key, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		"n1", "https://10.0.0.5:8443", `["m1"]`, "manual", "eu-west-1", "bearer",
		created.UnixMilli())
	if err != nil {
		t.Fatalf("insert node: %v", err)
	}
	_, err = db.ExecContext(t.Context(), `
		INSERT INTO api_keys
			(id, name, hash, hint, models, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		"k1", "n", []byte{1, 2, 3}, "sk-cl-1", "null", created.UnixMilli(), 0, 0)
	if err != nil {
		t.Fatalf("insert key: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s := openStore(t, dir)
	t.Cleanup(func() { s.Close() })
	nodes, err := s.ListNodes(t.Context())
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	want := store.Node{
		ID: "n1", Endpoint: "https://10.0.0.5:8443", Models: []string{"m1"},
		Provider: "manual", Region: "eu-west-1", UpstreamKey: "bearer",
		CreatedAt: created, Kind: store.NodeKindStatic,
	}
	if len(nodes) != 1 {
		t.Fatalf("ListNodes: got %d nodes, want 1", len(nodes))
	}
	if !reflect.DeepEqual(nodes[0], want) {
		t.Errorf("ListNodes:\ngot  %+v\nwant %+v", nodes[0], want)
	}
	keys, err := s.ListKeys(t.Context())
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(keys) != 1 || keys[0].ID != "k1" {
		t.Errorf("ListKeys: got %+v, want only %q", keys, "k1")
	}

	// The upgraded table takes agent nodes and their certificate expiry.
	agent := store.Node{ID: "n2", Kind: store.NodeKindAgent, CreatedAt: created}
	if err := s.CreateNode(t.Context(), agent); err != nil {
		t.Fatalf("CreateNode: %v", err)
	}
	if err := s.UpdateNodeCert(t.Context(), "n1", created.Add(time.Hour)); err != nil {
		t.Fatalf("UpdateNodeCert: %v", err)
	}
	if got, want := appliedVersions(t, openRaw(t, dir)), []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("schema_migrations: got versions %v, want %v", got, want)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s := openStore(t, dir)

	// A write makes SQLite create the -wal file, which holds data too.
	err := s.CreateNode(t.Context(), store.Node{ID: "n1", CreatedAt: time.Now()})
	if err != nil {
		t.Fatalf("CreateNode: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	tests := []struct {
		path string
		want fs.FileMode
	}{
		{dir, fs.ModeDir | 0o700},
		{filepath.Join(dir, FileName), 0o600},
		{filepath.Join(dir, FileName+"-wal"), 0o600},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if got := fi.Mode(); got != tt.want {
				t.Errorf("got mode %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	dir := t.TempDir()
	closeStore(t, openStore(t, dir))

	future := migrations[len(migrations)-1].version + 1
	_, err := openRaw(t, dir).ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
		future, time.Now().UnixMilli())
	if err != nil {
		t.Fatalf("record future version: %v", err)
	}

	s, err := Open(t.Context(), dir)
	if err == nil {
		s.Close()
		t.Fatalf("Open: got no error, want %v", ErrSchemaTooNew)
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open: got error %v, want %v", err, ErrSchemaTooNew)
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	dir := t.TempDir()
	db := openRaw(t, dir)
	ms := []migration{
		{version: 1, name: "good", stmts: []string{`CREATE TABLE a (x BIGINT)`}},
		{version: 2, name: "bad", stmts: []string{
			`CREATE TABLE b (x BIGINT)`,
			`CREATE TABLE a (x BIGINT)`, // already exists
		}},
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))

	if err := migrate(t.Context(), db, ms, log); err == nil {
		t.Fatal("migrate: got no error, want one for migration 2")
	}
	if got, want := appliedVersions(t, db), []int{1}; !slices.Equal(got, want) {
		t.Errorf("schema_migrations: got versions %v, want %v", got, want)
	}
	// Table b came from the failed migration: its transaction must have
	// taken it away again.
	var n int
	err := db.QueryRowContext(t.Context(),
		`SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'`).Scan(&n)
	if err != nil {
		t.Fatalf("look for table b: %v", err)
	}
	if n != 0 {
		t.Errorf("got table b after the failed migration, want it rolled back")
	}

	// Fixed, the migration applies on the next start.
	ms[1].stmts = ms[1].stmts[:1]
	if err := migrate(t.Context(), db, ms, log); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if got, want := appliedVersions(t, db), []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("schema_migrations: got versions %v, want %v", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		dir     string
		wantErr error // nil: any error
	}{
		{"data dir is a file", t.Context(), notDir, nil},
		{"cancelled context", cancelled, t.TempDir(), context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.ctx, tt.dir)
			if err == nil {
				s.Close()
				t.Fatal("Open: got no error, want one")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Open: got error %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("Open: got error %q, want the prefix %q", err, "sqlite: ")
			}
		})
	}
}

func TestRevokeKeyZeroTime(t *testing.T) {
	s := openStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	k := store.APIKey{ID: "k1", Hash: []byte{1}, CreatedAt: time.Now()}
	if err := s.CreateKey(t.Context(), k); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}

	err := s.RevokeKey(t.Context(), "k1", time.Time{})
	if !errors.Is(err, errZeroRevocation) {
		t.Fatalf("RevokeKey: got error %v, want %v", err, errZeroRevocation)
	}
}

func TestPathNeedingEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars")
	closeStore(t, openStore(t, dir))
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
}
