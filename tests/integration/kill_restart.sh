#!/bin/bash
# kill_restart.sh - kill soak: exactly-once under SIGKILL, once per driver
# (RELIABILITY.md 4, T3).
#
# For each driver in KR_DRIVERS, oracle.py sends KR_MSGS small messages
# from 20 threads, recording each transaction as ok / failed / unknown.
# Meanwhile posternd is killed with SIGKILL KR_KILLS times, at random
# points spread over the run, and restarted each time with the same
# configuration. After the sender is done and the queue has drained, the
# oracle reconciles its record, the store (postern audit --verify, the
# ledger, the queue) and the foreign side:
#   maildir  the Maildir files: every ok message exactly once, no failed
#            one, unknown ones at most once
#   smtp     smtp-sink -d dump files (in_doubt_policy = retry): every ok
#            message, extra copies no more than the in-doubt events logged
#   ccmail   the drop directory's import files: as maildir
# Then one more SIGTERM + restart must deliver nothing new.
#
# Env: KR_MSGS (default 20000, or 150 per kill if that is more), KR_KILLS (default 20; make check-long:
# 500), KR_DRAIN (s, 60), KR_DRIVERS (default "maildir smtp ccmail").
# POSTERN_QUICK=1: 2 kills, maildir and smtp (KR_MSGS / 4) only.
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

if [ -n "$POSTERN_QUICK" ]; then
	KILLS=${KR_KILLS:-2}
	DRIVERS=${KR_DRIVERS:-maildir smtp}
else
	KILLS=${KR_KILLS:-20}
	DRIVERS=${KR_DRIVERS:-maildir smtp ccmail}
fi
# Each kill needs a slot of messages longer than a kill and a restart
# take: the sender goes on meanwhile, 20 threads each losing the message
# in flight. At 40 messages a kill the sender ended before 500 kills
# (make check-long saw 348 to 443 of them), at 80 still before (475 and
# 495): 150 a kill at the least.
MSGS=${KR_MSGS:-$((KILLS * 150 > 20000 ? KILLS * 150 : 20000))}
DRAIN=${KR_DRAIN:-60}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi
rc=0

progress() { cat "$PROGRESS" 2>/dev/null || echo 0; }

# delivered: how many deliveries the target shows so far
delivered() {
	case $DRIVER in
	maildir) maildir_count "$TARGET" ;;
	smtp) find "$TARGET" -type f | wc -l ;;
	ccmail) find "$TARGET" -maxdepth 1 -name '*.ccm' | wc -l ;;
	esac
}

soak() {
	local name=kr_$DRIVER port conf log k target n prev stable ok unknown
	local sender t0 t1 sport sink=""
	port=$(free_port)
	conf=$WORK/$name.conf
	log=$WORK/$name.log
	STATES=$WORK/$name.states
	PROGRESS=$WORK/$name.progress
	write_config "$conf" "$WORK/$name" "$port"
	case $DRIVER in
	maildir)
		TARGET=$WORK/$name/maildir
		TOPT=--maildir
		;;
	smtp)
		[ -x "$SINK" ] || { echo "SKIP smtp: smtp-sink not found (Debian package postfix)"; return 0; }
		TARGET=$WORK/$name.dump
		TOPT=--sink
		mkdir -p "$TARGET"
		chmod 777 "$TARGET"
		sport=$(free_port)
		"$SINK" "${SINK_USER[@]}" -c -d "$TARGET/%M." \
			"127.0.0.1:$sport" 100 >"$WORK/$name.sink" 2>&1 &
		sink=$!
		DAEMON_PIDS="$DAEMON_PIDS $sink"
		cat >>"$conf" <<-EOF
		[foreign]
		driver = smtp
		[smtp]
		relay = 127.0.0.1:$sport
		tls = none
		reconnect_max = 2
		[queue]
		in_doubt_policy = retry
		backoff_min = 1
		backoff_max = 2
		EOF
		;;
	ccmail)
		ccmail_config "$conf" "$WORK/$name.drop"
		;;
	esac
	t0=$(date +%s)
	local msgs=$MSGS
	# quick: the smtp soak (two commits per message) a quarter the size
	[ -n "$POSTERN_QUICK" ] && [ "$DRIVER" != maildir ] && msgs=$((MSGS / 4))
	start_daemon "$conf" "$log" || fail "$DRIVER: daemon did not start"
	"$PYTHON" "$HERE/oracle.py" send --port "$port" --msgs "$msgs" \
		--threads 20 --states "$STATES" --progress "$PROGRESS" &
	sender=$!
	DAEMON_PIDS="$DAEMON_PIDS $sender"

	k=1
	while [ $k -le "$KILLS" ]; do
		# spread over the run, each at a random point of its slot
		target=$((msgs * k / (KILLS + 1) -
			RANDOM % (msgs / (KILLS + 1) / 2 + 1)))
		while [ "$(progress)" -lt "$target" ] &&
			kill -0 "$sender" 2>/dev/null; do
			sleep 0.02
		done
		kill -0 "$sender" 2>/dev/null || break
		kill9_daemon "$DAEMON_PID"
		sleep 0.$((RANDOM % 3))
		start_daemon "$conf" "$log" || fail "$DRIVER: restart $k"
		k=$((k + 1))
	done
	k=$((k - 1))
	echo "$DRIVER: $k SIGKILLs at random points of $msgs messages, each restarted"
	[ $k = "$KILLS" ] || { echo "FAIL $DRIVER: only $k of $KILLS kills done before the sender ended"; rc=1; }

	wait "$sender" || fail "$DRIVER: oracle send failed"
	ok=$(grep -c ' ok$' "$STATES")
	unknown=$(grep -c ' unknown$' "$STATES")

	# Drain: at least every ok message, and no change for 2 s.
	n=0 prev=-1 stable=0
	for i in $(seq 1 $((DRAIN * 5))); do
		n=$(delivered)
		if [ "$n" -eq "$prev" ]; then
			stable=$((stable + 1))
		else
			stable=0
		fi
		prev=$n
		[ "$n" -ge "$ok" ] && [ $stable -ge 10 ] && break
		sleep 0.2
	done
	echo "$DRIVER: drained: $n deliveries (ok=$ok, unknown=$unknown)"

	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || { echo "FAIL $DRIVER: SIGTERM exit status $STOP_RC, expected 0"; rc=1; }
	# A clean restart must not deliver anything again.
	start_daemon "$conf" "$log" || fail "$DRIVER: final restart"
	sleep 3
	stop_daemon "$DAEMON_PID"
	n2=$(delivered)
	if [ "$n2" -ne "$n" ]; then
		echo "FAIL $DRIVER: restart after drain: $n deliveries before, $n2 after"
		rc=1
	fi
	[ -n "$sink" ] && { kill "$sink"; wait "$sink" 2>/dev/null; }
	t1=$(date +%s)
	"$PYTHON" "$HERE/oracle.py" check --name "kill_soak_$DRIVER" \
		--states "$STATES" "$TOPT" "$TARGET" --store "$WORK/$name/store" \
		--config "$conf" --log "$log" || rc=1
	echo "RESULT kill_soak_time driver=$DRIVER msgs=$msgs kills=$k seconds=$((t1 - t0))"
	if [ $rc -ne 0 ]; then
		echo "--- daemon log, not info (head) ---"
		grep -v ': info: ' "$log" | head -20
	fi
}

for DRIVER in $DRIVERS; do
	soak
done
exit $rc
