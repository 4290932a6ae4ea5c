#!/bin/bash
# dsn.sh - bounces make RFC 3464 reports to the envelope sender through
# [bounce] relay. The foreign side is an smtp-sink that refuses every RCPT
# (-f RCPT), the home relay a second smtp-sink that keeps what it gets.
#
#  1. a message from alice to x and y: both bounce; ONE report arrives at
#     the home relay, from <>, to alice, multipart/report with a block per
#     recipient (Action: failed, Status: 5.x.x) and the original headers;
#  2. a message with the null sender bounces without any report;
#  3. with the home relay down the bounce is still recorded and the lost
#     report is logged as NOT sent.
. "$(dirname "$0")/common.sh"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"
SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi

fport=$(free_port)
hport=$(free_port)
mkdir -p "$WORK/home"
chmod 777 "$WORK/home"
"$SINK" "${SINK_USER[@]}" -f RCPT "127.0.0.1:$fport" 100 >/dev/null 2>&1 &
DAEMON_PIDS="$DAEMON_PIDS $!"
"$SINK" "${SINK_USER[@]}" -d "$WORK/home/%M." "127.0.0.1:$hport" 100 \
	>/dev/null 2>&1 &
HOME_PID=$!
DAEMON_PIDS="$DAEMON_PIDS $HOME_PID"
sleep 0.5

port=$(free_port)
LOG=$WORK/posternd.log
write_config "$WORK/p.conf" "$WORK/p" "$port"
cat >>"$WORK/p.conf" <<EOC
[foreign]
driver = smtp
[smtp]
relay = 127.0.0.1:$fport
tls = none
[bounce]
relay = 127.0.0.1:$hport
tls = none
EOC
start_daemon "$WORK/p.conf" "$LOG" || fail "posternd did not start"

wait_log() {
	local i
	for i in $(seq 1 100); do
		grep -q -- "$1" "$LOG" && return 0
		sleep 0.1
	done
	return 1
}
reports() { find "$WORK/home" -type f | wc -l; }

"$SWAKS" -s 127.0.0.1 -p "$port" -f alice@home.example \
	-t x@foreign.example,y@foreign.example --header "Subject: dsn one" \
	--silent 2 >/dev/null || fail "swaks 1"
wait_log 'non-delivery notification to <alice@home.example> for 2 recipient(s): sent' ||
	fail "no report sent: $(tail -3 "$LOG")"
sleep 0.5
[ "$(reports)" = 1 ] || fail "$(reports) reports at the home relay"
R=$(find "$WORK/home" -type f)
for want in 'X-Mail-Args: <>' 'X-Rcpt-Args: <alice@home.example>' \
	'To: <alice@home.example>' \
	'report-type=delivery-status' \
	'Final-Recipient: rfc822; x@foreign.example' \
	'Final-Recipient: rfc822; y@foreign.example' \
	'Action: failed' 'Status: 5.' 'Diagnostic-Code: smtp; 5' \
	'Content-Type: text/rfc822-headers' 'Subject: dsn one'; do
	grep -q -F -- "$want" "$R" || fail "report lacks \"$want\": $(cat "$R")"
done
[ "$(grep -c 'status=bounced' "$LOG")" = 2 ] || fail "not 2 bounces logged"
echo "PASS report: 2 bounces, one multipart/report from <> to the sender"

"$SWAKS" -s 127.0.0.1 -p "$port" -f '<>' -t z@foreign.example \
	--header "Subject: dsn null" --silent 2 >/dev/null || fail "swaks 2"
wait_log 'to=<z@foreign.example>.*status=bounced' || fail "z not bounced"
sleep 1
[ "$(reports)" = 1 ] || fail "a report for the null sender"
echo "PASS null sender: bounced, no report"

kill "$HOME_PID"
wait "$HOME_PID" 2>/dev/null
"$SWAKS" -s 127.0.0.1 -p "$port" -f bob@home.example -t w@foreign.example \
	--header "Subject: dsn three" --silent 2 >/dev/null || fail "swaks 3"
wait_log 'non-delivery notification to <bob@home.example> NOT sent' ||
	fail "lost report not logged: $(tail -3 "$LOG")"
grep -q 'to=<w@foreign.example>.*status=bounced' "$LOG" || fail "w not bounced"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "exit status $STOP_RC"
echo "PASS relay down: bounce recorded, lost report logged"
exit 0
