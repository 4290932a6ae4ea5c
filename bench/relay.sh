#!/bin/bash
# relay.sh - postern against Postfix as a relay, on loopback, in one run.
#
#   A:  smtp-source -> Postfix (a private instance) -> smtp-sink
#   B:  smtp-source -> posternd (driver = smtp)    -> smtp-sink
#   B0: B with [ingress] resubmit_window = 0 (the resubmission index off;
#       B runs with the default, 5d: on)
#   H:  smtp-source -----------------------------> smtp-sink (the harness
#       alone: no relay, the most these tools carry on this machine)
#   C:  smtp-source -> posternd (driver = maildir)
#
# Run as root from the build tree after `make`:  bash bench/relay.sh
# Knobs (environment):
#   MSGS=20000        messages per run
#   SIZES="4096 65536" message sizes (smtp-source -l)
#   PAIRS=3           rounds per size, each A B [B0] [H]: run alternately
#                     (A B B0 H A B0 B H ...: B and B0 swap places every
#                     other round)
#   HARNESS=1         also run H each round (0: no)
#   RESUBMIT=1        also run B0 each round (0: no). Skipped, with a line
#                     that says why, when `posternd -n` refuses the key
#                     (a posternd from before resubmit_window)
#   SESSIONS=20       smtp-source sessions; PER_CONN=1 messages a session
#   WORKERS=16 BATCH=16  posternd [workers]
#   GROUP_WAIT=3ms    posternd [store] group_wait (its one group commit)
#   WINDOW=message    [workers] in_doubt_window (message or batch)
#   FSYNC_MSGS=2000   messages of the strace pass that counts fsyncs
#   LAT_SECS=10       seconds of the half-rate latency pass (0: none)
#   MAILDIR=1         also run C (0: no)
#   SYSCALLS=1        the strace pass counts every system call and prints
#                     those made 0.1 times a message or more
#   PROFILE=/tmp/p    also `perf record -g` posternd in each run, into
#                     /tmp/p.<kind>.<size> (see `perf report -i`)
# A quick run: MSGS=2000 PAIRS=1 SIZES=4096 FSYNC_MSGS=500 LAT_SECS=3
#
# Per run it prints messages/s (first message offered to last one at
# the sink), CPU s per 1,000 messages (user+sys of every process of the
# relay: a cpuacct cgroup made for it), peak RSS (the largest sum of
# Pss of the relay's processes, sampled every 0.2 s), accept->delivered
# latency p50/p99 (postern: its ledger; Postfix: delay= of its log).
# H has no relay: its CPU and Pss are those of smtp-source + smtp-sink
# (a cgroup of their own, which they are in during every run), and it
# has no latency or fsyncs.
# The summary prints the medians per relay and size, then per size:
#   ratio postern/Postfix: B's msg/s over A's, and CPU a message;
#   share of the harness alone: B's (and C's, A's) msg/s in percent of
#     H's. B's share is the figure to raise: 100 % would be a relay that
#     costs the harness nothing;
#   index cost: what the resubmission index costs B, from the medians of
#     B and B0: "X % of msg/s" is (B0 - B) / B0 of the messages/s, "Y %
#     CPU/msg" is (B - B0) / B0 of the CPU a message. A negative figure
#     (B did better than B0) is noise; with PAIRS=1 either is mostly noise.
# fsyncs per message come from a separate pass under strace -f -c
# (fsync, fdatasync, msync, sync_file_range), which slows the relay;
# the latency pass offers half of posternd's best 4 KiB rate in 0.1 s
# slices. posternd's fsyncs are also counted during each run by perf
# (tracepoints syscalls:sys_enter_fsync/fdatasync), which does not slow
# it down. Every figure is with durability as shipped: Postfix fsyncs its
# queue file before 250; posternd commits (fdatasync) before 250 and
# before a delivery counts.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
POSTERND=${POSTERND:-$TOP/src/posternd}
POSTERN=${POSTERN:-$TOP/src/postern}
PYTHON=${PYTHON:-python3}
MSGS=${MSGS:-20000}
SIZES=${SIZES:-"4096 65536"}
PAIRS=${PAIRS:-3}
SESSIONS=${SESSIONS:-20}
PER_CONN=${PER_CONN:-1}
WORKERS=${WORKERS:-16}
BATCH=${BATCH:-16}
WINDOW=${WINDOW:-message}
GROUP_WAIT=${GROUP_WAIT:-3ms}
FSYNC_MSGS=${FSYNC_MSGS:-2000}
LAT_SECS=${LAT_SECS:-10}
MAILDIR=${MAILDIR:-1}
HARNESS=${HARNESS:-1}
RESUBMIT=${RESUBMIT:-1}
PROFILE=${PROFILE:-}
SYSCALLS=${SYSCALLS:-}
TRACE="-e trace=fsync,fdatasync,msync,sync_file_range"
[ -n "$SYSCALLS" ] && TRACE=""

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "run as root (cgroups, a private Postfix)"
[ -x "$POSTERND" ] || fail "no $POSTERND: run make first"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SINK" ] && [ -x "$SOURCE" ] || skip "smtp-sink/smtp-source not found"
command -v strace >/dev/null || skip "strace not found"
# perf counts posternd's fsyncs at full load, without slowing it down
PERF=$(command -v perf)
[ -n "$PERF" ] && ! "$PERF" stat -e syscalls:sys_enter_fdatasync true \
	>/dev/null 2>&1 && PERF=""
