package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/crosslogic/crosslogic/internal/openai"
)

// modelObject is one entry of OpenAI's model list.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// serveModels lists the models that have at least one ready node and that
// the key may use.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request) {
	setRequestID(w, r)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		openai.MethodNotAllowed(r.Method, r.URL.Path).Write(w)
		return
	}
	key, ok := g.authenticate(w, r, w.Header().Get("X-Request-Id"))
	if !ok {
		return
	}
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, m := range g.registry.Snapshot().ReadyModels() {
		if key.AllowsName(m) {
			list.Data = append(list.Data, g.modelObject(m))
		}
	}
	writeJSON(w, list)
}

// serveModel answers GET /v1/models/{model}.
func (g *Gateway) serveModel(w http.ResponseWriter, r *http.Request, model string) {
	setRequestID(w, r)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		openai.MethodNotAllowed(r.Method, r.URL.Path).Write(w)
		return
	}
	key, ok := g.authenticate(w, r, w.Header().Get("X-Request-Id"))
	if !ok {
		return
	}
	pool := g.registry.Snapshot().Pool([]byte(model))
	if pool == nil || len(pool.Ready) == 0 || !key.AllowsName(model) {
		openai.ModelNotFound(model).Write(w)
		return
	}
	writeJSON(w, g.modelObject(model))
}

func (g *Gateway) modelObject(id string) modelObject {
	return modelObject{ID: id, Object: "model", Created: g.started.Unix(),
		OwnedBy: "crosslogic"}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
