#!/bin/bash
# postern_tool.sh - every postern subcommand, against a stopped store and
# against a running posternd under load (issue #6).
#
# Stopped store: mkstore builds one with entries in every state; then
# queue (text, --json, filters), show (text, --json, --body), hold,
# release, delete (--yes required), resolve, replay, audit (text, --json,
# --csv, --since/--until/--rcpt/--queue-id), audit --verify (sound, and
# exit 1 naming the record after a ledger record is altered in data.mdb),
# stats (text, --json), every --help, bad usage (2), missing store (3).
#
# Running daemon: TOOL_MSGS messages of 2 recipients each are sent while
# the Maildir root is missing, so every entry defers (backoff_min is the
# default 300 s). The root is recreated and postern replay runs again and
# again, in slices and over everything, while posternd delivers. Then:
# each (message, recipient) is in the Maildir exactly once, the ledger
# holds exactly one delivered record for each, audit --verify is sound,
# the replays woke the daemon, and delivery ended long before any backoff
# could have run out.
#
# Env: TOOL_MSGS (default 2000), TOOL_DRAIN (seconds, default 45).
. "$(dirname "$0")/common.sh"

[ -x "$POSTERN" ] || fail "postern not found at $POSTERN (set POSTERN)"
[ -x "$MKSTORE" ] || fail "mkstore not found at $MKSTORE (set MKSTORE)"
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || skip "smtp-source not found (Debian package postfix)"

MSGS=${TOOL_MSGS:-2000}
DRAIN=${TOOL_DRAIN:-45}
OUT=$WORK/out
ERR=$WORK/err
rc=0

bad() { echo "FAIL: $*"; rc=1; }

# run WANT ARGS...: run postern ARGS, stdout to $OUT, stderr to $ERR;
# complain unless it exits WANT.
run() {
	local want=$1 got
	shift
	"$POSTERN" "$@" >"$OUT" 2>"$ERR"
	got=$?
	if [ "$got" != "$want" ]; then
		bad "postern $* exited $got, expected $want"
		sed 's/^/  stdout: /' "$OUT" | head -5
		sed 's/^/  stderr: /' "$ERR" | head -5
		return 1
	fi
	return 0
}

# has FILE TEXT: FILE contains the fixed string TEXT.
has() {
	grep -qF -- "$2" "$1" || { bad "no \"$2\" in $(basename "$1"):"; \
		head -5 "$1" | sed 's/^/  /'; }
}

# py ARGS... <<'EOF' ... : run a python check; failure is a test failure.
py() { "$PYTHON" - "$@" || bad "python check failed (line ${BASH_LINENO[0]})"; }

# ---------------------------------------------------------------------
# Stopped store
# ---------------------------------------------------------------------
ST=$WORK/stopped
"$MKSTORE" "$ST" >"$WORK/kinds" || fail "mkstore"
q() { awk -v k="$1" '$1 == k { print $2 }' "$WORK/kinds"; }
S="-s $ST"
echo "stopped store: $(wc -l <"$WORK/kinds") messages from mkstore"

# --help everywhere, bad usage, missing store.
run 0 --help && has "$OUT" "commands:"
run 0 -h
run 0 help
for c in queue show replay hold release delete resolve audit stats; do
	run 0 "$c" --help && has "$OUT" "usage: postern $c"
done
run 2
run 2 bogus
run 2 -x queue
run 2 $S queue --bogus
run 2 $S queue --state nosuch
run 2 $S queue --older-than soon
run 2 $S queue not-a-queue-id
run 2 $S show
run 2 $S show xyz
run 2 $S replay
run 2 $S hold ALL "$(q pending)"
run 2 $S resolve ALL
run 2 $S resolve --delivered --redeliver ALL
run 2 $S release --delivered ALL
run 2 $S audit --since yesterday-ish
run 2 $S audit --queue-id xyz
run 2 $S audit extra
run 2 $S stats extra
run 2 $S delete "$(q pending)" && has "$ERR" "--yes"
run 3 -s "$WORK/nosuch" queue && has "$ERR" "no store at"
run 3 -s "$WORK/nosuch" audit --verify
run 3 -c "$WORK/nosuch.conf" stats