CGROOT=/sys/fs/cgroup/cpuacct
[ -d /sys/fs/cgroup/cpu,cpuacct ] && CGROOT=/sys/fs/cgroup/cpu,cpuacct
[ -w "$CGROOT" ] || skip "no writable cpuacct cgroup at $CGROOT"

# sh -c "$CG_EXEC" - CG CMD...: CMD in cgroup CG (exec: $! is CMD's pid)
# shellcheck disable=SC2016
CG_EXEC='echo $$ >"$1/cgroup.procs"; shift; exec "$@"'

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench.XXXXXX") || fail "mktemp"
chmod 755 "$WORK"
PIDS=""
CGS=""

# tests/integration/postfix.sh calls cleanup from its EXIT trap.
cleanup() {
	local p cg
	[ -n "${POSTFIX_DIRS:-}" ] && postfix_cleanup && sleep 1
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	for cg in $CGS; do
		for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do
			echo "$p" >"$CGROOT/cgroup.procs" 2>/dev/null
		done
		for p in 1 2 3 4 5; do
			rmdir "$cg" 2>/dev/null && break
			sleep 1
		done
	done
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
HERE=$TOP/tests/integration
. "$HERE/postfix.sh"

. "$HERE/free_port.sh"

wait_port() {
	local i
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

now() { date +%s.%N; }

# --- cgroups: one per relay, for CPU and the set of its processes --------------
# cg_new NAME: make it; CG is its path (not in $(...): CGS must stay set)
cg_new() {
	CG=$CGROOT/postern-bench-$$-$1
	mkdir "$CG" || fail "mkdir $CG"
	CGS="$CGS $CG"
}
# cg_cpu CG: user+sys nanoseconds so far
cg_cpu() { cat "$1/cpuacct.usage"; }
# cg_rss CG: sum of the proportional set sizes (Pss, KiB) of its
# processes: shared library pages are counted once, not per process.
cg_rss() {
	local p s=0 r
	for p in $(cat "$1/cgroup.procs"); do
		r=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
		s=$((s + ${r:-0}))
	done
	echo "$s"
}
# rss_sampler CG OUT: write the largest cg_rss to OUT until killed
rss_sampler() {
	local max=0 r
	while :; do
		r=$(cg_rss "$1")
		[ "$r" -gt "$max" ] && max=$r && echo "$max" >"$2"
		sleep 0.2
	done
}

# --- the sink ------------------------------------------------------------------
# smtp-sink and smtp-source run in a cgroup of their own: H's CPU and Pss
cg_new harness
HN_CG=$CG
SINK_PID=""
start_sink() {
	SINK_OUT=$WORK/sink.$1.out
	sh -c "$CG_EXEC" - "$HN_CG" \
		"$SINK" -u nobody -c "127.0.0.1:$SPORT" 256 >"$SINK_OUT" 2>&1 &
	SINK_PID=$!
	PIDS="$PIDS $SINK_PID"
	wait_port "$SPORT" || fail "smtp-sink did not listen on $SPORT"
}
stop_sink() {
	kill "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
}
sink_count() {
	local n
	n=$(tail -c 200 "$SINK_OUT" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' |
		tail -1 | cut -d= -f2)
	echo "${n:-0}"
}
# wait_sink N SECS
wait_sink() {
	local i
	for i in $(seq 1 $(($2 * 20))); do
		[ "$(sink_count)" -ge "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# --- Postfix ---------------------------------------------------------------------
PFDIR=$WORK/postfix
cg_new postfix
PF_CG=$CG
SPORT=$(free_port)
PFPORT=$(free_port)
start_postfix() {
	(
		echo "$BASHPID" >"$PF_CG/cgroup.procs"
		postfix_start "$PFDIR" "$PFPORT" "smtp:[127.0.0.1]:$SPORT" ||
			exit 1
		trap - EXIT	# postfix_start's trap: not when this subshell ends
	) || fail "Postfix did not start"
	POSTFIX_DIRS="$PFDIR"
}
start_postfix

# --- posternd ----------------------------------------------------------------
cg_new postern
PN_CG=$CG
PN_PID=""
# postern_conf NAME DRIVER [RESUBMIT_WINDOW]: write $WORK/NAME.conf (PN_CONF)
# for a fresh store under $WORK/NAME; [ingress] resubmit_window only when
# given (the default otherwise)
postern_conf() {
	local dir=$WORK/$1 conf=$WORK/$1.conf rw=""
	[ -n "${3:-}" ] && rw="resubmit_window = $3"
	rm -rf "$dir"
	mkdir -p "$dir/maildir"
	PNPORT=$(free_port)
	cat >"$conf" <<EOF
[store]
path = $dir/store
group_wait = $GROUP_WAIT
[ingress]
listen = 127.0.0.1:$PNPORT
accept_domains = foreign.example
hostname = bench.postern.invalid
max_sessions = 100
max_sessions_per_ip = 100
$rw
[workers]
count = $WORKERS
batch = $BATCH
in_doubt_window = $WINDOW
[foreign]
driver = $2
[smtp]
relay = 127.0.0.1:$SPORT
tls = none
[maildir]
root = $dir/maildir
EOF
	PN_CONF=$conf
	PN_LOG=$WORK/$1.log
	PN_STORE=$dir/store
	PN_MAILDIR=$dir/maildir
}
# start_postern NAME DRIVER [RESUBMIT_WINDOW]: posternd on postern_conf's
start_postern() {
	postern_conf "$@"
	sh -c "$CG_EXEC" - "$PN_CG" \
		"$POSTERND" -f -c "$PN_CONF" >"$PN_LOG" 2>&1 &
	PN_PID=$!
	PIDS="$PIDS $PN_PID"
	wait_port "$PNPORT" || fail "posternd did not start: $(tail -3 "$PN_LOG")"
}
stop_postern() {
	kill -TERM "$PN_PID" 2>/dev/null
	wait "$PN_PID" 2>/dev/null
}
maildir_count() {
	find "$PN_MAILDIR" -path '*/new/*' -type f 2>/dev/null | wc -l
}

# --- one measured run ---------------------------------------------------------
# source PORT SIZE N
source_msgs() {
	sh -c "$CG_EXEC" - "$HN_CG" \
		"$SOURCE" -s "$SESSIONS" -C "$PER_CONN" -m "$3" -l "$2" \
		-f a@home.example -t b@foreign.example "127.0.0.1:$1" \
		>>"$WORK/source.out" 2>&1
}

# percentiles FILE: "p50 p99" in ms of the numbers (seconds) in FILE
percentiles() {
	sort -g "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- -"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf "%.0f %.0f\n", v[i50] * 1000, v[i99] * 1000 }'
}

# ledger_delays STORE OUT: accept->done seconds per ledger record
ledger_delays() {
	"$POSTERN" -s "$1" audit --json | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r.get("kind") == "delivered":
        print((r["done_us"] - r["accepted_us"]) / 1e6)' >"$2"
}

RESULTS=$WORK/results
: >"$RESULTS"

# measure KIND SIZE: one run; appends "KIND SIZE rate cpu rss p50 p99"
# The relay's bookkeeping after the last delivery counts too: wait (up to
# 10 s) for the private Postfix's queue to empty.
postfix_settle() {
	local i
	for i in $(seq 1 100); do
		postfix_queue_empty "$PFDIR" && return
		sleep 0.1
	done
}

# KIND: postfix (A), postern (B), postern0 (B0), harness (H), maildir (C)
measure() {
	local kind=$1 size=$2 cg t0 t1 c0 c1 rss_pid n dl lat fs perf_pid pn=""
	: >"$WORK/rss"
	case $kind in
	harness)
		cg=$HN_CG
		start_sink "$kind.$size"
		port=$SPORT ;;
	postfix)
		cg=$PF_CG
		start_sink "$kind.$size"
		: >"$PFDIR/maillog"
		port=$PFPORT ;;
	postern)
		cg=$PN_CG pn=1
		start_sink "$kind.$size"
		start_postern "run" smtp
		port=$PNPORT ;;
	postern0)
		cg=$PN_CG pn=1
		start_sink "$kind.$size"
		start_postern "run" smtp 0
		port=$PNPORT ;;
	maildir)
		cg=$PN_CG pn=1
		start_postern "run" maildir
		port=$PNPORT ;;
	esac
	perf_pid=""
	if [ -n "$pn" ] && [ -n "$PERF" ]; then
		"$PERF" stat -x, -o "$WORK/perf.stat" -p "$PN_PID" -e \
			syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync \
			2>/dev/null &
		perf_pid=$!
		PIDS="$PIDS $perf_pid"
		if [ -n "$PROFILE" ]; then
			"$PERF" record -q -g -p "$PN_PID" \
				-o "$PROFILE.$kind.$size" 2>/dev/null &
			perf_pid="$perf_pid $!"
			PIDS="$PIDS $!"
		fi
		sleep 0.3
	fi
	rss_sampler "$cg" "$WORK/rss" &
	rss_pid=$!
	PIDS="$PIDS $rss_pid"
	c0=$(cg_cpu "$cg")
	t0=$(now)
	source_msgs "$port" "$size" "$MSGS" ||
		fail "$kind: smtp-source: $(tail -3 "$WORK/source.out")"
	if [ "$kind" = maildir ]; then
		for i in $(seq 1 6000); do
			[ "$(maildir_count)" -ge "$MSGS" ] && break
			sleep 0.1
		done
		n=$(maildir_count)
	else
		wait_sink "$MSGS" 600
		n=$(sink_count)
	fi
	t1=$(now)
	[ "$n" -ge "$MSGS" ] || fail "$kind $size: $n of $MSGS delivered"
	[ "$kind" = postfix ] && postfix_settle
	sleep 0.5
	c1=$(cg_cpu "$cg")
	kill "$rss_pid"
	wait "$rss_pid" 2>/dev/null
	fs=-
	if [ -n "$perf_pid" ]; then
		kill -INT $perf_pid
		wait $perf_pid 2>/dev/null
		fs=$(awk -F, -v m="$MSGS" '/sys_enter_f/ { s += $1 }
			END { printf "%.3f", s / m }' "$WORK/perf.stat")
	fi
	dl=$WORK/delays
	if [ "$kind" = postfix ]; then
		grep 'status=sent' "$PFDIR/maillog" |
			grep -o ' delay=[0-9.]*' | cut -d= -f2 >"$dl"
		stop_sink
	elif [ -z "$pn" ]; then
		: >"$dl"	# the harness alone: no relay, no latency
		stop_sink
	else
		stop_postern
		[ "$kind" != maildir ] && stop_sink
		ledger_delays "$PN_STORE" "$dl"
	fi
	lat=$(percentiles "$dl")
	awk -v k="$kind" -v s="$size" -v n="$MSGS" -v t0="$t0" -v t1="$t1" \
		-v c0="$c0" -v c1="$c1" -v rss="$(cat "$WORK/rss")" \
		-v lat="$lat" -v fs="$fs" 'BEGIN {
		split(lat, l, " ")
		printf "%s %s %.0f %.3f %.1f %s %s %s\n", k, s, n / (t1 - t0),
			(c1 - c0) / 1e9 / n * 1000, rss / 1024, l[1], l[2], fs }' |
		tee -a "$RESULTS" | awk '{ printf "  run %-8s %6d B: %6d msg/s, %.3f CPU s/1000, peak Pss %.1f MiB, latency p50 %s ms p99 %s ms, fsyncs/msg %s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
}

