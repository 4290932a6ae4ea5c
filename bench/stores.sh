#!/bin/bash
# stores.sh - the jmap driver into Cyrus beside the imap driver into
# Dovecot: messages/s out of a full queue, same machine, same run
# (issue #19).
#
#   J:  posternd (driver = jmap) -> a private Cyrus 3.6, JMAP over HTTP
#       (tests/integration/cyrus.sh): one login as the delegate postern,
#       each copy imported into the account of its recipient (account = %l)
#   I:  posternd (driver = imap) -> a private Dovecot, IMAP without TLS
#       (tests/integration/dovecot.sh): Dovecot's master user, user =
#       %l*postern, so each copy is appended as its recipient
#
# Run as root from the build tree after `make`:  bash bench/stores.sh
# Needs what tests/integration/jmap_cyrus.sh and imap_dovecot.sh need
# (Cyrus: contrib/cyrus-test-peer.sh; Dovecot: dovecot-imapd); exits 77
# when something is missing.
# Knobs (environment):
#   MSGS=2000       messages per run
#   SIZE=4096       bytes of each message as sent (headers and body)
#   USERS=4         mailboxes (Cyrus accounts, Dovecot users) bench1..N
#   RCPTS=1         recipients per message (at most USERS): message i goes
#                   to users i, i+1, ... (mod USERS), so the users take
#                   turns and each worker changes user nearly every copy
#   WORKERS=4       posternd [workers] count, the same for J and I
#   ROUNDS=3        rounds of J I (J I J I ...), each run on a fresh
#                   server (a new Cyrus or Dovecot, started for that run
#                   and stopped after it) and a fresh store
#   TIMEOUT=600     seconds a run may take to deliver everything
#   KEEP_WORK=1     keep the work directory (configs, posternd's logs,
#                   the servers' directories) and print where it is
# A quick run: MSGS=300 ROUNDS=1 bash bench/stores.sh
#
# Each run queues the same MSGS messages (the same bytes for J and I)
# over one SMTP session while the driver points at a port where nothing
# listens (the driver keeps them queued, costing no attempt), stops
# posternd, points the config at the server and starts posternd again:
# the run is timed from that start until the log holds MSGS x RCPTS
# "status=sent" lines (polled every 0.1 s), so ingress is not in the
# figure. Then it counts the copies the server holds (Cyrus: totalEmails
# of each Inbox over JMAP; Dovecot: the files of each Maildir INBOX); a
# count other than what was sent, per user, prints FAIL and exits 1, as
# does a bounce or a deferral, or the TIMEOUT.
# Per run it prints msg/s (MSGS over the time above; with RCPTS > 1 also
# copies/s), posternd's CPU seconds (utime + stime of the delivering
# posternd, start included, from /proc) and the server's CPU seconds
# during the delivery (its master process, the children it has reaped,
# and its live children: Cyrus's httpds, Dovecot's imap, auth and login
# processes); for I also the IMAP logins Dovecot logged (imap-login; J
# keeps one HTTP connection a worker). The summary prints the medians of each as
#   RESULT stores jmap_cyrus msgs=... msg_s=... cpu_s=... srv_cpu_s=...
#   RESULT stores imap_dovecot ...
#   ratio jmap/imap = X   (J's median msg/s over I's: above 1, the jmap
#                          driver into Cyrus is the faster pair)
# The figure is of a driver and its server together: each server as the
# helpers configure it (Cyrus: conversations on, no search index;
# Dovecot: Maildir, quota plugin), on the file system of $TMPDIR (printed),
# with posternd's durability as shipped (a commit before a delivery
# counts). The imap driver logs in anew whenever a worker's next copy is
# for another user (a new connection, and a new IMAP session in Dovecot);
# the jmap driver keeps one login and names the account in each request.
# USERS=1 shows the two without that difference.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
POSTERND=${POSTERND:-$TOP/src/posternd}
POSTERN=${POSTERN:-$TOP/src/postern}
export POSTERND POSTERN
MSGS=${MSGS:-2000}
SIZE=${SIZE:-4096}
USERS=${USERS:-4}
RCPTS=${RCPTS:-1}
WORKERS=${WORKERS:-4}
ROUNDS=${ROUNDS:-3}
TIMEOUT=${TIMEOUT:-600}

