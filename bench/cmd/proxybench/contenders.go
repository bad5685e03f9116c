package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// contender is one column of the table: a way to reach the simulator,
// directly or through a proxy.
type contender struct {
	name  string // command-line name: direct, crosslogic, nginx, …
	label string // column heading
	// upstream says how the contender reaches the simulator, for the
	// report; "" for the direct path.
	upstream string
	// perStream is how many sockets the contender's busiest process
	// holds for each open stream, and extraFiles what that process holds
	// beyond them and fileMargin whatever the stream count: together they
	// bound the streams it can carry under the open-file limit (see
	// streamCap).
	perStream, extraFiles int
	// start runs one instance in front of the simulator at upstream
	// ("127.0.0.1:PORT") with its files in dir.
	start func(ctx context.Context, e *env, dir, upstream string) (*instance, error)
	// version says which version ran; "" when it cannot be told.
	version func(e *env) string
}

// instance is a running contender in front of one simulator.
type instance struct {
	target
	proc      *proc  // nil for the direct path
	pprofAddr string // where CrossLogic serves net/http/pprof, if it does
}

func (in *instance) stop() {
	if in != nil && in.proc != nil {
		in.proc.stop()
	}
}

// env is what contenders are started with.
type env struct {
	crosslogic string   // the crosslogic binary, for the admin CLI
	server     string   // the binary run as `… server`: crosslogic or gatewayprof
	serverEnv  []string // added to the gateway's environment
	pprof      bool     // whether server takes --pprof-addr
	node       string   // node binary, for Portkey
	portkeyDir string   // directory holding node_modules/@portkey-ai/gateway
}

const (
	// h11Upstream is how the other proxies reach the simulator.
	h11Upstream = "HTTP/1.1 keep-alive"
	// h2cUpstream is how CrossLogic reaches it (http2: true in its node
	// config).
	h2cUpstream = "HTTP/1.1 keep-alive for non-streaming requests and cleartext " +
		"HTTP/2 (h2c) for streams"
	// h2cConns is a bound on CrossLogic's multiplexed connections to the
	// streaming simulator: Go's HTTP/2 server (the simulator) allows 250
	// streams per connection, so 10,000 streams take 40 connections and
	// 25,000 take 100.
	h2cConns = 100
)

// contenders are all the columns, in table order, with the sockets each
// holds per stream. The proxies other than CrossLogic hold two: the
// client's, and their own to the simulator. CrossLogic holds one, and
// up to h2cConns multiplexed connections to the simulator. The direct
// path's streams are held by the simulator and the load generator,
// separate processes with the same limit, one socket each; as they hold
// no more for any other contender, they never bind tighter than it.
//
// nginx runs two workers with a limit each, but they take connections
// from one listening socket and nothing shares the streams out evenly
// between them: the cap assumes one worker may hold them all.
var contenders = []contender{
	{name: "direct", label: "direct", perStream: 1, start: startDirect,
		version: func(*env) string { return "" }},
	{name: "crosslogic", label: "CrossLogic", upstream: h2cUpstream,
		perStream: 1, extraFiles: h2cConns, start: startCrossLogic,
		version: func(e *env) string { return firstLine(e.server, "version") }},
	{name: "nginx", label: "nginx", upstream: h11Upstream, perStream: 2, start: startNginx,
		version: func(*env) string { return firstLine("nginx", "-v") }},
	{name: "haproxy", label: "HAProxy", upstream: h11Upstream, perStream: 2,
		start: startHAProxy, version: func(*env) string { return firstLine("haproxy", "-v") }},
	{name: "caddy", label: "Caddy", upstream: h11Upstream, perStream: 2, start: startCaddy,
		version: func(*env) string { return firstLine("caddy", "version") }},
	{name: "portkey", label: "Portkey", upstream: h11Upstream, perStream: 2,
		start: startPortkey, version: portkeyVersion},
}

// maxStreams is the most concurrent streams c can carry under the
// open-file limit.
func (c contender) maxStreams(limit uint64) int {
	return streamCap(limit, c.perStream, c.extraFiles)
}

func startDirect(_ context.Context, _ *env, _, upstream string) (*instance, error) {
	return &instance{target: target{base: "http://" + upstream, header: http.Header{}}}, nil
}