# queue
run 0 $S queue && has "$OUT" "-- 1 Kbytes in 11 Requests, 12 Recipients."
has "$OUT" "dead      dead@held.example"
has "$OUT" "last reply: connection lost after the dot"
run 0 $S queue --json && py "$OUT" "$WORK/kinds" <<'EOF'
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
kinds = dict((q, k) for k, q in (l.split() for l in open(sys.argv[2])))
assert len(msgs) == 11, len(msgs)
states = {}
for m in msgs:
    for r in m["recipients"]:
        states[r["state"]] = states.get(r["state"], 0) + 1
        if kinds[m["queue_id"]] == "dead":
            assert r["dead_letter"] and r["attempts"] == 7, r
        if kinds[m["queue_id"]] in ("sending", "indoubt"):
            assert r["may_have_been_sent"], r
        if r["state"] == "active":
            assert not r["owner_alive"], r
assert states == {"pending": 3, "active": 2, "deferred": 2, "held": 2,
                  "in-doubt": 3}, states
assert sum(m["recipients_total"] for m in msgs) == 13
assert [m for m in msgs if kinds[m["queue_id"]] == "partly"][0][
    "recipients_queued"] == 1
EOF
# filter -> number of messages listed
for f in "--deferred:2" "--in-doubt:3" "--held:2" "--dead:1" "--expired:2" \
	"--pending:2" "--state=pending,held:4" "--state=active:2" \
	"--domain=held.example:2" "--domain=HELD.example:2" \
	"--rcpt=DOUBT2:1" "--rcpt=nobody:0" "--sender-domain=home.example:11" \
	"--sender-domain=elsewhere.example:0" "--older-than=1h:1" \
	"--older-than=2m:3"; do
	run 0 $S queue --json "${f%:*}" || continue
	n=$(wc -l <"$OUT")
	[ "$n" = "${f##*:}" ] || bad "queue ${f%:*}: $n messages, expected ${f##*:}"
done
run 0 $S queue "$(q deferred)" "$(q dead)" && has "$OUT" "2 Requests"
run 0 $S queue --rcpt nobody && has "$OUT" "Mail queue is empty"

# show
run 0 $S show "$(q sending)" && has "$OUT" "may have been handed over"
has "$OUT" "X-Kind: test"
run 0 $S show "$(q partly)" && has "$OUT" "history:"
has "$OUT" "active -> deferred  451 4.3.0 try later"
has "$OUT" "ledger:"
run 0 $S show --body "$(q pending)" && has "$OUT" "body line"
run 0 $S show --json --body "$(q partly)" && py "$OUT" <<'EOF'
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["recipients_total"] == 2 and len(o["recipients"]) == 1, o
assert o["recipients"][0]["state"] == "deferred"
assert o["history"][0]["to"] == "deferred"
assert [l["kind"] for l in o["ledger"]] == ["delivered"]
assert "body line" in o["body"]
EOF
run 0 $S show "$(q delivered | head -1)" && has "$OUT" "no longer queued"
has "$OUT" "record 1"
run 1 $S show 00000000000000FF && has "$ERR" "no such message"
[ -s "$OUT" ] && bad "show of an unknown id printed: $(head -1 "$OUT")"

# hold, release, delete
P2=$(q pending2)
run 0 $S hold --reason "look first" "$P2" && has "$ERR" "2 entries changed"
run 0 $S queue --held --json && [ "$(wc -l <"$OUT")" = 3 ] ||
	bad "hold: expected 3 messages held"
run 0 $S show "$P2" && has "$OUT" "pending -> held  hold by "
has "$OUT" ": look first"
run 0 $S release "$P2" && has "$ERR" "2 entries changed"
has "$ERR" "no posternd is running"
run 0 $S release "$P2" && has "$OUT" "skipped: not held (pending)"
run 0 $S audit --verify --json && cp "$OUT" "$WORK/verify.before"
run 2 $S delete "$P2"
run 0 $S delete --dry-run "$P2" && has "$OUT" "would do: pending -> deleted"
run 0 $S queue --json "$P2" && has "$OUT" '"state":"pending"'
run 0 $S audit --verify --json && py "$OUT" "$WORK/verify.before" <<'EOF'
import json, sys
a, b = (json.loads(open(f).read()) for f in sys.argv[1:3])
del a["seconds"], b["seconds"]
assert a == b, (a, b)
EOF
run 0 $S delete --yes --reason "spam" --json "$P2" && py "$OUT" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert len(r) == 2 and all(x["changed"] and x["ledger_seq"] for x in r), r
EOF
run 0 $S audit --queue-id "$P2" --json && py "$OUT" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [x["kind"] for x in r] == ["deleted", "deleted"], r
assert all(x["reply"].startswith("deleted by ") and
           x["reply"].endswith(": spam") for x in r), r
