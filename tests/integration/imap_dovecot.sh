#!/bin/bash
# imap_dovecot.sh - the imap driver against a private Dovecot (dovecot.sh),
# and the lmtp driver's IMAP probe.
#
#  1. Over STARTTLS with a verified certificate, logging in as each
#     recipient through Dovecot's master user (user = %l*postern):
#     IMAP_MSGS (default 30) messages to alice and carol arrive exactly
#     once each, every copy with its own X-Postern-Delivery header; bob
#     (over quota: NO [OVERQUOTA]) is deferred, not delivered, and so is
#     nobody (no such user: the master login is refused).
#  2. Lost replies: cut_proxy.py hides LITERAL+ (so each literal waits
#     for the server's "+"), drops Dovecot's tagged OK to the first 3
#     APPENDs and cuts the connection. Those entries go in-doubt, are
#     looked for (UID SEARCH HEADER), found, and recorded as sent: alice
#     has every message exactly once.
#  3. SIGKILL: IMAP_KILL_MSGS (default 300) queued messages are delivered
#     while posternd is killed with SIGKILL three times, each soon after
#     the first new copy shows up; after the last restart alice has
#     every message exactly once.
#  4. The lmtp driver with probe = imap://...: cut_proxy.py drops the
#     final reply of the first 2 LMTP transactions; the in-doubt entries
#     are found by the probe and recorded as sent, nothing twice.
. "$(dirname "$0")/common.sh"
. "$HERE/dovecot.sh"

command -v openssl >/dev/null || skip "openssl not found (Debian package openssl)"
[ -x /usr/lib/dovecot/imap ] ||
	skip "dovecot imap not found (Debian package dovecot-imapd)"
MSGS=${IMAP_MSGS:-30}
KILL_MSGS=${IMAP_KILL_MSGS:-300}

trap 'dovecot_stop; cleanup' EXIT
DOVECOT_TLS=1 dovecot_start "$WORK/dv" alice carol bob:1 ||
	fail "dovecot did not start"
echo masterpw >"$WORK/masterpw"