[ "$(id -u)" = 0 ] || { echo "SKIP: run as root (a private Cyrus)"; exit 77; }
[ -x "$POSTERND" ] || { echo "FAIL: no $POSTERND: run make first"; exit 1; }
[ "$RCPTS" -ge 1 ] && [ "$RCPTS" -le "$USERS" ] ||
	{ echo "FAIL: RCPTS=$RCPTS must be 1..USERS ($USERS)"; exit 1; }

KEEP_WORK=${KEEP_WORK:-}	# common.sh's cleanup reads it (set -u)
# common.sh: $WORK, free_port, write_config, start_daemon, stop_clean,
# skip, fail, cleanup (at EXIT); cyrus.sh and dovecot.sh after it.
. "$TOP/tests/integration/common.sh"
. "$HERE/cyrus.sh"
. "$HERE/dovecot.sh"
trap 'cyrus_stop; dovecot_stop; cleanup' EXIT

[ -x /usr/lib/dovecot/imap ] ||
	skip "dovecot imap not found (Debian package dovecot-imapd)"
command -v pgrep >/dev/null || skip "pgrep not found (Debian package procps)"
HZ=$(getconf CLK_TCK)
USERLIST=()
for i in $(seq 1 "$USERS"); do
	USERLIST+=("bench$i")
done
echo masterpw >"$WORK/masterpw"
RESULTS=$WORK/results
: >"$RESULTS"

now() { date +%s.%N; }

# forget PID: drop PID from the pids common.sh kills at EXIT (it has
# exited; the number may be another process's by then).
forget() {
	local p rest=""
	for p in $DAEMON_PIDS; do
		[ "$p" = "$1" ] || rest="$rest $p"
	done
	DAEMON_PIDS=$rest
}

# cpu_of PID: utime + stime of PID (all its threads), in seconds.
cpu_of() {
	awk -v hz="$HZ" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
# srv_cpu PID: CPU seconds of a server's master PID: its own, its reaped
# children's, and its live children's (with theirs).
srv_cpu() {
	local p
	for p in "$1" $(pgrep -P "$1"); do
		cat "/proc/$p/stat" 2>/dev/null
	done | awk -v hz="$HZ" '{ s += $14 + $15 + $16 + $17 }
		END { printf "%.2f\n", s / hz }'
}

# The message set: MSGS messages of SIZE bytes, the same bytes every
# run; message i (from 0) to users i .. i+RCPTS-1 (mod USERS).
# $WORK/expected: per user, the copies it must end up with.
"$PYTHON" - "$WORK/msgs" "$WORK/expected" "$MSGS" "$SIZE" "$RCPTS" \
	"${USERLIST[@]}" <<'PY' || fail "making the messages failed"
import json, random, sys
out, exp, n, size, rcpts = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
users = sys.argv[6:]
rnd = random.Random(19)
words = ["postern", "jmap", "cyrus", "imap", "dovecot", "queue", "ledger",
         "exactly", "once", "mailbox", "inbox", "deliver", "bench", "store"]
count = {u: 0 for u in users}
with open(out, "w") as f:
    for i in range(n):
        to = [users[(i + k) % len(users)] for k in range(rcpts)]
        for u in to:
            count[u] += 1
        head = ("From: bench <a@home.example>\r\nTo: %s\r\n"
                "Subject: stores bench %d\r\n"
                "Message-Id: <stores-%d@home.example>\r\n"
                "Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n"
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                % (", ".join(u + "@foreign.example" for u in to), i, i))
        body = []
        left = max(size - len(head), 4)
        while left > 0:
            line = ""
            while len(line) < 70:
                line += rnd.choice(words) + " "
            line = line[:max(left - 2, 1)].rstrip() or "x"
            body.append(line)
            left -= len(line) + 2
        f.write(json.dumps({"to": [u + "@foreign.example" for u in to],
                            "msg": head + "\r\n".join(body) + "\r\n"}) + "\n")
with open(exp, "w") as f:
    for u in users:
        f.write("%s %d\n" % (u, count[u]))
PY
COPIES=$((MSGS * RCPTS))

# send PORT: the message set over one SMTP session.
send() {
	"$PYTHON" - "$1" "$WORK/msgs" <<'PY' || fail "sending to port $1 failed"
import json, smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=120)
for line in open(sys.argv[2]):
    m = json.loads(line)
    s.sendmail("a@home.example", m["to"], m["msg"].encode("ascii"))
s.quit()
PY
}