# --- fsyncs per message: a short pass under strace ----------------------------
# fsync_count KIND: prints fsyncs per message of FSYNC_MSGS at 4 KiB
fsync_count() {
	local kind=$1 cg pids st port n
	if [ "$kind" = postfix ]; then
		cg=$PF_CG; port=$PFPORT
	else
		cg=$PN_CG
		start_postern "fsync" smtp
		port=$PNPORT
	fi
	start_sink "fsync.$kind"
	pids=$(sed 's/^/-p /' "$cg/cgroup.procs" | tr '\n' ' ')
	# shellcheck disable=SC2086
	strace -f -c $TRACE $pids -o "$WORK/strace.$kind" 2>/dev/null &
	st=$!
	sleep 1
	source_msgs "$port" 4096 "$FSYNC_MSGS"
	wait_sink "$FSYNC_MSGS" 300
	[ "$kind" = postfix ] && postfix_settle
	sleep 1
	kill -INT "$st"
	wait "$st" 2>/dev/null
	[ "$kind" = postern ] && stop_postern
	stop_sink
	[ -n "$SYSCALLS" ] && awk -v m="$FSYNC_MSGS" -v k="$kind" '
		$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 / m >= 0.1 {
			printf "  %s syscalls/msg: %-16s %6.2f\n", k, $NF,
				$4 / m }' "$WORK/strace.$kind" | sort -t: -k2 >&2
	n=$(awk '$NF ~ /^(fsync|fdatasync|msync|sync_file_range)$/ {
		s += $4 } END { print s + 0 }' \
		"$WORK/strace.$kind")
	awk -v n="$n" -v m="$FSYNC_MSGS" 'BEGIN { printf "%.3f\n", n / m }'
}

