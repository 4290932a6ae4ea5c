#!/bin/bash
# ccmail_e2e.sh - posternd with the ccmail driver, end to end.
#
# smtp-source sends CC_MSGS messages (default 2000) with 2 recipients
# (b@, 2b@foreign.example, both in the address map), and swaks one with
# an attachment to a mapped and an unmapped recipient. A stand-in import
# program (ccmail_importer.py) moves every *.ccm out of the drop
# directory as it appears. posternd is killed with SIGKILL while the
# queue drains and restarted. At the end: exactly CC_MSGS x 2 + 1 import
# files were imported, none twice, every one well formed with its
# attachments; the unmapped recipient bounced with 5.1.1; and a clean
# restart imports nothing more.
. "$(dirname "$0")/common.sh"

SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || skip "smtp-source not found (Debian package postfix)"
command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"

MSGS=${CC_MSGS:-2000}
DRAIN=${CC_DRAIN:-120}
PORT=$(free_port)
CONF=$WORK/cc.conf
LOG=$WORK/cc.log
DROP=$WORK/drop
OUT=$WORK/imported
EXPECT=$((MSGS * 2 + 1))
rc=0

mkdir -p "$DROP" "$OUT"
cat >"$WORK/map" <<MAP
# test map
b@foreign.example = Beta, One at FOREIGN
2b@foreign.example = Beta, Two
MAP
write_config "$CONF" "$WORK/cc" "$PORT" "max_sessions = 100"
cat >>"$CONF" <<CONFEOF
[foreign]
driver = ccmail
[ccmail]
drop_dir = $DROP
address_map = $WORK/map
fallback = none
postoffice = FOREIGN
CONFEOF

"$PYTHON" "$HERE/ccmail_importer.py" run "$DROP" "$OUT" "$WORK/stop" &
IMPORTER=$!
DAEMON_PIDS="$DAEMON_PIDS $IMPORTER"

start_daemon "$CONF" "$LOG" || fail "daemon did not start"
head -c 300000 /dev/urandom >"$WORK/att.bin"
swaks --server "127.0.0.1:$PORT" --from a@home.example \
	--to b@foreign.example,nobody@foreign.example \
	--attach @"$WORK/att.bin" --h-Subject "with attachment" \
	>"$WORK/swaks.out" 2>&1 || fail "swaks failed: $(tail -3 "$WORK/swaks.out")"
"$SMTP_SOURCE" -s 20 -m "$MSGS" -l 2048 -r 2 -f a@home.example \
	-t b@foreign.example "127.0.0.1:$PORT" >"$WORK/src.out" 2>&1 ||
	fail "smtp-source failed: $(tail -3 "$WORK/src.out")"

imported() { find "$OUT" -name '*.ccm' | wc -l; }

# SIGKILL while the queue drains, then restart with the same config.
for i in $(seq 1 200); do
	[ "$(imported)" -ge $((EXPECT / 4)) ] && break
	sleep 0.05
done
echo "SIGKILL at $(imported) of $EXPECT imported"
[ "$(imported)" -lt "$EXPECT" ] || echo "note: all imported before the kill"
kill9_daemon "$DAEMON_PID"
start_daemon "$CONF" "$LOG" || fail "restart after SIGKILL"

n=0
for i in $(seq 1 $((DRAIN * 5))); do
	n=$(imported)
	[ "$n" -ge "$EXPECT" ] && break
	sleep 0.2
done
sleep 1
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || { echo "FAIL SIGTERM exit status $STOP_RC"; rc=1; }
start_daemon "$CONF" "$LOG" || fail "final restart"
sleep 2
stop_daemon "$DAEMON_PID"
touch "$WORK/stop"
wait "$IMPORTER"

"$PYTHON" "$HERE/ccmail_importer.py" check "$OUT" "$EXPECT" || rc=1
grep -q 'to=<nobody@foreign.example>.*status=bounced (5\.1\.1 ' "$LOG" ||
	{ echo "FAIL no 5.1.1 bounce for the unmapped recipient"; rc=1; }
grep -l '^Subject: with attachment' "$OUT"/*.ccm >"$WORK/att.list"
att=$(grep -h '^File item: ' $(cat "$WORK/att.list") | awk '{print $3}')
cmp -s "$OUT/$att" "$WORK/att.bin" ||
	{ echo "FAIL the swaks attachment differs from the original"; rc=1; }
echo "imported $(imported) import files, expected $EXPECT"
[ $rc -eq 0 ] && echo "RESULT ccmail_e2e msgs=$MSGS rcpts=2 files=$EXPECT"
if [ $rc -ne 0 ]; then
	grep -v ': info: ' "$LOG" | head -20
fi
exit $rc