EOF
run 0 $S delete --yes "$P2" && has "$OUT" "already deleted (ledger record"

# resolve, replay
D=($(q indoubt))
run 0 $S resolve --delivered --reason "seen in the mailbox" "${D[0]}" &&
	has "$OUT" "in-doubt -> delivered"
run 0 $S resolve --redeliver "${D[1]}" && has "$OUT" "sent again now"
run 0 $S resolve --delivered "$(q pending)" &&
	has "$OUT" "pending, which this does not select; not changed"
run 0 $S resolve --delivered "${D[0]}" && has "$OUT" "already delivered"
run 1 $S resolve --delivered 00000000000000FF && has "$OUT" "no such message"
run 0 $S replay --expired && has "$ERR" "2 entries changed"
run 0 $S queue --json --in-doubt && [ "$(wc -l <"$OUT")" = 2 ] ||
	bad "replay --expired: the one being sent should be in-doubt now"
run 0 $S replay "$(q delivered | head -1)" &&
	has "$OUT" "already delivered (ledger record 1)"
run 1 $S replay 00000000000000FF
run 0 $S release --dead --dry-run &&
	has "$OUT" "would do: held (dead letter) -> pending"
run 0 $S hold --deferred && has "$ERR" "2 entries changed"
run 0 $S release ALL --json && [ "$(wc -l <"$OUT")" = 4 ] ||
	bad "release ALL: expected 4 reports"

# audit
run 0 $S audit && has "$OUT" "tamper-target"
has "$OUT" "resolved as delivered by "
run 0 $S audit --json && py "$OUT" <<'EOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
kinds = [x["kind"] for x in r]
assert len(r) == 8 and kinds.count("delivered") == 4 and kinds.count("bounced") == 1, kinds
assert kinds.count("deleted") == 2 and kinds.count("note") == 1, kinds
assert [x["seq"] for x in r] == list(range(1, len(r) + 1))
note = [x for x in r if x["kind"] == "note"][0]
assert note["reply"].startswith("resolved for redelivery by "), note
EOF
cp "$OUT" "$WORK/audit.json"
run 0 $S audit --csv && py "$OUT" "$WORK/audit.json" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
js = [json.loads(l) for l in open(sys.argv[2])]
assert len(rows) == len(js), (len(rows), len(js))
for c, j in zip(rows, js):
    assert int(c["seq"]) == j["seq"] and c["kind"] == j["kind"], (c, j)
    assert c["reply"] == j["reply"] and c["recipient"] == j["recipient"]
    assert c["queue_id"] == j["queue_id"], (c, j)
EOF
# --since / --until on the records' own times (@EPOCH, whole seconds)
read -r t2 t3 < <("$PYTHON" -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print(r[1]["done_us"] // 1000000 + 1, r[2]["done_us"] // 1000000 + 1)' \
	"$WORK/audit.json")
run 0 $S audit --json --until "@$t2" && [ "$(wc -l <"$OUT")" = 2 ] ||
	bad "audit --until @$t2: expected records 1 and 2"
run 0 $S audit --json --since "@$t2" --until "@$t3" &&
	[ "$(wc -l <"$OUT")" = 1 ] || bad "audit --since/--until: expected 1"
run 0 $S audit --json --since 1h && [ "$(wc -l <"$OUT")" = 8 ] ||
	bad "audit --since 1h: expected all 8 records"
run 0 $S audit --json --since 2026-01-01 --until 2026-01-02 &&
	[ ! -s "$OUT" ] || bad "audit on a day long gone: expected nothing"
run 0 $S audit --rcpt D2@done.example && [ "$(wc -l <"$OUT")" = 1 ] ||
	bad "audit --rcpt: expected 1"
run 0 $S audit --queue-id "$(q bounced)" && has "$OUT" "bounced"
run 0 $S audit --message-id "<mkstore@home.example>" --csv &&
	[ "$(wc -l <"$OUT")" = 9 ] || bad "audit --message-id: expected 8 + header"

# stats
run 0 $S stats && has "$OUT" "totals:     accepted 16, delivered 4, bounced 1, deleted 2"
run 0 $S stats --json && py "$OUT" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read())
assert s["accepted"] == 16 and s["ledger_records"] == 8, s
assert s["delivered"] + s["bounced"] + s["deleted"] + s["pending"] + \
    s["active"] + s["deferred"] + s["held"] + s["in_doubt"] == 16, s
