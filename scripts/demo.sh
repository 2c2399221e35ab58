#!/usr/bin/env bash
# The main job on the embedded default (filesystem backend, local key), in a
# throwaway directory: create a mirror, publish a component, install it and
# run it. Usage: scripts/demo.sh [path/to/mirror-binary]
set -euo pipefail
mirror=${1:-mirror}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TIUP_HOME=$work/home
unset TIUP_MIRRORS
cd "$work"
run() { echo "+ mirror $*" >&2; "$mirror" "$@"; }

run init ./m
run set ./m
run genkey
run grant alice --name 'Alice Demo'
mkdir src
printf '#!/bin/sh\necho "hello from a private mirror"\n' > src/hello
chmod +x src/hello
run package hello -C src --name hello --release v0.0.1
tarball=$(ls package/hello-v0.0.1-*.tar.gz)
run publish hello v0.0.1 "$tarball" hello --desc "demo component"
run list
run verify
entry=$(run install hello:v0.0.1)
echo "+ $entry"
"$entry"
