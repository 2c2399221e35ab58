#!/usr/bin/env bash
# `mirror clone --full` of a generated mirror (20 components x 5 versions x
# 2 platforms, 5 MiB tarballs: 1000 MiB) beside `cp -r` of the same tree in
# the same run: fs to fs, then from `mirror serve` and from python's static
# http.server on loopback. Every clone verifies every tarball. Reports
# seconds and MB/s of tarball bytes.
# Usage: scripts/bench-clone.sh path/to/mirror
set -euo pipefail
mirror=$(realpath "${1:-bin/mirror}")
comps=${BENCH_COMPONENTS:-20}
versions=${BENCH_VERSIONS:-5}
size_mib=${BENCH_TARBALL_MIB:-5}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
export TIUP_HOME=$work/home
unset TIUP_MIRRORS
cd "$work"

# measure LABEL BYTES CMD...: wall seconds and MB/s of CMD. Dirty pages of
# the previous step are flushed first, so no step pays for another's.
measure() {
	local label=$1 bytes=$2
	shift 2
	sync
	python3 - "$label" "$bytes" "$@" <<'PY'
import subprocess, sys, time
label, nbytes, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t = time.monotonic()
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
dt = time.monotonic() - t
print(f"{label:<38} {dt:7.2f} s  {nbytes/1e6/dt:8.1f} MB/s")
PY
}

# wait_port PORT: wait until something listens on the loopback PORT.
wait_port() {
	for _ in $(seq 100); do
		if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "no server on port $1" >&2
	return 1
}

start=$(date +%s)
"$mirror" init m >/dev/null
"$mirror" set m >/dev/null
"$mirror" genkey >/dev/null
"$mirror" grant bench >/dev/null
mkdir -p src
# One package per component and version, published for both platforms:
# packaging (gzip of incompressible bytes) is the slow part.
for c in $(seq -w 1 "$comps"); do
	for v in $(seq 1 "$versions"); do
		head -c $((size_mib * 1024 * 1024)) /dev/urandom >src/payload
		"$mirror" package payload -C src --name "c$c" --release "v1.0.$v" --os linux --arch amd64 >/dev/null
		tb=package/c$c-v1.0.$v-linux-amd64.tar.gz
		for arch in amd64 arm64; do
			"$mirror" publish "c$c" "v1.0.$v" "$tb" payload --os linux --arch "$arch" >/dev/null
		done
		rm -f "$tb"
	done
done
rm -rf src package
bytes=$(find m -name '*.tar.gz' -printf '%s\n' | awk '{s += $1} END {print s}')
tree=$(du -sb m | cut -f1)
echo "generated $((comps * versions * 2)) tarballs, $((bytes / 1048576)) MiB, in $(($(date +%s) - start)) s"

# Every reader starts from a warm page cache, as the first would not.
find m -type f -exec cat {} + >/dev/null

echo "== fs to fs (same tree, same run)"
measure "cp -r" "$tree" cp -r m copy
rm -rf copy
# The clone fsyncs every file it stores; cp -r does not, so a durable cp
# is shown too.
measure "cp -r && sync" "$tree" sh -c 'cp -r m copy && sync'
measure "mirror clone --full" "$bytes" "$mirror" clone c-fs --from m --full
"$mirror" verify c-fs >/dev/null
rm -rf copy c-fs

echo "== over loopback HTTP"
"$mirror" serve m --addr 127.0.0.1:0 >serve.out 2>serve.log &
pids+=($!)
for _ in $(seq 100); do grep -q 'Serving' serve.out 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' serve.out | head -1)
measure "mirror clone from mirror serve" "$bytes" "$mirror" clone c-serve --from "$url" --full
"$mirror" verify c-serve >/dev/null
rm -rf c-serve

port=$((20000 + RANDOM % 20000))
(cd m && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
wait_port "$port"
measure "mirror clone from python http.server" "$bytes" "$mirror" clone c-py --from "http://127.0.0.1:$port" --full
"$mirror" verify c-py >/dev/null
