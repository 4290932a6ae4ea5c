#!/bin/bash
# admin_http.sh - [admin] listen: /metrics in the Prometheus text format
# counts what happened, /healthz says ok, and says why when the foreign
# side fails. Uses curl as the HTTP client.
. "$(dirname "$0")/common.sh"
command -v curl >/dev/null 2>&1 || skip "curl not found (Debian package curl)"
command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"

start_admin_daemon

for i in 1 2 3; do
	swaks --server "127.0.0.1:$port" -f a@home.example \
		-t "r$i@foreign.example" >/dev/null || fail "swaks $i failed"
done
swaks --server "127.0.0.1:$port" -f a@home.example -t x@elsewhere.example \
	>/dev/null 2>&1	# refused: 550 at RCPT
for i in $(seq 1 50); do
	[ "$(maildir_count "$WORK/maildir")" -ge 3 ] && break
	sleep 0.1
done

curl -sf "http://127.0.0.1:$aport/metrics" >"$WORK/metrics" ||
	fail "GET /metrics failed"
# Every line is a comment or "name{labels} value", and the figures add up.
"$PYTHON" - "$WORK/metrics" <<'PY' || fail "/metrics is wrong"
import re, sys
line_re = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"\})? [0-9.e+-]+$')
vals = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("#"):
        continue
    if not line_re.match(line):
        sys.exit("not Prometheus text: %r" % line)
    k, v = line.rsplit(" ", 1)
    vals[k] = float(v)
def want(k, v):
    if vals.get(k) != v:
        sys.exit("%s = %s, want %s" % (k, vals.get(k), v))
want('postern_outcomes_total{result="delivered"}', 3)
want('postern_entries_total{state="accepted"}', 3)
want('postern_entries_total{state="delivered"}', 3)
want('postern_delivery_latency_seconds_count', 3)
want('postern_delivery_latency_seconds_bucket{le="+Inf"}', 3)
want('postern_smtp_replies_total{code="550"}', 1)
if vals.get('postern_smtp_replies_total{code="250"}', 0) < 12:
    sys.exit("too few 250 replies counted")
print("metrics ok: %d samples" % len(vals))
PY

code=$(curl -s -o "$WORK/health" -w '%{http_code}' "http://127.0.0.1:$aport/healthz")
[ "$code" = 200 ] || fail "/healthz: $code: $(cat "$WORK/health")"
grep -qx 'workers: 16 of 16 alive' "$WORK/health" || fail "healthz: $(cat "$WORK/health")"

# The foreign side fails (the Maildir root is gone): healthz says so.
rm -rf "$WORK/maildir"
swaks --server "127.0.0.1:$port" -f a@home.example -t r9@foreign.example \
	>/dev/null || fail "swaks failed"
for i in $(seq 1 50); do
	curl -s "http://127.0.0.1:$aport/healthz" >"$WORK/health"
	grep -q '^foreign: failing since' "$WORK/health" && break
	sleep 0.1
done
grep -q '^foreign: failing since' "$WORK/health" ||
	fail "healthz does not report the failing foreign side: $(cat "$WORK/health")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/nothing")
[ "$code" = 404 ] || fail "GET /nothing: $code"

stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exited $STOP_RC"
echo "PASS: /metrics and /healthz"
