package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the crosslogic binary built once for this package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "crosslogic-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "crosslogic")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("build crosslogic: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemoAsDocumented runs `crosslogic demo` as a process, exactly as the
// README and issue describe it, and checks what it must serve.
func TestDemoAsDocumented(t *testing.T) {
	addr, dataDir := freeAddr(t), t.TempDir()
	const key, adminToken = "K-demo-key", "A-admin-token"
	cmd := exec.Command(binary, "demo", "--addr", addr, "--api-key", key,
		"--admin-token", adminToken, "--data-dir", dataDir)
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		t.Logf("demo log:\n%s", stderr.String())
	})

	// The banner is printed once the gateway serves and nodes are ready.
	banner := make(chan string, 1)
	ready := make(chan struct{})
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C") {
				close(ready)
			}
		}
		banner <- b.String()
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("demo exited before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("demo not ready within 60s")
	}
	base := "http://" + addr

	call := func(method, path, auth, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	const llama = "meta-llama/Llama-3.1-8B-Instruct"
	chat := `{"model":"` + llama + `","messages":[{"role":"user","content":"Hello!"}]}`

	t.Run("models", func(t *testing.T) {
		var list struct {
			Object string
			Data   []struct{ ID string }
		}
		resp := call("GET", "/v1/models", key, "")
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		if list.Object != "list" || len(list.Data) < 2 {
			t.Errorf("models = %+v, want a list of at least 2", list)
		}
	})
	t.Run("chat", func(t *testing.T) {
		resp := call("POST", "/v1/chat/completions", key, chat)
		var c struct {
			Object  string
			Choices []struct{ Message struct{ Content string } }
			Usage   *struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || c.Object != "chat.completion" || len(c.Choices) != 1 ||
			c.Usage == nil || c.Usage.TotalTokens == 0 {
			t.Errorf("chat = %d %+v, want 200 chat.completion with usage", resp.StatusCode, c)
		}
	})
	t.Run("stream", func(t *testing.T) {
		resp := call("POST", "/v1/chat/completions", key,
			strings.Replace(chat, "{", `{"stream":true,`, 1))
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("Content-Type = %q, want text/event-stream", ct)
		}
		var last string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); l != "" {
				last = l
			}
		}
		if last != "data: [DONE]" {
			t.Errorf("last event = %q, want data: [DONE]", last)
		}
	})
	for _, tt := range []struct {
		name, auth, body string
		want             int
	}{
		{"wrong key", "wrong", chat, 401},
		{"unknown model", key, `{"model":"no-such-model","messages":[]}`, 404},
		{"malformed JSON", key, `{"model":`, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := call("POST", "/v1/chat/completions", tt.auth, tt.body)
			var e struct {
				Error *struct{ Message, Type string } `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.want || e.Error == nil || e.Error.Message == "" {
				t.Errorf("status = %d, error = %+v; want %d in OpenAI's shape",
					resp.StatusCode, e.Error, tt.want)
			}
		})
	}
	t.Run("keys list", func(t *testing.T) {
		out, err := exec.Command(binary, "keys", "list", "--server", base,
			"--admin-token", adminToken).CombinedOutput()
		if err != nil {
			t.Fatalf("keys list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "demo") || !strings.Contains(string(out), "active") {
			t.Errorf("keys list = %s, want the demo key", out)
		}
		if strings.Contains(string(out), key) {
			t.Error("keys list shows the secret")
		}
	})
	t.Run("nodes list", func(t *testing.T) {
		out, err := exec.Command(binary, "nodes", "list", "-o", "json", "--server", base,
			"--admin-token", adminToken).CombinedOutput()
		if err != nil {
			t.Fatalf("nodes list: %v\n%s", err, out)
		}
		var nodes []struct {
			ID, State, Endpoint string
			CertNotAfter        *time.Time `json:"cert_not_after"`
		}
		if err := json.Unmarshal(out, &nodes); err != nil || len(nodes) < 3 {
			t.Fatalf("nodes list = %s (%v), want 3 nodes", out, err)
		}
		for _, n := range nodes {
			if n.State != "ready" || !strings.HasPrefix(n.Endpoint, "https://") ||
				n.CertNotAfter == nil {
				t.Errorf("node %s: state %s, endpoint %s, cert expiry %v; want ready, "+
					"https and a certificate", n.ID, n.State, n.Endpoint, n.CertNotAfter)
			}
			// A TLS client without a certificate gets no HTTP answer.
			client := &http.Client{Transport: &http.Transport{
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			if resp, err := client.Get(n.Endpoint + "/v1/models"); err == nil {
				resp.Body.Close()
				t.Errorf("node %s answered %d to a client without a certificate",
					n.ID, resp.StatusCode)
			}
		}
	})

	// Ctrl-C: the process drains and exits cleanly.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("demo exited with %v after SIGINT, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not exit after SIGINT")
	}
	if b := <-banner; !strings.Contains(b, "curl "+base+"/v1/chat/completions") {
		t.Errorf("banner lacks a curl line:\n%s", b)
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		wantCode int
	}{
		{nil, 2}, {[]string{"nope"}, 2}, {[]string{"version"}, 0},
		{[]string{"keys"}, 2}, {[]string{"keys", "list"}, 1}, // no admin token
	} {
		cmd := exec.Command(binary, tt.args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.wantCode {
			t.Errorf("crosslogic %v exited %d, want %d", tt.args, code, tt.wantCode)
		}
	}
}
