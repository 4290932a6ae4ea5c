#!/bin/bash
# smtp_codes.sh - every SMTP/LMTP reply code of posternd, table-driven
# (smtp_table.py over raw sockets), plus one plain send with swaks.
#
# Daemons: main (max_recipients = 3, max_message_size = 100k, LMTP
# listener), deny (allow_networks = 10.0.0.0/8), limits (max_sessions = 3,
# max_sessions_per_ip = 2, idle_timeout = 2s, data_timeout = 3s,
# greet_pause = 500ms).
. "$(dirname "$0")/common.sh"

command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"

MAXSIZE=102400
P_SMTP=$(free_port) P_LMTP=$(free_port) P_DENY=$(free_port)
P_LIM=$(free_port)

write_config "$WORK/main.conf" "$WORK/main" "$P_SMTP" \
	"lmtp_listen = 127.0.0.1:$P_LMTP" "max_recipients = 3" \
	"max_message_size = 100k" "idle_timeout = 30s"
printf '[workers]\ncount = 2\n' >>"$WORK/main.conf"
write_config "$WORK/deny.conf" "$WORK/deny" "$P_DENY" \
	"allow_networks = 10.0.0.0/8"
write_config "$WORK/limits.conf" "$WORK/limits" "$P_LIM" \
	"max_sessions = 3" "max_sessions_per_ip = 2" "idle_timeout = 2s" \
	"data_timeout = 3s" "greet_pause = 500ms"

start_daemon "$WORK/main.conf" "$WORK/main.log" || fail "main daemon"
MAIN_PID=$DAEMON_PID
start_daemon "$WORK/deny.conf" "$WORK/deny.log" || fail "deny daemon"
DENY_PID=$DAEMON_PID
start_daemon "$WORK/limits.conf" "$WORK/limits.log" || fail "limits daemon"
LIM_PID=$DAEMON_PID

rc=0
"$PYTHON" "$HERE/smtp_table.py" --smtp "$P_SMTP" --lmtp "$P_LMTP" \
	--maildir "$WORK/main/maildir" --deny "$P_DENY" --limits "$P_LIM" \
	--limits-maildir "$WORK/limits/maildir" \
	--max-size "$MAXSIZE" || rc=1

# A plain successful send with swaks.
out=$(swaks --server "127.0.0.1:$P_SMTP" --ehlo client.example \
	--from a@home.example --to swaks@foreign.example \
	--header "Subject: swaks plain send" --body "hello from swaks" \
	--timeout 20 2>&1)
src=$?
files=0
for i in $(seq 1 100); do
	files=$(maildir_count "$WORK/main/maildir/swaks@foreign.example")
	[ "$files" -ge 1 ] && break
	sleep 0.1
done
if [ $src -eq 0 ] && echo "$out" | grep -q '^<-  250 2.0.0' &&
   [ "$files" -eq 1 ] &&
   grep -q '^hello from swaks$' "$WORK"/main/maildir/swaks@foreign.example/new/*; then
	echo "PASS swaks plain send: expected swaks exit 0, 250 after the dot, 1 file; got exit $src, 1 file"
else
	echo "FAIL swaks plain send: expected swaks exit 0, 250 after the dot, 1 file; got exit $src, $files file(s)"
	echo "$out" | tail -8
	rc=1
fi

# The daemons survived all of it and stop cleanly.
for pair in "main:$MAIN_PID" "deny:$DENY_PID" "limits:$LIM_PID"; do
	name=${pair%%:*} pid=${pair#*:}
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "FAIL $name daemon: expected still running, got dead"
		tail -20 "$WORK/$name.log"
		rc=1
		continue
	fi
	stop_daemon "$pid"
	st=$STOP_RC
	if [ "$st" = 0 ]; then
		echo "PASS $name daemon SIGTERM: expected exit 0, got 0"
	else
		echo "FAIL $name daemon SIGTERM: expected exit 0, got $st"
		rc=1
	fi
done
if [ $rc -ne 0 ]; then
	echo "--- main daemon log (tail) ---"
	tail -30 "$WORK/main.log"
fi
exit $rc
