#!/bin/bash
# crash_sweep.sh - SQLite-style crash-point sweep (RELIABILITY.md 4, T2).
#
# For each crash point (SYSCALL, N) posternd runs under
#   strace -f -e inject=SYSCALL:signal=SIGKILL:when=N
# so that it dies at the N-th SYSCALL of one of its threads (strace counts
# per syscall and per thread), while oracle.py sends SWEEP_MSGS messages.
# As soon as it dies it is restarted without strace; when the queue has
# drained it is stopped and the invariants are checked on the store and
# target that all points share (so every point also recovers what the
# earlier ones left):
#   I1 no loss, I2 no duplicate (maildir), I3 extra copies <= in-doubt
#   events logged (smtp), I4 no phantom   (oracle.py check --store)
#   and on smtp at most one extra copy per kill (the one message in
#   flight; before the fix a kill made the whole claimed batch in-doubt)
#   I5 the environment opens and has no stale readers (mdb_stat -r), and
#      postern audit --verify passes            (oracle.py check --store)
# Points: fdatasync and pwrite64 against the maildir driver (the store's
# commits and the Maildir fsyncs), sendto against the smtp driver (every
# outbound command, the body and the final dot to an smtp-sink with -d
# dumps). posternd runs one worker, so the worker's syscall numbers
# advance with the messages.
#
# Env: SWEEP_POINTS (total points, default 200, split 2:1.5:1.5 over
# fdatasync, pwrite64, sendto), SWEEP_MSGS (messages per point, 8, plus
# N / (the syscalls per message), so that the kill lands at high N too).
# POSTERN_QUICK=1: 12 points. Prints a RESULT line with the points swept
# and the kills that landed.
# The system python starts in a fraction of the time a pyenv shim takes,
# which matters at some 500 starts.
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

STRACE=$(command -v strace) || skip "strace not found (Debian package strace)"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
MDB_STAT=$(command -v mdb_stat) || skip "mdb_stat not found (Debian package lmdb-utils)"
if [ -n "$POSTERN_QUICK" ]; then
	POINTS=${SWEEP_POINTS:-12}
else
	POINTS=${SWEEP_POINTS:-200}
fi
MSGS=${SWEEP_MSGS:-8}
# Under strace, LSan cannot stop the world at exit and ASan's and TSan's
# start-up checks trip: no sweep in the sanitizer builds.
if ldd "$POSTERND" 2>/dev/null | grep -q 'lib[at]san'; then
	skip "posternd is built with a sanitizer; the sweep needs a plain build"
fi
"$STRACE" -f -qq -o /dev/null -e trace=none true 2>/dev/null ||
	skip "strace cannot trace here (ptrace not permitted)"

SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi

POINTS_DONE=0
KILLS=0
SMTP_KILLS0=0
NEXT_ID=0
T0=$(date +%s)

# configure NAME [extra lines]: $WORK/NAME.conf, one worker.
configure() {
	local name=$1
	shift
	PORT=$(free_port)
	CONF=$WORK/$name.conf
	LOG=$WORK/$name.log
	STORE=$WORK/$name/store
	STATES=$WORK/$name.states
	: >"$STATES"
	write_config "$CONF" "$WORK/$name" "$PORT"
	{
		echo "[workers]"
		echo "count = 1"
		echo "[queue]"
		echo "backoff_min = 1"
		echo "backoff_max = 2"
		printf '%s\n' "$@"
	} >>"$CONF"
}

# start_traced SYSCALL N: posternd under strace; sets TRACER and
# DAEMON_PID (0 if it died before it started: the kill landed early).
start_traced() {
	local sc=$1 n=$2 i before
	before=$(grep -c 'info: started: ' "$LOG" 2>/dev/null)
	"$STRACE" -f -qq -o /dev/null -e trace="$sc" \
		-e inject="$sc:signal=SIGKILL:when=$n" \
		"$POSTERND" -f -c "$CONF" >>"$LOG" 2>&1 &
	TRACER=$!
	DAEMON_PIDS="$DAEMON_PIDS $TRACER"
	DAEMON_PID=0
	for i in $(seq 1 300); do
		kill -0 "$TRACER" 2>/dev/null || return 0
		if [ "$(grep -c 'info: started: ' "$LOG")" -gt "${before:-0}" ]
		then
			DAEMON_PID=$(cat "/proc/$TRACER/task/$TRACER/children" \
				2>/dev/null | awk '{ print $1 }')
			DAEMON_PIDS="$DAEMON_PIDS $DAEMON_PID"
			return 0
		fi
		sleep 0.05
	done
	fail "posternd under strace did not start within 15 s: $(tail -3 "$LOG")"
}

# busy: entries that still wait for a delivery (held and in-doubt ones
# are left alone; oracle.py counts them as queued).
busy() {
	"$POSTERN" -c "$CONF" queue --state pending,active,deferred 2>/dev/null |
		grep -c '@foreign.example'
}

# wait_kill: if the traced posternd died (it can only be the injected
# SIGKILL), restart it without strace. Uses point()'s variables.
wait_kill() {
	[ $killed = 0 ] && ! kill -0 "$TRACER" 2>/dev/null || return 0
	wait "$TRACER"
	rc=$?
	[ $rc = 137 ] ||
		fail "$sc:$n: strace ended with $rc, not SIGKILL: $(tail -3 "$LOG")"
	killed=1
	start_daemon "$CONF" "$LOG" || fail "$sc:$n: no restart after the kill"
}

