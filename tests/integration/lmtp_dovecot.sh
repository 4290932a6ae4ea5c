#!/bin/bash
# lmtp_dovecot.sh - posternd with driver = lmtp delivers into a private
# Dovecot (dovecot.sh) over its LMTP Unix socket, then over loopback TCP.
#
#  1. LMTP_MSGS (default 40) messages, each to alice and carol, arrive
#     exactly once in each user's Maildir (Message-IDs counted), over one
#     reused connection per worker.
#  2. One message to alice, nobody (no such user: 550 at RCPT) and bob
#     (over quota: 452 after the dot, LMTP's per-recipient reply): alice
#     gets it once and is logged sent once, nobody is bounced once, bob is
#     deferred and never sent.
. "$(dirname "$0")/common.sh"
. "$HERE/dovecot.sh"

SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"
MSGS=${LMTP_MSGS:-40}

trap 'dovecot_stop; cleanup' EXIT
dovecot_start "$WORK/dv" alice carol bob:1 || fail "dovecot did not start"

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

# msgids USER: the Message-IDs in USER's Maildir, one a line, sorted.
msgids() {
	find "$DOVECOT_DIR/mail/$1/Maildir/new" "$DOVECOT_DIR/mail/$1/Maildir/cur" \
		-type f -exec grep -h -i -m1 '^Message-Id:' {} + | sort
}

# run RELAY NAME: one posternd, the two phases.
run() {
	local relay=$1 name=$2 port log conf a0 c0 i sent
	port=$(free_port)
	conf=$WORK/$name.conf
	log=$WORK/$name.log
	write_config "$conf" "$WORK/$name" "$port"
	cat >>"$conf" <<EOF
[foreign]
driver = lmtp
[lmtp]
relay = $relay
[workers]
count = 2
[queue]
backoff_min = 1h
backoff_max = 2h
EOF
	start_daemon "$conf" "$log" || fail "$name: posternd did not start"
	a0=$(alice)
	c0=$(carol)
	for i in $(seq 1 "$MSGS"); do
		"$SWAKS" -s 127.0.0.1 -p "$port" -f a@home.example \
			-t alice@foreign.example,carol@foreign.example \
			--header "Subject: lmtp $name $i" --silent 2 >/dev/null ||
			fail "$name: swaks $i"
	done
	wait_for alice $((a0 + MSGS)) 30 &&
		wait_for carol $((c0 + MSGS)) 30 ||
		fail "$name: alice $(alice), carol $(carol) of $MSGS (log $log)"
	"$SWAKS" -s 127.0.0.1 -p "$port" -f a@home.example \
		-t alice@foreign.example,nobody@foreign.example,bob@foreign.example \
		--header "Subject: lmtp $name mixed" --silent 2 >/dev/null ||
		fail "$name: swaks mixed"
	wait_for alice $((a0 + MSGS + 1)) 30 || fail "$name: mixed not at alice"
	for i in $(seq 1 50); do
		grep -q 'to=<bob@foreign.example>.*status=' "$log" &&
			grep -q 'to=<nobody@foreign.example>.*status=' "$log" && break
		sleep 0.1
	done
	sleep 1		# a late duplicate would show now
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "$name: exit status $STOP_RC"
	[ "$(alice)" = $((a0 + MSGS + 1)) ] && [ "$(carol)" = $((c0 + MSGS)) ] ||
		fail "$name: alice $(alice), carol $(carol): duplicates"
	[ -z "$(msgids alice | uniq -d)" ] || fail "$name: a Message-ID twice"
	sent=$(grep -c 'to=<alice@foreign.example>.*status=sent' "$log")
	[ "$sent" = $((MSGS + 1)) ] || fail "$name: alice logged sent $sent times"
	[ "$(grep -c 'to=<nobody@foreign.example>.*status=bounced (.*550 5.1.1' "$log")" = 1 ] ||
		fail "$name: nobody not bounced once: $(grep nobody@ "$log")"
	grep -q 'to=<bob@foreign.example>.*status=deferred (.*452 4.2.2' "$log" ||
		fail "$name: bob not deferred: $(grep bob@ "$log")"
	! grep -q 'to=<bob@foreign.example>.*status=sent' "$log" ||
		fail "$name: bob sent over quota"
	echo "PASS $name: $MSGS x 2 delivered once into Dovecot Maildirs; mixed: 250/550/452 -> sent/bounced/deferred"
}

run "$DOVECOT_LMTP_SOCKET" unix
run "127.0.0.1:$DOVECOT_LMTP_PORT" tcp
sessions=$(grep -c 'lmtp([0-9]*): Info: Connect from' "$DOVECOT_DIR/dovecot.log")
echo "RESULT lmtp_dovecot msgs=$((2 * (MSGS + 1))) lmtp_sessions=$sessions"
exit 0
