#!/bin/bash
# outage.sh - foreign outages without restarting posternd (RELIABILITY.md
# 4, T4).
#
# posternd (driver smtp, 4 workers) delivers to smtp-sink. For each case
# the peer goes away for OUT_SECS seconds while oracle.py keeps sending,
# then comes back:
#   stopped    the sink is killed, started again on the same port
#   blackhole  nftables drops the packets to the sink (in a network
#              namespace behind a veth pair; root and nft needed)
#   reset      nftables answers with a TCP reset (same set-up)
#   421        a sink that answers 421 at connect (smtp-sink -Q CONNECT)
#   rcpt4xx    a sink that answers 4xx to RCPT (smtp-sink -r RCPT); each
#              entry is retried every backoff_max (4 s), so only
#              OUT_MSGS / 10 are sent during this one
#   hung       the sink is stopped with SIGSTOP, then SIGCONT
# Checked for each: every message sent before, during and after arrives
# (oracle.py check: 0 lost, extra copies no more than the in-doubt events
# logged) with posternd never restarted; delivery resumes within
# max(reconnect_max, backoff_max) + 10 s after the peer returns (the
# measured time is printed); posternd uses under 5 % of a CPU while the
# peer is down (/proc/PID/stat); its open file descriptors are back to
# the baseline (at most one connection per worker more) afterwards.
#
# Env: OUT_CASES (default "stopped blackhole"; make check-long: all six),
# OUT_SECS (default 15; make check-long: 120), OUT_MSGS (messages per
# phase, default 200). POSTERN_QUICK=1: "stopped", 5 s.
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
if [ -n "$POSTERN_QUICK" ]; then
	CASES=${OUT_CASES:-stopped}
	SECS=${OUT_SECS:-5}
else
	CASES=${OUT_CASES:-stopped blackhole}
	SECS=${OUT_SECS:-15}
fi
MSGS=${OUT_MSGS:-200}
RECONNECT_MAX=4
BACKOFF_MAX=4
WORKERS=4
HZ=$(getconf CLK_TCK)
SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi

NS=""
VETH=""
net_cleanup() {
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	[ -n "$VETH" ] && ip link del "$VETH" 2>/dev/null
	cleanup
}
trap net_cleanup EXIT

# net_setup: a namespace with the sink's address 10.231.X.2, reached over
# a veth pair from 10.231.X.1; 1 if that cannot be done here.
net_setup() {
	local x=$(($$ % 250 + 1))
	[ "$(id -u)" = 0 ] || { WHY="needs root"; return 1; }
	command -v nft >/dev/null 2>&1 ||
		{ WHY="nft not found (Debian package nftables)"; return 1; }
	command -v ip >/dev/null 2>&1 ||
		{ WHY="ip not found (Debian package iproute2)"; return 1; }
	NS=postern-out-$$
	VETH=pout$$
	ip netns add "$NS" 2>/dev/null || { NS=""; WHY="ip netns add failed"; return 1; }
	ip link add "$VETH" type veth peer name "${VETH}n" netns "$NS" ||
		{ VETH=""; WHY="no veth"; return 1; }
	ip addr add "10.231.$x.1/30" dev "$VETH" &&
		ip link set "$VETH" up &&
		ip -n "$NS" addr add "10.231.$x.2/30" dev "${VETH}n" &&
		ip -n "$NS" link set "${VETH}n" up &&
		ip -n "$NS" link set lo up ||
		{ WHY="cannot configure the veth pair"; return 1; }
	ip netns exec "$NS" nft add table inet postern &&
		ip netns exec "$NS" nft add chain inet postern in \
			'{ type filter hook input priority 0; }' ||
		{ WHY="nft cannot make a table in the namespace"; return 1; }
	SINK_HOST=10.231.$x.2
}

# start_sink [options]: on $SINK_HOST:$SPORT (in $NS when set); dumps to
# $DUMP; sets SINK_PID.
start_sink() {
	local pre=()
	[ "$SINK_HOST" != 127.0.0.1 ] && pre=(ip netns exec "$NS")
	"${pre[@]}" "$SINK" "${SINK_USER[@]}" -c -d "$DUMP/%M." "$@" \
		"$SINK_HOST:$SPORT" 100 >>"$WORK/sink.out" 2>&1 &
	track_sink $! "$SINK_HOST" "$SPORT" smtp-sink
}

stop_sink() {
	kill -CONT "$SINK_PID" 2>/dev/null
	kill "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" 2>/dev/null
}

