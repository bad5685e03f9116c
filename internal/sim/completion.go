package sim

import (
	"net/http"
)

// serveCompletion serves POST /v1/completions.
func (s *Server) serveCompletion(w http.ResponseWriter, r *http.Request, res *result) {
	req := completionRequest{Prompt: texts{param: "prompt"}}
	if aerr := decodeBody(r, &req); aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	var j job
	if aerr := s.completionJob(&req, &j); aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	s.generate(w, r, &j, res)
}

// completionJob validates a completion request into j.
func (s *Server) completionJob(req *completionRequest, j *job) *apiError {
	switch {
	case !req.Prompt.set:
		return badRequest("prompt", "Field `prompt` is required.")
	case len(req.Prompt.list) != 1:
		// vLLM answers a batch of prompts with one choice each; the
		// simulator makes one choice per request.
		return badRequest("prompt",
			"The simulator takes exactly one prompt, got %d.", len(req.Prompt.list))
	}
	if aerr := checkN(req.N); aerr != nil {
		return aerr
	}
	usage, aerr := checkStream(req.Stream, req.StreamOptions)
	if aerr != nil {
		return aerr
	}
	model, aerr := s.model(req.Model)
	if aerr != nil {
		return aerr
	}

	var seed int64
	if req.Seed != nil {
		seed = *req.Seed
	}
	*j = job{wire: &completionWire, model: model, gen: newGenerator(seed),
		stream: req.Stream, usage: usage}
	j.prompt = j.gen.feed(req.Prompt.list[0])
	j.tokens, j.finish, aerr = s.length(j.prompt, req.MaxTokens)
	return aerr
}
