#!/bin/bash
# load_sanitize.sh - memory and thread safety under load (RELIABILITY.md
# 4, T11). Runs in every build, so under the ASan+UBSan and TSan runs of
# .ci/run too: there it is the load the sanitizers watch.
#
# oracle.py sends SAN_MSGS messages, each with 1 to 20 recipients, over
# 50 concurrent SMTP sessions to posternd with 8 workers (maildir). Then:
# every acknowledged (message, recipient) delivered exactly once and in
# the ledger (oracle.py check --store), posternd exits 0 at SIGTERM (a
# leak report of LSan would make it fail), and its log holds no
# sanitizer report.
#
# Env: SAN_MSGS (default 10000; with POSTERN_QUICK=1, as in the
# sanitizer runs of .ci/run, 2000: 10000 took too long there), SAN_SESSIONS (50), SAN_WORKERS (8).
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

if [ -n "$POSTERN_QUICK" ]; then
	MSGS=${SAN_MSGS:-2000}
else
	MSGS=${SAN_MSGS:-10000}
fi
SESSIONS=${SAN_SESSIONS:-50}
WORKERS=${SAN_WORKERS:-8}
PORT=$(free_port)
CONF=$WORK/san.conf
LOG=$WORK/san.log
MD=$WORK/san/maildir
STATES=$WORK/states

# every session comes from 127.0.0.1: lift the per-address limit too
write_config "$CONF" "$WORK/san" "$PORT" "max_sessions = $((SESSIONS + 10))" \
	"max_sessions_per_ip = $((SESSIONS + 10))"
printf '[workers]\ncount = %s\n' "$WORKERS" >>"$CONF"
start_daemon "$CONF" "$LOG" || fail "daemon did not start"
t0=$(date +%s)
"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$MSGS" \
	--threads "$SESSIONS" --rcpts 20 --states "$STATES" \
	--progress "$WORK/progress" || fail "oracle send failed"
t1=$(date +%s)
[ "$(grep -vc ' ok$' "$STATES")" = 0 ] ||
	fail "$(grep -vc ' ok$' "$STATES") of $MSGS not acknowledged"
# every message i has 1 + i % 20 recipients
want=$(awk -v n="$MSGS" 'BEGIN { for (i = 0; i < n; i++) s += 1 + i % 20; print s }')
for i in $(seq 1 1200); do
	[ "$(maildir_count "$MD")" -ge "$want" ] && break
	sleep 0.5
done
t2=$(date +%s)
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "exit status $STOP_RC at SIGTERM: $(grep -v ': info: ' "$LOG" | head -20)"
if grep -qE 'ERROR: (Address|Leak|Undefined)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$LOG"; then
	grep -E -A12 'ERROR: |WARNING: ThreadSanitizer|runtime error:' "$LOG" | head -60
	fail "sanitizer report in the daemon log"
fi
"$PYTHON" "$HERE/oracle.py" check --name load_sanitize --states "$STATES" \
	--maildir "$MD" --rcpts 20 --store "$WORK/san/store" --config "$CONF" ||
	fail "oracle check"
echo "PASS $MSGS messages, $want deliveries, $SESSIONS sessions, $WORKERS workers: sent in $((t1 - t0)) s, delivered by $((t2 - t0)) s, no sanitizer report"
echo "RESULT load_sanitize msgs=$MSGS deliveries=$want send_s=$((t1 - t0)) total_s=$((t2 - t0))"
