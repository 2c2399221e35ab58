#!/usr/bin/env bash
# `mirror clone --full` of a generated mirror (20 components x 5 versions x
# 2 platforms, 5 MiB tarballs: 1000 MiB) beside `cp -r` of the same tree in
# the same run: fs to fs, then from `mirror serve` and from python's static
# http.server on loopback. Every clone verifies every tarball. Reports, for
# each step, the best wall time of the runs, its MB/s of tarball bytes, and
# the CPU seconds (user+sys, plugins included) of that run.
# Usage: scripts/bench-clone.sh path/to/mirror
# Environment: BENCH_COMPONENTS, BENCH_VERSIONS, BENCH_TARBALL_MIB shape the
# generated mirror; BENCH_RUNS (default 3) is how many times each step runs,
# interleaved, so that a busy machine slows all steps alike; BENCH_KEEP=DIR
# keeps the generated mirror in DIR and reuses it on later runs with the
# same shape (generating it takes minutes); BENCH_ONLY=fs or BENCH_ONLY=http
# runs only that half.
set -euo pipefail
mirror=$(realpath "${1:-bin/mirror}")
comps=${BENCH_COMPONENTS:-20}
versions=${BENCH_VERSIONS:-5}
size_mib=${BENCH_TARBALL_MIB:-5}
runs=${BENCH_RUNS:-3}
keep=${BENCH_KEEP:-}
only=${BENCH_ONLY:-}
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

# measure LABEL BYTES OUT CMD...: runs CMD, which writes the directory OUT,
# and records its wall and CPU seconds in results. Dirty pages of the
# previous step are flushed first, so no step pays for another's, and OUT is
# removed afterwards, so every step writes into page-cache pages freed by
# the one before: on a virtual machine a page touched for the first time
# costs several times more (the host faults it in), which would otherwise
# favour whichever step happens to run later.
measure() {
	local label=$1 bytes=$2 out=$3
	shift 3
	sync
	python3 - "$label" "$bytes" "$@" >>results <<'PY'
import resource, subprocess, sys, time
label, nbytes, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t = time.monotonic()
p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if p.returncode != 0:
    sys.exit(f"{label}: exit {p.returncode}: {p.stderr.decode(errors='replace').strip()}")
dt = time.monotonic() - t
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{label}\t{nbytes}\t{dt:.3f}\t{cpu:.2f}")
PY
	if [ -n "$out" ]; then
		rm -rf "$out"
	fi
}

# report: the best run of each step, in the order the steps first ran.
report() {
	python3 - results <<'PY'
import sys
rows, order = {}, []
for line in open(sys.argv[1]):
    label, nbytes, dt, cpu = line.rstrip("\n").split("\t")
    if label not in rows:
        order.append(label)
    rows.setdefault(label, []).append((float(dt), float(cpu), int(nbytes)))
for label in order:
    runs = sorted(rows[label])
    dt, cpu, nbytes = runs[0]
    all_ = " ".join(f"{r[0]:.2f}" for r in rows[label])
    print(f"{label:<38} {dt:7.2f} s  {nbytes/1e6/dt:8.1f} MB/s  cpu {cpu:5.2f} s   runs: {all_}")
PY
	: >results
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

shape="$comps x $versions x 2 x $size_mib MiB"
if [ -n "$keep" ] && [ "$(cat "$keep/shape" 2>/dev/null)" = "$shape" ]; then
	ln -s "$(realpath "$keep/m")" m
	echo "reusing the mirror in $keep ($shape)"
else
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
	echo "generated $((comps * versions * 2)) tarballs in $(($(date +%s) - start)) s"
	if [ -n "$keep" ]; then
		rm -rf "$keep"
		mkdir -p "$keep"
		mv m "$keep/m"
		echo "$shape" >"$keep/shape"
		ln -s "$(realpath "$keep/m")" m
	fi
fi
bytes=$(find -L m -name '*.tar.gz' -printf '%s\n' | awk '{s += $1} END {print s}')
tree=$(du -sbL m | cut -f1)
echo "$((comps * versions * 2)) tarballs, $((bytes / 1048576)) MiB"

# Every reader starts from a warm page cache, as the first would not, and
# the copy below, untimed, leaves a tree's worth of recycled pages to write
# into (see measure).
find -L m -type f -exec cat {} + >/dev/null
cp -rL m warm
rm -rf warm
: >results

if [ "$only" != http ]; then
	echo "== fs to fs (same tree, same run; best of $runs)"
	for _ in $(seq "$runs"); do
		measure "cp -r" "$tree" copy cp -rL m copy
		# The clone fsyncs every file it stores; cp -r does not, so a
		# durable cp is shown too.
		measure "cp -r && sync" "$tree" copy sh -c 'cp -rL m copy && sync'
		measure "mirror clone --full" "$bytes" "" "$mirror" clone c-fs --from m --full
		"$mirror" verify c-fs >/dev/null
		rm -rf c-fs
	done
	report
fi
[ "$only" = fs ] && exit 0

echo "== over loopback HTTP (best of $runs; the server's CPU is not counted)"
"$mirror" serve m --addr 127.0.0.1:0 >serve.out 2>serve.log &
pids+=($!)
for _ in $(seq 100); do grep -q 'Serving' serve.out 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' serve.out | head -1)
port=$((20000 + RANDOM % 20000))
(cd m && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
wait_port "$port"
for _ in $(seq "$runs"); do
	measure "mirror clone from mirror serve" "$bytes" "" "$mirror" clone c-serve --from "$url" --full
	"$mirror" verify c-serve >/dev/null
	rm -rf c-serve
	measure "mirror clone from python http.server" "$bytes" "" "$mirror" clone c-py --from "http://127.0.0.1:$port" --full
	"$mirror" verify c-py >/dev/null
	rm -rf c-py
done
report