assert s["done_last_hour"] == 7 and len(s["queued_by_age_hours"]) == 24, s
EOF

# audit --verify: sound; then a ledger record altered on disk
run 0 $S audit --verify && has "$OUT" "verify: sound (0 problems)"
run 0 $S audit --verify --json && py "$OUT" <<'EOF'
import json, sys
v = json.loads(open(sys.argv[1]).read())
assert v["sound"] and v["problems"] == 0 and v["records"] == 8, v
EOF
cp -r "$ST" "$WORK/tampered"
py "$WORK/tampered/data.mdb" <<'EOF'
import sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
old, new = b"250 2.0.0 tamper-target", b"250 2.0.0 tamper-TARGET"
n = d.count(old)
assert n >= 1, "ledger record not found in data.mdb"
open(p, "wb").write(bytes(d.replace(old, new)))
EOF
run 1 -s "$WORK/tampered" audit --verify &&
	has "$OUT" "ledger record 2: does not match the hash chained in record 3"
has "$OUT" "verify: FAILED"
run 1 -s "$WORK/tampered" audit --verify --json && py "$OUT" <<'EOF'
import json, sys
v = json.loads(open(sys.argv[1]).read())
assert not v["sound"] and v["problems"] == len(v["problem_list"]) >= 1, v
p = v["problem_list"][0]
assert p["kind"] == "chain_mismatch" and p["record"] == 2, p
assert "ledger record 2: does not match the hash chained in record 3" in p["text"], p
EOF

# Reading commands write nothing: data.mdb byte for byte the same after
# queue, show, stats and audit (no instance record, no upgrade).
sum0=$(sha256sum <"$ST/data.mdb")
run 0 $S queue
run 0 $S queue --json
run 0 $S show "$(q delivered | head -n 1)"
run 0 $S stats
run 0 $S audit
run 0 $S audit --verify
[ "$(sha256sum <"$ST/data.mdb")" = "$sum0" ] ||
	bad "a reading command changed data.mdb"

# Only posternd makes a store: -s on a directory that holds none is
# refused (rc 3) and nothing is created there.
mkdir "$WORK/nostore"
for cmd in queue stats "audit --verify" "replay --deferred"; do
	run 3 -s "$WORK/nostore" $cmd && has "$ERR" "no store in $WORK/nostore"
done
[ -z "$(ls -A "$WORK/nostore")" ] || bad "postern -s created files: $(ls "$WORK/nostore")"

run 0 --version && has "$OUT" "postern "
"$POSTERND" --version | grep -q '^posternd ' || bad "posternd --version"
"$POSTERND" --help | grep -q 'usage: posternd' || bad "posternd --help"

# ---------------------------------------------------------------------
# Running daemon under load
# ---------------------------------------------------------------------
PORT=$(free_port)
CONF=$WORK/load.conf
LOG=$WORK/load.log
MD=$WORK/load/maildir
EXPECT=$((MSGS * 2))
write_config "$CONF" "$WORK/load" "$PORT" "max_sessions = 100"
start_daemon "$CONF" "$LOG" || fail "daemon did not start"
L="-c $CONF"