// startCrossLogic runs `crosslogic server` with the simulator as its one
// node, and makes an API key through the admin CLI: authentication is
// part of CrossLogic's request path, so the benchmark pays for it.
//
// The node is marked http2, as the simulator serves h2c on its port:
// that is how the gateway reaches a node that speaks HTTP/2, and its
// streams then share a few connections instead of holding one socket
// each to the simulator, which is what lets it carry 10,000 streams
// under this machine's open-file limit.
func startCrossLogic(ctx context.Context, e *env, dir, upstream string) (*instance, error) {
	port, err1 := freePort()
	agentPort, err2 := freePort()
	if err := firstErr(err1, err2); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := fmt.Sprintf(`addr: %s
data_dir: %s
agent_addr: 127.0.0.1:%d
log:
  level: warn
nodes:
  - id: sim
    endpoint: http://%s
    models: [%s]
    # Streams over h2c, multiplexed; other requests over HTTP/1.1.
    http2: true
`, addr, filepath.Join(dir, "data"), agentPort, upstream, benchModel)
	cfgPath := filepath.Join(dir, "crosslogic.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	token := randomHex(24)
	argv := []string{e.server, "server", "--config", cfgPath}
	var pprofAddr string
	if e.pprof {
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		pprofAddr = "127.0.0.1:" + strconv.Itoa(pp)
		argv = append(argv, "--pprof-addr", pprofAddr)
	}
	p, err := startProc(dir, "crosslogic",
		append([]string{"CROSSLOGIC_ADMIN_TOKEN=" + token}, e.serverEnv...), argv...)
	if err != nil {
		return nil, err
	}
	if err := waitPort(ctx, p, addr); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w: %s", err, p.logTail(dir))
	}

	out, err := exec.CommandContext(ctx, e.crosslogic, "keys", "create",
		"--server", "http://"+addr, "--admin-token", token,
		"--name", "bench", "-o", "json").Output()
	var key struct{ Key string }
	if err == nil {
		err = json.Unmarshal(out, &key)
	}
	if err == nil && key.Key == "" {
		err = fmt.Errorf("no key in %q", out)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("crosslogic keys create: %w", err)
	}
	h := http.Header{"Authorization": {"Bearer " + key.Key}}
	return &instance{target: target{base: "http://" + addr, header: h}, proc: p,
		pprofAddr: pprofAddr}, nil
}

// nginxConf proxies to one upstream the way nginx's documentation
// recommends for keep-alive upstreams and for SSE: HTTP/1.1 with an
// empty Connection header, an idle pool, and no response buffering.
// keepalive_requests is raised on both sides because its default (1000)
// would close connections that no other contender closes.
var nginxConf = template.Must(template.New("nginx").Parse(`
worker_processes 2;
worker_rlimit_nofile {{.Files}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/nginx-error.log warn;
daemon off;
events {
	worker_connections {{.Files}};
}
http {
	access_log off;
	keepalive_requests 1000000;
	keepalive_timeout 75s;
	client_body_temp_path {{.Dir}}/client_body;
	proxy_temp_path {{.Dir}}/proxy_temp;
	upstream sim {
		server {{.Upstream}};
		keepalive 256;
		keepalive_requests 1000000;
		keepalive_timeout 75s;
	}
	server {
		listen 127.0.0.1:{{.Port}} backlog=4096;
		location / {
			proxy_pass http://sim;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
			proxy_read_timeout 120s;
		}
	}
}
`))

func startNginx(ctx context.Context, _ *env, dir, upstream string) (*instance, error) {
	return startFromTemplate(ctx, dir, upstream, nginxConf, "nginx.conf",
		func(conf string) []string {
			return []string{"nginx", "-e", filepath.Join(dir, "nginx-error.log"),
				"-p", dir, "-c", conf}
		})
}

// haproxyConf is a plain HTTP proxy with two threads, as many
// connections as the open-file limit allows (HAProxy refuses to start
// when maxconn needs more descriptors than it may open), idle connections
// to the upstream shared between clients (http-reuse always, like
// nginx's pool), no logging, and http-no-delay: without it HAProxy may
// hold a chunk back in the kernel to merge it with the next, which is
// right for downloads and wrong for SSE, so it is HAProxy's counterpart
// of nginx's proxy_buffering off.
var haproxyConf = template.Must(template.New("haproxy").Parse(`
global
	maxconn {{.MaxConn}}
	nbthread 2
defaults
	mode http
	maxconn {{.MaxConn}}
	timeout connect 5s
	timeout client 120s
	timeout server 120s
	timeout http-keep-alive 75s
	option http-keep-alive
	option http-no-delay
	http-reuse always
frontend bench
	bind 127.0.0.1:{{.Port}}
	default_backend sim
backend sim
	server sim {{.Upstream}}
`))