# --- half-rate latency pass (posternd, 4 KiB) ---------------------------------
latency_pass() {
	local rate=$1 per slices t0 i dl
	start_sink "lat"
	start_postern "lat" smtp
	per=$(((rate + 9) / 10))
	slices=$((LAT_SECS * 10))
	t0=$(now)
	for i in $(seq 1 "$slices"); do
		"$SOURCE" -s 5 -m "$per" -l 4096 -f a@home.example \
			-t b@foreign.example "127.0.0.1:$PNPORT" \
			>>"$WORK/source.out" 2>&1 &
		# the next slice 0.1 s after this one was due
		sleep "$(awk -v t0="$t0" -v i="$i" -v t="$(now)" \
			'BEGIN { d = t0 + i / 10 - t; print (d > 0 ? d : 0) }')"
	done
	wait_sink $((per * slices)) 120
	sleep 1
	stop_postern
	stop_sink
	dl=$WORK/delays.lat
	ledger_delays "$PN_STORE" "$dl"
	echo "$(wc -l <"$dl") $(percentiles "$dl")"
}

# --- the run -----------------------------------------------------------------
echo "relay.sh: $MSGS messages, sizes $SIZES, $PAIRS pairs, $SESSIONS sessions, posternd workers $WORKERS batch $BATCH in_doubt_window $WINDOW group_wait $GROUP_WAIT"
# B0 only with a posternd that knows [ingress] resubmit_window: ask
# posternd -n about the very configuration B0 runs with
RW_SKIP=""
if [ "$RESUBMIT" = 1 ]; then
	postern_conf "rwcheck" smtp 0
	if ! out=$("$POSTERND" -n -c "$PN_CONF" 2>&1); then
		echo "SKIP the index on/off pair (B0): posternd -n refuses resubmit_window = 0: $(echo "$out" | tail -1)"
		RW_SKIP="B0 skipped: this posternd refuses [ingress] resubmit_window"
		RESUBMIT=0
	fi
	rm -rf "$WORK/rwcheck"