# One store, one daemon: a second posternd on the same store (another
# port, another Maildir) is refused, names the first one's pid, and
# leaves its admin socket alone.
sock0=$(stat -c %i "$WORK/load/store/posternd.sock") || bad "no admin socket"
write_config "$WORK/second.conf" "$WORK/second" "$(free_port)"
sed -i "s|^path = .*|path = $WORK/load/store|" "$WORK/second.conf"
for c2 in "$WORK/second.conf" "$CONF"; do	# also the same port
	rc2=0
	timeout 20 "$POSTERND" -f -c "$c2" >"$WORK/second.log" 2>&1 || rc2=$?
	[ "$rc2" = 1 ] || bad "a second posternd on the store exited $rc2, not 1"
	grep -q "cannot start: store $WORK/load/store is in use by posternd pid $DAEMON_PID" \
		"$WORK/second.log" || bad "second posternd: $(tail -1 "$WORK/second.log")"
done
[ "$(stat -c %i "$WORK/load/store/posternd.sock" 2>/dev/null)" = "$sock0" ] ||
	bad "the second posternd touched the first one's admin socket"
run 0 $L replay --deferred && hasnt_err=$(grep -c "no posternd is running" "$ERR")
[ "${hasnt_err:-0}" = 0 ] || bad "postern replay no longer finds the running posternd"
# posternd -n: checks the configuration and the store, starts nothing.
"$POSTERND" -n -c "$CONF" >"$WORK/check.out" 2>&1 &&
	grep -q "store $WORK/load/store: schema version" "$WORK/check.out" ||
	bad "posternd -n: $(cat "$WORK/check.out")"
now() { date +%s.%N; }
calc() { "$PYTHON" -c "print($1)"; }
# stat_of NAME: one field of postern stats --json
stat_of() {
	"$POSTERN" $L stats --json | "$PYTHON" -c \
		"import json, sys; print(json.load(sys.stdin)['$1'])"
}

rm -rf "$MD"	# deliveries defer (4.3.0) until it is back
t0=$(now)
"$SMTP_SOURCE" -s 20 -m "$MSGS" -l 1024 -r 2 -f a@home.example \
	-t b@foreign.example "127.0.0.1:$PORT" >"$WORK/src.out" 2>&1 ||
	fail "smtp-source: $(tail -3 "$WORK/src.out")"
t1=$(now)
for i in $(seq 1 300); do
	[ "$(stat_of deferred)" = "$EXPECT" ] && break
	sleep 0.1
done
deferred=$(stat_of deferred)
echo "load: $MSGS messages x 2 recipients sent in $(calc "round($t1 - $t0, 1)") s; deferred $deferred of $EXPECT after $(calc "round($(now) - $t0, 1)") s"
[ "$deferred" = "$EXPECT" ] || fail "not every entry deferred ($deferred of $EXPECT)"
[ "$(maildir_count "$MD")" = 0 ] || fail "delivered with the root missing"

# The deferred queue ids, in 8 slices of named ids.
"$POSTERN" $L queue --deferred --json | "$PYTHON" -c '
import json, sys
ids = [json.loads(l)["queue_id"] for l in sys.stdin]
n = (len(ids) + 7) // 8
for i in range(0, len(ids), n):
    print(" ".join(ids[i:i + n]))' >"$WORK/slices"
[ "$(wc -l <"$WORK/slices")" = 8 ] || fail "expected 8 slices of queue ids"

mkdir -p "$MD"
t2=$(now)
# Replays while posternd delivers: the deferred entries one slice of
# named ids at a time, each followed by a replay of every active and
# pending entry (the daemon's own: each must be skipped); then replays
# of everything deferred and of every state, until the queue is empty.
replays=0 woke=0 applied=0 busy=0 first="" sliced=""
exec 3<"$WORK/slices"
deadline=$(($(date +%s) + DRAIN))
# replay_once ARGS...: one postern replay; counts what it did.
replay_once() {
	local r n
	"$POSTERN" $L replay "$@" >"$WORK/r.out" 2>"$WORK/r.err"
	r=$?
	[ $r = 0 ] || bad "replay $* exited $r: $(head -3 "$WORK/r.err")"
	replays=$((replays + 1))
	n=$(grep -cE ': (deferred|pending) -> |"changed":true' "$WORK/r.out")
	applied=$((applied + n))
	busy=$((busy + $(grep -c 'being delivered now' "$WORK/r.out")))
	grep -q "posternd woken" "$WORK/r.err" && woke=$((woke + 1))
	{ echo "== replay $*" | cut -c1-80; cat "$WORK/r.err"; } >>"$WORK/replays"
	if [ -z "$first" ] && [ "$(maildir_count "$MD")" -gt 0 ]; then
		first=$(now)
	fi
}
while [ "$(date +%s)" -lt "$deadline" ]; do
	if [ -z "$sliced" ] && read -r ids <&3; then
		replay_once --reason "load slice" $ids
		# the daemon's own entries: all skipped, nothing changes
		replay_once --json --state active,pending
		continue
	fi
	sliced=1
	replay_once --deferred
	replay_once --json --state deferred,active,pending
	left=$(( $(stat_of pending) + $(stat_of active) + $(stat_of deferred) ))
	[ "$left" = 0 ] && break
	sleep 0.1