func startHAProxy(ctx context.Context, _ *env, dir, upstream string) (*instance, error) {
	return startFromTemplate(ctx, dir, upstream, haproxyConf, "haproxy.cfg",
		func(conf string) []string { return []string{"haproxy", "-db", "-f", conf} })
}

// caddyConf is a reverse proxy with the same idle pool as nginx's and
// flushing after every write (Caddy also does that by itself for
// text/event-stream). Caddy logs no requests unless told to.
var caddyConf = template.Must(template.New("caddy").Parse(`
{
	admin off
	auto_https off
	servers {
		protocols h1
	}
}
http://127.0.0.1:{{.Port}} {
	bind 127.0.0.1
	reverse_proxy {{.Upstream}} {
		flush_interval -1
		transport http {
			keepalive 75s
			keepalive_idle_conns 256
			keepalive_idle_conns_per_host 256
		}
	}
}
`))

func startCaddy(ctx context.Context, _ *env, dir, upstream string) (*instance, error) {
	return startFromTemplate(ctx, dir, upstream, caddyConf, "Caddyfile",
		func(conf string) []string {
			return []string{"caddy", "run", "--adapter", "caddyfile", "--config", conf}
		}, "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
}

// startFromTemplate writes a proxy's config from tmpl and starts it.
func startFromTemplate(ctx context.Context, dir, upstream string, tmpl *template.Template,
	file string, argv func(conf string) []string, env ...string) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// Each proxy may use every descriptor it inherits (nginx: Files per
	// worker), and needs two per proxied connection (HAProxy: MaxConn,
	// or it refuses to start).
	files := fileLimit()
	var b strings.Builder
	err = tmpl.Execute(&b, struct {
		Dir, Upstream        string
		Port, MaxConn, Files int
	}{dir, upstream, port, streamCap(files, 2, 0), int(files)})
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, file)
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	args := argv(conf)
	p, err := startProc(dir, tmpl.Name(), env, args...)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitPort(ctx, p, addr); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w: %s", err, p.logTail(dir))
	}
	return &instance{target: target{base: "http://" + addr, header: http.Header{}}, proc: p}, nil
}

// startPortkey runs the Portkey gateway under node. It has no upstream
// setting of its own: each request names the provider (openai) and the
// simulator as a custom host, and carries a dummy provider key.
// Portkey listens on every interface and takes no option to change
// that; the harness only ever sends to 127.0.0.1.
func startPortkey(ctx context.Context, e *env, dir, upstream string) (*instance, error) {
	if e.portkeyDir == "" {
		return nil, fmt.Errorf("no -portkey directory given")
	}
	script := filepath.Join(e.portkeyDir, "node_modules/@portkey-ai/gateway/build/start-server.js")
	if _, err := os.Stat(script); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// NODE_ENV=production and --headless turn off the console UI and its
	// live log stream; Portkey logs no requests to stdout then.
	p, err := startProc(dir, "portkey", []string{"NODE_ENV=production"},
		e.node, script, "--port="+strconv.Itoa(port), "--headless")
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitPort(ctx, p, addr); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w: %s", err, p.logTail(dir))
	}
	h := http.Header{
		"X-Portkey-Provider":    {"openai"},
		"X-Portkey-Custom-Host": {"http://" + upstream + "/v1"},
		"Authorization":         {"Bearer sk-bench-unused"},
	}
	return &instance{target: target{base: "http://" + addr, header: h}, proc: p}, nil
}

func portkeyVersion(e *env) string {
	read := func(pkg string) string {
		b, err := os.ReadFile(filepath.Join(e.portkeyDir, "node_modules", pkg, "package.json"))
		if err != nil {
			return "?"
		}
		var v struct{ Version string }
		_ = json.Unmarshal(b, &v)
		return v.Version
	}
	return fmt.Sprintf("@portkey-ai/gateway %s (@hono/node-server %s), node %s",
		read("@portkey-ai/gateway"), read("@hono/node-server"),
		firstLine(e.node, "-v"))
}

// waitServing sends small requests until one succeeds: a proxy may
// accept connections before its upstream is usable (CrossLogic's node
// turns ready at its first health check).
func waitServing(ctx context.Context, in *instance) error {
	c := &http.Client{Transport: newTransport()}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	body := chatBody(1, false)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := in.do(rctx, c, body)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not serving after 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firstLine runs a command and returns the first line it prints on
// stdout or stderr (nginx -v prints on stderr).
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
