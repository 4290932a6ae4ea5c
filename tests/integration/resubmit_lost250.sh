#!/bin/bash
# resubmit_lost250.sh - a lost 250 makes no duplicate: when the home MTA
# sends again a message posternd has already queued (its 250 to the final
# dot never arrived), the resubmission index recognises it, posternd
# answers "250 ... already queued as QID (resubmission, not queued
# again)" and queues nothing new. Real peers, no mocks:
#
#  1. SMTP: a private Postfix (postfix.sh) relays foreign.example to
#     posternd through cut_proxy.py smtp, which drops posternd's 250 to
#     the final dot of the first LOST250_CUTS messages and closes both
#     connections. Postfix defers those ("lost connection ... while
#     sending end of data -- message may be sent more than once") and,
#     with retry times of a second or two, sends them again.
#  2. LMTP: the same with Postfix's lmtp: client to [ingress] lmtp_listen
#     through cut_proxy.py lmtp, 2 recipients a message.
#     After each: every message is in each recipient's Maildir exactly
#     once (no Message-ID twice), Postfix's queue is empty, and postern
#     counts exactly cuts x recipients resubmissions in postern stats, in
#     /metrics, in its log and in the ledger (kind resubmission), as many
#     as Postfix logged "already queued as" replies; postern audit
#     --verify says sound.
#  3. A crash between the commit and the 250: posternd runs under
#     strace -e inject=sendto:signal=SIGKILL:when=6. Its event loop (the
#     main thread) writes each reply with sendto(2), so the 6th is a
#     session's reply to its first final dot (220, EHLO, MAIL, RCPT, 354,
#     then the 250), sent only after the commit's fdatasync: posternd
#     dies after the commit, before the 250. A python smtplib client that
#     lost that reply sends the message again once posternd is restarted:
#     the resend is recognised (a resubmission in the log, the reply says
#     so) and the Maildir holds one copy. Skipped (this step only) when
#     strace cannot trace or posternd is built with a sanitizer.
#
# Env: LOST250_MSGS (default 20) messages per transport, LOST250_CUTS
# (default 5) replies dropped per transport; LOST250_WINDOW sets
# posternd's [ingress] resubmit_window (unset: its default, 5d).
# LOST250_WINDOW=0 turns the index off: this test must then FAIL (the
# duplicates are caught). Prints a RESULT line.
. "$(dirname "$0")/common.sh"
. "$HERE/postfix.sh"
[ "$(id -u)" = 0 ] || skip "a private Postfix instance needs root"

MSGS=${LOST250_MSGS:-20}
CUTS=${LOST250_CUTS:-5}
WINDOW=${LOST250_WINDOW:-}
T0=$(date +%s)
RESULT=""

# Postfix sends a deferred message again within two seconds. A lost
# connection must not mark posternd "dead": with the default failed
# cohort limit (1) Postfix would defer the other messages in its active
# queue too ("delivery temporarily suspended"), and wait for them.
# shellcheck disable=SC2034 # read by postfix.sh's postfix_start
POSTFIX_MAIN_EXTRA="queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
default_destination_concurrency_failed_cohort_limit = 100"

# send_msgs PORT TAG COUNT RCPT...: COUNT messages from
# alice@home.example, Message-ID <TAG-i@home.example>, over one session.
send_msgs() {
	"$PYTHON" - "$@" <<'EOF'
import smtplib
import sys

port, tag, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rcpts = sys.argv[4:]
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo("home.example")
for i in range(count):
    s.sendmail("alice@home.example", rcpts,
               "From: alice@home.example\r\nTo: %s\r\n"
               "Subject: lost 250 %s %d\r\nMessage-ID: <%s-%d@home.example>\r\n"
               "\r\nMessage %d of %s.\r\n"
               % (", ".join(rcpts), tag, i, tag, i, i, tag))
s.quit()
EOF
}

# busy CONF: queue entries that still wait for a delivery.
busy() {
	"$POSTERN" -c "$1" queue --state pending,active,deferred 2>/dev/null |
		grep -c '@foreign.example'
}

# msgids MAILDIR RCPT: the Message-IDs of RCPT's files, one a line.
msgids() {
	find "$1/$2/new" "$1/$2/cur" -type f \
		-exec grep -h -i -m1 '^Message-ID:' {} + 2>/dev/null |
		tr -d '\r' | sed 's/^[^:]*: *//'
}

