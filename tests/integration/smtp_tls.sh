#!/bin/bash
# smtp_tls.sh - STARTTLS and AUTH PLAIN of the smtp driver against
# tls_peer.py (smtp-sink offers neither), with a CA and a server
# certificate for "localhost" made here with the openssl CLI.
#
#  verified  tls = encrypt, tls_verify = yes, tls_ca_file = our CA, relay
#            localhost: delivered, over TLS, after AUTH.
#  mismatch  the same to 127.0.0.1 (not a name in the certificate): the
#            handshake fails, nothing is sent, the next hop is "down".
#  may       tls = may without a CA: delivered over (unverified) TLS.
#  plain     tls = none with auth_user: the password is not sent in clear
#            text; the message stays queued.
. "$(dirname "$0")/common.sh"

OPENSSL=$(command -v openssl) || skip "openssl not found (Debian package openssl)"
SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"
"$PYTHON" -c 'import ssl' 2>/dev/null || skip "python3 without ssl"

# --- certificates ------------------------------------------------------------
C=$WORK/certs
mkdir -p "$C"
(
	cd "$C" || exit 1
	"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=postern test CA" \
		-keyout ca.key -out ca.pem &&
	"$OPENSSL" req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout server.key -out server.csr &&
	printf 'subjectAltName=DNS:localhost\n' >ext &&
	"$OPENSSL" x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
		-CAcreateserial -days 2 -extfile ext -out server.pem
) >"$WORK/openssl.out" 2>&1 || fail "openssl: $(tail -3 "$WORK/openssl.out")"
echo "s3cret pw" >"$WORK/password"

mkdir -p "$WORK/peer"
"$PYTHON" "$HERE/tls_peer.py" "$WORK/peer.port" "$WORK/peer" "$C/server.pem" \
	"$C/server.key" joe "s3cret pw" &
DAEMON_PIDS="$DAEMON_PIDS $!"
for i in $(seq 1 50); do [ -f "$WORK/peer.port" ] && break; sleep 0.1; done
PEER=$(cat "$WORK/peer.port") || fail "tls_peer.py did not start"

msgs() { find "$WORK/peer" -name 'msg.*' | wc -l; }

# run NAME RELAYHOST [smtp lines]: one message; sets LOG.
run() {
	local name=$1 host=$2 port
	shift 2
	port=$(free_port)
	LOG=$WORK/$name.log
	write_config "$WORK/$name.conf" "$WORK/$name" "$port"
	{
		echo "[foreign]"
		echo "driver = smtp"
		echo "[smtp]"
		echo "relay = $host:$PEER"
		echo "auth_user = joe"
		echo "auth_password_file = $WORK/password"
		printf '%s\n' "$@"
	} >>"$WORK/$name.conf"
	start_daemon "$WORK/$name.conf" "$LOG" || fail "$name: no start"
	"$SWAKS" -s 127.0.0.1 -p "$port" -f a@home.example \
		-t "$name@foreign.example" --silent 2 >/dev/null || fail "$name: swaks"
}

# wait_log PATTERN: up to 10 s.
wait_log() {
	local i
	for i in $(seq 1 100); do
		grep -q -- "$1" "$LOG" && return 0
		sleep 0.1
	done
	return 1
}

run verified localhost "tls = encrypt" "tls_verify = yes" \
	"tls_ca_file = $C/ca.pem"
wait_log 'to=<verified@foreign.example>.*status=sent' ||
	fail "verified: not sent: $(grep -v ': info: connect' "$LOG" | tail -3)"
stop_daemon "$DAEMON_PID"
grep -q '^tls TLSv1\.[23]$' "$WORK/peer/events" &&
	grep -q '^auth ok joe$' "$WORK/peer/events" ||
	fail "verified: peer saw: $(cat "$WORK/peer/events")"
[ "$(msgs)" = 1 ] || fail "verified: $(msgs) messages at the peer"
echo "PASS verified: STARTTLS with a verified name, AUTH PLAIN, delivered"

run mismatch 127.0.0.1 "tls = encrypt" "tls_verify = yes" \
	"tls_ca_file = $C/ca.pem"
wait_log 'next hop unavailable: .*TLS handshake failed.*mismatch' ||
	fail "mismatch: $(grep -v ': info: connect' "$LOG" | tail -3)"
stop_daemon "$DAEMON_PID"
[ "$(msgs)" = 1 ] || fail "mismatch: something was delivered"
! grep -q 'status=' "$LOG" || fail "mismatch: counted as an attempt"
echo "PASS mismatch: wrong peer name refused, nothing sent, entry kept"

run may localhost "tls = may"
wait_log 'to=<may@foreign.example>.*status=sent' ||
	fail "may: $(grep -v ': info: connect' "$LOG" | tail -3)"
stop_daemon "$DAEMON_PID"
[ "$(msgs)" = 2 ] || fail "may: $(msgs) messages at the peer"
echo "PASS may: opportunistic TLS with an unverified certificate"

run plain localhost "tls = none"
wait_log 'next hop unavailable: .*not sending the password without TLS' ||
	fail "plain: $(grep -v ': info: connect' "$LOG" | tail -3)"
stop_daemon "$DAEMON_PID"
[ "$(msgs)" = 2 ] || fail "plain: something was delivered"
! grep -q '^auth' <(grep -v 'auth ok joe' "$WORK/peer/events") ||
	fail "plain: the peer saw an AUTH"
echo "PASS plain: no AUTH without TLS"
exit 0
