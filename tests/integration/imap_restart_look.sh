#!/bin/bash
# imap_restart_look.sh - after a crash, an in-doubt APPEND is looked for
# only once the server has had a moment to finish storing it, and one
# that a look does not find is appended again only after [queue]
# look_again.
#
# Each round: posternd (driver imap, one worker) is SIGKILLed while
# Dovecot's imap process that serves it is stopped (SIGSTOP) with the
# whole APPEND in its socket buffer: the server has the message but has
# not stored it yet. posternd is restarted, and the imap process goes on
# (SIGCONT) and stores the message:
#  1. 0.3 s after the restart. posternd looks 1 s after it starts, finds
#     it (UID SEARCH HEADER) and does not append it a second time.
#  2. only after the restarted posternd's first look has not found it
#     ("not found at the foreign side yet"): a server slower than the
#     1 s delay. The look after look_again (5 s) finds it: stored once.
#  3. The same with look_again = 0 (0.1.0's behaviour), the control:
#     the first look that does not find it appends it again, and alice
#     holds that message twice once the stopped process goes on.
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
# bytes waiting unread on Dovecot's side of posternd's IMAP connection
unread() {
	ss -tnH state established "( sport = :$DOVECOT_IMAP_PORT )" |
		awk '{ n += $1 } END { print n + 0 }'
}
unread_over() { [ "$(unread)" -gt "$1" ]; }

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
master=$(cat "$DOVECOT_DIR/run/master.pid")
log_has() { [ "$(grep -c "$1" "$WORK/r.log")" -ge "$2" ]; }
dovecot_log_has() { [ "$(grep -c "$1" "$DOVECOT_DIR/dovecot.log")" -ge "$2" ]; }

# stalled_append I: posternd keeps its session; stop the imap processes
# (the one behind it among them), send message I, wait until the whole
# APPEND is in the stopped process's socket buffer, SIGKILL posternd and
# start it again.
stalled_append() {
	STOPPED=$(pgrep -P "$master" -x imap)
	[ -n "$STOPPED" ] || fail "round $1: no imap process under dovecot ($master)"
	kill -STOP $STOPPED
	send "$port" "$1"
	# command, literal, CRLF: more than 200 bytes
	wait_until 30 unread_over 200 ||
		fail "round $1: posternd did not send the APPEND ($(unread) bytes)"
	kill9_daemon "$DAEMON_PID"
	start_daemon "$WORK/r.conf" "$WORK/r.log" ||
		fail "round $1: posternd did not restart"
}
# go_on I: the stopped processes go on; the old session (its APPEND
# stored) ends.
go_on() {
	kill -CONT $STOPPED
	STOPPED=""
	wait_until 30 dovecot_log_has 'imap(alice).*Disconnected.*APPEND' "$1" ||
		fail "round $1: the old session did not end"
}

# 1. The server stores the message 0.3 s after "started"; posternd looks
# 1 s after it starts. When it looked at once, it found nothing and
# appended a second copy. (A look slower than 0.3 s would let this pass
# even without the delay; with it, the margin is about 0.7 s.)
stalled_append 2
sleep 0.3
go_on 1
wait_until 30 log_has 'to=<alice@foreign.example>.*status=sent' 2 ||
	fail "round 1: the second message was not recorded as sent"
[ "$(alice)" = 2 ] || fail "round 1: alice has $(alice) messages, want 2"
log_has 'status=sent (found by look' 1 ||
	fail "round 1: the second message was not found by look"
echo "1: the in-doubt APPEND was found by look after the restart, stored once"

# 2. The server stores it only after posternd's first look found nothing.
stalled_append 3
wait_until 30 log_has 'status=in-doubt (4.4.2 not found at the foreign side yet' 1 ||
	fail "round 2: no look that did not find it: $(tail -2 "$WORK/r.log")"
go_on 2
wait_until 30 log_has 'to=<alice@foreign.example>.*status=sent' 3 ||
	fail "round 2: the third message was not recorded as sent"
[ "$(alice)" = 3 ] || fail "round 2: alice has $(alice) messages, want 3"
log_has 'status=sent (found by look' 2 ||
	fail "round 2: the third message was not found by the look after look_again"
echo "2: not found by the first look, found by the look after look_again," \
	"stored once"

# 3. look_again = 0: the first look that does not find it appends it.
sed -i 's/^\[queue\]$/[queue]\nlook_again = 0/' "$WORK/r.conf"
stalled_append 4
wait_until 30 log_has 'to=<alice@foreign.example>.*status=sent' 4 ||
	fail "round 3: the fourth message was not sent again"
go_on 3
wait_until 30 alice_has 5 ||
	fail "round 3 (control): alice has $(alice), want 5 (message 4 twice)"
echo "3: with look_again = 0 the stalled APPEND is stored twice (control)"

stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exited $STOP_RC"
grep -q 'Sanitizer\|runtime error' "$WORK/r.log" &&
	fail "sanitizer report in $WORK/r.log"
exit 0