# check_maildir WHAT MAILDIR TAG COUNT RCPT...: each RCPT has COUNT
# files, and no Message-ID twice, and <TAG-0..COUNT-1@home.example> all.
check_maildir() {
	local what=$1 md=$2 tag=$3 count=$4 r n dups missing
	shift 4
	for r in "$@"; do
		n=$(find "$md/$r/new" "$md/$r/cur" -type f 2>/dev/null | wc -l)
		dups=$(msgids "$md" "$r" | sort | uniq -c | awk '$1 > 1 {
			printf "%s%s x%d", sep, $2, $1; sep = ", " }')
		[ -z "$dups" ] ||
			fail "$what: a Message-ID more than once in $r's Maildir:" \
				"$dups ($n files for $count messages)"
		missing=$(for i in $(seq 0 $((count - 1))); do
			echo "<$tag-$i@home.example>"; done |
			sort | comm -23 - <(msgids "$md" "$r" | sort))
		[ -z "$missing" ] ||
			fail "$what: missing from $r's Maildir: $(tr '\n' ' ' <<<"$missing")"
		[ "$n" = "$count" ] ||
			fail "$what: $n files in $r's Maildir, expected $count"
	done
}

# metric APORT NAME: a sample's value from posternd's /metrics.
metric() {
	"$PYTHON" -c 'import sys, urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10):
    f = l.decode().split()
    if len(f) == 2 and f[0] == sys.argv[2]:
        print(f[1])' "$1" "$2"
}

# counts STORE LOG: sets RS_STATS (postern stats), RS_LOG (log lines),
# RS_LEDGER (ledger records of kind resubmission).
counts() {
	RS_STATS=$("$POSTERN" -s "$1" stats |
		sed -n 's/^resubmits: *\([0-9]*\) recognised.*/\1/p')
	RS_LOG=$(grep -c ': resubmission: client=' "$2")
	RS_LEDGER=$("$POSTERN" -s "$1" audit --csv |
		awk -F, '$2 == "resubmission"' | wc -l)
}

# verify WHAT STORE: postern audit --verify says sound.
verify() {
	"$POSTERN" -s "$2" audit --verify >"$WORK/verify.out" 2>&1 ||
		fail "$1: postern audit --verify: $(cat "$WORK/verify.out")"
	grep -q '^verify: sound' "$WORK/verify.out" ||
		fail "$1: postern audit --verify: $(cat "$WORK/verify.out")"
}

# --- 1, 2: lost 250s through a real Postfix ---------------------------------