else
	RW_SKIP="RESUBMIT=$RESUBMIT"
fi
echo "runs: A postfix, B postern$([ "$RESUBMIT" = 1 ] && echo ", B0 postern0 (resubmit_window = 0)")$([ "$HARNESS" = 1 ] && echo ", H harness (no relay)")$([ "$MAILDIR" = 1 ] && echo ", C maildir")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for size in $SIZES; do
	for p in $(seq 1 "$PAIRS"); do
		echo "size $size pair $p"
		measure postfix "$size"
		if [ "$RESUBMIT" = 1 ] && [ $((p % 2)) = 0 ]; then
			measure postern0 "$size"
			measure postern "$size"
		else
			measure postern "$size"
			[ "$RESUBMIT" = 1 ] && measure postern0 "$size"
		fi
		[ "$HARNESS" = 1 ] && measure harness "$size"
	done
	[ "$MAILDIR" = 1 ] && measure maildir "$size"
done
echo "fsync pass ($FSYNC_MSGS x 4 KiB under strace -f -c):"
FS_PF=$(fsync_count postfix)
FS_PN=$(fsync_count postern)
echo "  postfix $FS_PF fsyncs/msg, postern $FS_PN fsyncs/msg"
best=$(awk '$1 == "postern" && $2 == 4096 && $3 > m { m = $3 } END { print m + 0 }' "$RESULTS")
LAT="- - -"
if [ "$LAT_SECS" -gt 0 ] && [ "$best" -gt 0 ]; then
	half=$((best / 2))
	echo "latency pass: posternd at $half msg/s (half of $best), $LAT_SECS s"
	LAT=$(latency_pass "$half")
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# medians per (kind, size), then the ratios
echo
printf '%-8s %6s %7s %9s %8s %7s %7s %10s %9s\n' relay size msg/s "CPU s/1k" "Pss MiB" "p50 ms" "p99 ms" fsync/msg "(strace)"
for size in $SIZES; do
	for kind in harness postfix postern postern0 maildir; do
		grep -q "^$kind $size " "$RESULTS" || continue
		fs=-
		[ "$size" = 4096 ] && [ "$kind" = postfix ] && fs=$FS_PF
		[ "$size" = 4096 ] && [ "$kind" = postern ] && fs=$FS_PN
		for col in 3 4 5 6 7 8; do
			awk -v k="$kind" -v s="$size" -v c="$col" \
				'$1 == k && $2 == s { print $c }' "$RESULTS" |
				sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
		done | tr '\n' ' ' | awk -v k="$kind" -v s="$size" -v f="$fs" \
			'{ printf "%-8s %6s %7s %9s %8s %7s %7s %10s %9s\n", k, s, $1, $2, $3, $4, $5, $6, f }'
	done
