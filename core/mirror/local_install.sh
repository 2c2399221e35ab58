#!/bin/sh
# Offline installer of a mirror made by `mirror clone`. Copy the whole clone
# to the offline machine and run this script from anywhere: it trusts the
# clone's root.json, forgets manifests cached from another mirror, installs
# the tiup binary the clone carries for this platform (if any) and points
# tiup at the clone. TIUP_HOME defaults to ~/.tiup, as tiup's does.
set -eu

dir=$(cd "$(dirname "$0")" && pwd -P)
home=${TIUP_HOME:-${HOME:?HOME or TIUP_HOME must be set}/.tiup}

if [ ! -f "$dir/root.json" ]; then
	echo "local_install.sh: $dir has no root.json; run the script that came with the clone" >&2
	exit 1
fi

os=$(uname -s | tr '[:upper:]' '[:lower:]')
case $(uname -m) in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac

mkdir -p "$home/bin"
# Copy through a temporary name so that an interrupted run never leaves a
# half-written trust anchor behind.
cp "$dir/root.json" "$home/bin/root.json.tmp.$$"
mv -f "$home/bin/root.json.tmp.$$" "$home/bin/root.json"
# Manifests cached from another mirror would not verify against this root.
rm -rf "$home/manifests"

tarball="$dir/tiup-$os-$arch.tar.gz"
if [ -f "$tarball" ]; then
	tar -xzf "$tarball" -C "$home/bin"
	echo "Installed tiup from $tarball into $home/bin"
fi

tiup=""
if [ -x "$home/bin/tiup" ]; then
	tiup="$home/bin/tiup"
elif command -v tiup >/dev/null 2>&1; then
	tiup=$(command -v tiup)
fi
if [ -n "$tiup" ]; then
	TIUP_HOME="$home" "$tiup" mirror set "$dir"
	case ":$PATH:" in
	*":$home/bin:"*) ;;
	*) echo "Add $home/bin to PATH to run tiup: export PATH=\"$home/bin:\$PATH\"" ;;
	esac
else
	echo "Trusted $dir/root.json in $home/bin/root.json."
	echo "No tiup was found. With the mirror tool, run:"
	echo "  TIUP_HOME=\"$home\" mirror set \"$dir\""
	echo "or, once tiup is installed:"
	echo "  tiup mirror set \"$dir\""
fi
