package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// CreateKey stores a new API key. It returns an error wrapping
// store.ErrConflict when a key with the same ID or hash exists.
func (s *Store) CreateKey(ctx context.Context, k store.APIKey) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO api_keys
			(id, name, hash, hint, models, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.ID, k.Name, k.Hash, k.Hint, encodeModels(k.Models),
		millis(k.CreatedAt), millis(k.ExpiresAt), millis(k.RevokedAt))
	if err != nil {
		return wrapErr(fmt.Sprintf("create key %q", k.ID), err)
	}
	return nil
}

// ListKeys returns every key, revoked and expired ones included, ordered
// by CreatedAt, then ID.
func (s *Store) ListKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, name, hash, hint, models, created_at, expires_at, revoked_at
		FROM api_keys
		ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list keys", err)
	}
	defer rows.Close()

	var keys []store.APIKey
	for rows.Next() {
		var (
			k                         store.APIKey
			models                    string
			created, expires, revoked int64
		)
		err := rows.Scan(&k.ID, &k.Name, &k.Hash, &k.Hint, &models,
			&created, &expires, &revoked)
		if err != nil {
			return nil, wrapErr("list keys", err)
		}
		if k.Models, err = decodeModels(models); err != nil {
			return nil, wrapErr(fmt.Sprintf("list keys: key %q", k.ID), err)
		}
		k.CreatedAt = fromMillis(created)
		k.ExpiresAt = fromMillis(expires)
		k.RevokedAt = fromMillis(revoked)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list keys", err)
	}
	return keys, nil
}

// errZeroRevocation is returned by RevokeKey for the zero time, which is
// stored as "not revoked" and so would revoke nothing.
var errZeroRevocation = errors.New("revocation time is zero")

// RevokeKey marks the key revoked at the given time. Revoking a key that
// is already revoked keeps the first time and succeeds. It returns an error
// wrapping store.ErrNotFound when no key has that ID.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	return s.revoke(ctx, "api_keys", fmt.Sprintf("revoke key %q", id), id, at)
}

// revoke sets revoked_at of the row id of table to at unless it is set
// already. One statement both keeps the first time and matches the row,
// so that the count tells a missing row from a revoked one.
func (s *Store) revoke(ctx context.Context, table, op, id string, at time.Time) error {
	if millis(at) == 0 {
		return wrapErr(op, errZeroRevocation)
	}
	err := checkFound(s.db.ExecContext(ctx, `
		UPDATE `+table+`
		SET revoked_at = CASE WHEN revoked_at = 0 THEN $1 ELSE revoked_at END
		WHERE id = $2`,
		millis(at), id))
	if err != nil {
		return wrapErr(op, err)
	}
	return nil
}
