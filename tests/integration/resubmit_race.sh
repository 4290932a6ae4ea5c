#!/bin/bash
# resubmit_race.sh - the resubmission index under a race, over real SMTP
# sessions to a real posternd (maildir driver).
#
# 1. Race: RACE_ROUNDS rounds (default 500); each round SESSIONS (20)
#    sessions carry the same message (sender, recipient, body; a new body
#    each round) through MAIL/RCPT/DATA and the body, then their final
#    dots leave back to back (resubmit_race.py). Each round: exactly one
#    "queued as QID" and 19 "already queued as QID (resubmission, not
#    queued again)". Then: one Maildir file per round (no Message-ID or
#    body twice), stats accepted = rounds, delivered = rounds,
#    resubmissions = 19 x rounds (also /metrics, the log lines, the
#    ledger's resubmission records), audit --verify sound.
# 2. The same race against $POSTERND_RACY (lookup in a read transaction,
#    insert in a later write transaction) must double a message: the
#    check above can see the bug. It stops at the first round with more
#    than one "queued as"; the Maildir check must then fail too.
# 3. No false positives: two different messages with one Message-ID, the
#    same bytes to two recipients (two transactions), a message sent
#    again after resubmit_window (2s; 3 s later) are all delivered, and
#    resubmit_window = 0 turns the index off.
. "$(dirname "$0")/common.sh"

RACE_ROUNDS=${RACE_ROUNDS:-500}
SESSIONS=20
POSTERND_RACY=${POSTERND_RACY:-$HERE/../posternd_racy}
[ -x "$POSTERND_RACY" ] ||
	fail "posternd_racy not found at $POSTERND_RACY (make tests/posternd_racy, or set POSTERND_RACY)"
RACE="$PYTHON $HERE/resubmit_race.py"
T_START=$(date +%s.%N)
rc=0

check() {	# WHAT EXPECTED GOT
	if [ "$2" = "$3" ]; then
		echo "PASS $1: $3"
	else
		echo "FAIL $1: expected $2, got $3"
		rc=1
	fi
}

# stat STORE KEY: one figure of postern stats --json.
stat() {
	"$POSTERN" -s "$1" stats --json |
		"$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# drained STORE: wait (up to 60 s) until no message is left in the
# queue; every 250 came after its commit, so the Maildir is then final.
drained() {
	local n
	for _ in $(seq 1 600); do
		n=$(stat "$1" messages) || fail "postern stats on $1 failed"
		[ "$n" = 0 ] && return 0
		sleep 0.1
	done
	fail "$1: $n message(s) still queued after 60 s"
}

# --- 1. the race, real posternd ---------------------------------------------
port=$(free_port)
aport=$(free_port)
write_config "$WORK/real.conf" "$WORK/real" "$port"
printf '[admin]\nlisten = 127.0.0.1:%s\n' "$aport" >>"$WORK/real.conf"
start_daemon "$WORK/real.conf" "$WORK/real.log" || fail "posternd did not start"
REAL_PID=$DAEMON_PID

t0=$(date +%s.%N)
out=$($RACE race "$port" "$RACE_ROUNDS" "$SESSIONS")
race_rc=$?
echo "$out" | grep -v '^new '
[ $race_rc -eq 0 ] || fail "the race's replies are wrong (posternd)"
new=$(echo "$out" | sed -n 's/^new \([0-9]*\) resub \([0-9]*\)$/\1/p')
resub=$(echo "$out" | sed -n 's/^new \([0-9]*\) resub \([0-9]*\)$/\2/p')
RESUB=$((RACE_ROUNDS * (SESSIONS - 1)))
check "'queued as' replies" "$RACE_ROUNDS" "$new"
check "'already queued as' replies" "$RESUB" "$resub"

S=$WORK/real/store
drained "$S"
t1=$(date +%s.%N)
$RACE check "$WORK/real/maildir" "$RACE_ROUNDS" || {
	echo "FAIL maildir: not exactly one copy per round"; rc=1; }
check "stats accepted" "$RACE_ROUNDS" "$(stat "$S" accepted)"
check "stats delivered" "$RACE_ROUNDS" "$(stat "$S" delivered)"
check "stats resubmissions" "$RESUB" "$(stat "$S" resubmissions)"
# outcomes (delivered, bounced, deleted), not the resubmission records
check "stats done_last_hour" "$RACE_ROUNDS" "$(stat "$S" done_last_hour)"
metric=$("$PYTHON" -c '
import sys, urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1],
                                timeout=10).read().decode().splitlines():
    if l.startswith("postern_resubmissions_total "):
        print(l.split()[1])' "$aport") || fail "GET /metrics failed"
