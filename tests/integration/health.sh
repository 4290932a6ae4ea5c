#!/bin/bash
# health.sh - an instance that cannot store sends the home MTA elsewhere
# at once, says so on /healthz, and takes mail again by itself
# (posternd(8), "WHEN IT CANNOT STORE"). Clients: python smtplib and
# swaks; curl for /healthz.
#
# full   [store] map_max = 2M, the smtp next hop down: messages until the
#        greeting is "421 4.3.2 ... (store full)"; a session opened before
#        gets 421 4.3.2 at MAIL and is closed; /healthz 503 "store:
#        full: ...". Root and Postfix: a private Postfix whose transport
#        lists this instance, then a healthy one
#        (smtp:[127.0.0.1]:P1, [127.0.0.1]:P2; Postfix >= 3.5) sends a
#        message to the second at once, on its first delivery attempt.
#        Then the next hop comes back (smtp-sink), the queue drains:
#        greeting 220, a message 250, /healthz 200.
# eio    (fiu-run) fdatasync fails with EIO: the message in flight gets
#        451 4.3.0, new connections 421 4.3.2 (store I/O error), /healthz
#        503 "store: I/O error on commit: Input/output error" for as long
#        as the fault lasts (the probe commits fail too); the fault gone,
#        220, 250 and 200 again.
# panic  (failmeta.so) the meta page write fails, the environment is
#        fatal and, while the store's open fails too, stays so: 421 4.3.2
#        (store panicked), /healthz 503 "store: panicked: ..."; then the
#        reopen works and it takes mail again.
# eio and panic need a build without sanitizers (an LD_PRELOAD library).
. "$(dirname "$0")/common.sh"
command -v curl >/dev/null 2>&1 || skip "curl not found (Debian package curl)"
command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"

# healthz APORT: HZ_CODE and $WORK/hz (the body)
healthz() {
	HZ_CODE=$(curl -s -o "$WORK/hz" -w '%{http_code}' \
		"http://127.0.0.1:$1/healthz")
}

# greeting PORT: the server's first reply line
greeting() {
	"$PYTHON" - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
b = b""
while b"\r\n" not in b:
    d = s.recv(512)
    if not d:
        break
    b += d
print(b.split(b"\r\n")[0].decode("latin-1"))
PY
}

# wait_greeting PORT CODE SECONDS: until the greeting starts with CODE;
# WAITED says after how many tenths of a second
wait_greeting() {
	local i
	for i in $(seq 0 $(($3 * 10))); do
		WAITED=$i
		case $(greeting "$1") in "$2"*) return 0 ;; esac
		sleep 0.1
	done
	return 1
}

# swaks_reply PORT ID: the last reply of one message ("<-  250 ...",
# "<** 451 ...")
swaks_reply() {
	swaks --server "127.0.0.1:$1" -f a@home.example \
		-t "r@foreign.example" --header "Subject: health $2" \
		--body "health test message $2" 2>&1 |
		grep -E '^(<-|<\*\*) +[0-9]{3} ' | grep -v ' 221 ' | tail -1
}

# back NAME WORD SECS: within SECS a 220 again, then a message 250,
# /healthz 200, and the log line that the state WORD ended
back() {
	local r
	wait_greeting "$PORT" 220 "$3" ||
		fail "$1: no 220 greeting $3 s after the cause ended: $(greeting "$PORT")"
	r=$(swaks_reply "$PORT" "$1-after")
	case $r in *"250 2.0.0 Ok: queued as "*) ;; *) fail "$1: after: $r" ;; esac
	healthz "$APORT"
	[ "$HZ_CODE" = 200 ] && grep -qx 'store: ok' "$WORK/hz" ||
		fail "$1: /healthz after: $HZ_CODE $(cat "$WORK/hz")"
	grep -q "info: store: takes mail again (it was $2)" "$LOG" ||
		fail "$1: no log line for the end"
}

# config FILE DIR PORT APORT [lines appended...]
config() {
	local f=$1
	write_config "$f" "$2" "$3"
	printf '[admin]\nlisten = 127.0.0.1:%s\n' "$4" >>"$f"
	shift 4
	printf '%s\n' "$@" >>"$f"
}

# --- full -----------------------------------------------------------------
PORT=$(free_port)
APORT=$(free_port)
SPORT=$(free_port)	# the smtp next hop: nobody listens yet
config "$WORK/full.conf" "$WORK/full" "$PORT" "$APORT" \
	"[store]" "map_size = 1M" "map_max = 2M" \
	"[foreign]" "driver = smtp" "[smtp]" "relay = 127.0.0.1:$SPORT" \
	"tls = none" "reconnect_max = 2" "[queue]" "backoff_min = 1" \
	"backoff_max = 2"