done
exec 3<&-
for i in $(seq 1 $((DRAIN * 5))); do
	[ "$(maildir_count "$MD")" -ge "$EXPECT" ] && break
	sleep 0.2
done
t3=$(now)
[ -n "$first" ] || first=$t3
sleep 1		# a late duplicate would show up now
n=$(maildir_count "$MD")
echo "load: $replays replays during delivery ($applied entries moved, $busy skipped as being delivered, $woke woke posternd)"
echo "load: first file $(calc "round($first - $t2, 1)") s after the first replay; $n of $EXPECT files $(calc "round($t3 - $t2, 1)") s after it"
[ "$n" = "$EXPECT" ] || bad "$n files in the Maildir, expected $EXPECT"
[ "$replays" -ge 18 ] || bad "only $replays replays ran during delivery"
[ "$applied" = "$EXPECT" ] ||
	bad "replays moved $applied entries, expected each of $EXPECT once"
[ "$woke" -ge 8 ] || bad "only $woke replays woke posternd"
# Woken, not waiting out the backoff (>= 225 s) or the workers' idle
# re-check (30 s): the first file comes at once.
"$PYTHON" -c "import sys; sys.exit(0 if $first - $t2 < 5 else 1)" ||
	bad "first delivery $(calc "round($first - $t2)") s after the replay"
"$PYTHON" -c "import sys; sys.exit(0 if $t3 - $t2 < $DRAIN else 1)" ||
	bad "delivery took $(calc "round($t3 - $t2)") s after the replay"

stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || bad "posternd exit status $STOP_RC on SIGTERM"
run 0 $L audit --verify && has "$OUT" "verify: sound (0 problems)"
run 0 $L audit --json && py "$OUT" "$MD" "$LOG" "$EXPECT" <<'EOF'
import collections, json, os, re, sys
out, md, log, expect = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
recs = [json.loads(l) for l in open(out)]
kinds = collections.Counter(r["kind"] for r in recs)
assert kinds == {"delivered": expect}, kinds
keys = collections.Counter((r["queue_id"], r["recipient_index"])
                           for r in recs)
dup = [k for k, n in keys.items() if n > 1]
assert not dup and len(keys) == expect, dup[:5]
# the Maildir: <store-id>.<qid>.<index>.postern, once each
files = collections.Counter()
for rcpt in os.listdir(md):
    for sub in ("new", "cur"):
        for f in os.listdir(os.path.join(md, rcpt, sub)):
            m = re.match(r"[0-9a-f]{16}\.([0-9a-f]{16})\.(\d+)\.postern", f)
            assert m, f
            files[(m.group(1).upper(), int(m.group(2)))] += 1
assert set(files) == set(keys) and max(files.values()) == 1, \
    (len(files), max(files.values()))
# the log: one "sent" per (message, recipient)
sent = collections.Counter(re.findall(r"([0-9A-F]{16}): to=<([^>]*)>.*status=sent", open(log).read()))
assert len(sent) == expect and max(sent.values()) == 1, \
    (len(sent), sent.most_common(3))
assert "lease had expired" not in open(log).read()
EOF
run 0 $L stats --json && py "$OUT" "$EXPECT" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read())
e = int(sys.argv[2])
assert s["accepted"] == e and s["delivered"] == e and s["messages"] == 0, s
EOF

