#!/bin/bash
# ingress_tls.sh - STARTTLS and AUTH on posternd's SMTP listener, with
# swaks and raw Python sockets against a self-signed certificate made
# here with the openssl CLI.
#
#  may       tls = may, auth = optional: swaks --tls delivers; Received:
#            says "(using TLSv1.x with cipher ...)" and ESMTPS; AUTH is
#            not offered before TLS; AUTH PLAIN over TLS: 235, delivered
#            with ESMTPSA; a wrong password: 535 5.7.8, nothing stored.
#  inject    RELIABILITY.md row 18: "STARTTLS\r\nMAIL FROM:..." in one
#            packet; after the handshake the MAIL never ran.
#  timeout   a client that never starts its handshake is dropped after
#            tls_handshake_timeout.
#  encrypt   tls = encrypt, auth = required: plaintext MAIL gets 530 5.7.0
#            Must issue a STARTTLS command first; MAIL over TLS before
#            AUTH gets 530 5.7.0 Authentication required; with AUTH: 250.
#  config    a missing certificate and a key that does not parse stop the
#            start with the file, line and key named.
. "$(dirname "$0")/common.sh"

OPENSSL=$(command -v openssl) || skip "openssl not found (Debian package openssl)"
SWAKS=$(command -v swaks) || skip "swaks not found (Debian package swaks)"
"$PYTHON" -c 'import ssl' 2>/dev/null || skip "python3 without ssl"

C=$WORK/certs
mkdir -p "$C"
"$OPENSSL" req -x509 -newkey rsa:2048 -nodes -days 2 \
	-subj "/CN=test.postern.invalid" -keyout "$C/key.pem" \
	-out "$C/cert.pem" >"$WORK/openssl.out" 2>&1 ||
	fail "openssl req: $(tail -3 "$WORK/openssl.out")"
HASH=$("$OPENSSL" passwd -6 's3cret pw') || fail "openssl passwd"
printf '# test users\njoe:%s\n' "$HASH" >"$C/users"

# daemon NAME [ingress lines]: start one; sets PORT, LOG, MD (maildir).
daemon() {
	local name=$1
	shift
	PORT=$(free_port)
	LOG=$WORK/$name.log
	MD=$WORK/$name/maildir
	write_config "$WORK/$name.conf" "$WORK/$name" "$PORT" \
		"tls_cert = $C/cert.pem" "tls_key = $C/key.pem" \
		"auth_users = $C/users" "$@"
	start_daemon "$WORK/$name.conf" "$LOG" || fail "$name: no start"
}