# config NAME PORT: a posternd config, [foreign] and the driver's section
# still to come.
config() {
	write_config "$WORK/$1.conf" "$WORK/$1" "$2"
	cat >>"$WORK/$1.conf" <<EOF
[workers]
count = $WORKERS
[queue]
backoff_min = 1h
backoff_max = 2h
EOF
}

# run KIND ROUND: one timed run; KIND jmap_cyrus or imap_dovecot.
run() {
	local kind=$1 name="$1-$2" port t0 t1 n i cpu srv0 srv1 master u want have
	local logins=""
	port=$(free_port)
	config "$name" "$port"
	# first pointed at a port where nothing listens: everything stays queued
	case $kind in
	jmap_cyrus)
		cyrus_start "$WORK/cyrus-$2" "${USERLIST[@]}" ||
			fail "$name: cyrus did not start"
		echo "$CYRUS_PASS" >"$WORK/cyrus.pw"
		master=$CYRUS_MASTER_PID
		cat >>"$WORK/$name.conf" <<EOF
[foreign]
driver = jmap
[jmap]
url = http://127.0.0.1:$(free_port)/jmap/
user = $CYRUS_USER
password_file = $WORK/cyrus.pw
account = %l
timeout = 30s
EOF
		;;
	imap_dovecot)
		dovecot_start "$WORK/dovecot-$2" "${USERLIST[@]}" ||
			fail "$name: dovecot did not start"
		master=$(cat "$DOVECOT_DIR/run/master.pid")
		cat >>"$WORK/$name.conf" <<EOF
