#!/usr/bin/env bash
# Runs the proxy benchmark from scratch: installs what it needs, builds
# crosslogic and the load generator, runs every contender on loopback and
# writes bench/results/ and the generated section of docs/benchmarks.md.
#
#   bash bench/run.sh               the whole run (10 to 15 minutes)
#   bash bench/run.sh --profile     CrossLogic with pprof, next to direct
#                                   and nginx; profiles in
#                                   bench/.cache/profile/profiles/, and
#                                   docs/benchmarks.md is left alone
#   bash bench/run.sh -only direct,crosslogic -step 5s
#                                   any other arguments go to proxybench
#                                   (go run ./bench/cmd/proxybench -h)
#
# Needs: Go, and root for apt-get when nginx, HAProxy, Caddy, gnuplot or
# node are missing. Tools are installed from Debian's packages and npm
# only; nothing else is downloaded.
set -euo pipefail

cd "$(dirname "$0")/.."
cache=bench/.cache

# Portkey's gateway, pinned so that runs compare. Its dependency range
# lets npm pick @hono/node-server 1.14 or later, whose Response shim
# hands Portkey the upstream's immutable headers: every streamed answer
# then fails with "TypeError: immutable" and a 500. 1.13.8 is the last
# release without that behaviour, so npm is told to use it.
portkey_version=1.15.2
hono_node_server_version=1.13.8

profile=false
if [[ "${1:-}" == "--profile" ]]; then
	profile=true
	shift
fi

# 1. Debian packages: the proxies, gnuplot for the plots, node for
# Portkey. They run as this script's children with their own configs;
# the system services are not used.
missing=()
for tool in nginx:nginx haproxy:haproxy caddy:caddy gnuplot:gnuplot-nox node:nodejs npm:npm; do
	command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
	echo "run.sh: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi

# 2. Portkey from npm, into bench/.cache/portkey.
pk=$cache/portkey
pk_pkg=$pk/node_modules/@portkey-ai/gateway/package.json
if ! grep -qs "\"version\": \"$portkey_version\"" "$pk_pkg"; then
	echo "run.sh: installing @portkey-ai/gateway@$portkey_version" >&2
	mkdir -p "$pk"
	cat >"$pk/package.json" <<EOF
{
  "private": true,
  "dependencies": {"@portkey-ai/gateway": "$portkey_version"},
  "overrides": {"@hono/node-server": "$hono_node_server_version"}
}
EOF
	(cd "$pk" && npm install --no-audit --no-fund --loglevel=error)
fi

# 3. Build.
mkdir -p "$cache/bin"
version=$(git describe --always --dirty 2>/dev/null || echo dev)
go build -ldflags "-X main.version=$version" -o "$cache/bin/crosslogic" ./cmd/crosslogic
go build -o "$cache/bin/proxybench" ./bench/cmd/proxybench

# 4. Open files: a proxy holds a socket or two per stream. proxybench
# runs each contender at what the limit allows it and says so.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

args=(-crosslogic "$cache/bin/crosslogic" -portkey "$pk" -work "$cache/run")
if $profile; then
	rm -rf "$cache/profile"
	go build -o "$cache/bin/gatewayprof" ./bench/cmd/gatewayprof
	args+=(-pprof-server "$cache/bin/gatewayprof" -only direct,crosslogic,nginx
		-out "$cache/profile" -doc "" -command "bash bench/run.sh --profile${*:+ $*}")
else
	args+=(-out bench/results -doc docs/benchmarks.md -command "bash bench/run.sh${*:+ $*}")
fi
exec "$cache/bin/proxybench" "${args[@]}" "$@"
