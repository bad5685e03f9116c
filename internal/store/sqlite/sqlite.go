// Package sqlite implements store.Store on an embedded SQLite database, so
// that one CrossLogic process runs everything on one machine with no
// database server. It uses modernc.org/sqlite, a pure Go translation of
// SQLite, so the binary needs no C toolchain.
//
// The database is the file crosslogic.db in the data directory given to
// Open. Its schema is versioned: Open applies the migrations this binary
// knows and refuses a database that a newer binary has already migrated
// further.
//
// The SQL is kept portable to PostgreSQL, so that a PostgreSQL store can
// share the schema and queries: plain TEXT, BIGINT and BOOLEAN columns, $N
// placeholders, times as BIGINT Unix milliseconds, model lists and label
// maps as JSON text, and no SQLite-only functions. The one unavoidable
// difference, the type of a byte column (BLOB here, BYTEA there), is one
// constant in migrate.go.
//
// Limitations: the database lives on one machine's disk and admits one
// writer; several control plane replicas need the PostgreSQL store.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	// Registers the "sqlite" database/sql driver.
	_ "modernc.org/sqlite"

	"github.com/crosslogic/crosslogic/internal/store"
)

// FileName is the name of the database file inside the data directory.
const FileName = "crosslogic.db"

// DefaultBusyTimeout is how long a statement waits for a lock held by
// another connection before failing, unless WithBusyTimeout says otherwise.
const DefaultBusyTimeout = 5 * time.Second

// Store is a store.Store backed by an SQLite database file. It is safe for
// concurrent use.
type Store struct {
	db *sql.DB
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	busyTimeout time.Duration
	logger      *slog.Logger
}

// WithBusyTimeout sets how long a statement waits for a lock held by
// another connection to the same file (another process, or a backup tool)
// before failing with SQLITE_BUSY. Zero or less keeps DefaultBusyTimeout.
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.busyTimeout = d
		}
	}
}

// WithLogger sets the logger for schema migrations, logged at Info as they
// are applied. A nil logger discards the messages, which is the default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Open opens the database in dataDir, creating the directory (mode 0700)
// and the file FileName in it (mode 0600) when they do not exist, and
// brings its schema up to date. It fails, wrapping ErrSchemaTooNew, when
// the database was migrated by a newer binary. ctx bounds the opening and
// the migrations, not the Store's later use.
func Open(ctx context.Context, dataDir string, opts ...Option) (*Store, error) {
	o := options{
		busyTimeout: DefaultBusyTimeout,
		logger:      slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}

	path, err := createFile(dataDir)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(path, o.busyTimeout))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	// One connection serves every call, which makes the one-writer rule
	// of SQLite hold inside the process: statements queue in database/sql
	// instead of failing with SQLITE_BUSY, and no transaction can find the
	// write lock taken by a sibling connection. WAL would let readers run
	// beside the writer on more connections, but the store is off the
	// request path (the gateway reads in-memory snapshots) and its
	// statements take microseconds, so the simplicity wins.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, db, migrations, o.logger); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database. Calls made after Close fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// createFile makes dataDir and an empty database file in it, unless they
// exist, and returns the file's path. Existing modes are left alone: they
// may have been set on purpose.
//
// The file is created here rather than by SQLite, which would make it
// world-readable under the usual umask; the file holds node upstream keys
// and, sealed, the CA's private keys.
// SQLite gives the -wal and -shm files it makes later the same mode as the
// database file.
func createFile(dataDir string) (string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("sqlite: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, fs.ErrExist):
		return path, nil
	case err != nil:
		return "", fmt.Errorf("sqlite: create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("sqlite: create database file: %w", err)
	}
	return path, nil
}

// dsn returns the data source name for the database file at path, in the
// form modernc.org/sqlite reads: a file: URI whose query sets pragmas on
// every new connection.
func dsn(path string, busyTimeout time.Duration) string {
	q := url.Values{}
	// busy_timeout first: the driver runs it before the others, which
	// may themselves have to wait for a lock.
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busyTimeout.Milliseconds(), 10)+")")
	// WAL lets a backup or the sqlite3 shell read while we write, and
	// makes a commit one append instead of a journal round trip.
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Transactions (migrations, JoinNode) take the write lock when they
	// begin, so two processes migrating one file, or joining nodes with
	// one token, run one after the other instead of one failing when it
	// upgrades a read lock.
	q.Set("_txlock", "immediate")

	// A URI, rather than a bare path, so that a path holding '?' or '#'
	// still names the file: SQLite decodes the escapes.
	p := filepath.ToSlash(path)
	if abs, err := filepath.Abs(path); err == nil {
		p = filepath.ToSlash(abs)
	}
	if p == "" || p[0] != '/' {
		p = "/" + p // Windows: file:///C:/...
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}