dumps() { find "$DUMP" -type f | wc -l; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
fds() { ls "/proc/$1/fd" | wc -l; }

# send_phase N: oracle.py sends N more messages (ids continue)
NEXT_ID=0
send_phase() {
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$1" \
		--threads 4 --id-base "$NEXT_ID" --append --states "$STATES" \
		--progress "$WORK/progress" >>"$WORK/send.out" 2>&1 ||
		fail "$CASE: oracle send failed"
	NEXT_ID=$((NEXT_ID + $1))
}

# wait_at_sink N SECS: until N messages are in the dumps
wait_at_sink() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		[ "$(dumps)" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

run_case() {
	local conf log t_back t_done rec c0 c1 pct fd0 fd1 bound ok i
	SINK_HOST=127.0.0.1
	case $CASE in
	blackhole|reset)
		net_setup || { echo "SKIP $CASE: $WHY"; SKIPPED="$SKIPPED $CASE"; return 0; } ;;
	esac
	SPORT=$(free_port)
	DUMP=$WORK/$CASE.dump
	STATES=$WORK/$CASE.states
	: >"$STATES"
	NEXT_ID=0
	mkdir -p "$DUMP"
	chmod 777 "$DUMP"
	start_sink
	PORT=$(free_port)
	conf=$WORK/$CASE.conf
	LOG=$WORK/$CASE.log
	write_config "$conf" "$WORK/$CASE" "$PORT"
	cat >>"$conf" <<-EOF
	[foreign]
	driver = smtp
	[workers]
	count = $WORKERS
	[smtp]
	relay = $SINK_HOST:$SPORT
	tls = none
	reconnect_max = $RECONNECT_MAX
	connect_timeout = 3
	greeting_timeout = 3
	mail_timeout = 3
	rcpt_timeout = 3
	data_timeout = 3
	block_timeout = 3
	dot_timeout = 3
	[queue]
	in_doubt_policy = retry
	backoff_min = 1
	backoff_max = $BACKOFF_MAX
	EOF
	start_daemon "$conf" "$LOG" || fail "$CASE: posternd did not start"
	send_phase "$MSGS"
	wait_at_sink "$MSGS" 60 || fail "$CASE: $(dumps) of $MSGS before the outage"
	sleep 1
	fd0=$(fds "$DAEMON_PID")

	# the outage
	case $CASE in
	stopped)	stop_sink ;;
	blackhole)	ip netns exec "$NS" nft add rule inet postern in \
				tcp dport "$SPORT" drop ;;
	reset)		ip netns exec "$NS" nft add rule inet postern in \
				tcp dport "$SPORT" reject with tcp reset ;;
	421)		stop_sink; start_sink -Q CONNECT ;;
	rcpt4xx)	stop_sink; start_sink -r RCPT ;;
	hung)		kill -STOP "$SINK_PID" ;;
	esac
	# rcpt4xx is no outage of the connection: every queued entry is
	# tried again each backoff_max (4 s here), which is work, not a busy
	# loop; fewer entries keep that work under the CPU bound
	if [ "$CASE" = rcpt4xx ]; then
		send_phase $((MSGS / 10))
	else
		send_phase "$MSGS"
	fi
	# CPU over the rest of the outage, after the first failures
	sleep 2
	c0=$(cpu_ticks "$DAEMON_PID")
	sleep $((SECS > 3 ? SECS - 2 : 1))
	c1=$(cpu_ticks "$DAEMON_PID")
	pct=$(awk "BEGIN { printf \"%.1f\", ($c1 - $c0) * 100 / $HZ / ($SECS > 3 ? $SECS - 2 : 1) }")
	case $CASE in
	stopped)	start_sink ;;
	blackhole|reset) ip netns exec "$NS" nft flush chain inet postern in ;;
	421|rcpt4xx)	stop_sink; start_sink ;;
	hung)		kill -CONT "$SINK_PID" ;;
	esac
	t_back=$(date +%s.%N)
	ok=$(grep -c ' ok$' "$STATES")
	bound=$(( (RECONNECT_MAX > BACKOFF_MAX ? RECONNECT_MAX : BACKOFF_MAX) + 10 ))
	wait_at_sink "$ok" $((bound + 30)) ||
		fail "$CASE: $(dumps) of $ok at the sink $((bound + 30)) s after the peer came back"
	t_done=$(date +%s.%N)
	rec=$(awk "BEGIN { printf \"%.1f\", $t_done - $t_back }")
	send_phase "$MSGS"
	ok=$(grep -c ' ok$' "$STATES")
	wait_at_sink "$ok" 60 || fail "$CASE: $(dumps) of $ok after the outage"
	# fds: the connections of the workers, no more
	for i in $(seq 1 50); do
		fd1=$(fds "$DAEMON_PID")
		[ "$fd1" -le $((fd0 + WORKERS)) ] && break
		sleep 0.2
	done
	kill -0 "$DAEMON_PID" || fail "$CASE: posternd died"
	sleep 1
	stop_daemon "$DAEMON_PID"
	stop_sink
	"$PYTHON" "$HERE/oracle.py" check --name "outage_$CASE" --states "$STATES" \
		--sink "$DUMP" --store "$WORK/$CASE/store" --config "$conf" \
		--log "$LOG" >"$WORK/check.out" 2>&1 ||
		fail "$CASE: $(cat "$WORK/check.out")"
	cat "$WORK/check.out"
	awk "BEGIN { exit !($rec <= $bound) }" ||
		fail "$CASE: delivery resumed $rec s after the peer came back, bound $bound s"
	awk "BEGIN { exit !($pct < 5) }" ||
		fail "$CASE: posternd used $pct % CPU while the peer was down"
	[ "$fd1" -le $((fd0 + WORKERS)) ] ||
		fail "$CASE: $fd1 open fds after the outage, $fd0 before"
	echo "PASS $CASE: ${SECS} s outage, delivery resumed after $rec s (bound $bound s), CPU ${pct} % while down, fds $fd0 before / $fd1 after"
	echo "RESULT outage case=$CASE outage_s=$SECS recovery_s=$rec cpu_pct=$pct fds_before=$fd0 fds_after=$fd1"
	if [ -n "$NS" ]; then
		ip netns del "$NS"
		ip link del "$VETH" 2>/dev/null
		NS="" VETH=""
	fi
}

SKIPPED=""
for CASE in $CASES; do
	run_case
done
ran=$(echo "$CASES" | wc -w)
[ "$(echo "$SKIPPED" | wc -w)" -lt "$ran" ] || skip "every case was skipped:$SKIPPED"
exit 0
