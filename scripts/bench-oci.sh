#!/usr/bin/env bash
# Publish and install of a 200 MiB incompressible component through a real
# registry (Debian's docker-registry on loopback, oci+http://), beside
# `crane push` and `crane pull` of a blob of the same size in the same run.
# Reports seconds, MB/s and peak RSS of each step, and mirror's throughput
# as a share of crane's (the goal: at least 90%).
# Usage: scripts/bench-oci.sh path/to/mirror
set -euo pipefail
mirror=$(realpath "${1:-bin/mirror}")
size_mib=${BENCH_SIZE_MIB:-200}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
registry_bin=$(command -v docker-registry || echo /usr/bin/docker-registry)
if [ ! -x "$registry_bin" ]; then
	echo "bench-oci: docker-registry is not installed; run 'make deps' (Debian package docker-registry)" >&2
	exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
export TIUP_HOME=$work/home
# An empty Docker config: neither tool borrows the user's credentials.
export DOCKER_CONFIG=$work/docker
unset TIUP_MIRRORS
cd "$work"

# crane from the go-containerregistry version the mirror is built with.
(cd "$repo_root" && go build -o "$work/crane" github.com/google/go-containerregistry/cmd/crane)
crane=$work/crane

# measure LABEL NAME CMD...: wall seconds, MB/s of the payload and peak RSS
# of CMD and its children (plugins included), through GNU time when it is
# there, else python's getrusage; the MB/s is kept in mbps.NAME for the
# ratios. Dirty pages of the previous step are flushed first, so no step
# pays for another's.
measure() {
	local label=$1 name=$2
	shift 2
	sync
	if /usr/bin/time --version 2>&1 | grep -q GNU; then
		local start end secs rss
		start=$(date +%s.%N)
		/usr/bin/time -f '%M' -o time.out "$@" >/dev/null 2>step.log || { cat step.log >&2; exit 1; }
		end=$(date +%s.%N)
		rss=$(tail -1 time.out)
		secs=$(python3 -c "print($end - $start)")
		python3 - "$label" "$size_mib" "$secs" "$rss" <<'PY'
import sys
label, mib, dt, rss = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"{label:<34} {dt:7.2f} s  {mib*1.048576/dt:8.1f} MB/s  peak RSS {rss/1024:7.1f} MiB")
with open("mbps", "w") as f: f.write(f"{mib*1.048576/dt}\n")
PY
	else
		python3 - "$label" "$size_mib" "$@" <<'PY'
import resource, subprocess, sys, time
label, mib, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t = time.monotonic()
with open("step.log", "w") as log:
    if subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=log).returncode != 0:
        sys.exit(open("step.log").read())
dt = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{label:<34} {dt:7.2f} s  {mib*1.048576/dt:8.1f} MB/s  peak RSS {rss:7.1f} MiB")
with open("mbps", "w") as f: f.write(f"{mib*1.048576/dt}\n")
PY
	fi
	mv mbps "mbps.$name"
}

# ratio NAME_A NAME_B LABEL: mirror's MB/s as a share of crane's.
ratio() {
	python3 -c "import sys; a, b = float(open(sys.argv[1]).read()), float(open(sys.argv[2]).read()); print(f'{sys.argv[3]:<34} {100*a/b:6.1f} % of crane')" "$1" "$2" "$3"
}

# The registry: its own port and storage, as internal/testregistry runs it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >registry.yml <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host
  secret: bench-$RANDOM$RANDOM
