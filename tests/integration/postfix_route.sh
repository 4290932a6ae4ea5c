#!/bin/bash
# postfix_route.sh - the routing example of contrib/postfix/ works: a real
# Postfix on loopback relays foreign.example to posternd, once over SMTP
# and once over LMTP, and every message reaches the Maildir exactly once.
# Env: ROUTE_MSGS (default 200) messages per transport.
. "$(dirname "$0")/common.sh"
. "$HERE/postfix.sh"
command -v smtp-source >/dev/null 2>&1 ||
	skip "smtp-source not found (Debian package postfix)"
[ "$(id -u)" = 0 ] || skip "a private Postfix instance needs root"

MSGS=${ROUTE_MSGS:-200}

run_one() {
	local kind=$1 pport pfport lport conf n i
	pport=$(free_port)
	lport=$(free_port)
	pfport=$(free_port)
	mkdir -p "$WORK/$kind"
	conf=$WORK/$kind/postern.conf
	write_config "$conf" "$WORK/$kind" "$pport" \
		"lmtp_listen = 127.0.0.1:$lport"
	start_daemon "$conf" "$WORK/$kind/posternd.log" ||
		fail "$kind: posternd did not start"
	if [ "$kind" = smtp ]; then
		postfix_start "$WORK/$kind/pf" "$pfport" "smtp:[127.0.0.1]:$pport"
	else
		postfix_start "$WORK/$kind/pf" "$pfport" "lmtp:inet:127.0.0.1:$lport"
	fi || fail "$kind: postfix did not start"
	# 3 recipients a message: Postfix groups them into one transaction
	smtp-source -c -s 5 -m "$MSGS" -r 3 -f alice@home.example \
		-t bob@foreign.example "127.0.0.1:$pfport" >/dev/null ||
		fail "$kind: smtp-source failed"
	for i in $(seq 1 300); do
		n=$(maildir_count "$WORK/$kind/maildir")
		[ "$n" -ge $((MSGS * 3)) ] && postfix_queue_empty "$WORK/$kind/pf" &&
			break
		sleep 0.2
	done
	n=$(maildir_count "$WORK/$kind/maildir")
	if [ "$n" -ne $((MSGS * 3)) ]; then
		postfix_log "$WORK/$kind/pf" | tail -20
		fail "$kind: $n files in the Maildir, expected $((MSGS * 3))"
	fi
	postfix_queue_empty "$WORK/$kind/pf" || {
		postfix_log "$WORK/$kind/pf" | grep -v status=sent | tail -20
		fail "$kind: Postfix still holds mail"
	}
	grep -c "status=sent" "$WORK/$kind/pf/maillog" >"$WORK/$kind/sent"
	echo "$kind: $MSGS messages x 3 recipients via Postfix: $n in the" \
		"Maildir; Postfix says sent $(cat "$WORK/$kind/sent") times"
	postfix_stop "$WORK/$kind/pf"
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "$kind: posternd exited $STOP_RC"
}

run_one smtp
run_one lmtp
echo "PASS: Postfix routes foreign.example to postern over SMTP and LMTP"
