#!/bin/bash
# kill_restart.sh - exactly-once under SIGKILL (RELIABILITY.md 4, T3-lite).
#
# oracle.py sends 20,000 small messages from 20 threads, recording each
# transaction as ok / failed / unknown. Meanwhile posternd is killed with
# SIGKILL three times (at about 1/4, 1/2 and 3/4 of the messages) and
# restarted each time with the same configuration. After the sender is
# done and the queue has drained: every ok id delivered exactly once, no
# id twice, no failed id delivered, unknown ids at most once. Then one
# more SIGTERM + restart must deliver nothing new.
#
# Env: KR_MSGS (default 20000), KR_KILLS (default 3), KR_DRAIN (s, 60).
. "$(dirname "$0")/common.sh"

MSGS=${KR_MSGS:-20000}
KILLS=${KR_KILLS:-3}
DRAIN=${KR_DRAIN:-60}
PORT=$(free_port)
CONF=$WORK/kr.conf
LOG=$WORK/kr.log
MD=$WORK/kr/maildir
STATES=$WORK/states
PROGRESS=$WORK/progress
rc=0

write_config "$CONF" "$WORK/kr" "$PORT"
start_daemon "$CONF" "$LOG" || fail "daemon did not start"

"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$MSGS" \
	--threads 20 --states "$STATES" --progress "$PROGRESS" &
SENDER=$!
DAEMON_PIDS="$DAEMON_PIDS $SENDER"

progress() { cat "$PROGRESS" 2>/dev/null || echo 0; }

k=1
while [ $k -le "$KILLS" ]; do
	target=$((MSGS * k / (KILLS + 1)))
	while [ "$(progress)" -lt "$target" ] && kill -0 "$SENDER" 2>/dev/null
	do
		sleep 0.05
	done
	kill -0 "$SENDER" 2>/dev/null || break
	echo "kill $k: SIGKILL at $(progress) of $MSGS messages done"
	kill9_daemon "$DAEMON_PID"
	sleep 0.$((RANDOM % 5))
	start_daemon "$CONF" "$LOG" || { echo "FAIL restart $k"; exit 1; }
	k=$((k + 1))
done
[ $k -gt "$KILLS" ] || { echo "FAIL only $((k - 1)) of $KILLS kills done before the sender ended"; rc=1; }

wait "$SENDER" || fail "oracle send failed"
ok=$(grep -c ' ok$' "$STATES")
unknown=$(grep -c ' unknown$' "$STATES")

# Drain: at least every ok message, and no change for 2 s.
n=0 prev=-1 stable=0
for i in $(seq 1 $((DRAIN * 5))); do
	n=$(maildir_count "$MD")
	if [ "$n" -eq "$prev" ]; then
		stable=$((stable + 1))
	else
		stable=0
	fi
	prev=$n
	[ "$n" -ge "$ok" ] && [ $stable -ge 10 ] && break
	sleep 0.2
done
echo "drained: $n files (ok=$ok, unknown=$unknown)"

stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || { echo "FAIL SIGTERM exit status $STOP_RC, expected 0"; rc=1; }
# A clean restart must not deliver anything again.
start_daemon "$CONF" "$LOG" || fail "final restart"
sleep 3
stop_daemon "$DAEMON_PID"
n2=$(maildir_count "$MD")
if [ "$n2" -ne "$n" ]; then
	echo "FAIL restart after drain: $n files before, $n2 after"
	rc=1
fi

"$PYTHON" "$HERE/oracle.py" check --states "$STATES" --maildir "$MD" || rc=1
if [ $rc -ne 0 ]; then
	echo "--- daemon log, not info (head) ---"
	grep -v ': info: ' "$LOG" | head -20
	grep -c 'deferred\|in-doubt\|hold' "$LOG"
fi
exit $rc
