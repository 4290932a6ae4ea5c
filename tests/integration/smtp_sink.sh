#!/bin/bash
# smtp_sink.sh - posternd with driver = smtp against Postfix's smtp-sink.
#
#  basic    smtp-source sends SINK_MSGS (default 1000) messages with 2
#           recipients; each arrives at the sink exactly once (one dump
#           file per transaction, Message-IDs counted), and the sink saw
#           a handful of sessions (one per worker), not one per message.
#  reject   sink -f RCPT: bounced; sink -r RCPT: deferred; sink -Q RCPT
#           (421 and hang up): deferred, and the next message too.
#  indoubt  sink -q . (hang up after the dot without a reply): in-doubt
#           and held with in_doubt_policy = hold; deferred for another
#           try with retry.
#  hung     SIGSTOP the sink: one timeout (2 s here), the worker is free
#           again, and after SIGCONT the message arrives once.
#  stop     SIGTERM while waiting on a stopped sink (5 min timeouts)
#           returns at once; the entry is sent after the restart.
#  crash    SIGKILL while a message is being sent: in-doubt after the
#           restart, held with hold, sent again with retry.
#  outage   under load (OUTAGE_MSGS, default 2000), the sink is killed for
#           SINK_OUTAGE seconds (default 30) and started again: every
#           message arrives (a duplicate only for an in-doubt retried
#           under policy retry), posternd is not restarted, the outage is
#           logged once and posternd uses little CPU meanwhile.
#  SINK_WINDOW sets [workers] in_doubt_window (default message; batch
#  runs the same cases with the claim marking whole batches).
. "$(dirname "$0")/common.sh"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
[ -x "$SOURCE" ] || skip "smtp-source not found (Debian package postfix)"
SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"

MSGS=${SINK_MSGS:-1000}
OUT_MSGS=${OUTAGE_MSGS:-2000}
OUTAGE=${SINK_OUTAGE:-30}
# smtp-sink refuses to run as root without -u; its dump files are
# written as that user.
SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi

# start_sink NAME PORT [options...]: dumps to $WORK/NAME.dump/, counters
# to $WORK/NAME.sink; sets SINK_PID.
start_sink() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$WORK/$name.dump"
	chmod 777 "$WORK/$name.dump"
	"$SINK" "${SINK_USER[@]}" -c -d "$WORK/$name.dump/%M." "$@" \
		"127.0.0.1:$port" 100 >>"$WORK/$name.sink" 2>&1 &
	track_sink $! 127.0.0.1 "$port" "$name: smtp-sink"
}

stop_sink() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# dumps NAME: messages at the sink. A sink killed with SIGKILL leaves the
# empty dump files of the transactions it had open: not messages.
dumps() { find "$WORK/$1.dump" -type f -size +0 | wc -l; }
# sessions NAME: the sink's last "sess=N" counter.
sessions() {
	tr '\r' '\n' <"$WORK/$1.sink" | grep -o 'sess=[0-9]*' | tail -1 |
		cut -d= -f2
}

# start_postern NAME SINKPORT [extra config lines]: sets PORT, LOG.
start_postern() {
	local name=$1 sport=$2 conf=$WORK/$1.conf
	shift 2
	PORT=$(free_port)
	LOG=$WORK/$name.log
	write_config "$conf" "$WORK/$name" "$PORT" "max_sessions = 50"
	{
		echo "[foreign]"
		echo "driver = smtp"
		echo "[workers]"
		echo "count = 4"
		echo "in_doubt_window = ${SINK_WINDOW:-message}"
		echo "[smtp]"
		echo "relay = 127.0.0.1:$sport"
		echo "tls = none"
		printf '%s\n' "$@"
	} >>"$conf"
	start_daemon "$conf" "$LOG" || fail "$name: posternd did not start"
}

# wait_log PATTERN SECS
wait_log() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		grep -q -- "$1" "$LOG" && return 0
		sleep 0.1
	done
	return 1
}

# wait_dumps NAME N SECS
wait_dumps() {
	local i
	for i in $(seq 1 $(($3 * 5))); do
		[ "$(dumps "$1")" -ge "$2" ] && return 0
		sleep 0.2
	done
	return 1
}

# cpu_ticks PID: user + system clock ticks so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