# ---------------------------------------------------------------------
# Operator changes reach the mail log: syslog, as postern/admin, one
# line per entry with the queue id, the recipient, who and why. Checked
# in a private mount namespace whose /dev is a tmpfs holding a /dev/log
# that a listener of this test reads (the machine may have no syslogd).
# ---------------------------------------------------------------------
if command -v unshare >/dev/null && command -v mount >/dev/null &&
	unshare --mount --propagation private true 2>/dev/null; then
	"$MKSTORE" "$WORK/logged" >"$WORK/kinds2" || bad "mkstore for the log"
	PL=$(awk '$1 == "pending2" { print $2 }' "$WORK/kinds2")
	cat >"$WORK/devlog.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
open(sys.argv[1] + ".ready", "w").close()
s.settimeout(10)
with open(sys.argv[1], "w") as out:
    try:
        while True:
            out.write(s.recv(8192).decode("utf-8", "replace") + "\n")
            out.flush()
    except socket.timeout:
        pass
EOF
	unshare --mount --propagation private sh -c '
		mount -t tmpfs -o mode=0755 devlog /dev &&
		mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/urandom c 1 9 ||
			exit 1
		"$1" "$2/devlog.py" "$2/syslog" & lp=$!
		while [ ! -e "$2/syslog.ready" ]; do sleep 0.05; done
		"$3" -s "$2/logged" hold --reason "look first" "$4" >/dev/null 2>&1
		"$3" -s "$2/logged" release --reason "say \"ok\"" "$4" >/dev/null 2>&1
		"$3" -s "$2/logged" hold --dry-run "$4" >/dev/null 2>&1
		kill $lp' sh "$PYTHON" "$WORK" "$POSTERN" "$PL" ||
		bad "could not run postern under a private /dev/log"
	py "$WORK/syslog" "$PL" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
qid = sys.argv[2]
held = [l for l in lines if re.search(r"postern/admin\[\d+\]: %s: to=<[^>]+>, hold by \S+, reason=\"look first\": " % qid, l)]
freed = [l for l in lines if re.search(r"postern/admin\[\d+\]: %s: to=<[^>]+>, release by \S+, " % qid, l) and 'reason="say \\"ok\\"": ' in l]
assert len(held) == 2 and len(freed) == 2 and len(lines) == 4, lines
assert all("<22>" in l[:6] for l in lines), lines   # facility mail, info
EOF
	echo "operator change in the mail log: $(head -n 1 "$WORK/syslog")"
	run 2 -s "$WORK/logged" hold --reason "$(printf 'two\nlines')" "$PL" &&
		has "$ERR" "control characters"
else
	echo "note: no private mount namespace here: the mail log lines of operator changes are not checked"
fi

# ---------------------------------------------------------------------
# A next hop that is down: postern queue says why the mail waits
# ---------------------------------------------------------------------
stop_daemon "$DAEMON_PID"
DOWN=$(free_port)	# nothing listens there
write_config "$WORK/down.conf" "$WORK/down" "$(free_port)"
printf '[foreign]\ndriver = smtp\n[smtp]\nrelay = 127.0.0.1:%s\ntls = none\n' \
	"$DOWN" >>"$WORK/down.conf"
start_daemon "$WORK/down.conf" "$WORK/down.log" || fail "down: no start"
dport=$(sed -n 's/^listen = 127.0.0.1://p' "$WORK/down.conf")
"$PYTHON" - "$dport" <<'EOF' || bad "down: the message was not accepted"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.sendmail("a@home.example", ["waits@foreign.example"],
           "Subject: waits\r\n\r\nbody\r\n")
s.quit()
EOF
for i in $(seq 1 100); do
	grep -q 'next hop unavailable' "$WORK/down.log" && break
	sleep 0.1
done
sleep 0.5	# the record is written just after the line
run 0 -c "$WORK/down.conf" queue &&
	has "$OUT" "(next hop down for " && has "$OUT" "Connection refused"
run 0 -c "$WORK/down.conf" queue --json && py "$OUT" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).read().splitlines()[0])
d = m["recipients"][0]["next_hop_down"]
assert "Connection refused" in d["reason"] and d["failing_seconds"] >= 0, d
EOF
stop_daemon "$DAEMON_PID"

if [ $rc -ne 0 ]; then
	echo "--- daemon log, not info (head) ---"
	grep -v ': info: ' "$LOG" | head -20
fi
exit $rc
