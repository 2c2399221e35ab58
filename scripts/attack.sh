#!/usr/bin/env bash
# make attack: runs the attack and fault suite (internal/attacktest, the
# client side, and internal/faulttest, the repository side, when present)
# under the race detector, collects one result line per case and backend
# in a temporary file (MIRROR_ATTACK_REPORT), and prints the report table,
# which it also writes to OUT (default bin/attack-report.md).
#
# Exits non-zero when a test failed or the table shows a missed
# expectation, a failed recovery, a panic, a torn state or a lost update.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=${1:-bin/attack-report.md}

report=$(mktemp "${TMPDIR:-/tmp}/attack-report.XXXXXX")
trap 'rm -f "$report"' EXIT

pkgs=(./internal/attacktest/)
if [ -d internal/faulttest ]; then
	pkgs+=(./internal/faulttest/)
fi

status=0
MIRROR_ATTACK_REPORT=$report $GO test -race -count=1 -timeout 30m "${pkgs[@]}" || status=$?

mkdir -p "$(dirname "$out")"
$GO run ./internal/attackreport/cmd/attack-report "$report" > "$out"
report_status=$?
cat "$out"
echo
echo "report written to $out"
if [ "$status" -ne 0 ]; then
	echo "attack: go test failed (exit $status)" >&2
	exit "$status"
fi
exit "$report_status"