LOG=$WORK/full.log
start_daemon "$WORK/full.conf" "$LOG" || fail "full: posternd did not start"
healthz "$APORT"
[ "$HZ_CODE" = 200 ] && grep -qx 'store: ok' "$WORK/hz" ||
	fail "full: /healthz at start: $HZ_CODE $(cat "$WORK/hz")"

# A session opened before the store fills, then messages until the
# greeting is refused; then MAIL on the early session.
"$PYTHON" - "$PORT" >"$WORK/fill.out" <<'PY' || fail "full: fill: $(cat "$WORK/fill.out")"
import smtplib, sys
port = int(sys.argv[1])
early = smtplib.SMTP("127.0.0.1", port, timeout=10)
early.ehlo("early.example")
body = "Subject: fill\r\n\r\n" + ("x" * 70 + "\r\n") * 100
ok = refused = 0
for i in range(2000):
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    except smtplib.SMTPConnectError as e:
        print("greeting %d %s" % (e.smtp_code, e.smtp_error.decode()))
        break
    s.ehlo("fill.example")
    code, msg = s.mail("a@home.example")
    if code == 250:
        s.rcpt("r@foreign.example")
        try:
            s.data(body + "fill %d\r\n" % i)    # distinct: no resubmission
            ok += 1
        except smtplib.SMTPDataError:
            refused += 1
    else:
        refused += 1
    try:
        s.quit()
    except smtplib.SMTPServerDisconnected:
        pass
else:
    sys.exit("the greeting was never refused")
print("accepted %d refused %d" % (ok, refused))
code, msg = early.mail("a@home.example")
print("early MAIL %d %s" % (code, msg.decode()))
try:
    early.noop()
    print("early still open")
except smtplib.SMTPServerDisconnected:
    print("early closed")
PY
cat "$WORK/fill.out"
grep -qx 'greeting 421 4.3.2 test.postern.invalid Service not available (store full), closing transmission channel' "$WORK/fill.out" ||
	fail "full: no 421 4.3.2 greeting"
grep -qx 'early MAIL 421 4.3.2 test.postern.invalid Service not available (store full), closing transmission channel' "$WORK/fill.out" ||
	fail "full: MAIL on an open session was not 421 4.3.2"
grep -qx 'early closed' "$WORK/fill.out" ||
	fail "full: the session stayed open after 421"
healthz "$APORT"
echo "full: /healthz $HZ_CODE: $(head -1 "$WORK/hz")"
[ "$HZ_CODE" = 503 ] && grep -q '^store: full: [0-9]* KiB of room, takes mail again from 1408 KiB (the map is at [0-9]* of its map_max 2048 KiB) (for [0-9]* s)$' "$WORK/hz" ||
	fail "full: /healthz: $HZ_CODE $(cat "$WORK/hz")"
grep -q 'warning: store: cannot take mail: full: ' "$LOG" ||
	fail "full: no log line"
grep -q 'NOQUEUE: reject: CONNECT from unknown\[127.0.0.1\]: 421 4.3.2 .*; full: ' "$LOG" ||
	fail "full: no reject line for the refused connection"

# The home MTA: a private Postfix with this instance first and a healthy
# one second. The message must reach the second one on Postfix's first
# attempt (no deferral, no queue run).
if [ "$(id -u)" != 0 ]; then
	echo "SKIP postfix: a private Postfix instance needs root"
elif ! command -v postfix >/dev/null 2>&1; then
	echo "SKIP postfix: postfix not found"
