package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store"
	"github.com/crosslogic/crosslogic/internal/store/sqlite"
)

const adminToken = "admin-token-for-tests"

// fixture is an admin API on loopback, backed by a real SQLite store, a
// keyring and a registry that the tests inspect directly.
type fixture struct {
	url      string
	http     *http.Client
	client   *admin.Client
	store    store.Store
	keys     *apikey.Keyring
	registry *registry.Registry
}

// newFixture serves the admin API with the given admin token; "" disables
// it.
func newFixture(t *testing.T, token string) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	f := &fixture{store: st, keys: new(apikey.Keyring), registry: registry.New(nil)}
	srv := httptest.NewServer(admin.NewServer(admin.Options{Store: st, Keys: f.keys,
		Registry: f.registry, Token: token}))
	t.Cleanup(srv.Close)
	f.url, f.http = srv.URL, srv.Client()
	f.client = &admin.Client{Server: srv.URL, Token: token, HTTP: srv.Client()}
	return f
}

// do sends a raw request with the given Authorization header value ("" for
// none) and returns the status and the body.
func (f *fixture) do(t *testing.T, method, path, auth, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// admin sends a raw request with the admin token.
func (f *fixture) admin(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	return f.do(t, method, path, "Bearer "+adminToken, body)
}

// createKey makes a key through the client, failing the test on error.
func (f *fixture) createKey(t *testing.T, req admin.CreateKeyRequest) admin.CreatedKey {
	t.Helper()
	k, err := f.client.CreateKey(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateKey(%+v): %v", req, err)
	}
	return k
}

// wantError checks that an answer is an error in OpenAI's shape, with
// exactly the four members message, type, param and code, and the given
// status, type and code ("" for a null code).
func wantError(t *testing.T, gotStatus int, body []byte, status int, typ, code string) {
	t.Helper()
	if gotStatus != status {
		t.Errorf("status: got %d, want %d (body %s)", gotStatus, status, body)
	}
	var e struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	var members []string
	for k := range e.Error {
		members = append(members, k)
	}
	slices.Sort(members)
	if want := []string{"code", "message", "param", "type"}; !slices.Equal(members, want) {
		t.Errorf("error members: got %v, want %v", members, want)
	}
	var msg, gotType string
	var gotCode *string
	_ = json.Unmarshal(e.Error["message"], &msg)
	_ = json.Unmarshal(e.Error["type"], &gotType)
	_ = json.Unmarshal(e.Error["code"], &gotCode)
	if msg == "" {
		t.Errorf("error message is empty (body %s)", body)
	}
	if gotType != typ {
		t.Errorf("error type: got %q, want %q", gotType, typ)
	}
	switch {
	case code == "" && gotCode != nil:
		t.Errorf("error code: got %q, want null", *gotCode)
	case code != "" && (gotCode == nil || *gotCode != code):
		t.Errorf("error code: got %s, want %q", e.Error["code"], code)
	}
}

// wantAPIError checks that err is an *admin.APIError with the status and
// code given.
func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *admin.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want an *admin.APIError", err)
	}
	if ae.Status != status || ae.Code != code {
		t.Errorf("got %d %q, want %d %q", ae.Status, ae.Code, status, code)
	}
}

// routes is one request per route of the admin API, with a valid body
// where one is needed.
var routes = []struct{ method, path, body string }{
	{http.MethodGet, "/admin/keys", ""},
	{http.MethodPost, "/admin/keys", `{"name":"k"}`},
	{http.MethodDelete, "/admin/keys/key_0123456789abcdef", ""},
	{http.MethodGet, "/admin/nodes", ""},
	{http.MethodPost, "/admin/nodes",
		`{"id":"n1","endpoint":"http://127.0.0.1:1","models":["m"]}`},
	{http.MethodGet, "/admin/nodes/n1", ""},
	{http.MethodDelete, "/admin/nodes/n1", ""},
}