# point SYSCALL N TARGETOPT TARGET
point() {
	local sc=$1 n=$2 topt=$3 target=$4 sender rc i killed=0
	local msgs=$((MSGS + n / ${PER_MSG[$sc]}))
	start_traced "$sc" "$n"
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$msgs" \
		--threads 2 --id-base "$NEXT_ID" --append --states "$STATES" \
		--progress "$WORK/progress" >>"$WORK/send.out" 2>&1 &
	sender=$!
	NEXT_ID=$((NEXT_ID + msgs))
	# wait for the sender or for the kill
	while kill -0 "$sender" 2>/dev/null && kill -0 "$TRACER" 2>/dev/null; do
		sleep 0.05
	done
	wait_kill
	wait "$sender" || fail "$sc:$n: oracle send failed"
	for i in $(seq 1 200); do
		wait_kill
		[ "$(busy)" = 0 ] && break
		sleep 0.1
	done
	[ "$(busy)" = 0 ] || fail "$sc:$n: the queue did not drain in 20 s: $("$POSTERN" -c "$CONF" queue | tail -3)"
	if [ $killed = 1 ]; then
		stop_daemon "$DAEMON_PID"
		[ "$STOP_RC" = 0 ] || fail "$sc:$n: exit status $STOP_RC at SIGTERM"
	else
		# N beyond this run's count so far: stop the traced one (the
		# kill may still land while it shuts down)
		kill -TERM "$DAEMON_PID"
		wait "$TRACER"
		rc=$?
		case $rc in
		0) ;;
		137) killed=1 ;;
		*) fail "$sc:$n: exit status $rc at SIGTERM under strace" ;;
		esac
	fi
	KILLS=$((KILLS + killed))
	POINTS_DONE=$((POINTS_DONE + 1))
	# I5: the environment opens, no stale reader slots
	"$MDB_STAT" -e "$STORE" >"$WORK/readers" 2>&1 ||
		fail "$sc:$n: mdb_stat -e: $(cat "$WORK/readers")"
	"$MDB_STAT" -r "$STORE" >"$WORK/readers" 2>&1
	grep -q '(no active readers)' "$WORK/readers" ||
		fail "$sc:$n: readers left after the stop: $(cat "$WORK/readers")"
	# I1-I4 on everything sent so far
	"$PYTHON" "$HERE/oracle.py" check --name "sweep_$sc" --states "$STATES" \
		"$topt" "$target" --store "$STORE" --config "$CONF" --log "$LOG" \
		>"$WORK/check.out" 2>&1 ||
		fail "$sc:$n (kill landed: $killed): $(cat "$WORK/check.out")"
	# RELIABILITY.md T2: at most one extra copy per kill on smtp (one
	# worker, one message in flight), not a whole batch
	extra=$(sed -n 's/.* extra_copies=\([0-9]*\) .*/\1/p' "$WORK/check.out")
	[ "${extra:-0}" -le $((KILLS - SMTP_KILLS0)) ] ||
		fail "$sc:$n: $extra extra copies after $((KILLS - SMTP_KILLS0)) kills on smtp: $(cat "$WORK/check.out")"
}

# sweep SYSCALL COUNT TARGETOPT TARGET: N = 1 .. COUNT
sweep() {
	local sc=$1 count=$2 n
	for n in $(seq 1 "$count"); do
		point "$sc" "$n" "$3" "$4"
	done
	echo "swept $sc N=1..$count: $(tail -1 "$WORK/check.out")"
}

# About how many of each syscall one worker makes per message: point N
# sends SWEEP_MSGS + N / PER_MSG messages, so that the high N land too.
declare -A PER_MSG=([fdatasync]=3 [pwrite64]=8 [sendto]=5)
n_sync=$((POINTS * 2 / 5))
n_pw=$((POINTS * 3 / 10))
n_send=$((POINTS - n_sync - n_pw))

configure md
sweep fdatasync "$n_sync" --maildir "$WORK/md/maildir"
sweep pwrite64 "$n_pw" --maildir "$WORK/md/maildir"
md_kills=$KILLS
SMTP_KILLS0=$KILLS

# The smtp driver against smtp-sink; the dumps are the target.
SPORT=$(free_port)
mkdir -p "$WORK/dump"
chmod 777 "$WORK/dump"
"$SINK" "${SINK_USER[@]}" -c -d "$WORK/dump/%M." "127.0.0.1:$SPORT" 100 \
	>"$WORK/sink.out" 2>&1 &
DAEMON_PIDS="$DAEMON_PIDS $!"
configure smtp "in_doubt_policy = retry" "[foreign]" "driver = smtp" \
	"[smtp]" "relay = 127.0.0.1:$SPORT" "tls = none"
sweep sendto "$n_send" --sink "$WORK/dump"
indoubt=$(sed -n 's/.*recover: .* \([0-9]*\) in-doubt$/\1/p' "$LOG" |
	awk '{ n += $1 } END { print n + 0 }')

T1=$(date +%s)
echo "PASS crash sweep: $POINTS_DONE points, $KILLS kills landed ($md_kills maildir, $((KILLS - md_kills)) smtp; $indoubt entries in-doubt after a kill on smtp, sent again under in_doubt_policy = retry), invariants held after each"
echo "RESULT crash_sweep points=$POINTS_DONE kills=$KILLS indoubt=$indoubt msgs=$NEXT_ID seconds=$((T1 - T0))"
exit 0