EOF
env -i PATH=/usr/bin:/bin "$registry_bin" serve registry.yml >registry.log 2>&1 &
pids+=($!)
up=0
for _ in $(seq 100); do
	up=$(python3 -c "import urllib.request
try: urllib.request.urlopen('http://$host/v2/', timeout=1); print(1)
except Exception: print(0)")
	[ "$up" = 1 ] && break
	sleep 0.1
done
[ "$up" = 1 ] || { echo "bench-oci: the registry did not start:" >&2; cat registry.log >&2; exit 1; }

# Two payloads of the same size, so the registry cannot answer one upload
# with a blob it already has.
mkdir -p src crane-src
head -c $((size_mib * 1024 * 1024)) /dev/urandom >src/payload
head -c $((size_mib * 1024 * 1024)) /dev/urandom >crane-src/payload
printf '#!/bin/sh\necho ok\n' >src/run && chmod +x src/run
cp src/run crane-src/run
addr=oci+http://$host/bench/m
"$mirror" init "$addr" -k keys >/dev/null
"$mirror" set "$addr" >/dev/null
"$mirror" genkey >/dev/null
"$mirror" grant bench >/dev/null
"$mirror" package run payload -C src --name big --release v1.0.0 --os linux --arch amd64 >/dev/null
"$mirror" package run payload -C crane-src --name cranebig --release v1.0.0 --os linux --arch amd64 >/dev/null
mkdir -p tiny-src && cp src/run tiny-src/run
"$mirror" package run -C tiny-src --name tiny --release v1.0.0 --os linux --arch amd64 >/dev/null
tiny=package/tiny-v1.0.0-linux-amd64.tar.gz
tarball=package/big-v1.0.0-linux-amd64.tar.gz
crane_blob=package/cranebig-v1.0.0-linux-amd64.tar.gz
ls -l "$tarball" | awk '{printf "tarball: %.1f MiB, registry %s\n", $5/1048576, "'"$("$registry_bin" --version | awk '{print $NF}')"'"}'

# crane's side: an OCI layout holding the other tarball as the one layer
# of an artifact, so `crane push` only uploads (its digest is known).
python3 - "$crane_blob" <<'PY'
import hashlib, json, os, sys
blob = sys.argv[1]
def put(data_or_path, is_path=False):
    h = hashlib.sha256()
    if is_path:
        with open(data_or_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size = os.path.getsize(data_or_path)
    else:
        h.update(data_or_path)
        size = len(data_or_path)
    d = h.hexdigest()
    dst = f"layout/blobs/sha256/{d}"
    if is_path:
        os.link(data_or_path, dst)
    else:
        open(dst, "wb").write(data_or_path)
    return {"digest": "sha256:" + d, "size": size}
os.makedirs("layout/blobs/sha256")
open("layout/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
layer = dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **put(blob, True))
config = dict(mediaType="application/vnd.oci.empty.v1+json", **put(b"{}"))
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "artifactType": "application/vnd.mirrorkit.bench", "config": config, "layers": [layer]}).encode()
mdesc = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **put(man))
json.dump({"schemaVersion": 2, "manifests": [mdesc]}, open("layout/index.json", "w"))
open("layer.digest", "w").write(layer["digest"])
PY
cref=$host/bench/crane:v1

echo "== publish vs crane push (same size, same run)"
measure "crane push (OCI layout)" push_crane "$crane" push --insecure layout "$cref"
measure "mirror publish (oci+http)" push_mirror "$mirror" publish big v1.0.0 "$tarball" run --os linux --arch amd64
# What a publish costs whatever its size: plugin start-up, the writer's
# lease, signing, and the manifests committed after the tarball.
python3 - "$mirror" "$tiny" <<'PY'
import subprocess, sys, time
mirror, tiny = sys.argv[1], sys.argv[2]
t = time.monotonic()
subprocess.run([mirror, "publish", "tiny", "v1.0.0", tiny, "run", "--os", "linux", "--arch", "amd64"], check=True, stdout=subprocess.DEVNULL)
print(f"{'mirror publish of a tiny tarball':<34} {time.monotonic() - t:7.2f} s  (fixed cost of any publish)")
PY
echo "== install vs crane pull"
measure "crane pull --format oci" pull_crane "$crane" pull --insecure --format oci "$cref" pulled
mkdir -p untar
measure "crane blob | tar xzf" pull_crane_untar sh -c "'$crane' blob --insecure '$cref@$(cat layer.digest)' | tar xzf - -C untar"
measure "mirror install (oci+http)" pull_mirror "$mirror" install big:v1.0.0 --os linux --arch amd64
echo "== mirror as a share of crane (goal: at least 90%)"
ratio mbps.push_mirror mbps.push_crane "publish / crane push"
ratio mbps.pull_mirror mbps.pull_crane "install / crane pull"
ratio mbps.pull_mirror mbps.pull_crane_untar "install / crane blob | tar xzf"