func TestDisabledRefusesEveryRoute(t *testing.T) {
	f := newFixture(t, "")
	for _, r := range routes {
		for _, auth := range []string{"", "Bearer ", "Bearer " + adminToken} {
			t.Run(r.method+" "+r.path+" auth="+auth, func(t *testing.T) {
				status, body := f.do(t, r.method, r.path, auth, r.body)
				wantError(t, status, body, http.StatusForbidden, "permission_error",
					"admin_disabled")
			})
		}
	}
	if got := f.registry.List(); len(got) != 0 {
		t.Errorf("registry after refused calls: got %d nodes, want 0", len(got))
	}
	if got, err := f.store.ListKeys(context.Background()); err != nil || len(got) != 0 {
		t.Errorf("store after refused calls: got %d keys (err %v), want 0", len(got), err)
	}
}

func TestTokenRequired(t *testing.T) {
	f := newFixture(t, adminToken)
	customer := f.createKey(t, admin.CreateKeyRequest{Name: "customer"}).Secret

	tests := []struct {
		name string
		auth string
	}{
		{"missing", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer not-the-admin-token"},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1]},
		{"token with suffix", "Bearer " + adminToken + "x"},
		{"wrong scheme", "Basic " + adminToken},
		{"bare token", adminToken},
		{"customer api key", "Bearer " + customer},
	}
	for _, tt := range tests {
		for _, r := range routes {
			t.Run(tt.name+"/"+r.method+" "+r.path, func(t *testing.T) {
				status, body := f.do(t, r.method, r.path, tt.auth, r.body)
				wantError(t, status, body, http.StatusUnauthorized, "authentication_error",
					"invalid_admin_token")
			})
		}
	}

	// Nothing the refused calls asked for happened.
	if got := f.registry.List(); len(got) != 0 {
		t.Errorf("registry after refused calls: got %d nodes, want 0", len(got))
	}
	keys, err := f.client.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Errorf("keys after refused calls: got %d, want 1", len(keys))
	}
}

func TestClientWrongToken(t *testing.T) {
	f := newFixture(t, adminToken)
	c := *f.client
	c.Token = "wrong"
	_, err := c.ListKeys(context.Background())
	wantAPIError(t, err, http.StatusUnauthorized, "invalid_admin_token")
	if !strings.Contains(err.Error(), "A valid admin token is required.") {
		t.Errorf("error %q does not carry the API's message", err)
	}
}

func TestCreateKey(t *testing.T) {
	f := newFixture(t, adminToken)
	ctx := context.Background()
	before := time.Now()

	k := f.createKey(t, admin.CreateKeyRequest{Name: "  acme  "})
	if !strings.HasPrefix(k.Secret, apikey.Prefix) {
		t.Errorf("secret %q: want prefix %q", k.Secret, apikey.Prefix)
	}
	if !strings.HasPrefix(k.ID, "key_") {
		t.Errorf("id: got %q, want prefix key_", k.ID)
	}
	if k.Name != "acme" {
		t.Errorf("name: got %q, want %q (trimmed)", k.Name, "acme")
	}
	if k.State != admin.KeyActive {
		t.Errorf("state: got %q, want %q", k.State, admin.KeyActive)
	}
	if k.Models == nil || len(k.Models) != 0 {
		t.Errorf("models: got %#v, want an empty list", k.Models)
	}
	if k.ExpiresAt != nil || k.RevokedAt != nil {
		t.Errorf("expires_at, revoked_at: got %v, %v, want nil, nil", k.ExpiresAt, k.RevokedAt)
	}
	if k.CreatedAt.Before(before.Truncate(time.Millisecond)) || k.CreatedAt.After(time.Now()) {
		t.Errorf("created_at: got %v, want between %v and now", k.CreatedAt, before)
	}
	if !strings.HasPrefix(k.Secret, strings.TrimSuffix(k.Hint, "…")) {
		t.Errorf("hint %q is not the secret's beginning", k.Hint)
	}

	// The keyring knows the key at once.
	got, err := f.keys.Authenticate(k.Secret, time.Now())
	if err != nil {
		t.Fatalf("Authenticate(new key): %v", err)
	}
	if got.ID != k.ID {
		t.Errorf("authenticated key id: got %q, want %q", got.ID, k.ID)
	}

	// Listing shows the key but neither its secret nor its hash.
	keys, err := f.client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != k.ID || keys[0].Hint != k.Hint {
		t.Fatalf("ListKeys: got %+v, want the one key %s", keys, k.ID)
	}
	status, raw := f.admin(t, http.MethodGet, "/admin/keys", "")
	if status != http.StatusOK {
		t.Fatalf("GET /admin/keys: got %d, want 200", status)
	}
	digest := apikey.Sum(k.Secret)
	for _, secret := range []string{
		k.Secret,
		k.Secret[len(apikey.Prefix):],
		hex.EncodeToString(digest[:]),
		base64.StdEncoding.EncodeToString(digest[:]),
		base64.RawURLEncoding.EncodeToString(digest[:]),
	} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("GET /admin/keys shows %q:\n%s", secret, raw)
		}
	}
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		t.Fatal(err)
	}
	want := []string{"created_at", "expires_at", "hint", "id", "models", "name",
		"revoked_at", "state"}
	for _, o := range objs {
		var members []string
		for m := range o {
			members = append(members, m)
		}
		slices.Sort(members)
		if !slices.Equal(members, want) {
			t.Errorf("key members: got %v, want %v", members, want)
		}
	}

	// The store holds the digest, not the secret.
	recs, err := f.store.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !bytes.Equal(recs[0].Hash, digest[:]) {
		t.Errorf("stored key: got %+v, want the secret's digest", recs)
	}
}

