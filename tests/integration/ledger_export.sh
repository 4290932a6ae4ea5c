#!/bin/bash
# ledger_export.sh - postern ledger export and audit --verify --fleet.
#
# Two posternd instances (each its own store and Maildir) get the same
# message, as a home MTA's retry after a lost reply lands on another
# instance; each instance's ledger is exported (whole, and in two pieces
# with --since, as a site ships them); the fleet audit:
#  1. finds the chains sound and names the one message delivered twice,
#     with both instances and queue ids, as "by different instances";
#  2. is sound over exports without that message, and over overlapping
#     pieces of one instance (a record listed twice is not a duplicate);
#  3. names the instance and the record when one byte of one export is
#     changed: a field, the raw record, a missing record, a cut-off end.
# And the same message sent twice to one instance is recognised there
# (resubmission), so that instance's ledger holds it once.
. "$(dirname "$0")/common.sh"

[ -x "$POSTERN" ] || fail "postern not found at $POSTERN (set POSTERN)"

# send PORT MSGID RCPT: one message with smtplib; prints the reply.
send() {
	"$PYTHON" - "$@" <<'PY' || fail "sending to port $1 failed"
import smtplib, sys
port, mid, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
msg = ("From: a@home.example\r\nSubject: fleet\r\nMessage-ID: %s\r\n\r\n"
       "the same bytes\r\n" % mid)
s.ehlo()
s.mail("a@home.example")
c, t = s.rcpt(rcpt)
if c != 250:
    sys.exit("RCPT %s: %d %s" % (rcpt, c, t.decode()))
code, text = s.data(msg)
print(code, text.decode())
s.quit()
PY
}

delivered() { find "$WORK/$1/maildir" -type f -path '*/new/*' | wc -l; }

for i in 1 2; do
	eval "port$i=\$(free_port)"
	eval "p=\$port$i"
	write_config "$WORK/i$i.conf" "$WORK/i$i" "$p"
	start_daemon "$WORK/i$i.conf" "$WORK/i$i.log" ||
		fail "instance $i did not start"
	eval "pid$i=\$DAEMON_PID"
done

# Instance 1 gets <a> and <dup>; instance 2 gets <b> and <dup> twice: the
# second is recognised there, the first is the fleet's duplicate.
send "$port1" "<a@home.example>" x@foreign.example >/dev/null
send "$port1" "<dup@home.example>" x@foreign.example >/dev/null
send "$port2" "<b@home.example>" x@foreign.example >/dev/null
send "$port2" "<dup@home.example>" x@foreign.example >/dev/null
r=$(send "$port2" "<dup@home.example>" x@foreign.example)
case $r in
*"already queued as"*"(resubmission, not queued again)"*) ;;
*) fail "instance 2 did not recognise the resubmission: $r" ;;
esac
for i in $(seq 1 100); do
	[ "$(delivered i1)" = 2 ] && [ "$(delivered i2)" = 2 ] && break
	sleep 0.1
done
[ "$(delivered i1)" = 2 ] && [ "$(delivered i2)" = 2 ] ||
	fail "delivered: instance 1 $(delivered i1), instance 2 $(delivered i2)"

# Exports, from the running daemons (read-only opens).
"$POSTERN" -s "$WORK/i1/store" ledger export -o "$WORK/e1.jsonl" ||
	fail "export 1"
"$POSTERN" -s "$WORK/i2/store" ledger export >"$WORK/e2.jsonl" ||
	fail "export 2"
"$POSTERN" -s "$WORK/i2/store" ledger export --since 2 >"$WORK/e2b.jsonl" ||
	fail "export 2 --since 2"
[ "$(wc -l <"$WORK/e1.jsonl")" = 3 ] ||
	fail "export 1: $(wc -l <"$WORK/e1.jsonl") lines, want 2 records + head"
[ "$(wc -l <"$WORK/e2.jsonl")" = 4 ] ||
	fail "export 2: want 2 delivered + 1 resubmission + head"
