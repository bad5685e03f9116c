package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	modernc "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/crosslogic/crosslogic/internal/store"
)

// millis returns t as Unix milliseconds, the form times are stored in,
// with the zero time as 0. Precision below a millisecond is dropped.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis is the inverse of millis, in UTC.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// encodeModels returns models as JSON text: an array, or null for a nil
// slice, so that nil and empty come back apart.
func encodeModels(models []string) string {
	b, err := json.Marshal(models)
	if err != nil {
		// A slice of strings always marshals; invalid UTF-8 is replaced.
		panic("sqlite: marshal models: " + err.Error())
	}
	return string(b)
}

// decodeModels is the inverse of encodeModels.
func decodeModels(s string) ([]string, error) {
	var models []string
	if err := json.Unmarshal([]byte(s), &models); err != nil {
		return nil, fmt.Errorf("decode models: %w", err)
	}
	return models, nil
}

// encodeLabels returns labels as a JSON object, {} when there are none.
func encodeLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "{}"
	}
	b, err := json.Marshal(labels)
	if err != nil {
		// A map of strings always marshals; invalid UTF-8 is replaced.
		panic("sqlite: marshal labels: " + err.Error())
	}
	return string(b)
}

// decodeLabels is the inverse of encodeLabels, with nil for none.
func decodeLabels(s string) (map[string]string, error) {
	var labels map[string]string
	if err := json.Unmarshal([]byte(s), &labels); err != nil {
		return nil, fmt.Errorf("decode labels: %w", err)
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}

// execer is what *sql.DB and *sql.Tx share for statements that return no
// rows, so that one insert serves both.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// querier is what *sql.DB and *sql.Tx share for statements that return
// one row.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is what *sql.Row and *sql.Rows share, so that one function reads
// a record from either.
type scanner interface {
	Scan(dest ...any) error
}

// wrapErr prefixes err with the package and the operation, and makes a
// unique-constraint violation match store.ErrConflict.
func wrapErr(op string, err error) error {
	if isUniqueViolation(err) {
		return fmt.Errorf("sqlite: %s: %w: %v", op, store.ErrConflict, err)
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// isUniqueViolation reports whether err is SQLite refusing a row whose
// primary key or UNIQUE column is already taken. The driver turns on
// extended result codes, which tell these apart from other constraints.
func isUniqueViolation(err error) bool {
	var e *modernc.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return true
	}
	return false
}

// checkFound returns err, or store.ErrNotFound when the statement that gave
// res matched no row.
func checkFound(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}