else
	. "$HERE/postfix.sh"
	BPORT=$(free_port)
	BAPORT=$(free_port)
	config "$WORK/b.conf" "$WORK/b" "$BPORT" "$BAPORT"
	start_daemon "$WORK/b.conf" "$WORK/b.log" ||
		fail "postfix: the second posternd did not start"
	B_PID=$DAEMON_PID
	PFPORT=$(free_port)
	postfix_start "$WORK/pf" "$PFPORT" \
		"smtp:[127.0.0.1]:$PORT, [127.0.0.1]:$BPORT" ||
		fail "postfix: did not start"
	t0=$(date +%s.%N)
	swaks --server "127.0.0.1:$PFPORT" -f alice@home.example \
		-t bob@foreign.example --header "Subject: via postfix" \
		>"$WORK/pf.swaks" 2>&1 || fail "postfix: swaks: $(tail -3 "$WORK/pf.swaks")"
	for i in $(seq 1 200); do
		[ "$(maildir_count "$WORK/b/maildir")" -ge 1 ] &&
			postfix_queue_empty "$WORK/pf" && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	postfix_log "$WORK/pf" | grep -E ' postfix/smtp\[' >"$WORK/pf.smtp"
	[ "$(maildir_count "$WORK/b/maildir")" = 1 ] ||
		fail "postfix: not at the healthy instance: $(tail -5 "$WORK/pf.smtp")"
	grep -q "host 127.0.0.1\[127.0.0.1\] refused to talk to me: 421 4.3.2 test.postern.invalid Service not available (store full)" "$WORK/pf.smtp" ||
		fail "postfix: no 421 greeting in its log: $(cat "$WORK/pf.smtp")"
	grep -q "relay=127.0.0.1\[127.0.0.1\]:$BPORT, .*status=sent" "$WORK/pf.smtp" ||
		fail "postfix: not sent to $BPORT: $(cat "$WORK/pf.smtp")"
	grep -q 'status=deferred' "$WORK/pf.smtp" &&
		fail "postfix: deferred first: $(cat "$WORK/pf.smtp")"
	echo "postfix: $(grep -o 'refused to talk to me: 421 4.3.2 [^,]*' "$WORK/pf.smtp" | head -1)"
	echo "postfix: $(grep -o "relay=127.0.0.1\[127.0.0.1\]:$BPORT, .*status=sent" "$WORK/pf.smtp" | cut -c1-120)"
	echo "PASS postfix: the message went to the healthy instance on the first attempt, $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s after it was submitted; nothing deferred"
	postfix_stop "$WORK/pf"
	stop_daemon "$B_PID"
	[ "$STOP_RC" = 0 ] || fail "postfix: the second posternd exited $STOP_RC"
fi

# Full it stays, while nothing leaves the store (no flapping).
sleep 2
g=$(greeting "$PORT")
case $g in "421 4.3.2 "*) ;; *) fail "full: 2 s later, the next hop still down: $g" ;; esac
# The next hop comes back: the queue drains and there is room again.
SINK_USER=()
[ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)	# it will not run as root
"$SINK" "${SINK_USER[@]}" -c "127.0.0.1:$SPORT" 100 >"$WORK/sink.out" 2>&1 &
track_sink $! 127.0.0.1 "$SPORT" "smtp-sink"
back full full 60
sent=$(grep -c ' status=sent' "$LOG")
[ "$sent" -gt 0 ] || fail "full: room again, but nothing was delivered"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "full: exit status $STOP_RC"
echo "PASS full: $(grep '^accepted' "$WORK/fill.out"), then greeting 421 4.3.2 (store full), MAIL on an open session 421 4.3.2 and closed, /healthz 503 \"store: full: ...\"; still full 2 s later; next hop back, $sent delivered: 220 after $WAITED tenths of a second, 250, /healthz 200"

# --- eio and panic: LD_PRELOAD libraries ----------------------------------
if ldd "$POSTERND" 2>/dev/null | grep -q 'lib[at]san'; then
	echo "SKIP eio, panic: posternd is built with a sanitizer"
	exit 0
fi

# start_preloaded NAME PRELOADER...: posternd (maildir) under PRELOADER;
# sets P (its pid), PORT, APORT, LOG
start_preloaded() {
	local name=$1 i
	shift
	PORT=$(free_port)
	APORT=$(free_port)
	LOG=$WORK/$name.log
	config "$WORK/$name.conf" "$WORK/$name" "$PORT" "$APORT"
	"$@" "$POSTERND" -f -c "$WORK/$name.conf" >>"$LOG" 2>&1 &
	P=$!
	DAEMON_PIDS="$DAEMON_PIDS $P"
	for i in $(seq 1 150); do
		grep -q 'info: started: ' "$LOG" && return 0
		kill -0 "$P" 2>/dev/null || fail "$name: posternd exited: $(tail -3 "$LOG")"
		sleep 0.1
	done
	fail "$name: posternd did not start"
}

# delivered NAME: the first message is in the Maildir and its outcome
# committed (the store is quiet: the fault hits the next message)
delivered() {
	local i
	for i in $(seq 1 50); do
		grep -q ' status=sent' "$LOG" && break
		sleep 0.1
	done
	[ "$(maildir_count "$WORK/$1/maildir")" = 1 ] ||
		fail "$1: the first message was not delivered"
	sleep 0.5
}

# after NAME WORD: back within 10 s, and the message delivered
after() {
	back "$1" "$2" 10
	for i in $(seq 1 50); do
		[ "$(maildir_count "$WORK/$1/maildir")" -ge 2 ] && break
		sleep 0.1
	done
	[ "$(maildir_count "$WORK/$1/maildir")" = 2 ] ||
		fail "$1: $(maildir_count "$WORK/$1/maildir") messages delivered, not 2"
	stop_daemon "$P"
	[ "$STOP_RC" = 0 ] || fail "$1: exit status $STOP_RC"
}