tail -1 "$WORK/e2.jsonl" | grep -q '"head_seq":3' ||
	fail "export 2: head line $(tail -1 "$WORK/e2.jsonl")"
grep -q '"kind":"resubmission"' "$WORK/e2.jsonl" ||
	fail "export 2 has no resubmission record"
id1=$(head -1 "$WORK/e1.jsonl" | sed 's/.*"store_id":"\([0-9a-f]*\)".*/\1/')
id2=$(head -1 "$WORK/e2.jsonl" | sed 's/.*"store_id":"\([0-9a-f]*\)".*/\1/')

# 1. The duplicate across instances.
"$POSTERN" audit --verify --fleet "$WORK/e1.jsonl" "$WORK/e2.jsonl" \
	>"$WORK/f.out" 2>&1
rc=$?
cat "$WORK/f.out"
[ "$rc" = 1 ] || fail "1: fleet audit exit $rc, want 1"
grep -q '^delivered 2 times: <dup@home.example> to <x@foreign.example> by different instances' \
	"$WORK/f.out" || fail "1: the duplicate is not named"
grep -q "instance $id1 queue id" "$WORK/f.out" &&
	grep -q "instance $id2 queue id" "$WORK/f.out" ||
	fail "1: both copies are not listed"
grep -q 'fleet: 2 exports of 2 instances, 5 records: 4 delivered, 1 resubmission recognised' \
	"$WORK/f.out" || fail "1: summary"
grep -q '(0 problems, 1 delivered more than once)' "$WORK/f.out" ||
	fail "1: the chains are not sound"
echo "1: the cross-instance duplicate named, chains sound"

# 2. Sound: one instance, whole and in overlapping pieces.
"$POSTERN" audit --verify --fleet "$WORK/e2.jsonl" "$WORK/e2b.jsonl" \
	>"$WORK/f.out" 2>&1 || fail "2: not sound: $(cat "$WORK/f.out")"
grep -q 'fleet: sound (0 problems, 0 delivered more than once)' \
	"$WORK/f.out" || fail "2: $(cat "$WORK/f.out")"
echo "2: overlapping pieces of one instance are sound"

# 3. Tampering, each named with the instance and the record.
tamper() {
	local name=$1 want=$2
	"$POSTERN" audit --verify --fleet "$WORK/$name.jsonl" \
		>"$WORK/t.out" 2>&1
	[ $? = 1 ] || fail "3: $name: not refused: $(cat "$WORK/t.out")"
	grep -q -- "$want" "$WORK/t.out" ||
		fail "3: $name: want '$want', got: $(cat "$WORK/t.out")"
	echo "3: $name: $(head -1 "$WORK/t.out")"
}
sed '1s/"recipient":"x@/"recipient":"y@/' "$WORK/e1.jsonl" >"$WORK/field.jsonl"
tamper field "(instance $id1): record 1: its fields differ from its raw record"
"$PYTHON" - "$WORK/e2.jsonl" "$WORK/raw.jsonl" <<'PY'
import base64, json, sys
lines = open(sys.argv[1]).read().splitlines()
o = json.loads(lines[1])
raw = bytearray(base64.b64decode(o["raw"]))
raw[-40] ^= 0x01          # one bit of the record's own bytes
o["raw"] = base64.b64encode(bytes(raw)).decode()
lines[1] = json.dumps(o, separators=(",", ":"))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
tamper raw "(instance $id2): record 3: does not chain to the record before it"
sed '2d' "$WORK/e2.jsonl" >"$WORK/gap.jsonl"
tamper gap "(instance $id2): record 3: out of sequence"
sed '$d' "$WORK/e2.jsonl" >"$WORK/cut.jsonl"
tamper cut "(instance $id2): no head line at the end"

for i in 1 2; do
	eval "stop_daemon \$pid$i"
	"$POSTERN" -s "$WORK/i$i/store" audit --verify >/dev/null ||
		fail "instance $i: audit --verify not sound"
done
exit 0