check "/metrics postern_resubmissions_total" "$RESUB" "$metric"
check "log lines 'QID: resubmission:'" "$RESUB" \
	"$(grep -c '^postern: info: [0-9A-Fa-f]\{16\}: resubmission: ' "$WORK/real.log")"
stop_daemon "$REAL_PID"
check "posternd exit status" 0 "$STOP_RC"
"$POSTERN" -s "$S" audit --verify >"$WORK/verify.out" 2>&1
vrc=$?
tail -1 "$WORK/verify.out"
if [ $vrc -ne 0 ] || ! grep -q '^verify: sound' "$WORK/verify.out"; then
	echo "FAIL audit --verify (exit $vrc):"; cat "$WORK/verify.out"; rc=1
fi
check "ledger records of kind resubmission" "$RESUB" \
	"$("$POSTERN" -s "$S" audit --json | grep -c '"kind":"resubmission"')"
echo "race figures: $RACE_ROUNDS rounds x $SESSIONS sessions," \
	"$((RACE_ROUNDS * SESSIONS)) replies ($new queued, $resub resubmissions)," \
	"$(echo "$t0 $t1" | awk '{printf "%.1f", $2 - $1}') s (race and delivery)"

# --- 2. the same race, the racy variant -------------------------------------
port=$(free_port)
write_config "$WORK/racy.conf" "$WORK/racy" "$port"
start_daemon "$WORK/racy.conf" "$WORK/racy.log" "$POSTERND_RACY" ||
	fail "posternd_racy did not start"
RACY_PID=$DAEMON_PID
out=$($RACE race "$port" "$RACE_ROUNDS" "$SESSIONS" --stop-at-dup)
racy_rc=$?
echo "$out"
if [ $racy_rc -ne 0 ]; then
	echo "FAIL racy variant: no round doubled; the race check cannot see the bug"
	rc=1
else
	nround=$(echo "$out" | sed -n 's/^doubled \([0-9]*\) .*/\1/p')
	drained "$WORK/racy/store"
	# The check that passed above must fail here.
	if $RACE check "$WORK/racy/maildir" "$nround"; then
		echo "FAIL racy variant: the Maildir check passed on a doubled round"
		rc=1
	else
		echo "PASS racy variant: the Maildir check fails (as it must)"
	fi
	acc=$(stat "$WORK/racy/store" accepted)
	if [ "$acc" -gt "$nround" ]; then
		echo "PASS racy variant: stats accepted $acc > $nround round(s)"
	else
		echo "FAIL racy variant: stats accepted $acc, not more than $nround round(s)"
		rc=1
	fi
	echo "racy figures: doubled in round $nround (stopped there)"
fi
stop_daemon "$RACY_PID"

# --- 3. no false positives -------------------------------------------------
P_FP=$(free_port) P_WIN=$(free_port) P_OFF=$(free_port)
write_config "$WORK/fp.conf" "$WORK/fp" "$P_FP"
write_config "$WORK/win.conf" "$WORK/win" "$P_WIN" "resubmit_window = 2s"
write_config "$WORK/off.conf" "$WORK/off" "$P_OFF" "resubmit_window = 0"
start_daemon "$WORK/fp.conf" "$WORK/fp.log" || fail "posternd (fp) did not start"
FP_PID=$DAEMON_PID
start_daemon "$WORK/win.conf" "$WORK/win.log" || fail "posternd (win) did not start"
WIN_PID=$DAEMON_PID
start_daemon "$WORK/off.conf" "$WORK/off.log" || fail "posternd (off) did not start"
OFF_PID=$DAEMON_PID

"$PYTHON" - "$P_FP" "$P_WIN" "$P_OFF" <<'PY' || rc=1
import re, smtplib, sys, time