# run_route KIND RCPT...: KIND smtp or lmtp.
run_route() {
	local kind=$1 dir=$WORK/$1 pport lport aport pfport conf log t0 i
	local nrcpt expect want cut pf_lost pf_resub rs_metric
	shift
	nrcpt=$#
	t0=$(date +%s)
	mkdir -p "$dir"
	pport=$(free_port)
	lport=$(free_port)
	aport=$(free_port)
	pfport=$(free_port)
	conf=$dir/postern.conf
	log=$dir/posternd.log
	write_config "$conf" "$dir" "$pport" "lmtp_listen = 127.0.0.1:$lport" \
		${WINDOW:+"resubmit_window = $WINDOW"}
	printf '[admin]\nlisten = 127.0.0.1:%s\n' "$aport" >>"$conf"
	start_daemon "$conf" "$log" || fail "$kind: posternd did not start"
	if [ "$kind" = smtp ]; then
		start_cut_proxy smtp "$pport" "$CUTS" "$dir/proxy.out"
		postfix_start "$dir/pf" "$pfport" "smtp:[127.0.0.1]:$PROXY_PORT"
	else
		start_cut_proxy lmtp "$lport" "$CUTS" "$dir/proxy.out"
		postfix_start "$dir/pf" "$pfport" "lmtp:inet:127.0.0.1:$PROXY_PORT"
	fi || fail "$kind: postfix did not start"
	send_msgs "$pfport" "$kind" "$MSGS" "$@" ||
		fail "$kind: sending into Postfix failed"
	expect=$((MSGS * nrcpt))
	# Postfix's queue empty: every resend has had its 250, so posternd
	# has queued whatever it was going to; then its queue drains.
	for i in $(seq 1 400); do
		postfix_queue_empty "$dir/pf" && [ "$(busy "$conf")" = 0 ] &&
			[ "$(maildir_count "$dir/maildir")" -ge "$expect" ] &&
			break
		sleep 0.1
	done
	postfix_queue_empty "$dir/pf" || {
		postfix_log "$dir/pf" | grep -v status=sent | tail -20
		fail "$kind: Postfix still holds mail after 40 s"
	}
	[ "$(busy "$conf")" = 0 ] ||
		fail "$kind: posternd's queue did not drain: $("$POSTERN" -c "$conf" queue | tail -5)"
	cut=$(grep -c '^cut ' "$dir/proxy.out")
	[ "$cut" = "$CUTS" ] ||
		fail "$kind: the proxy dropped $cut replies, not $CUTS"
	rs_metric=$(metric "$aport" postern_resubmissions_total)
	postfix_stop "$dir/pf"
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "$kind: posternd exited $STOP_RC"

	check_maildir "$kind" "$dir/maildir" "$kind" "$MSGS" "$@"
	# Postfix's side: each cut a lost connection after the final dot,
	# then a 250 "already queued" per recipient of the resend
	pf_lost=$(grep -c 'status=deferred (lost connection .* while sending end of data' \
		"$dir/pf/maillog")
	pf_resub=$(grep 'status=sent' "$dir/pf/maillog" |
		grep -c 'already queued as .*resubmission, not queued again')
	counts "$dir/store" "$log"
	want=$((CUTS * nrcpt))
	echo "$kind: $MSGS messages x $nrcpt recipients via Postfix, $cut" \
		"replies dropped: $(maildir_count "$dir/maildir") files in the" \
		"Maildir; Postfix deferred $pf_lost recipients (lost connection" \
		"after the dot), got $pf_resub \"already queued\"; postern" \
		"resubmissions: stats $RS_STATS, metrics $rs_metric, log" \
		"$RS_LOG, ledger $RS_LEDGER (expected $want); $(($(date +%s) - t0)) s"
	[ "$pf_lost" = "$want" ] ||
		fail "$kind: Postfix logged $pf_lost deferrals for a lost end of data, expected $want"
	[ "$RS_STATS" = "$want" ] && [ "$rs_metric" = "$want" ] &&
		[ "$RS_LOG" = "$want" ] && [ "$RS_LEDGER" = "$want" ] &&
		[ "$pf_resub" = "$want" ] ||
		fail "$kind: resubmissions counted: stats $RS_STATS, metrics" \
			"$rs_metric, log $RS_LOG, ledger $RS_LEDGER, Postfix" \
			"$pf_resub; expected $want each"
	verify "$kind" "$dir/store"
	RESULT="$RESULT ${kind}_resubmissions=$RS_STATS"
}

run_route smtp bob@foreign.example
run_route lmtp bob@foreign.example carol@foreign.example

# --- 3. SIGKILL after the commit, before the 250 ----------------------------

crash_step() {
	local dir=$WORK/crash port conf log strace tracer client rc i t0
	t0=$(date +%s)
	if ldd "$POSTERND" 2>/dev/null | grep -q 'lib[at]san'; then
		echo "SKIP step 3 (crash): posternd is built with a sanitizer;" \
			"strace fault injection needs a plain build"
		return
	fi
	strace=$(command -v strace) || {
		echo "SKIP step 3 (crash): strace not found (Debian package strace)"
		return
	}
	"$strace" -f -qq -o /dev/null -e trace=none true 2>/dev/null || {
		echo "SKIP step 3 (crash): strace cannot trace here (ptrace not permitted)"
		return
	}
	mkdir -p "$dir"
	port=$(free_port)
	conf=$dir/postern.conf
	log=$dir/posternd.log
	write_config "$conf" "$dir" "$port" ${WINDOW:+"resubmit_window = $WINDOW"}
	echo "crash: posternd under strace, SIGKILL at its 6th sendto (the" \
		"shell reports it \"Killed\")"
	env -u NOTIFY_SOCKET "$strace" -f -qq -o /dev/null -e trace=sendto \
		-e inject=sendto:signal=SIGKILL:when=6 \
		"$POSTERND" -f -c "$conf" >>"$log" 2>&1 &
	tracer=$!
	DAEMON_PIDS="$DAEMON_PIDS $tracer"
	for i in $(seq 1 150); do
		kill -0 "$tracer" 2>/dev/null ||
			fail "3: posternd under strace died at start: $(tail -3 "$log")"
		grep -q 'info: started: ' "$log" && break
		sleep 0.1
	done
	grep -q 'info: started: ' "$log" ||
		fail "3: posternd under strace did not start: $(tail -3 "$log")"

	# The home side: one message; a reply lost after the final dot
	# means "send it again", as soon as posternd listens again.
	"$PYTHON" - "$port" >"$dir/client.out" 2>&1 <<'EOF' &
import smtplib
import sys
import time

port = int(sys.argv[1])
msg = (b"From: alice@home.example\r\nTo: bob@foreign.example\r\n"
       b"Subject: lost 250, crash\r\nMessage-ID: <crash-0@home.example>\r\n"
       b"\r\nposternd died after its commit, before its 250.\r\n")


def attempt(n):
    stage = "connect"
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    except OSError:
        return None             # not listening (yet): try again
    try:
        stage = "EHLO"
        s.ehlo("home.example")
        stage = "MAIL"
        code, _ = s.mail("alice@home.example")
        stage = "RCPT"
        code, _ = s.rcpt("bob@foreign.example")
        stage = "DATA"
        code, _ = s.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, "no 354")
        stage = "final dot"
        s.send(msg + b".\r\n")
        code, text = s.getreply()
        print("attempt %d: %d %s" % (n, code, text.decode()), flush=True)
        s.quit()
        return True
    except (OSError, smtplib.SMTPException) as e:
        print("attempt %d: connection lost waiting for the reply to %s (%s)"
              % (n, stage, e.__class__.__name__), flush=True)
        return False


