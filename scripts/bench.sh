#!/usr/bin/env bash
# Publish and install of a 200 MiB component on the fs backend, beside cp and
# tar xzf of the same file in the same run. Reports seconds, MB/s and peak
# RSS (from getrusage of each child). Usage: scripts/bench.sh path/to/mirror
set -euo pipefail
mirror=$(realpath "${1:-bin/mirror}")
size_mib=${BENCH_SIZE_MIB:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TIUP_HOME=$work/home
unset TIUP_MIRRORS
cd "$work"

# measure LABEL CMD...: wall seconds and peak RSS of CMD, via python's
# resource module (no GNU time on a fresh machine).
measure() {
	local label=$1
	shift
	python3 - "$label" "$size_mib" "$@" <<'PY'
import resource, subprocess, sys, time
label, mib, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t = time.monotonic()
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
dt = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{label:<28} {dt:7.2f} s  {mib*1.048576/dt:8.1f} MB/s  peak RSS {rss:7.1f} MiB")
PY
}

mkdir -p src
# Incompressible payload, so gzip does real work and sizes are honest.
head -c $((size_mib * 1024 * 1024)) /dev/urandom > src/payload
printf '#!/bin/sh\necho ok\n' > src/run && chmod +x src/run
"$mirror" init m >/dev/null
"$mirror" set m >/dev/null
"$mirror" genkey >/dev/null
"$mirror" grant bench >/dev/null
"$mirror" package run payload -C src --name big --release v1.0.0 --os linux --arch amd64 >/dev/null
tarball=package/big-v1.0.0-linux-amd64.tar.gz
ls -l "$tarball" | awk '{printf "tarball: %.1f MiB\n", $5/1048576}'

echo "== publish vs cp (same file, same run)"
measure "cp tarball" cp "$tarball" copy.tar.gz
measure "mirror publish" "$mirror" publish big v1.0.0 "$tarball" run --os linux --arch amd64
echo "== install vs tar xzf"
mkdir -p untar
measure "tar xzf" tar xzf "$tarball" -C untar
measure "mirror install" "$mirror" install big:v1.0.0 --os linux --arch amd64