p_fp, p_win, p_off = map(int, sys.argv[1:])
NEW = re.compile(r"^2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$")
OLD = re.compile(r"^2\.0\.0 Ok: already queued as ([0-9A-Fa-f]{16}) "
                 r"\(resubmission, not queued again\)$")
bad = 0

def send(port, rcpt, body, sender="fp@home.example"):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("fp.home.example")
    s.mail(sender)
    code, _ = s.rcpt(rcpt)
    assert code == 250, (rcpt, code)
    code, text = s.data(body)
    s.quit()
    return code, text.decode()

def expect(what, got, kind, same=None):
    """kind "new": queued as a new QID (not same); "old": already queued
    as same. Returns the QID."""
    global bad
    code, text = got
    m = (NEW if kind == "new" else OLD).match(text)
    ok = code == 250 and m is not None
    if ok and same is not None:
        ok = (m.group(1).lower() == same.lower()) == (kind == "old")
    print("%s %s: %d %s" % ("PASS" if ok else "FAIL", what, code, text))
    bad += not ok
    return m.group(1) if m else None

def msg(subject, body, msgid="<shared@home.example>"):
    return ("From: <fp@home.example>\r\nSubject: %s\r\nMessage-ID: %s\r\n"
            "\r\n%s\r\n" % (subject, msgid, body)).encode()

# Two different messages, one Message-ID (a sloppy client): both queued.
q = expect("1st message with Message-ID <shared@home.example>",
           send(p_fp, "msgid@foreign.example", msg("one", "first body")),
           "new")
expect("2nd, different message, same Message-ID",
       send(p_fp, "msgid@foreign.example", msg("two", "second body")),
       "new", q)
# The same bytes to two recipients, two transactions: both queued.
same = msg("same bytes", "to two recipients", "<twice@home.example>")
q = expect("same bytes to one@", send(p_fp, "one@foreign.example", same),
           "new")
expect("same bytes to two@", send(p_fp, "two@foreign.example", same),
       "new", q)
# resubmit_window = 2s: within it a resubmission, after it a new message.
w = msg("window", "sent again after the window", "<window@home.example>")
q1 = expect("window 2s: first", send(p_win, "win@foreign.example", w), "new")
expect("window 2s: again at once (resubmission)",
       send(p_win, "win@foreign.example", w), "old", q1)
time.sleep(3)
q2 = expect("window 2s: again 3 s later (queued anew)",
            send(p_win, "win@foreign.example", w), "new", q1)
expect("window 2s: again at once after that (resubmission of the new one)",
       send(p_win, "win@foreign.example", w), "old", q2)
# resubmit_window = 0: no index.
o = msg("off", "the index is off", "<off@home.example>")
q = expect("window 0: first", send(p_off, "off@foreign.example", o), "new")
expect("window 0: the same again (queued again)",
       send(p_off, "off@foreign.example", o), "new", q)
sys.exit(1 if bad else 0)
PY

for d in fp win off; do
	drained "$WORK/$d/store"
done
check "maildir msgid@ (two messages, one Message-ID)" 2 \
	"$(maildir_count "$WORK/fp/maildir/msgid@foreign.example")"
check "maildir one@ (same bytes, 1st recipient)" 1 \
	"$(maildir_count "$WORK/fp/maildir/one@foreign.example")"
check "maildir two@ (same bytes, 2nd recipient)" 1 \
	"$(maildir_count "$WORK/fp/maildir/two@foreign.example")"
check "maildir win@ (window 2s: first, and 3 s later)" 2 \
	"$(maildir_count "$WORK/win/maildir/win@foreign.example")"
check "maildir off@ (window 0: the same message twice)" 2 \
	"$(maildir_count "$WORK/off/maildir/off@foreign.example")"
check "stats resubmissions (fp)" 0 "$(stat "$WORK/fp/store" resubmissions)"
check "stats resubmissions (window 2s)" 2 "$(stat "$WORK/win/store" resubmissions)"
check "stats resubmissions (window 0)" 0 "$(stat "$WORK/off/store" resubmissions)"
for p in $FP_PID $WIN_PID $OFF_PID; do
	stop_daemon "$p"
done

echo "total: $(echo "$T_START $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}') s"
[ $rc -eq 0 ] || fail "see above"
echo "PASS: resubmit_race"