# eio: fdatasync fails (libfiu, as io_faults.sh)
if ! FIU_RUN=$(command -v fiu-run) || ! FIU_CTRL=$(command -v fiu-ctrl); then
	echo "SKIP eio: fiu-run not found (Debian package fiu-utils)"
else
	start_preloaded eio "$FIU_RUN" -x -f "$WORK/eio.fiu"
	r=$(swaks_reply "$PORT" eio-1)
	case $r in *"250 2.0.0 Ok: queued as "*) ;; *) fail "eio: before: $r" ;; esac
	delivered eio
	"$FIU_CTRL" -f "$WORK/eio.fiu" -c \
		"enable name=posix/io/sync/fdatasync,failinfo=5" "$P" ||
		fail "eio: fiu-ctrl could not arm the fault"
	r=$(swaks_reply "$PORT" eio-2)
	case $r in *"451 4.3.0 Error: queue file write error"*) ;;
		*) fail "eio: the message in flight: $r" ;; esac
	g=$(greeting "$PORT")
	[ "$g" = "421 4.3.2 test.postern.invalid Service not available (store I/O error), closing transmission channel" ] ||
		fail "eio: greeting: $g"
	healthz "$APORT"
	[ "$HZ_CODE" = 503 ] && grep -q '^store: I/O error on commit: Input/output error (for [0-9]* s)$' "$WORK/hz" ||
		fail "eio: /healthz: $HZ_CODE $(cat "$WORK/hz")"
	echo "eio: in flight: $r; then greeting: $g; /healthz $HZ_CODE: $(head -1 "$WORK/hz")"
	# the idle writer's probe commits fail as long as the fault lasts
	sleep 2.5
	g=$(greeting "$PORT")
	case $g in "421 4.3.2 "*) ;; *) fail "eio: 2.5 s later: $g" ;; esac
	"$FIU_CTRL" -f "$WORK/eio.fiu" -c \
		"disable name=posix/io/sync/fdatasync" "$P" ||
		fail "eio: fiu-ctrl could not disarm the fault"
	after eio "I/O error"
	echo "PASS eio: 451 4.3.0 for the message in flight, then 421 4.3.2 (store I/O error) at the greeting and /healthz 503 while fdatasync failed; 220 again $WAITED tenths of a second after it ended, 250, /healthz 200"
fi

# panic: the meta page write fails, and the store's open while the flag is
# there
if [ ! -r "$FAILMETA" ]; then
	echo "SKIP panic: $FAILMETA not built"
else
	export FAILMETA_FLAG=$WORK/failmeta.on
	start_preloaded panic env LD_PRELOAD="$FAILMETA"
	r=$(swaks_reply "$PORT" panic-1)
	case $r in *"250 2.0.0 Ok: queued as "*) ;; *) fail "panic: before: $r" ;; esac
	delivered panic
	touch "$FAILMETA_FLAG"
	r=$(swaks_reply "$PORT" panic-2)
	case $r in *"451 4.3.0 "*|*"421 4.3.0 "*) ;;
		*) fail "panic: the message in flight: $r" ;; esac
	# the commit failed with EIO and left the environment fatal: the
	# idle writer's probe meets MDB_PANIC and its reopen fails
	for i in $(seq 1 50); do
		healthz "$APORT"
		grep -q '^store: panicked: .*the last reopen failed: ' "$WORK/hz" &&
			break
		sleep 0.1
	done
	[ "$HZ_CODE" = 503 ] && grep -q '^store: panicked: MDB_PANIC, the environment must be reopened; the last reopen failed: cannot open store .*: Too many open files (for [0-9]* s)$' "$WORK/hz" ||
		fail "panic: /healthz: $HZ_CODE $(cat "$WORK/hz")"
	g=$(greeting "$PORT")
	[ "$g" = "421 4.3.2 test.postern.invalid Service not available (store panicked), closing transmission channel" ] ||
		fail "panic: greeting: $g"
	echo "panic: in flight: $r; then greeting: $g; /healthz $HZ_CODE: $(head -1 "$WORK/hz")"
	rm -f "$FAILMETA_FLAG"
	after panic panicked
	grep -q 'reopened after a panic' "$LOG" || fail "panic: no reopen logged"
	echo "PASS panic: 421 4.3.2 (store panicked) at the greeting and /healthz 503 while the store could not be reopened; 220 again $WAITED tenths of a second after it could, 250, /healthz 200"
fi
exit 0