func TestCreateKeyWithModelsAndExpiry(t *testing.T) {
	f := newFixture(t, adminToken)
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	k := f.createKey(t, admin.CreateKeyRequest{Name: "scoped",
		Models: []string{"model-a", "model-b"}, ExpiresAt: &expires})

	if !slices.Equal(k.Models, []string{"model-a", "model-b"}) {
		t.Errorf("models: got %v, want [model-a model-b]", k.Models)
	}
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(expires) {
		t.Errorf("expires_at: got %v, want %v", k.ExpiresAt, expires)
	}
	if k.State != admin.KeyActive {
		t.Errorf("state: got %q, want %q", k.State, admin.KeyActive)
	}

	keys, err := f.client.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ExpiresAt == nil || !keys[0].ExpiresAt.Equal(expires) ||
		!slices.Equal(keys[0].Models, k.Models) {
		t.Errorf("ListKeys: got %+v, want models %v expiring %v", keys, k.Models, expires)
	}

	key, err := f.keys.Authenticate(k.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		model string
		want  bool
	}{{"model-a", true}, {"model-b", true}, {"model-c", false}} {
		if got := key.AllowsName(tt.model); got != tt.want {
			t.Errorf("Allows(%q): got %v, want %v", tt.model, got, tt.want)
		}
	}
	if _, err := f.keys.Authenticate(k.Secret, expires); !errors.Is(err, apikey.ErrExpired) {
		t.Errorf("Authenticate at expiry: got %v, want %v", err, apikey.ErrExpired)
	}
}

func TestCreateKeyRejects(t *testing.T) {
	f := newFixture(t, adminToken)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)

	tests := []struct {
		name   string
		body   string
		status int
		param  string // "" for null
		code   string // "" for null
	}{
		{"empty name", `{"name":""}`, 400, "name", ""},
		{"blank name", `{"name":"   "}`, 400, "name", ""},
		{"no name", `{}`, 400, "name", ""},
		{"name too long", `{"name":"` + strings.Repeat("n", 201) + `"}`, 400, "name", ""},
		{"expires in the past", `{"name":"k","expires_at":"` + past + `"}`, 400,
			"expires_at", ""},
		{"empty model name", `{"name":"k","models":["m",""]}`, 400, "models", ""},
		{"unknown field", `{"name":"k","nmae":"typo"}`, 400, "", ""},
		{"wrong type", `{"name":42}`, 400, "", ""},
		{"not json", `name=k`, 400, "", ""},
		{"empty body", ``, 400, "", ""},
		{"body over 1 MiB", `{"name":"` + strings.Repeat("n", 1<<20) + `"}`, 413, "",
			"request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.admin(t, http.MethodPost, "/admin/keys", tt.body)
			wantError(t, status, body, tt.status, "invalid_request_error", tt.code)
			var e struct {
				Error struct {
					Param *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.param == "" && e.Error.Param != nil:
				t.Errorf("param: got %q, want null", *e.Error.Param)
			case tt.param != "" && (e.Error.Param == nil || *e.Error.Param != tt.param):
				t.Errorf("param: got %v, want %q", e.Error.Param, tt.param)
			}
		})
	}

	keys, err := f.store.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("stored keys after refusals: got %d, want 0", len(keys))
	}
}

