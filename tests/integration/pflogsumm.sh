#!/bin/bash
# pflogsumm.sh - pflogsumm reads posternd's log, and its counts are
# postern stats' counts.
#
# One posternd (driver smtp, [log] format = syslog, syslog_name =
# postern/smtp) writes the lines syslogd would write to mail.log on its
# stderr. Behind it, Postfix's smtp-sink is swapped on one port, because
# smtp-sink refuses by command, not by recipient: first it accepts
# (SENT_MSGS messages x 2 recipients: sent), then it answers RCPT with
# 450 (DEF_MSGS x 2: deferred once each, backoff_min = 1h), then with
# 500 (BNC_MSGS x 1: bounced). posternd is not restarted; its workers
# reconnect to each new sink. Then
#   pflogsumm --syslog-name=postern LOG
# must report SENT_MSGS*2 delivered, DEF_MSGS deferred (DEF_MSGS*2
# deferrals) and BNC_MSGS bounced, and postern -s STORE stats --json the
# same delivered, bounced and deferred entries.
#
# pflogsumm takes a program "NAME/COMMAND[PID]:" where NAME is postfix
# or its --syslog-name, so syslog_name needs the "/". Its "received"
# and "rejected" count only lines of a program named .../smtpd, which
# one posternd process cannot be at the same time as .../smtp: they
# stay 0 here and are not compared.
. "$(dirname "$0")/common.sh"

PFLOGSUMM=$(command -v pflogsumm || echo /usr/sbin/pflogsumm)
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$PFLOGSUMM" ] || skip "pflogsumm not found (Debian package pflogsumm)"
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"

SENT_MSGS=${SENT_MSGS:-6}
DEF_MSGS=${DEF_MSGS:-3}
BNC_MSGS=${BNC_MSGS:-2}

SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)	# smtp-sink will not run as root
	chmod 755 "$WORK"
fi

# start_sink NAME [options...]: on $SPORT; sets SINK_PID.
start_sink() {
	local name=$1
	shift
	"$SINK" "${SINK_USER[@]}" "$@" "127.0.0.1:$SPORT" 100 \
		>>"$WORK/$name.sink" 2>&1 &
	track_sink $! 127.0.0.1 "$SPORT" "$name: smtp-sink"
}

stop_sink() {
	kill "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
}

# wait_count PATTERN N: until LOG has N lines matching PATTERN (20 s).
wait_count() {
	local i
	for i in $(seq 1 200); do
		[ "$(grep -c -- "$1" "$LOG")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# send TAG N RCPTS...: N messages to the recipients (comma-separated).
send() {
	local i
	for i in $(seq 1 "$2"); do
		"$SWAKS" -s 127.0.0.1 -p "$PORT" -f "a@home.example" -t "$3" \
			--header "Subject: $1 $i" --silent 2 >/dev/null ||
			fail "swaks $1 $i"
	done
}

SPORT=$(free_port)
PORT=$(free_port)
LOG=$WORK/maillog
CONF=$WORK/postern.conf
write_config "$CONF" "$WORK" "$PORT"
cat >>"$CONF" <<EOF
[foreign]
driver = smtp
[workers]
count = 2
[smtp]
relay = 127.0.0.1:$SPORT
tls = none
[queue]
backoff_min = 1h
backoff_max = 2h
[log]
format = syslog
syslog_name = postern/smtp
EOF

start_sink accept
# start_daemon waits for "info: started: ", a text-format line
"$POSTERND" -f -c "$CONF" 2>>"$LOG" &
DAEMON_PID=$!
DAEMON_PIDS="$DAEMON_PIDS $DAEMON_PID"
wait_count ' postern/smtp\[[0-9]*\]: started: ' 1 ||
	fail "posternd did not start: $(tail -5 "$LOG")"

send sent "$SENT_MSGS" "s1@foreign.example,s2@foreign.example"
wait_count 'status=sent ' $((SENT_MSGS * 2)) ||
	fail "sent: $(grep -c 'status=sent ' "$LOG") of $((SENT_MSGS * 2))"
stop_sink

start_sink soft -r RCPT
send deferred "$DEF_MSGS" "d1@foreign.example,d2@foreign.example"
wait_count 'status=deferred ' $((DEF_MSGS * 2)) ||
	fail "deferred: $(grep -c 'status=deferred ' "$LOG") of $((DEF_MSGS * 2)): $(tail -5 "$LOG")"
stop_sink

start_sink hard -f RCPT
send bounced "$BNC_MSGS" "b1@foreign.example"
wait_count 'status=bounced ' "$BNC_MSGS" ||
	fail "bounced: $(grep -c 'status=bounced ' "$LOG") of $BNC_MSGS: $(tail -5 "$LOG")"
stop_sink
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exit $STOP_RC"

# every line of the log is in the syslog file shape
bad=$(grep -vc '^[A-Z][a-z][a-z] [ 1-3][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] [^ ]* postern/smtp\[[0-9]*\]: ' "$LOG")
[ "$bad" = 0 ] || fail "$bad line(s) not in the syslog shape: $(grep -v ' postern/smtp\[' "$LOG" | head -3)"

"$PFLOGSUMM" --syslog-name=postern --problems-first "$LOG" \
	>"$WORK/pflogsumm.out" 2>"$WORK/pflogsumm.err" ||
	fail "pflogsumm failed: $(cat "$WORK/pflogsumm.err")"
# "     12   delivered", "      3   deferred  (6 deferrals)"
pf() { awk -v w="$1" '$2 == w { print $1; exit }' "$WORK/pflogsumm.out"; }
pf_delivered=$(pf delivered)
pf_deferred=$(pf deferred)
pf_deferrals=$(sed -n 's/.* deferred *( *\([0-9]*\) *deferrals).*/\1/p' \
	"$WORK/pflogsumm.out" | head -1)
pf_bounced=$(pf bounced)

"$POSTERN" -s "$WORK/store" stats --json >"$WORK/stats.json" ||
	fail "postern stats failed"
st() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/stats.json" "$1"; }
st_delivered=$(st delivered)
st_deferred=$(st deferred)
st_bounced=$(st bounced)

echo "pflogsumm: delivered $pf_delivered, deferred $pf_deferred ($pf_deferrals deferrals), bounced $pf_bounced"
echo "postern stats: delivered $st_delivered, deferred (entries) $st_deferred, bounced $st_bounced"
rc=0
check() {	# NAME GOT WANT
	if [ "$2" = "$3" ]; then
		echo "PASS $1: $2"
	else
		echo "FAIL $1: got ${2:-nothing}, want $3"
		rc=1
	fi
}
check "pflogsumm delivered = postern stats delivered" "$pf_delivered" "$st_delivered"
check "pflogsumm deferrals = postern stats deferred entries" "$pf_deferrals" "$st_deferred"
check "pflogsumm bounced = postern stats bounced" "$pf_bounced" "$st_bounced"
check "delivered as sent" "$st_delivered" $((SENT_MSGS * 2))
check "deferred entries as sent" "$st_deferred" $((DEF_MSGS * 2))
check "pflogsumm deferred messages" "$pf_deferred" "$DEF_MSGS"
check "bounced as sent" "$st_bounced" "$BNC_MSGS"
if [ $rc -ne 0 ]; then
	echo "--- pflogsumm ---"
	head -40 "$WORK/pflogsumm.out"
	echo "--- log (tail) ---"
	tail -20 "$LOG"
fi
exit $rc
