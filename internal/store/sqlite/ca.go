package sqlite

import (
	"context"
	"fmt"

	"github.com/crosslogic/crosslogic/internal/store"
)

// CreateCARoot stores a new root of the internal CA. It returns an error
// wrapping store.ErrConflict when a root with the same ID exists.
func (s *Store) CreateCARoot(ctx context.Context, r store.CARoot) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO ca_roots (id, cert_pem, sealed_key, created_at)
		VALUES ($1, $2, $3, $4)`,
		r.ID, r.CertPEM, r.SealedKey, millis(r.CreatedAt))
	if err != nil {
		return wrapErr(fmt.Sprintf("create CA root %q", r.ID), err)
	}
	return nil
}

// ListCARoots returns every stored root, ordered by CreatedAt, then ID:
// oldest first.
func (s *Store) ListCARoots(ctx context.Context) ([]store.CARoot, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, cert_pem, sealed_key, created_at
		FROM ca_roots
		ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list CA roots", err)
	}
	defer rows.Close()

	var roots []store.CARoot
	for rows.Next() {
		var (
			r       store.CARoot
			created int64
		)
		if err := rows.Scan(&r.ID, &r.CertPEM, &r.SealedKey, &created); err != nil {
			return nil, wrapErr("list CA roots", err)
		}
		r.CreatedAt = fromMillis(created)
		roots = append(roots, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list CA roots", err)
	}
	return roots, nil
}