[foreign]
driver = imap
[imap]
server = 127.0.0.1:$(free_port)
tls = none
auth_plaintext = yes
user = %l*postern
password_file = $WORK/masterpw
EOF
		;;
	esac
	start_daemon "$WORK/$name.conf" "$WORK/$name.log" ||
		fail "$name: posternd did not start"
	send "$port"
	stop_clean "$name (queueing)" "$WORK/$name.log"
	forget "$DAEMON_PID"
	n=$(grep -c 'status=' "$WORK/$name.log")
	[ "$n" = 0 ] || fail "$name: $n outcomes while the server was away"
	n=$("$POSTERN" -s "$WORK/$name/store" queue --pending --json | grep -c .)
	[ "$n" = "$MSGS" ] || fail "$name: $n messages pending, want $MSGS"
	case $kind in
	jmap_cyrus)
		sed -i "s|^url = .*|url = $CYRUS_API_URL|" "$WORK/$name.conf" ;;
	imap_dovecot)
		sed -i "s|^server = .*|server = 127.0.0.1:$DOVECOT_IMAP_PORT|" \
			"$WORK/$name.conf" ;;
	esac

	srv0=$(srv_cpu "$master")
	t0=$(now)
	start_daemon "$WORK/$name.conf" "$WORK/$name.log" ||
		fail "$name: posternd did not restart"
	i=0
	while :; do
		n=$(grep -c 'status=sent' "$WORK/$name.log")
		[ "$n" -ge "$COPIES" ] && break
		i=$((i + 1))
		if [ $((i % 10)) = 0 ]; then
			grep -q 'status=\(bounced\|deferred\)' "$WORK/$name.log" &&
				fail "$name: $(grep -m1 'status=\(bounced\|deferred\)' "$WORK/$name.log")"
			[ "$i" -ge $((TIMEOUT * 10)) ] &&
				fail "$name: $n of $COPIES sent after $TIMEOUT s"
		fi
		sleep 0.1
	done
	t1=$(now)
	cpu=$(cpu_of "$DAEMON_PID")
	srv1=$(srv_cpu "$master")
	stop_clean "$name" "$WORK/$name.log"
	forget "$DAEMON_PID"
	n=$(grep -c 'status=sent' "$WORK/$name.log")
	[ "$n" = "$COPIES" ] || fail "$name: $n status=sent lines, want $COPIES"
	# what the server holds, per user
	while read -r u want; do
		case $kind in
		jmap_cyrus) have=$(cyrus_inbox_count "$u") ||
				fail "$name: counting $u's Inbox over JMAP failed" ;;
		imap_dovecot) have=$(dovecot_maildir_count "$u") ;;
		esac
		[ "$have" = "$want" ] ||
			fail "$name: $u holds $have messages, want $want"
	done <"$WORK/expected"
	case $kind in
	jmap_cyrus) cyrus_stop ;;
	imap_dovecot)
		logins=", $(grep -c 'imap-login: .*Login: user=' \
			"$DOVECOT_DIR/dovecot.log") IMAP logins"
		dovecot_stop; forget "$master" ;;
	esac
	awk -v k="$kind" -v r="$2" -v m="$MSGS" -v c="$COPIES" -v t0="$t0" \
		-v t1="$t1" -v cpu="$cpu" -v s0="$srv0" -v s1="$srv1" 'BEGIN {
		t = t1 - t0
		printf "%s %d %.3f %.1f %.2f %.2f\n", k, r, t, m / t, cpu, s1 - s0
	}' | tee -a "$RESULTS" | awk -v c="$COPIES" -v m="$MSGS" -v l="$logins" '{
		printf "  run %d %-12s %d msgs in %6.2f s: %6.1f msg/s", $2, $1, m, $3, $4
		if (c != m)
			printf " (%.1f copies/s)", c / $3
		printf ", posternd CPU %.2f s, server CPU %.2f s%s; server holds all %d\n",
			$5, $6, l, c
	}'
}

echo "stores: $MSGS messages of $SIZE B, $RCPTS rcpt(s) each over $USERS users," \
	"$WORKERS workers, $ROUNDS round(s); work dir $WORK" \
	"($(stat -f -c %T "$WORK")), $(nproc) cores"
for r in $(seq 1 "$ROUNDS"); do
	run jmap_cyrus "$r"
	run imap_dovecot "$r"
done

# median KIND COLUMN (4 msg/s, 5 posternd CPU, 6 server CPU)
median() {
	awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$RESULTS" | sort -g |
		awk '{ v[NR] = $1 } END {
			if (NR % 2) print v[(NR + 1) / 2]
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for k in jmap_cyrus imap_dovecot; do
	printf 'RESULT stores %s msgs=%d size=%d rcpts=%d users=%d workers=%d rounds=%d msg_s=%s cpu_s=%s srv_cpu_s=%s\n' \
		"$k" "$MSGS" "$SIZE" "$RCPTS" "$USERS" "$WORKERS" "$ROUNDS" \
		"$(median "$k" 4)" "$(median "$k" 5)" "$(median "$k" 6)"
done
echo "(medians over the rounds; msg_s: messages/s from posternd's start to the last status=sent;"
echo " cpu_s: the delivering posternd's user+sys; srv_cpu_s: the server's during the delivery)"
awk -v j="$(median jmap_cyrus 4)" -v i="$(median imap_dovecot 4)" \
	'BEGIN { printf "ratio jmap/imap = %.2f\n", j / i }'
