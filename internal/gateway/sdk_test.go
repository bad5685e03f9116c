package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	openaisdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestOpenAISDK drives the gateway with OpenAI's official Go client: the
// wire format is right when the real client is satisfied.
func TestOpenAISDK(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	client := openaisdk.NewClient(option.WithBaseURL(f.gw.URL+"/v1/"),
		option.WithAPIKey(f.key), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openaisdk.ChatCompletionNewParams{
		Model:     modelA,
		Messages:  []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("Hello there")},
		MaxTokens: openaisdk.Int(10),
	}

	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" {
			t.Fatalf("choices = %+v, want one with content", resp.Choices)
		}
		if resp.Usage.CompletionTokens != 10 {
			t.Errorf("completion tokens = %d, want 10", resp.Usage.CompletionTokens)
		}
	})

	t.Run("stream", func(t *testing.T) {
		p := params
		p.StreamOptions = openaisdk.ChatCompletionStreamOptionsParam{
			IncludeUsage: openaisdk.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, p)
		var acc openaisdk.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 10 {
			t.Errorf("chunks = %d, want at least 10", chunks)
		}
		if got := len(strings.Fields(acc.Choices[0].Message.Content)); got != 10 {
			t.Errorf("streamed %d words, want 10", got)
		}
		if acc.Usage.CompletionTokens != 10 {
			t.Errorf("usage completion tokens = %d, want 10", acc.Usage.CompletionTokens)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 2 {
			t.Errorf("models = %d, want 2", len(page.Data))
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name       string
			client     openaisdk.Client
			model      string
			wantStatus int
			wantCode   string
		}{
			{"unknown model", client, "gpt-17", http.StatusNotFound, "model_not_found"},
			{"bad key", openaisdk.NewClient(option.WithBaseURL(f.gw.URL+"/v1/"),
				option.WithAPIKey("sk-cl-bad"), option.WithMaxRetries(0)),
				modelA, http.StatusUnauthorized, "invalid_api_key"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := params
				p.Model = tt.model
				_, err := tt.client.Chat.Completions.New(ctx, p)
				var apiErr *openaisdk.Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("err = %v, want an *openai.Error", err)
				}
				if apiErr.StatusCode != tt.wantStatus || apiErr.Code != tt.wantCode {
					t.Errorf("error = %d %q, want %d %q", apiErr.StatusCode, apiErr.Code,
						tt.wantStatus, tt.wantCode)
				}
			})
		}
	})
}
