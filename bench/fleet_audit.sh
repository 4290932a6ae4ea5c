#!/bin/sh
# fleet_audit.sh - time `postern ledger export` and `postern audit
# --verify --fleet` over INSTANCES stores of N delivered records each
# (default 3 x 1,000,000). Run from the build tree after `make`:
#   sh bench/fleet_audit.sh [N] [INSTANCES]
# Prints, per step, the wall time and the peak RSS (GNU time), and the
# size of each export.
set -eu
N=${1:-1000000}
K=${2:-3}
top=$(cd "$(dirname "$0")/.." && pwd)
make -s -C "$top" bench/fill_ledger src/postern
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package time)"; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-fleet.XXXXXX")
trap 'rm -rf "$dir"' EXIT
measure() {
	# measure WHAT CMD...: wall seconds and peak RSS of CMD
	what=$1
	shift
	/usr/bin/time -f "%e %M" -o "$dir/time" "$@"
	read -r secs kib <"$dir/time"
	echo "$what: $secs s, peak RSS $((kib / 1024)) MiB"
}
for i in $(seq 1 "$K"); do
	"$top/bench/fill_ledger" "$dir/s$i" "$N" >/dev/null
	measure "export $i ($N records)" \
		"$top/src/postern" -s "$dir/s$i" ledger export -o "$dir/e$i.jsonl"
	echo "  $(du -h "$dir/e$i.jsonl" | cut -f1) of JSON lines"
done
set +e
measure "audit --verify --fleet ($K x $N records)" \
	"$top/src/postern" audit --verify --fleet "$dir"/e*.jsonl >"$dir/out"
tail -2 "$dir/out"
