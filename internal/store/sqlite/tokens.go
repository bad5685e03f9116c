package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// tokenColumns lists the columns of join_tokens in the order
// CreateJoinToken writes them and scanJoinToken reads them.
const tokenColumns = `id, hash, models, labels, max_uses, uses,
	created_at, expires_at, revoked_at`

// CreateJoinToken stores a new join token. It returns an error wrapping
// store.ErrConflict when a token with the same ID or hash exists, and
// another error when the token is not valid to store (see
// validateJoinToken).
func (s *Store) CreateJoinToken(ctx context.Context, t store.JoinToken) error {
	op := fmt.Sprintf("create join token %q", t.ID)
	if err := validateJoinToken(t); err != nil {
		return wrapErr(op, err)
	}
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO join_tokens (`+tokenColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, t.Hash, encodeModels(t.Models), encodeLabels(t.Labels),
		t.MaxUses, t.Uses,
		millis(t.CreatedAt), millis(t.ExpiresAt), millis(t.RevokedAt))
	if err != nil {
		return wrapErr(op, err)
	}
	return nil
}

// validateJoinToken returns why t must not be stored, or nil.
func validateJoinToken(t store.JoinToken) error {
	switch {
	case len(t.Hash) == 0:
		// Check refuses every secret for such a token, but a token no one
		// can use is a mistake worth reporting where it is made.
		return errors.New("join token has no hash")
	case millis(t.ExpiresAt) == 0:
		return errors.New("join token has no expiry")
	case t.MaxUses < 1:
		return fmt.Errorf("join token allows %d uses, want at least 1", t.MaxUses)
	case t.Uses < 0 || t.Uses > t.MaxUses:
		return fmt.Errorf("join token has %d uses, want 0 to %d", t.Uses, t.MaxUses)
	}
	return nil
}

// ListJoinTokens returns every join token, revoked, expired and used up
// ones included, ordered by CreatedAt, then ID.
func (s *Store) ListJoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+tokenColumns+`
		FROM join_tokens
		ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list join tokens", err)
	}
	defer rows.Close()

	var tokens []store.JoinToken
	for rows.Next() {
		t, err := scanJoinToken(rows)
		if err != nil {
			return nil, wrapErr("list join tokens", err)
		}
		tokens = append(tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list join tokens", err)
	}
	return tokens, nil
}

// GetJoinToken returns the join token with that ID. It returns an error
// wrapping store.ErrNotFound when there is none.
func (s *Store) GetJoinToken(ctx context.Context, id string) (store.JoinToken, error) {
	t, err := getJoinToken(ctx, s.db, id)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.JoinToken{}, wrapErr(fmt.Sprintf("get join token %q", id), err)
	}
	return t, nil
}

// getJoinToken reads the join token with that ID through db, a connection
// or a transaction. It returns sql.ErrNoRows when there is none.
func getJoinToken(ctx context.Context, db querier, id string) (store.JoinToken, error) {
	return scanJoinToken(db.QueryRowContext(ctx, `
		SELECT `+tokenColumns+`
		FROM join_tokens
		WHERE id = $1`,
		id))
}

// scanJoinToken reads a join token selected as tokenColumns.
func scanJoinToken(row scanner) (store.JoinToken, error) {
	var (
		t                         store.JoinToken
		models, labels            string
		created, expires, revoked int64
	)
	err := row.Scan(&t.ID, &t.Hash, &models, &labels, &t.MaxUses, &t.Uses,
		&created, &expires, &revoked)
	if err != nil {
		return store.JoinToken{}, err
	}
	if t.Models, err = decodeModels(models); err != nil {
		return store.JoinToken{}, fmt.Errorf("join token %q: %w", t.ID, err)
	}
	if t.Labels, err = decodeLabels(labels); err != nil {
		return store.JoinToken{}, fmt.Errorf("join token %q: %w", t.ID, err)
	}
	t.CreatedAt = fromMillis(created)
	t.ExpiresAt = fromMillis(expires)
	t.RevokedAt = fromMillis(revoked)
	return t, nil
}

// RevokeJoinToken marks the token revoked at the given time. Revoking a
// token that is already revoked keeps the first time and succeeds. It
// returns an error wrapping store.ErrNotFound when no token has that ID.
func (s *Store) RevokeJoinToken(ctx context.Context, id string, at time.Time) error {
	return s.revoke(ctx, "join_tokens", fmt.Sprintf("revoke join token %q", id), id, at)
}

// JoinNode consumes one use of the join token tokenID and stores n, with
// JoinTokenID set to tokenID, in one transaction. It returns an error
// wrapping store.ErrTokenUnusable when the token is unknown or
// store.JoinToken.Check refuses it, and one wrapping store.ErrConflict when
// a node with n's ID exists. On any error nothing is stored.
func (s *Store) JoinNode(ctx context.Context, tokenID string, tokenHash []byte,
	now time.Time, n store.Node) (store.JoinToken, error) {
	n.JoinTokenID = tokenID
	t, err := s.joinNode(ctx, tokenHash, now, n)
	if err != nil {
		return store.JoinToken{}, wrapErr(fmt.Sprintf("join node %q", n.ID), err)
	}
	return t, nil
}

// joinNode is JoinNode's transaction, with n.JoinTokenID naming the token.
func (s *Store) joinNode(ctx context.Context, tokenHash []byte, now time.Time,
	n store.Node) (store.JoinToken, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.JoinToken{}, err
	}
	// Undoes the use and the node unless Commit ran.
	defer tx.Rollback()

	// Check the token as stored.
	t, err := getJoinToken(ctx, tx, n.JoinTokenID)
	if errors.Is(err, sql.ErrNoRows) {
		return store.JoinToken{}, fmt.Errorf("%w: join token %q not found",
			store.ErrTokenUnusable, n.JoinTokenID)
	}
	if err != nil {
		return store.JoinToken{}, err
	}
	if err := t.Check(tokenHash, now); err != nil {
		return store.JoinToken{}, err
	}

	// Consume a use. The WHERE clause repeats every check another call
	// could have made false since the SELECT. Here that cannot happen:
	// the transaction took SQLite's write lock as it began. A PostgreSQL
	// store runs the same statements under READ COMMITTED, where it can;
	// there the UPDATE waits for the other writer and then re-evaluates
	// the WHERE clause on the row it committed, so two joins can never
	// both take the last use.
	err = checkFound(tx.ExecContext(ctx, `
		UPDATE join_tokens
		SET uses = uses + 1
		WHERE id = $1 AND uses < max_uses AND revoked_at = 0 AND expires_at > $2`,
		t.ID, millis(now)))
	if errors.Is(err, store.ErrNotFound) {
		return store.JoinToken{}, fmt.Errorf("%w: join token %q used up or revoked meanwhile",
			store.ErrTokenUnusable, t.ID)
	}
	if err != nil {
		return store.JoinToken{}, err
	}
	t.Uses++

	// Store the node. A taken ID fails here, and the deferred Rollback
	// gives the use back.
	if err := insertNode(ctx, tx, n); err != nil {
		return store.JoinToken{}, err
	}
	if err := tx.Commit(); err != nil {
		return store.JoinToken{}, err
	}
	return t, nil
}
