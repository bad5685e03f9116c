package sim

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"strconv"
	"time"
)

// serveEmbedding serves POST /v1/embeddings.
func (s *Server) serveEmbedding(w http.ResponseWriter, r *http.Request, res *result) {
	req := embeddingRequest{Input: texts{param: "input"}}
	if aerr := decodeBody(r, &req); aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	model, prompt, aerr := s.checkEmbedding(&req)
	if aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	res.model, res.prompt = model.name, prompt

	ctx := r.Context()
	switch kind, _ := s.drawFault(0); kind {
	case faultError:
		writeError(w, errInjected)
		res.outcome, res.status = outcomeError, errInjected.status
		return
	case faultHang:
		s.hang(ctx, res)
		return
	case faultBreak:
		res.outcome = outcomeBreak
	}

	if err := s.adm.acquire(ctx); err != nil {
		res.outcome = outcomeCancelled
		return
	}
	defer s.adm.release()
	s.stats.promptTokens.Add(int64(prompt))

	// An embedding is one forward pass: it costs the time to first
	// token and nothing more.
	p := newPacer(ctx, &s.cfg, false)
	defer p.stop()
	if !p.wait(0) {
		res.outcome = outcomeCancelled
		return
	}
	if res.outcome == outcomeBreak {
		return
	}

	bp := getBuf()
	defer putBuf(bp)
	b := s.appendEmbeddings((*bp)[:0], model, &req, prompt)
	*bp = b
	writeJSON(w, http.StatusOK, b)
	res.outcome, res.status, res.finish = outcomeCompleted, http.StatusOK, finishStop
}

// checkEmbedding validates an embedding request, returning its model
// and prompt tokens.
func (s *Server) checkEmbedding(req *embeddingRequest) (*servedModel, int, *apiError) {
	switch {
	case !req.Input.set:
		return nil, 0, badRequest("input", "Field `input` is required.")
	case len(req.Input.list) == 0:
		return nil, 0, badRequest("input", "Field `input` must not be empty.")
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, 0, badRequest("encoding_format",
			"encoding_format must be `float` or `base64`, got `%s`.", req.EncodingFormat)
	}
	if d := req.Dimensions; d != nil && *d != s.cfg.EmbeddingDims {
		return nil, 0, badRequest("dimensions",
			"The model does not support matryoshka representation: dimensions "+
				"must be %d, got %d.", s.cfg.EmbeddingDims, *d)
	}
	model, aerr := s.model(req.Model)
	if aerr != nil {
		return nil, 0, aerr
	}
	prompt := 0
	for _, in := range req.Input.list {
		n := CountTokens(in)
		if n > s.cfg.MaxModelLen {
			return nil, 0, badRequest("input_tokens",
				"This model's maximum context length is %d tokens. However, you "+
					"requested %d tokens in the input for embedding generation. "+
					"Please reduce the length of the input.", s.cfg.MaxModelLen, n)
		}
		prompt += n
	}
	return model, prompt, nil
}

// appendEmbeddings appends the whole answer of an embedding request.
func (s *Server) appendEmbeddings(b []byte, model *servedModel, req *embeddingRequest,
	prompt int) []byte {
	b = append(b, `{"id":"`...)
	b = appendID(b, "embd-", s.idBase, s.idSeq.Add(1))
	b = append(b, `","object":"list","created":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, `,"model":`...)
	b = append(b, model.quoted...)
	b = append(b, `,"data":[`...)
	for i, in := range req.Input.list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"object":"embedding","embedding":`...)
		if req.EncodingFormat == "base64" {
			b = appendBase64Vector(b, in, s.cfg.EmbeddingDims)
		} else {
			b = appendFloatVector(b, in, s.cfg.EmbeddingDims)
		}
		b = append(b, '}')
	}
	b = append(b, `],"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	return append(b, "}}"...)
}

// vector is the embedding of one input: a deterministic pseudo-random
// direction keyed by a hash of the exact input text, scaled to unit
// length. It is computed twice over (norm, then components) rather than
// stored, which costs a few multiplications and no allocation.
type vector struct {
	key  uint64
	dims int
	inv  float64 // 1 / the norm of the raw components
}

func newVector(text string, dims int) vector {
	v := vector{key: hashWord(text), dims: dims}
	var sum float64
	for i := range dims {
		c := v.raw(i)
		sum += c * c
	}
	v.inv = 1 / math.Sqrt(sum)
	return v
}

// raw returns component i before normalization, in [-1, 1).
func (v vector) raw(i int) float64 {
	return float64(int64(mix(v.key+uint64(i+1)*golden))) / (1 << 63)
}

// at returns component i of the unit vector.
func (v vector) at(i int) float32 {
	return float32(v.raw(i) * v.inv)
}

// appendFloatVector appends the embedding of text as a JSON array.
func appendFloatVector(b []byte, text string, dims int) []byte {
	v := newVector(text, dims)
	b = append(b, '[')
	for i := range dims {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(v.at(i)), 'g', -1, 32)
	}
	return append(b, ']')
}

// appendBase64Vector appends the embedding of text the way OpenAI's
// encoding_format "base64" sends it: a JSON string holding the base64
// of the little-endian float32 components.
func appendBase64Vector(b []byte, text string, dims int) []byte {
	v := newVector(text, dims)
	rp := getBuf()
	defer putBuf(rp)
	raw := (*rp)[:0]
	for i := range dims {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v.at(i)))
	}
	*rp = raw
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}