func TestRevokeKey(t *testing.T) {
	f := newFixture(t, adminToken)
	ctx := context.Background()
	k := f.createKey(t, admin.CreateKeyRequest{Name: "doomed"})
	other := f.createKey(t, admin.CreateKeyRequest{Name: "kept"})

	revoked, err := f.client.RevokeKey(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if revoked.ID != k.ID || revoked.State != admin.KeyRevoked || revoked.RevokedAt == nil {
		t.Errorf("RevokeKey: got %+v, want key %s revoked", revoked, k.ID)
	}

	// The keyring refuses it on the very next check; the other key works.
	if _, err := f.keys.Authenticate(k.Secret, time.Now()); !errors.Is(err, apikey.ErrRevoked) {
		t.Errorf("Authenticate(revoked): got %v, want %v", err, apikey.ErrRevoked)
	}
	if _, err := f.keys.Authenticate(other.Secret, time.Now()); err != nil {
		t.Errorf("Authenticate(other key): got %v, want nil", err)
	}

	keys, err := f.client.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, key := range keys {
		states[key.ID] = key.State
	}
	if states[k.ID] != admin.KeyRevoked || states[other.ID] != admin.KeyActive {
		t.Errorf("states: got %v, want %s revoked and %s active", states, k.ID, other.ID)
	}

	// Revoking again succeeds and keeps the first time.
	again, err := f.client.RevokeKey(ctx, k.ID)
	if err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if again.RevokedAt == nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("second revoke time: got %v, want %v", again.RevokedAt, revoked.RevokedAt)
	}
}

func TestRevokeUnknownKey(t *testing.T) {
	f := newFixture(t, adminToken)
	_, err := f.client.RevokeKey(context.Background(), "key_does_not_exist")
	wantAPIError(t, err, http.StatusNotFound, "key_not_found")

	status, body := f.admin(t, http.MethodDelete, "/admin/keys/key_does_not_exist", "")
	wantError(t, status, body, http.StatusNotFound, "not_found_error", "key_not_found")
}

func TestImportKeyTwice(t *testing.T) {
	f := newFixture(t, adminToken)
	const secret = "sk-cl-imported-demo-key-0123456789"

	k := f.createKey(t, admin.CreateKeyRequest{Name: "demo", Secret: secret})
	if k.Secret != secret {
		t.Errorf("secret: got %q, want the imported one", k.Secret)
	}
	if _, err := f.keys.Authenticate(secret, time.Now()); err != nil {
		t.Errorf("Authenticate(imported): %v", err)
	}

	_, err := f.client.CreateKey(context.Background(),
		admin.CreateKeyRequest{Name: "demo again", Secret: secret})
	wantAPIError(t, err, http.StatusConflict, "key_exists")

	status, body := f.admin(t, http.MethodPost, "/admin/keys",
		`{"name":"raw","secret":"`+secret+`"}`)
	wantError(t, status, body, http.StatusConflict, "invalid_request_error", "key_exists")
	if bytes.Contains(body, []byte(secret)) {
		t.Errorf("conflict answer shows the secret: %s", body)
	}
}