send1() {
	"$SWAKS" -s 127.0.0.1 -p "$PORT" -f a@home.example -t "$1" \
		--header "Subject: $2" --silent 2 >/dev/null || fail "swaks $2"
}

# --- basic -----------------------------------------------------------------
sport=$(free_port)
start_sink basic "$sport"
start_postern basic "$sport"
t0=$(date +%s.%N)
"$SOURCE" -s 10 -m "$MSGS" -l 2048 -r 2 -f a@home.example \
	-t b@foreign.example "127.0.0.1:$PORT" >"$WORK/basic.src" 2>&1 ||
	fail "basic: smtp-source: $(tail -3 "$WORK/basic.src")"
wait_dumps basic "$MSGS" 120 || fail "basic: $(dumps basic) of $MSGS at the sink"
t1=$(date +%s.%N)
sleep 1
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "basic: exit status $STOP_RC"
sleep 0.5
n=$(dumps basic)
ids=$(cat "$WORK"/basic.dump/* | grep -i '^Message-Id:' | sort | uniq | wc -l)
rcpts=$(cat "$WORK"/basic.dump/* | grep -c '^X-Rcpt-Args:')
sess=$(sessions basic)
stop_sink "$SINK_PID"
[ "$n" = "$MSGS" ] && [ "$ids" = "$MSGS" ] ||
	fail "basic: $n dumps, $ids distinct Message-IDs, want $MSGS"
[ "$rcpts" = $((2 * MSGS)) ] || fail "basic: $rcpts recipients in the dumps"
[ "$(grep -c 'status=sent' "$LOG")" = $((2 * MSGS)) ] ||
	fail "basic: $(grep -c 'status=sent' "$LOG") sent lines"
[ -n "$sess" ] && [ "$sess" -le 8 ] ||
	fail "basic: the sink saw ${sess:-no} sessions for $MSGS messages"
echo "PASS basic: $MSGS messages x 2 rcpts once each, $sess sink sessions"
echo "RESULT smtp_sink msgs=$MSGS sessions=$sess seconds=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")"

# --- reject ------------------------------------------------------------------
sport=$(free_port)
start_sink hard "$sport" -f RCPT
start_postern hard "$sport"
send1 x@foreign.example hard
wait_log 'to=<x@foreign.example>.*status=bounced (.*said: 5' 10 ||
	fail "hard: not bounced: $(grep to= "$LOG")"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
sport=$(free_port)
start_sink soft "$sport" -r RCPT
start_postern soft "$sport" "[queue]" "backoff_min = 1h" "backoff_max = 2h"
send1 x@foreign.example soft
wait_log 'to=<x@foreign.example>.*status=deferred (.*said: 4' 10 ||
	fail "soft: not deferred: $(grep to= "$LOG")"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
sport=$(free_port)
start_sink q421 "$sport" -Q RCPT
start_postern q421 "$sport" "[queue]" "backoff_min = 1h" "backoff_max = 2h"
send1 x@foreign.example q421a
wait_log 'to=<x@foreign.example>.*status=deferred (.*said: 421' 10 ||
	fail "q421: not deferred: $(grep to= "$LOG")"
send1 y@foreign.example q421b
wait_log 'to=<y@foreign.example>.*status=deferred (.*said: 421' 10 ||
	fail "q421: second message not deferred: $(grep to= "$LOG")"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
echo "PASS reject: 5xx to RCPT bounced, 4xx deferred, 421 deferred"

# --- indoubt -----------------------------------------------------------------
for policy in hold retry; do
	sport=$(free_port)
	start_sink "q$policy" "$sport" -q .
	start_postern "q$policy" "$sport" "[queue]" "in_doubt_policy = $policy" \
		"backoff_min = 1h" "backoff_max = 2h"
	send1 x@foreign.example "q$policy"
	if [ $policy = hold ]; then
		wait_log 'status=in-doubt (4.4.2 .*after end of data.*held for the operator' 10 ||
			fail "q$policy: not held: $(grep to= "$LOG")"
	else
		wait_log 'status=deferred (4.4.2 .*after end of data.*retried (in_doubt_policy = retry)' 10 ||
			fail "q$policy: not retried: $(grep to= "$LOG")"
	fi
	stop_daemon "$DAEMON_PID"
	stop_sink "$SINK_PID"
done
echo "PASS indoubt: lost reply after the dot held (hold) or deferred (retry)"

# --- hung --------------------------------------------------------------------
sport=$(free_port)
start_sink hung "$sport"
start_postern hung "$sport" "connect_timeout = 2" "greeting_timeout = 2" \
	"mail_timeout = 2" "rcpt_timeout = 2" "data_timeout = 2" \
	"block_timeout = 2" "dot_timeout = 2" "reconnect_max = 2" \
	"[workers]" "count = 1" "[queue]" "backoff_min = 1" "backoff_max = 2"
send1 h1@foreign.example hung1
# the sink writes its dump before it replies: wait for our side
wait_log 'to=<h1@foreign.example>.*status=sent' 10 ||
	fail "hung: first message not sent: $(tail -3 "$LOG")"
kill -STOP "$SINK_PID"
t0=$(date +%s)
send1 h2@foreign.example hung2
wait_log 'next hop unavailable: .*timeout' 10 ||
	fail "hung: no timeout logged: $(tail -5 "$LOG")"
t1=$(date +%s)
# the one worker is free: it takes new work during the outage
send1 h3@foreign.example hung3
c0=$(cpu_ticks "$DAEMON_PID")
sleep 3
c1=$(cpu_ticks "$DAEMON_PID")
kill -CONT "$SINK_PID"
wait_dumps hung 3 20 || fail "hung: $(dumps hung) of 3 after SIGCONT"
sleep 1
stop_daemon "$DAEMON_PID"
n=$(dumps hung)
stop_sink "$SINK_PID"
held=$(grep -c 'status=in-doubt' "$LOG")
[ "$n" = 3 ] && [ "$held" = 0 ] ||
	fail "hung: $n messages at the sink, want 3 (in-doubt: $held)"
[ $((c1 - c0)) -le 50 ] || fail "hung: $((c1 - c0)) CPU ticks in 3 s while stopped"
echo "PASS hung: timeout after $((t1 - t0)) s, $((c1 - c0)) CPU ticks in 3 s stopped, all 3 arrived once"

# --- stop --------------------------------------------------------------------
# SIGTERM while a worker waits on a stopped sink with the default (5 min)
# timeouts: posternd stops at once, the entry is put back (no attempt) and
# sent after the restart.
sport=$(free_port)
start_sink stop "$sport"
kill -STOP "$SINK_PID"
start_postern stop "$sport" "[workers]" "count = 1"
send1 s1@foreign.example stop1
sleep 1
t0=$(date +%s.%N)
stop_daemon "$DAEMON_PID"
t1=$(date +%s.%N)
[ "$STOP_RC" = 0 ] || fail "stop: exit status $STOP_RC"
took=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
awk "BEGIN { exit !($t1 - $t0 < 10) }" || fail "stop: SIGTERM took $took s"
grep -q 'stopping: 1 entries put back' "$LOG" ||
	fail "stop: entry not put back: $(tail -3 "$LOG")"
kill -CONT "$SINK_PID"
start_daemon "$WORK/stop.conf" "$LOG" || fail "stop: no restart"
wait_log 'to=<s1@foreign.example>.*status=sent.*attempts=1\|to=<s1@foreign.example>.*attempts=1.*status=sent' 20 ||
	fail "stop: not sent after the restart: $(tail -3 "$LOG")"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
[ "$(dumps stop)" = 1 ] || fail "stop: $(dumps stop) messages at the sink"
echo "PASS stop: SIGTERM during a 5 min greeting wait took $took s; the entry was sent after the restart (attempts=1)"

# --- crash -------------------------------------------------------------------
# posternd dies (SIGKILL) while a message is being sent to a stopped sink.
# Restarted with hold, the entry is in-doubt and stays; restarted with
# retry, it is sent again.
sport=$(free_port)
start_sink crash "$sport"
start_postern crash "$sport" "[workers]" "count = 1"
send1 k1@foreign.example crash1
wait_log 'to=<k1@foreign.example>.*status=sent' 10 || fail "crash: k1 not sent"
kill -STOP "$SINK_PID"
send1 k2@foreign.example crash2
sleep 2
kill9_daemon "$DAEMON_PID"
kill -CONT "$SINK_PID"
conf=$WORK/crash.conf
start_daemon "$conf" "$LOG" || fail "crash: no restart"
wait_log 'recover: 0 claim(s) of dead or expired owners back to pending, 1 in-doubt' 10 ||
	fail "crash: not in-doubt after the restart: $(tail -3 "$LOG")"
sleep 2
[ "$(dumps crash)" = 1 ] || fail "crash: held entry was sent with hold"
stop_daemon "$DAEMON_PID"
printf '[queue]\nin_doubt_policy = retry\n' >>"$conf"
start_daemon "$conf" "$LOG" || fail "crash: no restart with retry"
wait_log 'to=<k2@foreign.example>.*status=sent' 10 ||
	fail "crash: in-doubt entry not retried: $(tail -3 "$LOG")"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
[ "$(dumps crash)" = 2 ] || fail "crash: $(dumps crash) messages at the sink"
echo "PASS crash: being sent at SIGKILL -> in-doubt, held with hold, sent again with retry"

# --- outage ------------------------------------------------------------------
sport=$(free_port)
start_sink outage "$sport"
start_postern outage "$sport" "reconnect_max = 5" \
	"[queue]" "in_doubt_policy = retry" "backoff_min = 1" "backoff_max = 4"
"$SOURCE" -s 5 -m "$OUT_MSGS" -l 1024 -f a@home.example \
	-t o@foreign.example "127.0.0.1:$PORT" >"$WORK/outage.src" 2>&1 &
SRC_PID=$!
wait_dumps outage $((OUT_MSGS / 10)) 60 || fail "outage: load did not start"
kill -9 "$SINK_PID"
wait "$SINK_PID" 2>/dev/null
before=$(dumps outage)
c0=$(cpu_ticks "$DAEMON_PID")
sleep "$OUTAGE"
c1=$(cpu_ticks "$DAEMON_PID")
wait "$SRC_PID" || fail "outage: smtp-source failed: $(tail -3 "$WORK/outage.src")"
start_sink outage "$sport"
t0=$(date +%s)
wait_dumps outage "$OUT_MSGS" 120 ||
	fail "outage: $(dumps outage) of $OUT_MSGS after the sink came back"
t1=$(date +%s)
sleep 2
kill -0 "$DAEMON_PID" || fail "outage: posternd died"
stop_daemon "$DAEMON_PID"
stop_sink "$SINK_PID"
n=$(dumps outage)
ids=$(cat "$WORK"/outage.dump/* | grep -i '^Message-Id:' | sort -u | wc -l)
retried=$(grep -c 'retried (in_doubt_policy = retry)' "$LOG")
# each in-doubt line carries its own reply (not a later message's)
bad=$(grep 'retried (in_doubt_policy = retry)' "$LOG" |
	grep -vc 'after end of data')
[ "$bad" = 0 ] || fail "outage: $bad in-doubt lines with another reply"
down=$(grep -c 'next hop unavailable' "$LOG")
up=$(grep -c 'next hop is back' "$LOG")
[ "$ids" = "$OUT_MSGS" ] || fail "outage: $ids distinct messages of $OUT_MSGS"
[ $((n - ids)) -le "$retried" ] ||
	fail "outage: $((n - ids)) duplicates but only $retried in-doubt retries"
[ "$down" -ge 1 ] && [ "$down" -le 2 ] && [ "$up" -ge 1 ] && [ "$up" -le 2 ] ||
	fail "outage: logged down $down times, up $up times"
ticks=$((c1 - c0))
# 10 % of a CPU; ThreadSanitizer multiplies every instruction (the plain
# and ASan builds use 1-2 %), so a TSan build is allowed five times that
limit=$((OUTAGE * 10))
ldd "$POSTERND" 2>/dev/null | grep -q libtsan && limit=$((limit * 5))
[ "$ticks" -le "$limit" ] ||
	fail "outage: $ticks CPU ticks in $OUTAGE s of outage (busy loop?)"
echo "PASS outage: $OUT_MSGS messages, $before before the ${OUTAGE} s outage, all after $((t1 - t0)) s; duplicates $((n - ids)) (in-doubt retried $retried); $ticks CPU ticks during the outage; down logged $down, up $up"
echo "RESULT smtp_outage msgs=$OUT_MSGS outage_s=$OUTAGE drain_s=$((t1 - t0)) cpu_ticks=$ticks dups=$((n - ids))"
exit 0