# wait_for COUNT_CMD N SECS: until COUNT_CMD prints >= N.
wait_for() {
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$($1)" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
alice() { dovecot_maildir_count alice; }
carol() { dovecot_maildir_count carol; }

# files USER: the message files of USER's INBOX.
files() {
	find "$DOVECOT_DIR/mail/$1/Maildir/new" \
		"$DOVECOT_DIR/mail/$1/Maildir/cur" -type f 2>/dev/null
}
# dups USER HEADER: how many values of HEADER occur more than once.
dups() {
	files "$1" | xargs -r grep -h -i -m1 "^$2:" | sort | uniq -d | wc -l
}
# hdrs USER HEADER: how many files have HEADER.
hdrs() {
	files "$1" | xargs -r grep -l -i -m1 "^$2:" | wc -l
}

# config NAME PORT: a posternd config with driver = imap; more sections
# may be appended.
config() {
	write_config "$WORK/$1.conf" "$WORK/$1" "$2"
	cat >>"$WORK/$1.conf" <<EOF2
[foreign]
driver = imap
[workers]
count = 2
[queue]
backoff_min = 1h
backoff_max = 2h
EOF2
}

# --- 1. STARTTLS, master user, exactly once, over quota -------------------
port=$(free_port)
config tls "$port"
cat >>"$WORK/tls.conf" <<EOF
[imap]
server = localhost:$DOVECOT_IMAP_PORT
tls = encrypt
tls_ca_file = $DOVECOT_DIR/etc/cert.pem
user = %l*postern
password_file = $WORK/masterpw
EOF
start_daemon "$WORK/tls.conf" "$WORK/tls.log" || fail "1: posternd did not start"
send_msgs "$port" 1 "$MSGS" imap alice@foreign.example carol@foreign.example
send_msgs "$port" 1000 1000 imap bob@foreign.example nobody@foreign.example
wait_for alice "$MSGS" 30 && wait_for carol "$MSGS" 30 ||
	fail "1: alice $(alice), carol $(carol) of $MSGS"
for i in $(seq 1 100); do
	grep -q 'to=<bob@foreign.example>.*status=' "$WORK/tls.log" &&
		grep -q 'to=<nobody@foreign.example>.*status=' "$WORK/tls.log" &&
		break
	sleep 0.1
done
sleep 1		# a late duplicate would show now
stop_clean 1 "$WORK/tls.log"
[ "$(alice)" = "$MSGS" ] && [ "$(carol)" = "$MSGS" ] ||
	fail "1: alice $(alice), carol $(carol), want $MSGS each"
for u in alice carol; do
	[ "$(hdrs $u X-Postern-Delivery)" = "$MSGS" ] ||
		fail "1: $u: $(hdrs $u X-Postern-Delivery) copies with the header"
	[ "$(dups $u X-Postern-Delivery)" = 0 ] &&
		[ "$(dups $u Message-Id)" = 0 ] || fail "1: $u has duplicates"
done
grep 'to=<bob@foreign.example>' "$WORK/tls.log" |
	grep -q 'status=deferred (4.2.2 .*over quota' ||
	fail "1: bob not deferred for quota: $(grep 'to=<bob' "$WORK/tls.log")"
grep 'to=<nobody@foreign.example>' "$WORK/tls.log" |
	grep -q 'status=deferred (4.4.1 .*login as nobody\*postern refused' ||
	fail "1: nobody not deferred: $(grep 'to=<nobody' "$WORK/tls.log")"
[ "$(dovecot_maildir_count bob)" = 0 ] || fail "1: bob got mail"
grep -q 'TLS' "$DOVECOT_DIR/dovecot.log" ||
	fail "1: no TLS session in the Dovecot log"
echo "1: $MSGS x 2 over STARTTLS exactly once, bob (quota) and nobody deferred"

# --- 2. lost replies after APPEND -------------------------------------------
echo pw >"$WORK/pw"
start_cut_proxy imap "$DOVECOT_IMAP_PORT" 3 "$WORK/proxy-imap.out" nolitplus
port=$(free_port)
config cut "$port"
cat >>"$WORK/cut.conf" <<EOF
[imap]
server = 127.0.0.1:$PROXY_PORT
tls = none
auth_plaintext = yes
user = alice
password_file = $WORK/pw
EOF
a0=$(alice)
start_daemon "$WORK/cut.conf" "$WORK/cut.log" || fail "2: posternd did not start"
send_msgs "$port" 101 $((100 + MSGS)) imap alice@foreign.example
wait_for alice $((a0 + MSGS)) 30 || fail "2: alice $(alice) of $((a0 + MSGS))"
for i in $(seq 1 100); do
	[ "$(grep -c 'found by look' "$WORK/cut.log")" -ge 3 ] && break
	sleep 0.1
done
sleep 1
stop_clean 2 "$WORK/cut.log"
n=$(grep -c '^cut' "$WORK/proxy-imap.out")
[ "$n" = 3 ] || fail "2: the proxy cut $n times, not 3"
n=$(grep -c '^continuation' "$WORK/proxy-imap.out")
[ "$n" -ge "$MSGS" ] || fail "2: $n synchronizing literals, want $MSGS"
n=$(grep -c 'status=in-doubt' "$WORK/cut.log")
[ "$n" -ge 3 ] || fail "2: $n in-doubt outcomes, want 3"
n=$(grep -c 'status=sent (found by look' "$WORK/cut.log")
[ "$n" = 3 ] || fail "2: $n found by look, want 3"
[ "$(alice)" = $((a0 + MSGS)) ] && [ "$(dups alice Message-Id)" = 0 ] ||
	fail "2: alice $(alice), want $((a0 + MSGS)); $(dups alice Message-Id) twice"
echo "2: 3 lost APPEND replies found by look, alice $(alice) exactly once"

# --- 3. SIGKILL in the middle of a batch ------------------------------------
port=$(free_port)
config kill "$port"
cat >>"$WORK/kill.conf" <<EOF
[imap]
server = 127.0.0.1:$(free_port)
tls = none
auth_plaintext = yes
user = alice
password_file = $WORK/pw
EOF
a0=$(alice)
# queue everything while the IMAP server is unreachable
start_daemon "$WORK/kill.conf" "$WORK/kill.log" || fail "3: posternd did not start"
send_msgs "$port" 2001 $((2000 + KILL_MSGS)) imap alice@foreign.example
stop_clean 3 "$WORK/kill.log"
sed -i "s/^server = 127.0.0.1:.*/server = 127.0.0.1:$DOVECOT_IMAP_PORT/" \
	"$WORK/kill.conf"
echo "3: $KILL_MSGS queued; alice had $a0"
kill_on_progress "$WORK/kill.conf" "$WORK/kill.log" 3 alice
start_daemon "$WORK/kill.conf" "$WORK/kill.log" || fail "3: last restart"
wait_for alice $((a0 + KILL_MSGS)) 60 ||
	fail "3: alice $(($(alice) - a0)) of $KILL_MSGS"
sleep 1
stop_clean 3 "$WORK/kill.log"
[ "$(alice)" = $((a0 + KILL_MSGS)) ] && [ "$(dups alice Message-Id)" = 0 ] &&
	[ "$(dups alice X-Postern-Delivery)" = 0 ] ||
	fail "3: alice $(($(alice) - a0)), want $KILL_MSGS"
echo "3: $KILL_MSGS after 3 SIGKILLs exactly once" \
	"($(grep -c 'found by look' "$WORK/kill.log") found by look)"

# --- 4. lmtp with an IMAP probe ---------------------------------------------
start_cut_proxy lmtp "$DOVECOT_LMTP_PORT" 2 "$WORK/proxy-lmtp.out"
port=$(free_port)
write_config "$WORK/probe.conf" "$WORK/probe" "$port"
cat >>"$WORK/probe.conf" <<EOF
[foreign]
driver = lmtp
[lmtp]
relay = 127.0.0.1:$PROXY_PORT
probe = imap://%l*postern@127.0.0.1:$DOVECOT_IMAP_PORT/INBOX
probe_password_file = $WORK/masterpw
[workers]
count = 2
[queue]
backoff_min = 1h
backoff_max = 2h
EOF
a0=$(alice)
c0=$(carol)
start_daemon "$WORK/probe.conf" "$WORK/probe.log" || fail "4: posternd did not start"
send_msgs "$port" 3001 3010 imap alice@foreign.example carol@foreign.example
wait_for alice $((a0 + 10)) 30 && wait_for carol $((c0 + 10)) 30 ||
	fail "4: alice $(($(alice) - a0)), carol $(($(carol) - c0)) of 10"
for i in $(seq 1 100); do
	[ "$(grep -c 'found by look' "$WORK/probe.log")" -ge 2 ] && break
	sleep 0.1
done
sleep 1
stop_clean 4 "$WORK/probe.log"
n=$(grep -c '^cut' "$WORK/proxy-lmtp.out")
[ "$n" = 2 ] || fail "4: the proxy cut $n times, not 2"
n=$(grep -c 'status=sent (found by look' "$WORK/probe.log")
[ "$n" = 2 ] || fail "4: $n found by look, want 2"
[ "$(alice)" = $((a0 + 10)) ] && [ "$(carol)" = $((c0 + 10)) ] &&
	[ "$(dups alice Message-Id)" = 0 ] && [ "$(dups carol Message-Id)" = 0 ] ||
	fail "4: alice $(($(alice) - a0)), carol $(($(carol) - c0)), want 10"
if grep -q 'held for the operator' "$WORK/probe.log"; then
	fail "4: an in-doubt entry was held"
fi
echo "4: lmtp with probe: 2 lost final replies found by the probe"
exit 0
