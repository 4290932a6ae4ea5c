#!/bin/bash
# sd_notify.sh - under systemd (Type=notify) posternd says READY=1 with
# its pid once it accepts mail, RELOADING=1 then READY=1 on SIGHUP, and
# STOPPING=1 on SIGTERM. NOTIFY_SOCKET is a datagram socket of ours.
. "$(dirname "$0")/common.sh"

port=$(free_port)
conf=$WORK/postern.conf
write_config "$conf" "$WORK" "$port"
sock=$WORK/notify
"$PYTHON" - "$sock" >"$WORK/notes" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
try:
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", "|"), flush=True)
        if "STOPPING=1" in msg:
            break
except socket.timeout:
    pass
PY
listener=$!
for i in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET=$sock start_daemon "$conf" "$WORK/posternd.log" ||
	fail "posternd did not start"
for i in $(seq 1 50); do grep -q READY=1 "$WORK/notes" && break; sleep 0.1; done
grep -q "READY=1|MAINPID=$DAEMON_PID|" "$WORK/notes" ||
	fail "no READY=1 with MAINPID=$DAEMON_PID: $(cat "$WORK/notes")"
kill -HUP "$DAEMON_PID"
for i in $(seq 1 50); do grep -q RELOADING=1 "$WORK/notes" && break; sleep 0.1; done
sleep 0.3
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exited $STOP_RC"
wait "$listener"
echo "notifications: $(tr '\n' ' ' <"$WORK/notes")"
[ "$(grep -c . "$WORK/notes")" -ge 4 ] || fail "too few notifications"
sed -n 2p "$WORK/notes" | grep -q '^RELOADING=1' || fail "no RELOADING=1 second"
sed -n 3p "$WORK/notes" | grep -q '^READY=1' || fail "no READY=1 after the reload"
tail -1 "$WORK/notes" | grep -q '^STOPPING=1' || fail "no STOPPING=1 last"
echo "PASS: sd_notify READY, RELOADING, STOPPING"
