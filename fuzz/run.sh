#!/bin/sh
# fuzz/run.sh SECONDS - run every libFuzzer target for SECONDS, two at a
# time (this machine has 2 cores), and print executions and crashes.
#
# Run it from a build tree configured with
#   ./configure CC=clang --enable-fuzzing && make fuzz/fuzz_smtp ...
# (.ci/run does this). New inputs go to fuzz/work/NAME (or, with
# FUZZ_WORK=DIR, to DIR/NAME: a corpus kept across runs and make clean,
# which the next run starts from), crashes to
# fuzz/crashes/NAME (both removed by make clean); the committed seeds in
# SRCDIR/fuzz/corpus/NAME are read, never written. A crash input, once the
# bug is fixed, is committed as fuzz/corpus/NAME/crash-WHAT so that make
# check replays it with fuzz/replay_NAME.
#
# Per push (.ci/run): fuzz/run.sh 40 (5 targets, 2 at a time, 3 rounds:
# about 2 min wall, 2 cores busy).
# Long tier, by hand: fuzz/run.sh 600 (about 30 min wall, 2 cores).
# Exit status: 0 no crash, 1 a target crashed, 2 usage or not built.
set -u
secs=${1:-}
case $secs in
''|*[!0-9]*) echo "usage: fuzz/run.sh SECONDS" >&2; exit 2 ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-fuzz/work}
names="smtp outbound store config ccmail"
for n in $names; do
	[ -x "fuzz/fuzz_$n" ] || {
		echo "fuzz/fuzz_$n not built here: configure CC=clang" \
			"--enable-fuzzing, then make fuzz/fuzz_$n" >&2
		exit 2
	}
done
# GLib (GMime) allocates through malloc, so ASan sees all of it.
G_SLICE=always-malloc
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0}
export G_SLICE ASAN_OPTIONS

run_one() {
	n=$1
	# The smtp target runs the session twice (in chunks and byte by
	# byte): 4 KB inputs run nearly three times as fast as 16 KB ones
	# and still hold several transactions.
	case $n in smtp) max_len=4096 ;; *) max_len=16384 ;; esac
	mkdir -p "$work/$n" "fuzz/crashes/$n"
	"fuzz/fuzz_$n" -max_total_time="$secs" -print_final_stats=1 \
		-timeout=20 -rss_limit_mb=1536 -max_len="$max_len" \
		-artifact_prefix="fuzz/crashes/$n/" \
		"$work/$n" "$src/fuzz/corpus/$n" \
		>"$work/$n.log" 2>&1
}

set -- $names
while [ $# -gt 0 ]; do
	run_one "$1" & p1=$!
	p2=
	if [ $# -gt 1 ]; then run_one "$2" & p2=$!; fi
	wait $p1 || true
	[ -z "$p2" ] || wait $p2 || true
	shift; [ $# -gt 0 ] && shift
done

status=0
total=0
for n in $names; do
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
		"$work/$n.log" | tail -n 1)
	crashes=$(find "fuzz/crashes/$n" -type f | wc -l)
	printf 'fuzz_%-9s %12s executions  %s crashes  %s s\n' "$n" \
		"${execs:-?}" "$crashes" "$secs"
	[ -n "$execs" ] && total=$((total + execs))
	if [ "$crashes" -gt 0 ] || [ -z "$execs" ]; then
		status=1
		grep -m 20 -E 'ERROR|oracle failed|SUMMARY' "$work/$n.log"
		find "fuzz/crashes/$n" -type f
	fi
done
echo "fuzz total: $total executions"
exit $status
