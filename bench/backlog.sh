#!/bin/bash
# backlog.sh - posternd's memory with a large queue, and how fast the
# queue drains when the foreign side comes back.
#
# posternd (driver = smtp) relays to a port where nothing listens; N
# messages (default 100,000, 4 KiB) are queued through smtp-source (20
# sessions); then smtp-sink starts on that port and the queue drains.
# Run from the build tree after `make`:  bash bench/backlog.sh
# Knobs: N=100000 SIZE=4096 SESSIONS=20 WORKERS=16 BATCH=16 WINDOW=message
#        RECONNECT_MAX=60 ([smtp] reconnect_max, seconds)
# Prints the fill rate, posternd's VmHWM / VmRSS (anonymous and file
# parts) with the queue full and after the drain, how long after the sink
# started the first message arrived, and the drain rate (first to last
# message at the sink).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
POSTERND=${POSTERND:-$TOP/src/posternd}
PYTHON=${PYTHON:-python3}
N=${N:-100000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-20}
WORKERS=${WORKERS:-16}
BATCH=${BATCH:-16}
WINDOW=${WINDOW:-message}
RECONNECT_MAX=${RECONNECT_MAX:-60}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SINK" ] && [ -x "$SOURCE" ] || skip "smtp-sink/smtp-source not found"
[ -x "$POSTERND" ] || fail "no $POSTERND: run make first"
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-bench.XXXXXX") || fail "mktemp"
chmod 755 "$WORK"
PIDS=""
cleanup() {
	local p
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$TOP/tests/integration/free_port.sh"
now() { date +%s.%N; }
mem() {
	awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ { printf "%s %.1f MiB  ", $1, $2 / 1024 }' \
		"/proc/$1/status"
}
sink_count() {
	local n
	n=$(tail -c 200 "$WORK/sink.out" 2>/dev/null | tr '\r' '\n' |
		grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
	echo "${n:-0}"
}

SPORT=$(free_port)
PORT=$(free_port)
cat >"$WORK/p.conf" <<EOF
[store]
path = $WORK/store
[ingress]
listen = 127.0.0.1:$PORT
accept_domains = foreign.example
hostname = bench.postern.invalid
max_sessions = 100
max_sessions_per_ip = 100
[workers]
count = $WORKERS
batch = $BATCH
in_doubt_window = $WINDOW
[foreign]
driver = smtp
[smtp]
relay = 127.0.0.1:$SPORT
tls = none
reconnect_max = $RECONNECT_MAX
EOF
"$POSTERND" -f -c "$WORK/p.conf" >"$WORK/p.log" 2>&1 &
PN=$!
PIDS="$PIDS $PN"
for i in $(seq 1 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	sleep 0.1
done

echo "backlog.sh: $N x $SIZE B, $SESSIONS sessions, workers $WORKERS batch $BATCH in_doubt_window $WINDOW, foreign side down"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(now)
"$SOURCE" -s "$SESSIONS" -m "$N" -l "$SIZE" -f a@home.example \
	-t b@foreign.example "127.0.0.1:$PORT" >"$WORK/source.out" 2>&1 ||
	fail "smtp-source: $(tail -3 "$WORK/source.out")"
t1=$(now)
echo "queued: $N in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s, %.0f msg/s", b - a, '"$N"' / (b - a) }')"
echo "queue full:  $(mem $PN)"
du -sh "$WORK/store" | awk '{ print "store on disk: " $1 }'

"$SINK" "${SINK_USER[@]}" -c "127.0.0.1:$SPORT" 256 >"$WORK/sink.out" 2>&1 &
PIDS="$PIDS $!"
ts=$(now)
first=""
while :; do
	n=$(sink_count)
	[ -z "$first" ] && [ "$n" -gt 0 ] && first=$(now) && n0=$n
	[ "$n" -ge "$N" ] && break
	awk -v a="$ts" -v b="$(now)" 'BEGIN { exit !(b - a > 1200) }' &&
		fail "only $n of $N after 20 minutes"
	sleep 0.1
done
t2=$(now)
echo "sink up; first message after $(awk -v a="$ts" -v b="$first" 'BEGIN { printf "%.1f s", b - a }') (reconnect backoff)"
echo "drained: $N in $(awk -v a="$first" -v b="$t2" -v n0="$n0" 'BEGIN { printf "%.1f s, %.0f msg/s", b - a, ('"$N"' - n0) / (b - a) }') (first to last message at the sink)"
echo "after drain: $(mem $PN)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
