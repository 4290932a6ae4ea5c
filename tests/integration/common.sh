# common.sh - shared helpers for the posternd integration tests.
# Sourced (not run) by the tests in this directory; bash only.
#
# Provides: $POSTERND, $POSTERN, $MKSTORE, $WORK (a mktemp -d directory, removed on exit
# unless KEEP_WORK=1), free_port, write_config, start_daemon, stop_daemon,
# stop_clean, kill9_daemon, kill_on_progress, wait_until, send_msgs, maildir_count, skip, fail. Every daemon started with
# start_daemon is killed by the EXIT trap.

# this file's own directory (not $0's): bench/stores.sh sources it too
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POSTERND=${POSTERND:-$HERE/../../src/posternd}
POSTERN=${POSTERN:-$HERE/../../src/postern}
MKSTORE=${MKSTORE:-$HERE/mkstore}
PYTHON=${PYTHON:-python3}
export POSTERND POSTERN

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 ||
	skip "python3 not found (Debian package python3)"
[ -x "$POSTERND" ] || fail "posternd not found at $POSTERND (set POSTERND)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-itest.XXXXXX") ||
	fail "mktemp -d failed"
DAEMON_PIDS=""

cleanup() {
	local p
	for p in $DAEMON_PIDS; do
		kill -9 "$p" 2>/dev/null
	done
	for p in $DAEMON_PIDS; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$KEEP_WORK" ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

. "$HERE/free_port.sh"

# write_config FILE DIR PORT [extra "[ingress]" lines...]
# A config with store DIR/store, maildir DIR/maildir, listen PORT,
# accept_domains foreign.example; each extra argument is one more line
# in [ingress]. Further sections can be appended to FILE afterwards.
write_config() {
	local file=$1 dir=$2 port=$3 line
	shift 3
	# posternd creates ROOT/<rcpt> but not ROOT itself
	mkdir -p "$dir/maildir"
	{
		echo "[store]"
		echo "path = $dir/store"
		echo "[ingress]"
		echo "listen = 127.0.0.1:$port"
		echo "accept_domains = foreign.example"
		echo "hostname = test.postern.invalid"
		for line in "$@"; do
			echo "$line"
		done
		echo "[maildir]"
		echo "root = $dir/maildir"
	} >"$file"
}

# ccmail_config CONF DIR: make DIR the ccmail drop directory of the
# posternd of CONF, for oracle.py (sets TARGET=DIR and TOPT=--ccmail).
ccmail_config() {
	TARGET=$2
	TOPT=--ccmail
	mkdir -p "$TARGET"
	cat >>"$1" <<-EOF
	[foreign]
	driver = ccmail
	[ccmail]
	drop_dir = $TARGET
	fallback = %u at %p
	postoffice = FOREIGN
	EOF
}

# track_sink PID HOST PORT WHAT: a peer started in the background (its
# pid killed at EXIT with the daemons); wait up to 5 s for HOST:PORT to
# listen, or fail naming WHAT.
track_sink() {
	local i
	SINK_PID=$1
	DAEMON_PIDS="$DAEMON_PIDS $SINK_PID"
	for i in $(seq 1 50); do
		(exec 3<>"/dev/tcp/$2/$3") 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$4 did not listen on $2:$3"
}

# start_cut_proxy MODE SERVER_PORT CUTS OUT [OPTIONS]: cut_proxy.py
# (a proxy that loses the first CUTS replies that decide a delivery) in
# front of 127.0.0.1:SERVER_PORT, its stdout in OUT; sets PROXY_PORT; its
# pid is killed at EXIT with the daemons. OPTIONS: cut_proxy.py's
# (nolitplus, hold=FILE, gate=FILE), as one word-split argument. Fails
# unless it is ready within 5 s.
start_cut_proxy() {
	local i
	PROXY_PORT=$(free_port)
	"$PYTHON" "$HERE/cut_proxy.py" "$1" "$PROXY_PORT" "$2" "$3" ${5:-} \
		>"$4" 2>&1 &
	DAEMON_PIDS="$DAEMON_PIDS $!"
	for i in $(seq 1 50); do
		grep -q ready "$4" && return 0
		sleep 0.1
	done
	fail "cut_proxy.py $1 did not start: $(cat "$4")"
}

# start_admin_daemon: posternd on the test defaults with [admin] listen;
# sets port, aport (the admin HTTP port) and conf.
start_admin_daemon() {
	port=$(free_port)
	aport=$(free_port)
	conf=$WORK/postern.conf
	write_config "$conf" "$WORK" "$port"
	printf '[admin]\nlisten = 127.0.0.1:%s\n' "$aport" >>"$conf"
	start_daemon "$conf" "$WORK/posternd.log" || fail "posternd did not start"
}

# start_daemon CONF LOG [BINARY]: run posternd (or BINARY, e.g.
# $POSTERND_RACY) -f in the background, wait (up to START_SECS, default 15 s) until it logs
# "started", set DAEMON_PID. Returns 1 on failure.
start_daemon() {
	local conf=$1 log=$2 bin=${3:-$POSTERND} i before
	before=$(grep -c 'info: started: ' "$log" 2>/dev/null)
	before=${before:-0}
	"$bin" -f -c "$conf" >>"$log" 2>&1 &
	DAEMON_PID=$!
	DAEMON_PIDS="$DAEMON_PIDS $DAEMON_PID"
	for i in $(seq 1 $((${START_SECS:-15} * 10))); do
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			echo "posternd exited at start; log $log:"
			tail -20 "$log"
			return 1
		fi
		# the log is appended to across restarts: wait for a new line
		if [ "$(grep -c 'info: started: ' "$log")" -gt "$before" ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "posternd did not start within ${START_SECS:-15} s; log $log:"
	tail -20 "$log"
	return 1
}

# stop_daemon PID: SIGTERM, wait (at most 30 s, then SIGKILL); sets
# STOP_RC to the exit status. Not in $(...): a subshell cannot wait.
stop_daemon() {
	local i
	kill -TERM "$1" 2>/dev/null
	for i in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null
	wait "$1"
	STOP_RC=$?
}

# stop_clean WHAT LOG: stop_daemon $DAEMON_PID; it must exit 0 and LOG
# must hold no sanitizer report, else the test fails naming WHAT.
stop_clean() {
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "$1: posternd exited $STOP_RC"
	if grep -q 'Sanitizer\|runtime error' "$2"; then
		fail "$1: sanitizer report in $2: $(grep -m3 'Sanitizer\|runtime error' "$2")"
	fi
}

# send_msgs PORT FIRST LAST TAG RCPTS...: messages FIRST..LAST from
# a@home.example to RCPTS over one SMTP session, message i with
# "Subject: TAG i" and "Message-Id: <TAG-i@home.example>"; the test
# fails if the session does.
send_msgs() {
	"$PYTHON" - "$@" <<'PY' || fail "sending to port $1 failed"
import smtplib, sys
port, first, last = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tag, rcpts = sys.argv[4], sys.argv[5:]
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
for i in range(first, last + 1):
    msg = ("From: a@home.example\r\nSubject: %s %d\r\n"
           "Message-Id: <%s-%d@home.example>\r\n\r\nbody %d\r\n.dot\r\n"
           % (tag, i, tag, i, i))
    s.sendmail("a@home.example", rcpts, msg)
s.quit()
PY
}

# kill_on_progress CONF LOG K COUNT...: K times, start posternd with CONF
# (logging to LOG), wait until the command COUNT... (a shell function
# and its arguments: how many copies the foreign side holds) says more
# than before, or 4 s, wait 0 to 0.09 s more and SIGKILL it. Prints
# "kill k at N" (N: COUNT after the kill). Not in a pipe or $(...): the
# daemons must stay this shell's children.
kill_on_progress() {
	local conf=$1 log=$2 n=$3 k before i
	shift 3
	for k in $(seq 1 "$n"); do
		start_daemon "$conf" "$log" ||
			fail "posternd did not restart (kill $k)"
		before=$("$@")
		for i in $(seq 1 200); do
			[ "$("$@")" -gt "$before" ] && break
			sleep 0.02
		done
		sleep 0.0$((RANDOM % 10))
		kill9_daemon "$DAEMON_PID"
		echo "kill $k at $("$@")"
	done
}

# wait_until SECS COMMAND...: run COMMAND every 0.1 s until it succeeds
# (return 0) or SECS seconds have gone by (return 1).
wait_until() {
	local n=$(($1 * 10)) i
	shift
	for i in $(seq 1 "$n"); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# kill9_daemon PID
kill9_daemon() {
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# maildir_count ROOT: number of delivered files under ROOT/*/new and cur.
maildir_count() {
	find "$1" -path '*/new/*' -type f -o -path '*/cur/*' -type f \
		2>/dev/null | wc -l
}