n = 1
deadline = time.time() + 30
while time.time() < deadline:
    r = attempt(n)
    if r:
        sys.exit(0)
    if r is False:
        n += 1
    time.sleep(0.1)
print("gave up after 30 s")
sys.exit(1)
EOF
	client=$!
	for i in $(seq 1 150); do
		kill -0 "$tracer" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$tracer" 2>/dev/null; then
		wait "$client"
		fail "3: the kill did not land within 15 s (are replies sent" \
			"with sendto here?); the client: $(cat "$dir/client.out")"
	fi
	wait "$tracer" 2>/dev/null
	rc=$?
	[ "$rc" = 137 ] ||
		fail "3: strace ended with $rc, not SIGKILL: $(tail -3 "$log")"
	start_daemon "$conf" "$log" || fail "3: posternd did not restart"
	wait "$client" || fail "3: the client: $(cat "$dir/client.out")"
	head -1 "$dir/client.out" | grep -q '^attempt 1: connection lost waiting for the reply to final dot' ||
		fail "3: the kill did not land between the final dot and its reply: $(cat "$dir/client.out")"
	grep -q '^attempt 2: 250 .*already queued as .*(resubmission, not queued again)' \
		"$dir/client.out" ||
		fail "3: the resend was not answered as a resubmission: $(cat "$dir/client.out")"
	for i in $(seq 1 100); do
		[ "$(busy "$conf")" = 0 ] &&
			[ "$(maildir_count "$dir/maildir")" -ge 1 ] && break
		sleep 0.1
	done
	[ "$(busy "$conf")" = 0 ] ||
		fail "3: posternd's queue did not drain: $("$POSTERN" -c "$conf" queue | tail -5)"
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "3: posternd exited $STOP_RC"
	grep -q ': resubmission: client=.*message-id=<crash-0@home.example>' "$log" ||
		fail "3: no resubmission in the log: $(grep -v 'info: \(connect\|disconnect\)' "$log" | tail -8)"
	check_maildir 3 "$dir/maildir" crash 1 bob@foreign.example
	counts "$dir/store" "$log"
	[ "$RS_STATS" = 1 ] && [ "$RS_LOG" = 1 ] && [ "$RS_LEDGER" = 1 ] ||
		fail "3: resubmissions counted: stats $RS_STATS, log $RS_LOG," \
			"ledger $RS_LEDGER; expected 1 each"
	verify 3 "$dir/store"
	echo "crash: posternd SIGKILLed at the sendto of the 250 after the" \
		"commit; the client's $(grep -c '^attempt' "$dir/client.out")" \
		"attempts: $(tr '\n' ';' <"$dir/client.out")" \
		"1 file in the Maildir, 1 resubmission counted; $(($(date +%s) - t0)) s"
	RESULT="$RESULT crash_resubmissions=$RS_STATS"
}

crash_step

case $RESULT in
*crash*) crash=", and a crash before the 250" ;;
*) crash=" (the crash step skipped)" ;;
esac
echo "PASS: a resent message whose 250 was lost (Postfix over SMTP and" \
	"LMTP$crash) is recognised and queued once"
echo "RESULT resubmit_lost250 msgs=$MSGS cuts=$CUTS$RESULT seconds=$(($(date +%s) - T0))"
exit 0
