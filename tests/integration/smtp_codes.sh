#!/bin/bash
# smtp_codes.sh - every SMTP/LMTP reply code of posternd, table-driven
# (smtp_table.py over raw sockets), plus one plain send with swaks.
#
# Daemons: main (max_recipients = 3, max_message_size = 100k, LMTP
# listener), deny (allow_networks = 10.0.0.0/8), limits (max_sessions = 3,
# max_sessions_per_ip = 2, idle_timeout = 2s, data_timeout = 3s,
# greet_pause = 500ms). Last, SIGTERM: open sessions get 421 4.3.2.
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

# Every refusal left a line in Postfix's smtpd shape, also those during
# DATA (bare LF, NUL, smuggling) that only the client saw before.
IP='127\.0\.0\.1'
log_has() {	# LOG NAME PATTERN [COUNT]
	local n
	n=$(grep -c -- "$3" "$WORK/$1.log")
	if [ "$n" -ge "${4:-1}" ]; then
		echo "PASS log $2: expected ${4:-1}+ line(s), got $n"
	else
		echo "FAIL log $2: expected ${4:-1}+ line(s) matching $3, got $n"
		rc=1
	fi
}
R="NOQUEUE: reject:"
H="proto=ESMTP helo=<[^>]*>$"
log_has main "RCPT relay refusal" "$R RCPT from unknown\[$IP\]: 550 5\.7\.1 <b@elsewhere\.example>: Relay access denied; from=<a@home\.example> to=<b@elsewhere\.example> $H"
log_has main "RCPT bad syntax" "$R RCPT from unknown\[$IP\]: 501 5\.1\.3 Bad recipient address syntax; from=<a@home\.example> to=<b@> $H"
log_has main "unknown command" "$R FOO from unknown\[$IP\]: 500 5\.5\.2 Error: command not recognized; $H"
log_has main "MAIL before HELO" "$R MAIL from unknown\[$IP\]: 503 5\.5\.1 Error: send HELO/EHLO first; proto=SMTP$"
log_has main "bare LF in a command" "$R NOOP from unknown\[$IP\]: 550 5\.5\.2 Error: bare <LF> received; $H"
log_has main "DATA: bare LF" "$R END-OF-MESSAGE from unknown\[$IP\]: 550 5\.5\.2 Error: bare <LF> received; from=<a@home\.example> to=<barelf@foreign\.example> $H"
log_has main "DATA: bare CR" "$R END-OF-MESSAGE from unknown\[$IP\]: 550 5\.5\.2 Error: bare <CR> received; from=<a@home\.example> to=<barecr@foreign\.example> $H"
log_has main "DATA: NUL" "$R END-OF-MESSAGE from unknown\[$IP\]: 550 5\.6\.0 Error: NUL character in message data; from=<a@home\.example> to=<nul@foreign\.example> $H"
log_has main "DATA: smuggling" "$R END-OF-MESSAGE from unknown\[$IP\]: 550 5\.5\.2 Error: bare <[CL][RF]> received; from=<a@home\.example> to=<smuggle[1-4]@foreign\.example> $H" 4
log_has main "DATA: too big" "$R END-OF-MESSAGE from unknown\[$IP\]: 552 5\.3\.4 Message size exceeds fixed limit; from=<a@home\.example> to=<big@foreign\.example> $H"
log_has main "LMTP refusal" "$R [A-Z]* from unknown\[$IP\]: [45][0-9][0-9] .*proto=LMTP" 1
log_has deny "connect refused by allow_networks" "$R CONNECT from unknown\[$IP\]: 554 5\.7\.1 <\[$IP\]>: Client host rejected: Access denied; "
log_has limits "too many connections" "$R CONNECT from unknown\[127\.0\.0\.[0-9]*\]: 421 4\.7\.0 "
# no injected command ran: no line names the smuggled recipients
if grep -q 'inject[1-4]@foreign' "$WORK/main.log"; then
	echo "FAIL log: a smuggled RCPT was run: $(grep 'inject' "$WORK/main.log" | head -2)"
	rc=1
else
	echo "PASS log: no smuggled RCPT reached the command reader"
fi
# A message's life: one queue id on its client=, message-id=,
# (queue active), delivery and removed lines.
qid=$(grep -o '[0-9A-F]\{16\}: to=<swaks@foreign\.example>' "$WORK/main.log" | cut -c1-16)
if [ -n "$qid" ] &&
   grep -q "^postern: info: $qid: client=unknown\[$IP\]$" "$WORK/main.log" &&
   grep -q "^postern: info: $qid: message-id=<" "$WORK/main.log" &&
   grep -q "^postern: info: $qid: from=<a@home\.example>, size=[0-9]*, nrcpt=1 (queue active)$" "$WORK/main.log" &&
   grep -q "^postern: info: $qid: to=<swaks@foreign\.example>, relay=maildir, delay=[0-9.]*, delays=[0-9.]*/[0-9.]*/[0-9.]*/[0-9.]*, dsn=2\.0\.0, status=sent (delivered to maildir), attempts=1$" "$WORK/main.log" &&
   grep -q "^postern: info: $qid: removed$" "$WORK/main.log"; then
	echo "PASS log: $qid has client, message-id, queue active, sent and removed lines"
else
	echo "FAIL log: the swaks message's lines: $(grep "${qid:-none}" "$WORK/main.log")"
	rc=1
fi

# SIGTERM with sessions open: each is told 421 4.3.2 before it is
# closed (RFC 5321 4.2.2), one in a transaction over SMTP (MAIL given),
# one idle over LMTP.
if "$PYTHON" - "$P_SMTP" "$P_LMTP" "$MAIN_PID" >"$WORK/term.out" 2>&1 <<'PY'
import os, signal, socket, sys
def session(port, hello, cmds):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    f = s.makefile("rb")
    f.readline()
    for c in [hello] + cmds:
        s.sendall(c + b"\r\n")
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                break
        if line[:1] != b"2":
            sys.exit("%r: %r" % (c, line))
    return s, f
smtp = session(sys.argv[1], b"EHLO term.example", [b"MAIL FROM:<a@home.example>"])
lmtp = session(sys.argv[2], b"LHLO term.example", [])
os.kill(int(sys.argv[3]), signal.SIGTERM)
for name, (s, f) in (("smtp", smtp), ("lmtp", lmtp)):
    line = f.readline()
    if not line.startswith(b"421 4.3.2 "):
        sys.exit("%s: after SIGTERM %r, want 421 4.3.2" % (name, line))
    if f.readline() != b"":
        sys.exit("%s: not closed after the 421" % name)
print(line.decode().strip())
PY
then
	echo "PASS SIGTERM: open SMTP and LMTP sessions get $(cat "$WORK/term.out") and are closed"
else
	echo "FAIL SIGTERM: $(cat "$WORK/term.out")"
	rc=1
fi
wait "$MAIN_PID"
st=$?
if [ "$st" = 0 ]; then
	echo "PASS main daemon SIGTERM: expected exit 0, got 0"
else
	echo "FAIL main daemon SIGTERM: expected exit 0, got $st"
	rc=1
fi

# The other daemons survived all of it and stop cleanly.
for pair in "deny:$DENY_PID" "limits:$LIM_PID"; do
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
