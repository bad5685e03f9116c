package sim

import (
	"net/http"
)

// serveChat serves POST /v1/chat/completions.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request, res *result) {
	var req chatRequest
	if aerr := decodeBody(r, &req); aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	var j job
	if aerr := s.chatJob(&req, &j); aerr != nil {
		s.reject(w, aerr, res)
		return
	}
	s.generate(w, r, &j, res)
}

// chatJob validates a chat request into j, checking in vLLM's order:
// the request's own fields, then the model, then the lengths.
func (s *Server) chatJob(req *chatRequest, j *job) *apiError {
	if len(req.Messages) == 0 {
		return badRequest("messages", "Field `messages` must be a non-empty array.")
	}
	for i := range req.Messages {
		if req.Messages[i].Role == "" {
			return badRequest("messages", "Message %d has no role.", i)
		}
	}
	if aerr := checkN(req.N); aerr != nil {
		return aerr
	}
	usage, aerr := checkStream(req.Stream, req.StreamOptions)
	if aerr != nil {
		return aerr
	}

	// vLLM's continue_final_message extension: the last message is a
	// partial assistant turn that generation extends, instead of a
	// new turn opened by the generation prompt. vLLM refuses both at
	// once, and add_generation_prompt defaults to true, so a client
	// continuing must turn it off explicitly.
	addPrompt := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	if req.ContinueFinalMessage {
		if addPrompt {
			return badRequest("",
				"Cannot set both `continue_final_message` and "+
					"`add_generation_prompt` to True.")
		}
		if last := req.Messages[len(req.Messages)-1]; last.Role != "assistant" {
			return badRequest("messages",
				"continue_final_message requires the last message to have "+
					"role `assistant`, got `%s`.", last.Role)
		}
	}

	model, aerr := s.model(req.Model)
	if aerr != nil {
		return aerr
	}

	// The context is every message's content, in order, so that a
	// continued assistant message picks up exactly where its text ends.
	var seed int64
	if req.Seed != nil {
		seed = *req.Seed
	}
	*j = job{wire: &chatWire, model: model, gen: newGenerator(seed), stream: req.Stream,
		usage: usage}
	for i := range req.Messages {
		j.prompt += req.Messages[i].Content.feed(&j.gen)
	}

	// vLLM prefers max_completion_tokens, OpenAI's newer name.
	maxTokens := req.MaxCompletionTokens
	if maxTokens == nil {
		maxTokens = req.MaxTokens
	}
	j.tokens, j.finish, aerr = s.length(j.prompt, maxTokens)
	return aerr
}

// reject answers a request error and records it.
func (s *Server) reject(w http.ResponseWriter, aerr *apiError, res *result) {
	writeError(w, aerr)
	res.outcome, res.status = outcomeRejected, aerr.status
}
