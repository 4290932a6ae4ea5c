#!/bin/bash
# load_maildir.sh - Postfix smtp-source pushes 20,000 messages (20
# sessions, 4096-byte payload) into posternd, once with 1 recipient and
# once with 3 (-r 3: 1b@, 2b@, 3b@foreign.example). After the queue
# drains: exactly 20,000 x recipients files with distinct names, and every
# file, minus what postern adds (Return-Path, Delivered-To, Received,
# Message-ID) and minus smtp-source's varying Date:/Message-Id: values,
# is byte-identical to a reference message captured from smtp-source.
#
# Env: LOAD_MSGS (default 20000), LOAD_DRAIN (seconds, default 60).
. "$(dirname "$0")/common.sh"

SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || skip "smtp-source not found (Debian package postfix)"

MSGS=${LOAD_MSGS:-20000}
DRAIN=${LOAD_DRAIN:-60}
rc=0

# Reference: one message from smtp-source to a capturing receiver.
mkdir -p "$WORK/cap"
"$PYTHON" "$HERE/load_helper.py" capture "$WORK/cap.port" "$WORK/cap" &
CAP_PID=$!
DAEMON_PIDS="$DAEMON_PIDS $CAP_PID"
for i in $(seq 1 50); do [ -f "$WORK/cap.port" ] && break; sleep 0.1; done
"$SMTP_SOURCE" -m 1 -l 4096 -f a@home.example -t b@foreign.example \
	"127.0.0.1:$(cat "$WORK/cap.port")" || fail "smtp-source to the capture"
for i in $(seq 1 50); do [ -f "$WORK/cap/msg.1" ] && break; sleep 0.1; done
[ -f "$WORK/cap/msg.1" ] || fail "no reference message captured"
kill "$CAP_PID" 2>/dev/null

now() { date +%s.%N; }
calc() { "$PYTHON" -c "print($1)"; }

# run_load NAME RCPTS
run_load() {
	local name=$1 r=$2 port dir expect t0 t1 n last st rate i
	port=$(free_port)
	dir=$WORK/$name
	expect=$((MSGS * r))
	write_config "$WORK/$name.conf" "$dir" "$port" "max_sessions = 100"
	start_daemon "$WORK/$name.conf" "$WORK/$name.log" ||
		{ echo "FAIL $name: daemon did not start"; return 1; }
	t0=$(now)
	if ! "$SMTP_SOURCE" -s 20 -m "$MSGS" -l 4096 -r "$r" \
		-f a@home.example -t b@foreign.example "127.0.0.1:$port" \
		>"$WORK/$name.src" 2>&1; then
		echo "FAIL $name: smtp-source failed:"
		tail -5 "$WORK/$name.src"
		return 1
	fi
	t1=$(now)
	n=0
	# poll gently: counting 60,000 files competes with the daemon
	for i in $(seq 1 $((DRAIN * 2))); do
		n=$(maildir_count "$dir/maildir")
		[ "$n" -ge "$expect" ] && break
		sleep 0.5
	done
	# a late duplicate would show up shortly after: give it a moment
	sleep 1
	last=$(find "$dir/maildir" -type f -printf '%T@\n' | sort -n | tail -1)
	stop_daemon "$DAEMON_PID"
	st=$STOP_RC
	echo "$name: smtp-source took $(calc "round($t1 - $t0, 1)") s; files $n of $expect"
	if ! "$PYTHON" "$HERE/load_helper.py" check "$dir/maildir" "$expect" \
		"$WORK/cap/msg.1"; then
		echo "FAIL $name: maildir check (log $WORK/$name.log)"
		grep -v ': info: ' "$WORK/$name.log" | head -10
		return 1
	fi
	if [ "$st" != 0 ]; then
		echo "FAIL $name: SIGTERM exit status $st, expected 0"
		return 1
	fi
	rate=$(calc "int($MSGS / ($last - $t0))")
	echo "PASS $name: $expect files, all distinct, all identical to the reference"
	echo "RESULT load_maildir rcpts=$r msgs=$MSGS msgs_per_sec=$rate"
	return 0
}

run_load one 1 || rc=1
run_load three 3 || rc=1
exit $rc
