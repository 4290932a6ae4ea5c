#!/bin/sh
# verify.sh - time `postern audit --verify` over a ledger of N records
# (default 1,000,000). Run from the build tree after `make`:
#   sh bench/verify.sh [N]
# Prints the time to fill the store and the time verify reports.
set -eu
N=${1:-1000000}
top=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$top" bench/fill_ledger src/postern
dir=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-verify.XXXXXX")
trap 'rm -rf "$dir"' EXIT
start=$(date +%s.%N)
"$top/bench/fill_ledger" "$dir/store" "$N"
end=$(date +%s.%N)
echo "fill: $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
du -sh "$dir/store"
"$top/src/postern" -s "$dir/store" audit --verify
