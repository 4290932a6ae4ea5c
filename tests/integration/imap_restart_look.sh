#!/bin/bash
# imap_restart_look.sh - after a crash, an in-doubt APPEND is looked for
# only once the server has had a moment to finish storing it.
#
# posternd (driver imap, one worker) is SIGKILLed while Dovecot's imap
# process that serves it is stopped (SIGSTOP) with the whole APPEND in
# its socket buffer: the server has the message but has not stored it
# yet. posternd is restarted; a moment later the imap process goes on
# (SIGCONT) and stores the message. The restarted posternd must find it
# by look (UID SEARCH HEADER) and not append it a second time.
. "$(dirname "$0")/common.sh"
. "$HERE/dovecot.sh"

[ -x /usr/lib/dovecot/imap ] ||
	skip "dovecot imap not found (Debian package dovecot-imapd)"
command -v ss >/dev/null || skip "ss not found (Debian package iproute2)"
STOPPED=""
trap 'for p in $STOPPED; do kill -CONT "$p" 2>/dev/null; done; dovecot_stop; cleanup' EXIT
dovecot_start "$WORK/dv" alice || fail "dovecot did not start"
echo pw >"$WORK/pw"
alice() { dovecot_maildir_count alice; }
alice_has() { [ "$(alice)" -ge "$1" ]; }

send() {
	"$PYTHON" - "$@" <<'PY' || fail "sending to port $1 failed"
import smtplib, sys
port, i = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.sendmail("a@home.example", ["alice@foreign.example"],
           "From: a@home.example\r\nSubject: restart %d\r\n"
           "Message-Id: <restart-%d@home.example>\r\n\r\nbody %d\r\n" % (i, i, i))
s.quit()
PY
}
sent_lines() { grep -c 'to=<alice@foreign.example>.*status=sent' "$WORK/r.log"; }
# bytes waiting unread on Dovecot's side of posternd's IMAP connection
unread() {
	ss -tnH state established "( sport = :$DOVECOT_IMAP_PORT )" |
		awk '{ n += $1 } END { print n + 0 }'
}
unread_over() { [ "$(unread)" -gt "$1" ]; }
sent_over() { [ "$(sent_lines)" -ge "$1" ]; }

port=$(free_port)
write_config "$WORK/r.conf" "$WORK/r" "$port"
cat >>"$WORK/r.conf" <<EOF2
[foreign]
driver = imap
[workers]
count = 1
[queue]
backoff_min = 1h
backoff_max = 2h
[imap]
server = 127.0.0.1:$DOVECOT_IMAP_PORT
tls = none
auth_plaintext = yes
user = alice
password_file = $WORK/pw
EOF2
start_daemon "$WORK/r.conf" "$WORK/r.log" || fail "posternd did not start"
send "$port" 1
wait_until 30 alice_has 1 || fail "the first message: alice $(alice)"
# posternd keeps its session; stop the imap process behind it
master=$(cat "$DOVECOT_DIR/run/master.pid")
STOPPED=$(pgrep -P "$master" -x imap)
[ -n "$STOPPED" ] || fail "no imap process under dovecot ($master)"
kill -STOP $STOPPED
send "$port" 2
# the whole APPEND (command, literal, CRLF: more than 200 bytes) is in
# the stopped process's socket buffer
wait_until 30 unread_over 200 ||
	fail "posternd did not send the APPEND ($(unread) bytes)"
kill9_daemon "$DAEMON_PID"
start_daemon "$WORK/r.conf" "$WORK/r.log" || fail "posternd did not restart"
# The server stores the message a moment after the restart: here 0.3 s
# after "started". posternd looks 1 s after it starts; when it looked at
# once, it found nothing and appended a second copy. (A look slower
# than 0.3 s would let this pass even without the delay; with it, the
# margin is about 0.7 s.)
sleep 0.3
kill -CONT $STOPPED
STOPPED=""
wait_until 30 grep -q 'imap(alice).*Disconnected.*APPEND' \
	"$DOVECOT_DIR/dovecot.log" || fail "the old session did not end"
wait_until 30 sent_over 2 ||
	fail "the second message was not recorded as sent"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exited $STOP_RC"
grep -q 'Sanitizer\|runtime error' "$WORK/r.log" &&
	fail "sanitizer report in $WORK/r.log"
grep 'to=<alice@foreign.example>' "$WORK/r.log" | tail -1
[ "$(alice)" = 2 ] || fail "alice has $(alice) messages, want 2"
grep -q 'status=sent (found by look' "$WORK/r.log" ||
	fail "the second message was not found by look"
echo "the in-doubt APPEND was found by look after the restart, stored once"
exit 0
