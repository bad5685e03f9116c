package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrSchemaTooNew is returned by Open when the database's schema has a
// version this binary does not know: a newer binary migrated it, and this
// one could misread or damage what the newer one wrote.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this binary")

// bytesType is the column type for byte strings. It is the one type that
// differs from PostgreSQL, where it is BYTEA.
const bytesType = "BLOB"

// migration is one step of the schema. A released migration is never
// edited: a change to the schema is a new migration with the next version.
type migration struct {
	// version orders the migrations; they are numbered 1, 2, 3, ...
	version int
	// name says what the step does, for the log.
	name string
	// stmts run in order, in one transaction with the recording of
	// version. One statement each, so that no driver has to split them.
	stmts []string
}

// migrations is the schema, oldest step first.
//
// Columns follow the portable conventions in the package doc. Every
// PRIMARY KEY is also NOT NULL: SQLite, unlike PostgreSQL, otherwise lets
// a TEXT primary key hold NULL. models holds a JSON array, or the JSON null
// for a nil list, so that nil and empty lists round-trip as given; labels
// holds a JSON object, {} for none. A time of 0 is the zero time.
var migrations = []migration{
	{
		version: 1,
		name:    "create api_keys and nodes",
		stmts: []string{
			`CREATE TABLE api_keys (
				id         TEXT NOT NULL PRIMARY KEY,
				name       TEXT NOT NULL,
				hash       ` + bytesType + ` NOT NULL UNIQUE,
				hint       TEXT NOT NULL,
				models     TEXT NOT NULL,
				created_at BIGINT NOT NULL,
				expires_at BIGINT NOT NULL,
				revoked_at BIGINT NOT NULL
			)`,
			`CREATE INDEX api_keys_created_at ON api_keys (created_at, id)`,
			`CREATE TABLE nodes (
				id           TEXT NOT NULL PRIMARY KEY,
				endpoint     TEXT NOT NULL,
				models       TEXT NOT NULL,
				provider     TEXT NOT NULL,
				region       TEXT NOT NULL,
				upstream_key TEXT NOT NULL,
				created_at   BIGINT NOT NULL
			)`,
			`CREATE INDEX nodes_created_at ON nodes (created_at, id)`,
		},
	},
	{
		version: 2,
		name:    "create join_tokens and ca_roots, add agent facts to nodes",
		stmts: []string{
			// uses never passes max_uses: JoinNode's guarded UPDATE keeps
			// it so, and CreateJoinToken refuses a token that starts past.
			`CREATE TABLE join_tokens (
				id         TEXT NOT NULL PRIMARY KEY,
				hash       ` + bytesType + ` NOT NULL UNIQUE,
				models     TEXT NOT NULL,
				labels     TEXT NOT NULL,
				max_uses   BIGINT NOT NULL,
				uses       BIGINT NOT NULL,
				created_at BIGINT NOT NULL,
				expires_at BIGINT NOT NULL,
				revoked_at BIGINT NOT NULL
			)`,
			`CREATE INDEX join_tokens_created_at ON join_tokens (created_at, id)`,
			`CREATE TABLE ca_roots (
				id         TEXT NOT NULL PRIMARY KEY,
				cert_pem   ` + bytesType + ` NOT NULL,
				sealed_key ` + bytesType + ` NOT NULL,
				created_at BIGINT NOT NULL
			)`,
			`CREATE INDEX ca_roots_created_at ON ca_roots (created_at, id)`,
			// Nodes stored by version 1 were all declared by URL, so they
			// take kind 'static'; the other facts were unknown.
			// join_token_id has no foreign key: a token may be deleted
			// while nodes that joined with it live on.
			`ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'static'`,
			`ALTER TABLE nodes ADD COLUMN zone TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE nodes ADD COLUMN instance_type TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE nodes ADD COLUMN gpu TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE nodes ADD COLUMN engine TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE nodes ADD COLUMN spot BOOLEAN NOT NULL DEFAULT FALSE`,
			`ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'`,
			`ALTER TABLE nodes ADD COLUMN cert_not_after BIGINT NOT NULL DEFAULT 0`,
			`ALTER TABLE nodes ADD COLUMN join_token_id TEXT NOT NULL DEFAULT ''`,
		},
	},
}

// migrate brings the schema of db up to the last of ms, applying each
// missing step in its own transaction. It fails, wrapping ErrSchemaTooNew,
// when db records a version past the last of ms.
func migrate(ctx context.Context, db *sql.DB, ms []migration, log *slog.Logger) error {
	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`
	if _, err := db.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("sqlite: create schema_migrations: %w", err)
	}

	current, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if current > latest {
		return fmt.Errorf("%w: database is at version %d, this binary knows up to %d",
			ErrSchemaTooNew, current, latest)
	}

	for _, m := range ms {
		if m.version <= current {
			continue
		}
		applied, err := apply(ctx, db, m)
		if err != nil {
			return err
		}
		if applied {
			log.Info("applied schema migration", "version", m.version, "migration", m.name)
		}
	}
	return nil
}

// schemaVersion returns the highest version recorded in db, or 0.
func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("sqlite: read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// apply runs m and records it, in one transaction, and reports whether it
// did: another process opening the same file may have applied m since the
// caller read the version. The transaction takes the write lock as it
// begins (see dsn), so the check and the change cannot interleave with
// that process's.
func apply(ctx context.Context, db *sql.DB, m migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: migration %d: begin: %w", m.version, err)
	}
	// Undoes everything unless Commit ran; after Commit it does nothing.
	defer tx.Rollback()

	var n int
	err = tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("sqlite: migration %d: %w", m.version, err)
	}
	if n > 0 {
		return false, nil
	}

	for i, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("sqlite: migration %d, statement %d: %w",
				m.version, i+1, err)
		}
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
		m.version, time.Now().UnixMilli())
	if err != nil {
		return false, fmt.Errorf("sqlite: migration %d: record: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: migration %d: commit: %w", m.version, err)
	}
	return true, nil
}