done | tee "$WORK/medians"
echo "(medians over the runs; fsync/msg: perf count during each run (posternd);"
echo " (strace): the separate ${FSYNC_MSGS}-message pass under strace -f -c, 4096 B;"
[ "$RESUBMIT" = 1 ] &&
	echo " postern0: posternd with [ingress] resubmit_window = 0, the index off;"
[ "$HARNESS" = 1 ] &&
	echo " harness: smtp-source -> smtp-sink, no relay: its CPU and Pss are theirs;"
echo " CPU s/1k and Pss of the other rows: the relay's processes only)"
echo
for size in $SIZES; do
	awk -v s="$size" -v rw="$RW_SKIP" '$2 != s { next }
		{ r[$1] = $3; c[$1] = $4 }
		END {
		if (r["postfix"] > 0 && r["postern"] > 0)
			printf "ratio postern/Postfix at %s B: throughput %.2fx, CPU per message %.3f (Postfix/postern %.1fx)\n",
				s, r["postern"] / r["postfix"],
				c["postern"] / c["postfix"], c["postfix"] / c["postern"]
		h = r["harness"]
		if (h > 0) {
			printf "share of the harness alone at %s B (%d msg/s, %.3f CPU s/1000): postern %.1f %% (the figure to raise)",
				s, h, c["harness"], r["postern"] / h * 100
			if ("maildir" in r)
				printf ", maildir %.1f %%", r["maildir"] / h * 100
			printf ", Postfix %.1f %%\n", r["postfix"] / h * 100
		} else
			printf "share of the harness alone at %s B: n/a (HARNESS=0)\n", s
		on = r["postern"]; off = r["postern0"]
		if (on > 0 && off > 0 && c["postern0"] > 0)
			printf "index cost at %s B: %.1f %% of msg/s, %.1f %% CPU/msg (on, default: %d msg/s, %.3f CPU s/1000; off, resubmit_window = 0: %d msg/s, %.3f CPU s/1000)\n",
				s, (off - on) / off * 100,
				(c["postern"] - c["postern0"]) / c["postern0"] * 100,
				on, c["postern"], off, c["postern0"]
		else
			printf "index cost at %s B: n/a (%s)\n", s, rw
		}' "$WORK/medians"
done
set -- $LAT
echo "half-rate latency (posternd, 4096 B, ${half:-0} msg/s offered, $1 messages): p50 ${2} ms, p99 ${3} ms"
