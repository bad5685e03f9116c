package sqlite

import (
	"context"
	"fmt"

	"github.com/crosslogic/crosslogic/internal/store"
)

// CreateNode stores a new node. It returns an error wrapping
// store.ErrConflict when a node with the same ID exists.
func (s *Store) CreateNode(ctx context.Context, n store.Node) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO nodes
			(id, endpoint, models, provider, region, upstream_key, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		n.ID, n.Endpoint, encodeModels(n.Models), n.Provider, n.Region,
		n.UpstreamKey, millis(n.CreatedAt))
	if err != nil {
		return wrapErr(fmt.Sprintf("create node %q", n.ID), err)
	}
	return nil
}

// ListNodes returns every stored node, ordered by CreatedAt, then ID.
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, endpoint, models, provider, region, upstream_key, created_at
		FROM nodes
		ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list nodes", err)
	}
	defer rows.Close()

	var nodes []store.Node
	for rows.Next() {
		var (
			n       store.Node
			models  string
			created int64
		)
		err := rows.Scan(&n.ID, &n.Endpoint, &models, &n.Provider, &n.Region,
			&n.UpstreamKey, &created)
		if err != nil {
			return nil, wrapErr("list nodes", err)
		}
		if n.Models, err = decodeModels(models); err != nil {
			return nil, wrapErr(fmt.Sprintf("list nodes: node %q", n.ID), err)
		}
		n.CreatedAt = fromMillis(created)
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list nodes", err)
	}
	return nodes, nil
}

// DeleteNode removes a node. It returns an error wrapping store.ErrNotFound
// when no node has that ID.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	op := fmt.Sprintf("delete node %q", id)
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE id = $1`, id)
	if err != nil {
		return wrapErr(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrapErr(op, err)
	}
	if n == 0 {
		return wrapErr(op, store.ErrNotFound)
	}
	return nil
}