# wait_files DIR N: up to 20 s for N delivered files under DIR.
wait_files() {
	local i
	for i in $(seq 1 200); do
		[ "$(maildir_count "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# swaks_to RCPT [swaks options]: prints swaks' transcript; SRC = exit code
swaks_to() {
	local rcpt=$1
	shift
	OUT=$("$SWAKS" --server "127.0.0.1:$PORT" --ehlo client.example \
		--from a@home.example --to "$rcpt" --timeout 30 "$@" 2>&1)
	SRC=$?
}

# --- may ---------------------------------------------------------------------
daemon may "tls = may" "auth = optional"

swaks_to tls@foreign.example --tls
[ $SRC -eq 0 ] || fail "may: swaks --tls exit $SRC: $(echo "$OUT" | tail -5)"
echo "$OUT" | grep -q '^<-  220 2.0.0 Ready to start TLS' ||
	fail "may: no 220 to STARTTLS: $(echo "$OUT" | tail -5)"
wait_files "$MD/tls@foreign.example" 1 || fail "may: not delivered"
F=$(find "$MD/tls@foreign.example" -type f | head -1)
grep -q '^	(using TLSv1\.[23] with cipher [A-Z0-9_-]* ([0-9]*/[0-9]* bits))' "$F" ||
	fail "may: Received: has no TLS comment: $(head -4 "$F")"
grep -q 'by test.postern.invalid (postern) with ESMTPS id [0-9A-F]\{16\};' "$F" ||
	fail "may: not ESMTPS: $(head -4 "$F")"
# The store writes the queue id into the Received: field it commits.
qid=$(sed -n 's/.*(postern) with ESMTPS id \([0-9A-F]\{16\}\);.*/\1/p' "$F" | head -1)
[ -n "$qid" ] && [ "$qid" != 0000000000000000 ] &&
	"$POSTERN" -c "$WORK/may.conf" show "$qid" | grep -q "^Queue id: *$qid\|$qid" ||
	fail "may: Received: id $qid is not the message's queue id"
echo "PASS may: swaks --tls delivered; Received: notes TLS and ESMTPS"

"$PYTHON" - "$PORT" <<'PY' || fail "may: EHLO before/after TLS"
import socket, ssl, sys
def lines(f):
    out = []
    while True:
        l = f.readline()
        if not l:
            raise SystemExit("connection closed")
        out.append(l)
        if l[3:4] == b" ":
            return b"".join(out)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
lines(f)
s.sendall(b"EHLO c\r\n")
r = lines(f)
assert b"250-STARTTLS" in r and b"AUTH" not in r, r
s.sendall(b"AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n")
r = lines(f)
assert r.startswith(b"538 5.7.11"), r
s.sendall(b"STARTTLS\r\n")
assert lines(f).startswith(b"220 2.0.0")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="test.postern.invalid")
f = t.makefile("rb")
t.sendall(b"EHLO c\r\n")
r = lines(f)
assert b"STARTTLS" not in r and b"250-AUTH PLAIN LOGIN" in r, r
t.sendall(b"QUIT\r\n")
assert lines(f).startswith(b"221")
PY
echo "PASS may: AUTH not offered (538) before TLS, offered after; no STARTTLS after TLS"

swaks_to auth@foreign.example --tls --auth PLAIN --auth-user joe \
	--auth-password 's3cret pw'
[ $SRC -eq 0 ] || fail "may: swaks AUTH exit $SRC: $(echo "$OUT" | tail -5)"
echo "$OUT" | grep -q '^<~  235 2.7.0' ||
	fail "may: no 235: $(echo "$OUT" | grep '<~' | tail -5)"
wait_files "$MD/auth@foreign.example" 1 || fail "may: AUTH mail not delivered"
F=$(find "$MD/auth@foreign.example" -type f | head -1)
grep -q '(postern) with ESMTPSA id [0-9A-F]\{16\};' "$F" || fail "may: not ESMTPSA: $(head -4 "$F")"
echo "PASS may: swaks --tls --auth PLAIN: 235 2.7.0, delivered, ESMTPSA"

swaks_to bad@foreign.example --tls --auth PLAIN --auth-user joe \
	--auth-password 'wrong'
[ $SRC -ne 0 ] || fail "may: a wrong password was accepted"
echo "$OUT" | grep -q '^<~\*\+ 535 5.7.8' ||
	fail "may: no 535 5.7.8: $(echo "$OUT" | grep '<~' | tail -5)"
grep -q 'authentication failed for user "joe"' "$LOG" ||
	fail "may: failure not logged"
! grep -q -e 's3cret' -e 'wrong' "$LOG" || fail "may: a password is in the log"
echo "PASS may: wrong password: 535 5.7.8 (swaks exit $SRC), logged without it"

# --- inject (RELIABILITY.md row 18) -------------------------------------------
"$PYTHON" - "$PORT" <<'PY' || fail "inject"
import socket, ssl, sys
def lines(f):
    out = []
    while True:
        l = f.readline()
        if not l:
            raise SystemExit("connection closed")
        out.append(l)
        if l[3:4] == b" ":
            return b"".join(out)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb", buffering=0)
lines(f)
s.sendall(b"EHLO c\r\n")
lines(f)
# one packet: STARTTLS and an injected plaintext command after it
s.sendall(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n")
r = lines(f)
assert r.startswith(b"220 2.0.0"), r
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="test.postern.invalid")
f = t.makefile("rb")
t.sendall(b"EHLO c\r\n")
lines(f)
t.sendall(b"RCPT TO:<inject@foreign.example>\r\n")
r = lines(f)
assert r.startswith(b"503 5.5.1"), r
t.sendall(b"QUIT\r\n")
lines(f)
PY
grep -q 'byte(s) pipelined after STARTTLS discarded' "$LOG" ||
	fail "inject: no log line"
echo "PASS inject: plaintext pipelined after STARTTLS discarded, never ran (503 need MAIL)"

# --- timeout -------------------------------------------------------------------
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "may: exit status $STOP_RC: $(tail -5 "$LOG")"
daemon timeout "tls = may" "tls_handshake_timeout = 2s"
"$PYTHON" - "$PORT" <<'PY' || fail "timeout: not dropped"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO c\r\n")
while f.readline()[3:4] != b" ":
    pass
s.sendall(b"STARTTLS\r\n")
assert f.readline().startswith(b"220 2.0.0")
# say nothing; the server must hang up (60 s is only a liveness bound)
assert s.recv(100) == b""
PY
grep -q 'TLS handshake with \[127.0.0.1\] failed: timed out' "$LOG" ||
	fail "timeout: not logged: $(tail -3 "$LOG")"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "timeout: exit status $STOP_RC: $(tail -5 "$LOG")"
echo "PASS timeout: silent client dropped after tls_handshake_timeout"

# --- encrypt -------------------------------------------------------------------
daemon encrypt "tls = encrypt" "auth = required"
swaks_to plain@foreign.example
echo "$OUT" | grep -q '^<\*\+ 530 5.7.0 Must issue a STARTTLS command first' ||
	fail "encrypt: plaintext MAIL: $(echo "$OUT" | tail -4)"
swaks_to noauth@foreign.example --tls
echo "$OUT" | grep -q '^<~\*\+ 530 5.7.0 Authentication required' ||
	fail "encrypt: MAIL before AUTH: $(echo "$OUT" | tail -4)"
swaks_to ok@foreign.example --tls --auth PLAIN --auth-user joe \
	--auth-password 's3cret pw'
[ $SRC -eq 0 ] || fail "encrypt: swaks exit $SRC: $(echo "$OUT" | tail -4)"
wait_files "$MD/ok@foreign.example" 1 || fail "encrypt: not delivered"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "encrypt: exit status $STOP_RC: $(tail -5 "$LOG")"
[ "$(maildir_count "$MD")" -eq 1 ] ||
	fail "encrypt: $(maildir_count "$MD") files, want 1"
echo "PASS encrypt: 530 without STARTTLS, 530 without AUTH, delivered with both"

# --- config errors -------------------------------------------------------------
P=$(free_port)
write_config "$WORK/bad.conf" "$WORK/bad" "$P" "tls = may" \
	"tls_cert = $C/missing.pem" "tls_key = $C/key.pem"
out=$("$POSTERND" -f -c "$WORK/bad.conf" 2>&1) && fail "config: missing cert started"
echo "$out" | grep -q "bad.conf:[0-9]*: \[ingress\] tls_cert/tls_key: certificate $C/missing.pem: No such file" ||
	fail "config: missing cert: $out"
echo "not a key" >"$C/broken.pem"
write_config "$WORK/bad.conf" "$WORK/bad" "$P" "tls = may" \
	"tls_cert = $C/cert.pem" "tls_key = $C/broken.pem"
out=$("$POSTERND" -f -c "$WORK/bad.conf" 2>&1) && fail "config: broken key started"
echo "$out" | grep -q "bad.conf:[0-9]*: \[ingress\] tls_cert/tls_key: private key $C/broken.pem" ||
	fail "config: broken key: $out"
printf 'joe:plaintext\n' >"$C/badusers"
write_config "$WORK/bad.conf" "$WORK/bad" "$P" "tls = may" \
	"tls_cert = $C/cert.pem" "tls_key = $C/key.pem" "auth = optional" \
	"auth_users = $C/badusers"
out=$("$POSTERND" -f -c "$WORK/bad.conf" 2>&1) && fail "config: bad users started"
echo "$out" | grep -q "bad.conf:[0-9]*: \[ingress\] auth_users: $C/badusers:1: user \"joe\": the hash is not" ||
	fail "config: bad users file: $out"
echo "PASS config: missing cert, broken key and bad users file name file, line and key"
exit 0
