#!/usr/bin/env bash
# Load benchmark of `mirror serve` beside Debian's nginx serving the same
# directory, in the same run, on loopback: 64 concurrent connections fetching
# a manifest, then a 50 MiB tarball. Reports requests/s, MB/s, p99 latency and
# errors from wrk. Installs nginx-light and wrk with apt-get when missing.
# Usage: scripts/bench-serve.sh path/to/mirror
set -euo pipefail
mirror=$(realpath "${1:-bin/mirror}")
conns=${BENCH_CONNS:-64}
secs=${BENCH_SECONDS:-10}
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk) >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
export TIUP_HOME=$work/home
unset TIUP_MIRRORS
cd "$work"

"$mirror" init m >/dev/null
"$mirror" set m >/dev/null
"$mirror" genkey >/dev/null
"$mirror" grant bench >/dev/null
mkdir src && head -c $((50 * 1024 * 1024)) /dev/urandom > src/payload
"$mirror" package payload -C src --name big --release v1.0.0 --os linux --arch amd64 >/dev/null
"$mirror" publish big v1.0.0 package/big-v1.0.0-linux-amd64.tar.gz payload --os linux --arch amd64 >/dev/null

# mirror serve on a free port; it prints the address once listening.
"$mirror" serve m --addr 127.0.0.1:0 >serve.out 2>serve.log &
pids+=($!)
for _ in $(seq 50); do grep -q 'Serving' serve.out 2>/dev/null && break; sleep 0.1; done
mirror_url=$(grep -o 'http://[0-9.:]*' serve.out | head -1)

nport=$((20000 + RANDOM % 20000))
cat > nginx.conf <<CONF
user root;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
	access_log $work/nginx-access.log;
	sendfile on;
	tcp_nopush on;
	etag on;
	client_body_temp_path $work/ngx-tmp;
	proxy_temp_path $work/ngx-tmp;
	fastcgi_temp_path $work/ngx-tmp;
	uwsgi_temp_path $work/ngx-tmp;
	scgi_temp_path $work/ngx-tmp;
	server { listen 127.0.0.1:$nport; root $work/m; location /keys/ { return 404; } }
}
CONF
mkdir -p ngx-tmp
"$nginx" -c "$work/nginx.conf"
nginx_url=http://127.0.0.1:$nport

run() { # LABEL URL
	local out
	out=$(wrk -t2 -c"$conns" -d"${secs}s" --timeout 30s --latency "$2" 2>&1)
	local rps mbs p99 errs non2xx
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	mbs=$(awk '/Transfer\/sec/ {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	errs=$(awk '/Socket errors/ {print $0}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	printf '%-34s %10s req/s %10s/s  p99 %8s  errors: %s\n' "$1" "$rps" "$mbs" "$p99" "${errs:-0}${non2xx:+, non-2xx $non2xx}"
}
echo "== $conns connections, ${secs}s each, same machine, same run"
run "nginx     timestamp.json" "$nginx_url/timestamp.json"
run "mirror    timestamp.json" "$mirror_url/timestamp.json"
run "nginx     1.big.json" "$nginx_url/1.big.json"
run "mirror    1.big.json" "$mirror_url/1.big.json"
run "nginx     50 MiB tarball" "$nginx_url/big-v1.0.0-linux-amd64.tar.gz"
run "mirror    50 MiB tarball" "$mirror_url/big-v1.0.0-linux-amd64.tar.gz"