func TestAddNode(t *testing.T) {
	f := newFixture(t, adminToken)
	ctx := context.Background()

	n, err := f.client.AddNode(ctx, admin.AddNodeRequest{ID: "gpu-1",
		Endpoint: "https://10.0.0.5:8000/", Models: []string{"m1", "m2"}, Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	want := admin.Node{ID: "gpu-1", Endpoint: "https://10.0.0.5:8000/",
		Models: []string{"m1", "m2"}, Provider: "manual", Region: "eu", Source: "admin",
		State: "joining"}
	n.StateAt = time.Time{}
	if !nodeEqual(n, want) {
		t.Errorf("AddNode:\ngot  %+v\nwant %+v", n, want)
	}

	// The registry has it, joining, and so does the store.
	if st, ok := f.registry.Get("gpu-1"); !ok || st.State != registry.StateJoining {
		t.Errorf("registry.Get: got %+v, %v, want a joining node", st, ok)
	}
	stored, err := f.store.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != "gpu-1" || stored[0].Provider != "manual" {
		t.Errorf("stored nodes: got %+v, want gpu-1", stored)
	}

	// List and get show it.
	list, err := f.client.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "gpu-1" || list[0].State != "joining" {
		t.Errorf("ListNodes: got %+v, want gpu-1 joining", list)
	}
	status, body := f.admin(t, http.MethodGet, "/admin/nodes/gpu-1", "")
	var got admin.Node
	if status != http.StatusOK || json.Unmarshal(body, &got) != nil || got.ID != "gpu-1" ||
		got.State != "joining" {
		t.Errorf("GET /admin/nodes/gpu-1: got %d %s, want gpu-1 joining", status, body)
	}
	status, body = f.admin(t, http.MethodGet, "/admin/nodes/nope", "")
	wantError(t, status, body, http.StatusNotFound, "not_found_error", "node_not_found")

	// A second add of the same ID is a conflict and changes nothing.
	_, err = f.client.AddNode(ctx, admin.AddNodeRequest{ID: "gpu-1",
		Endpoint: "http://10.0.0.6:8000", Models: []string{"m3"}})
	wantAPIError(t, err, http.StatusConflict, "node_exists")
	if st, _ := f.registry.Get("gpu-1"); st.Endpoint != "https://10.0.0.5:8000/" {
		t.Errorf("endpoint after conflicting add: got %q, want the first one", st.Endpoint)
	}
}

func nodeEqual(a, b admin.Node) bool {
	return a.ID == b.ID && a.Endpoint == b.Endpoint && slices.Equal(a.Models, b.Models) &&
		a.Provider == b.Provider && a.Region == b.Region && a.Source == b.Source &&
		a.State == b.State && a.LastError == b.LastError && a.Inflight == b.Inflight
}

func TestAddNodeRejects(t *testing.T) {
	f := newFixture(t, adminToken)

	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"no id", `{"endpoint":"http://10.0.0.1:8000","models":["m"]}`, 400},
		{"id with slash", `{"id":"a/b","endpoint":"http://10.0.0.1:8000","models":["m"]}`, 400},
		{"id with space", `{"id":"a b","endpoint":"http://10.0.0.1:8000","models":["m"]}`, 400},
		{"id too long", `{"id":"` + strings.Repeat("i", 129) +
			`","endpoint":"http://10.0.0.1:8000","models":["m"]}`, 400},
		{"no endpoint", `{"id":"n","models":["m"]}`, 400},
		{"endpoint not a url", `{"id":"n","endpoint":"10.0.0.1:8000","models":["m"]}`, 400},
		{"endpoint ftp", `{"id":"n","endpoint":"ftp://10.0.0.1","models":["m"]}`, 400},
		{"endpoint with query", `{"id":"n","endpoint":"http://h/?a=1","models":["m"]}`, 400},
		{"endpoint with user", `{"id":"n","endpoint":"http://u:p@h","models":["m"]}`, 400},
		{"no models", `{"id":"n","endpoint":"http://10.0.0.1:8000"}`, 400},
		{"empty models", `{"id":"n","endpoint":"http://10.0.0.1:8000","models":[]}`, 400},
		{"empty model name", `{"id":"n","endpoint":"http://10.0.0.1:8000","models":[""]}`, 400},
		{"unknown field", `{"id":"n","endpoint":"http://h","models":["m"],"key":"x"}`, 400},
		{"body over 1 MiB", `{"id":"n","endpoint":"http://h","models":["` +
			strings.Repeat("m", 1<<20) + `"]}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.admin(t, http.MethodPost, "/admin/nodes", tt.body)
			code := ""
			if tt.status == http.StatusRequestEntityTooLarge {
				code = "request_too_large"
			}
			wantError(t, status, body, tt.status, "invalid_request_error", code)
			if bytes.Contains(body, []byte("registry:")) {
				t.Errorf("message shows the Go package prefix: %s", body)
			}
		})
	}

	if got := f.registry.List(); len(got) != 0 {
		t.Errorf("registry after refusals: got %+v, want empty", got)
	}
	stored, err := f.store.ListNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 0 {
		t.Errorf("store after refusals: got %+v, want empty", stored)
	}
}

func TestRemoveNode(t *testing.T) {
	f := newFixture(t, adminToken)
	ctx := context.Background()
	if _, err := f.client.AddNode(ctx, admin.AddNodeRequest{ID: "gpu-1",
		Endpoint: "http://10.0.0.5:8000", Models: []string{"m"}}); err != nil {
		t.Fatal(err)
	}

	n, err := f.client.RemoveNode(ctx, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != "gpu-1" {
		t.Errorf("RemoveNode: got %+v, want gpu-1", n)
	}
	if _, ok := f.registry.Get("gpu-1"); ok {
		t.Error("registry still has gpu-1 after remove")
	}
	stored, err := f.store.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 0 {
		t.Errorf("store after remove: got %+v, want empty", stored)
	}

	_, err = f.client.RemoveNode(ctx, "gpu-1")
	wantAPIError(t, err, http.StatusNotFound, "node_not_found")
	status, body := f.admin(t, http.MethodDelete, "/admin/nodes/never-was", "")
	wantError(t, status, body, http.StatusNotFound, "not_found_error", "node_not_found")
}

func TestConfigNodeIsReadOnly(t *testing.T) {
	f := newFixture(t, adminToken)
	ctx := context.Background()
	if err := f.registry.Add(registry.Spec{ID: "from-file", Endpoint: "http://10.0.0.9:8000",
		Models: []string{"m"}, Provider: "manual", Source: registry.SourceConfig}); err != nil {
		t.Fatal(err)
	}

	status, body := f.admin(t, http.MethodDelete, "/admin/nodes/from-file", "")
	wantError(t, status, body, http.StatusConflict, "invalid_request_error", "node_in_config")
	if _, ok := f.registry.Get("from-file"); !ok {
		t.Error("config node removed despite the refusal")
	}

	// Nor can the admin API declare a node under its ID.
	_, err := f.client.AddNode(ctx, admin.AddNodeRequest{ID: "from-file",
		Endpoint: "http://10.0.0.10:8000", Models: []string{"m"}})
	wantAPIError(t, err, http.StatusConflict, "node_exists")

	list, err := f.client.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Source != "config" {
		t.Errorf("ListNodes: got %+v, want from-file with source config", list)
	}
}

func TestUpstreamKeyIsWriteOnly(t *testing.T) {
	f := newFixture(t, adminToken)
	const upstream = "upstream-bearer-5f1d"
	node := `{"id":"ext","endpoint":"https://engine.example.com","models":["m"],` +
		`"upstream_key":"` + upstream + `"}`

	var answers [][]byte
	record := func(method, path, body string, want int) {
		t.Helper()
		status, b := f.admin(t, method, path, body)
		if status != want {
			t.Errorf("%s %s: got %d, want %d (%s)", method, path, status, want, b)
		}
		answers = append(answers, b)
	}
	record(http.MethodPost, "/admin/nodes", node, http.StatusCreated)
	record(http.MethodPost, "/admin/nodes", node, http.StatusConflict)
	record(http.MethodGet, "/admin/nodes", "", http.StatusOK)
	record(http.MethodGet, "/admin/nodes/ext", "", http.StatusOK)

	// The key is kept where it is needed: on the node and in the store.
	nodes := f.registry.Nodes()
	if len(nodes) != 1 || nodes[0].Authorization() != "Bearer "+upstream {
		t.Errorf("node authorization: got %v, want the upstream key", nodes)
	}
	stored, err := f.store.ListNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].UpstreamKey != upstream {
		t.Errorf("stored node: got %+v, want the upstream key kept", stored)
	}

	record(http.MethodDelete, "/admin/nodes/ext", "", http.StatusOK)
	for i, b := range answers {
		if bytes.Contains(b, []byte(upstream)) || bytes.Contains(b, []byte("upstream_key")) {
			t.Errorf("answer %d shows the upstream key: %s", i, b)
		}
	}
}
