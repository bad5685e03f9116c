package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// nodeColumns lists the columns of nodes in the order insertNode writes
// them and scanNode reads them.
const nodeColumns = `id, endpoint, models, provider, region, upstream_key, created_at,
	kind, zone, instance_type, gpu, engine, spot, labels, cert_not_after, join_token_id`

// CreateNode stores a new node. It returns an error wrapping
// store.ErrConflict when a node with the same ID exists.
func (s *Store) CreateNode(ctx context.Context, n store.Node) error {
	if err := insertNode(ctx, s.db, n); err != nil {
		return wrapErr(fmt.Sprintf("create node %q", n.ID), err)
	}
	return nil
}

// insertNode adds n to the nodes table through db, a connection or a
// transaction.
func insertNode(ctx context.Context, db execer, n store.Node) error {
	_, err := db.ExecContext(ctx, `
		INSERT INTO nodes (`+nodeColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		n.ID, n.Endpoint, encodeModels(n.Models), n.Provider, n.Region,
		n.UpstreamKey, millis(n.CreatedAt),
		n.Kind, n.Zone, n.InstanceType, n.GPU, n.Engine, n.Spot,
		encodeLabels(n.Labels), millis(n.CertNotAfter), n.JoinTokenID)
	return err
}

// ListNodes returns every stored node, ordered by CreatedAt, then ID.
func (s *Store) ListNodes(ctx context.Context) ([]store.Node, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+nodeColumns+`
		FROM nodes
		ORDER BY created_at, id`)
	if err != nil {
		return nil, wrapErr("list nodes", err)
	}
	defer rows.Close()

	var nodes []store.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, wrapErr("list nodes", err)
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("list nodes", err)
	}
	return nodes, nil
}

// scanNode reads a node selected as nodeColumns.
func scanNode(row scanner) (store.Node, error) {
	var (
		n                store.Node
		models, labels   string
		created, certEnd int64
	)
	err := row.Scan(&n.ID, &n.Endpoint, &models, &n.Provider, &n.Region,
		&n.UpstreamKey, &created,
		&n.Kind, &n.Zone, &n.InstanceType, &n.GPU, &n.Engine, &n.Spot,
		&labels, &certEnd, &n.JoinTokenID)
	if err != nil {
		return store.Node{}, err
	}
	if n.Models, err = decodeModels(models); err != nil {
		return store.Node{}, fmt.Errorf("node %q: %w", n.ID, err)
	}
	if n.Labels, err = decodeLabels(labels); err != nil {
		return store.Node{}, fmt.Errorf("node %q: %w", n.ID, err)
	}
	if n.Kind == "" {
		n.Kind = store.NodeKindStatic
	}
	n.CreatedAt = fromMillis(created)
	n.CertNotAfter = fromMillis(certEnd)
	return n, nil
}

// DeleteNode removes a node. It returns an error wrapping store.ErrNotFound
// when no node has that ID.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	err := checkFound(s.db.ExecContext(ctx, `DELETE FROM nodes WHERE id = $1`, id))
	if err != nil {
		return wrapErr(fmt.Sprintf("delete node %q", id), err)
	}
	return nil
}

// UpdateNodeCert records notAfter as the expiry of the node's current
// certificate; zero clears it. It returns an error wrapping
// store.ErrNotFound when no node has that ID.
func (s *Store) UpdateNodeCert(ctx context.Context, id string, notAfter time.Time) error {
	err := checkFound(s.db.ExecContext(ctx,
		`UPDATE nodes SET cert_not_after = $1 WHERE id = $2`, millis(notAfter), id))
	if err != nil {
		return wrapErr(fmt.Sprintf("update certificate of node %q", id), err)
	}
	return nil
}
