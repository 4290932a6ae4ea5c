#!/bin/bash
# log_json.sh - [log] format = json: every line posternd writes is one
# JSON object, and a message's life and a refusal carry the documented
# fields (postern.conf(5), JSON FIELDS).
#
# posternd (maildir driver, syslog_name = postern-test) gets one message
# for two recipients, a RCPT it refuses, and a message with a bare LF in
# its data; then it stops and its stderr is checked line by line.
. "$(dirname "$0")/common.sh"

command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"

PORT=$(free_port)
LOG=$WORK/json.log
write_config "$WORK/json.conf" "$WORK" "$PORT"
printf '[log]\nformat = json\nsyslog_name = postern-test\n' >>"$WORK/json.conf"

"$POSTERND" -f -c "$WORK/json.conf" 2>>"$LOG" &
DAEMON_PID=$!
DAEMON_PIDS="$DAEMON_PIDS $DAEMON_PID"
for i in $(seq 1 150); do
	grep -q '"msg":"started: ' "$LOG" && break
	kill -0 "$DAEMON_PID" 2>/dev/null || fail "posternd exited: $(cat "$LOG")"
	sleep 0.1
done
grep -q '"msg":"started: ' "$LOG" || fail "posternd did not start: $(tail -3 "$LOG")"

swaks --server "127.0.0.1:$PORT" --ehlo client.example \
	--from a@home.example --to j1@foreign.example,j2@foreign.example \
	--silent 2 >/dev/null || fail "swaks"
"$PYTHON" - "$PORT" <<'EOF' || fail "raw session"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def cmd(b):
    if b:
        s.sendall(b)
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return line
cmd(None)
cmd(b"EHLO client.example\r\n")
cmd(b"MAIL FROM:<a@home.example>\r\n")
assert cmd(b"RCPT TO:<x@elsewhere.example>\r\n").startswith(b"550")
assert cmd(b"RCPT TO:<lf@foreign.example>\r\n").startswith(b"250")
assert cmd(b"DATA\r\n").startswith(b"354")
assert cmd(b"Subject: lf\r\n\r\nline1\nline2\r\n.\r\n").startswith(b"550")
EOF
for i in $(seq 1 100); do
	[ "$(grep -c '"event":"removed"' "$LOG")" -ge 1 ] && break
	sleep 0.1
done
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exit $STOP_RC"

"$PYTHON" - "$LOG" "$DAEMON_PID" <<'EOF'
import json, re, sys

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
pid = int(sys.argv[2])
objs, rc = [], 0

def check(name, ok, got=""):
    global rc
    print("%s %s%s" % ("PASS" if ok else "FAIL", name,
                       "" if ok else ": " + str(got)[:300]))
    if not ok:
        rc = 1

for n, line in enumerate(lines, 1):
    try:
        objs.append(json.loads(line))
    except ValueError as e:
        check("line %d is one JSON object" % n, False, "%s: %r" % (e, line))
check("%d lines, all JSON objects" % len(lines), rc == 0 and lines)
for o in objs:
    for k in ("ts", "level", "program", "pid", "msg"):
        if k not in o:
            check("every object has %s" % k, False, o)
bad = [o for o in objs if o.get("program") != "postern-test" or
       o.get("pid") != pid or
       not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["ts"])]
check("program = syslog_name, pid, ts in RFC 3339 UTC", not bad, bad[:1])

def one(name, **want):
    got = [o for o in objs if all(o.get(k) == v for k, v in want.items())]
    check(name, len(got) == 1, "%d matches for %s" % (len(got), want))
    return got[0] if got else {}

d = one("delivery of j1", event="delivery", to="j1@foreign.example")
qid = d.get("queue_id", "")
check("queue_id is 16 hex digits", re.match(r"^[0-9A-F]{16}$", qid), qid)
check("delivery fields", d.get("status") == "sent" and
      d.get("relay") == "maildir" and d.get("dsn") == "2.0.0" and
      d.get("attempts") == 1 and isinstance(d.get("delay"), (int, float)) and
      re.match(r"^[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+$", d.get("delays", "")) and
      d.get("reply") == "delivered to maildir" and
      d.get("msg", "").startswith(qid + ": to=<j1@foreign.example>, "),
      d)
one("delivery of j2", event="delivery", to="j2@foreign.example",
    queue_id=qid, status="sent")
one("client line", event="client", queue_id=qid, client="127.0.0.1")
one("message-id line", event="message-id", queue_id=qid)
q = one("queued line", event="queued", queue_id=qid)
check("queued fields", q.get("from") == "a@home.example" and
      q.get("nrcpt") == 2 and isinstance(q.get("size"), int), q)
one("removed line", event="removed", queue_id=qid)
r = one("RCPT refusal", event="reject", command="RCPT",
        to="x@elsewhere.example")
check("RCPT refusal fields", r.get("queue_id") == "NOQUEUE" and
      r.get("from") == "a@home.example" and r.get("proto") == "ESMTP" and
      r.get("helo") == "client.example" and
      r.get("reply", "").startswith("550 5.7.1 ") and
      r.get("msg", "").startswith("NOQUEUE: reject: RCPT from "), r)
one("bare LF refusal", event="reject", command="END-OF-MESSAGE",
    to="lf@foreign.example",
    reply="550 5.5.2 Error: bare <LF> received")
sys.exit(rc)
EOF
