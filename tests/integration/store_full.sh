#!/bin/bash
# store_full.sh - full disk and full map (RELIABILITY.md 4, T7 and T8).
#
# posternd (driver smtp) queues for a next hop that is down, so nothing
# leaves the store, while oracle.py keeps sending 8 KB messages:
#   map   [store] map_size = 1M, map_max = 2M (no root needed)
#   disk  the store on an 8 MiB tmpfs with 4 MiB of ballast (root only;
#         SKIP otherwise)
# Checked: once the store is low, messages are refused before their data:
# new connections get "421 4.3.2 ... (store full)" instead of the
# greeting, and sessions already open 421 4.3.2 or 452 4.3.1 at MAIL
# (some may still get 451/452 4.3.x at the commit); never a 250 for a
# message that is then lost; when the room returns (map: the peer comes
# back and the queue drains; disk: the ballast is removed) posternd
# accepts again by itself, without a restart; and at the end oracle.py
# check finds every acknowledged message at the sink, none twice, and
# postern audit --verify passes. (health.sh shows /healthz and a real
# Postfix going to another instance.)
#
# Env: FULL_MSGS (messages sent into the full store, default 1500).
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || skip "smtp-sink not found (Debian package postfix)"
MSGS=${FULL_MSGS:-1500}
SINK_USER=()
if [ "$(id -u)" = 0 ]; then
	SINK_USER=(-u nobody)
	chmod 755 "$WORK"
fi
MNT=""
full_cleanup() {
	[ -n "$MNT" ] && { cleanup_pids; umount "$MNT" 2>/dev/null; }
	cleanup
}
cleanup_pids() {
	local p
	for p in $DAEMON_PIDS; do kill -9 "$p" 2>/dev/null; done
	for p in $DAEMON_PIDS; do wait "$p" 2>/dev/null; done
	DAEMON_PIDS=""
}
trap full_cleanup EXIT

NEXT_ID=0
# send N [CONNECT_RETRY]: into a full store a refused connection is not
# retried (a 421 greeting would be, for 2 s each)
send() {
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$1" \
		--threads 4 --id-base "$NEXT_ID" --append --states "$STATES" \
		--replies "$REPLIES" --pad 8000 --connect-retry "${2:-2}" \
		--progress "$WORK/progress" >>"$WORK/send.out" 2>&1 ||
		fail "$NAME: oracle send failed"
	NEXT_ID=$((NEXT_ID + $1))
}

# run NAME STOREDIR [store lines...]
run() {
	local sport conf i ok a0 n452 n421m n421c n451 other
	NAME=$1
	local store=$2
	shift 2
	NEXT_ID=0
	STATES=$WORK/$NAME.states
	REPLIES=$WORK/$NAME.replies
	DUMP=$WORK/$NAME.dump
	mkdir -p "$DUMP"
	chmod 777 "$DUMP"
	PORT=$(free_port)
	sport=$(free_port)	# nobody listens there yet
	conf=$WORK/$NAME.conf
	LOG=$WORK/$NAME.log
	write_config "$conf" "$WORK/$NAME" "$PORT"
	sed -i "s|^path = .*|path = $store|" "$conf"
	{
		printf '%s\n' "$@"
		echo "[foreign]"
		echo "driver = smtp"
		echo "[smtp]"
		echo "relay = 127.0.0.1:$sport"
		echo "tls = none"
		echo "reconnect_max = 2"
		echo "[queue]"
		echo "backoff_min = 1"
		echo "backoff_max = 2"
	} >>"$conf"
	start_daemon "$conf" "$LOG" || fail "$NAME: posternd did not start"
	send "$MSGS" 0
	ok=$(grep -c ' ok$' "$STATES")
	n452=$(grep -c ' MAIL 452 4\.3\.1' "$REPLIES")
	n421m=$(grep -c ' MAIL 421 4\.3\.2' "$REPLIES")
	n421c=$(grep -c ' CONNECT 421 4\.3\.2 .*(store full)' "$REPLIES")
	n451=$(grep -c ' DOT 45[12] 4\.3\.[01]' "$REPLIES")
	other=$(grep -v ' ok$' "$STATES" | wc -l)
	echo "$NAME: $MSGS sent into a filling store: $ok ok, refused at the greeting with 421 4.3.2: $n421c, at MAIL with 452 4.3.1: $n452, with 421 4.3.2: $n421m, at the end of data with 451/452 4.3.x: $n451; $other not ok in all"
	[ "$ok" -gt 0 ] && [ "$other" -gt 0 ] ||
		fail "$NAME: the store never filled ($ok ok, $other not)"
	# the store is low before it is full: mail is refused before its
	# data (before the MAIL check every refusal came after the data
	# had been sent), and a full store refuses new connections at the
	# greeting, so that the client goes elsewhere at once
	[ "$((n452 + n421m + n421c))" -gt "$n451" ] ||
		fail "$NAME: fewer refusals before the data than after: $(grep -v ' 250' "$REPLIES" | cut -d' ' -f2- | sort | uniq -c | head -5)"
	[ "$n421c" -gt 0 ] ||
		fail "$NAME: no 421 4.3.2 greeting: $(grep -v ' 250' "$REPLIES" | cut -d' ' -f2- | sort | uniq -c | head -5)"
	grep -q 'warning: store: cannot take mail: full: ' "$LOG" ||
		fail "$NAME: no log line for the full store"
	kill -0 "$DAEMON_PID" || fail "$NAME: posternd died"
	# make room
	a0=$ok
	case $NAME in
	disk)	rm -f "$MNT/ballast" ;;
	map)	;;
	esac
	"$SINK" "${SINK_USER[@]}" -c -d "$DUMP/%M." "127.0.0.1:$sport" 100 \
		>"$WORK/$NAME.sink" 2>&1 &
	SINK_PID=$!
	DAEMON_PIDS="$DAEMON_PIDS $SINK_PID"
	for i in $(seq 1 600); do
		[ "$(find "$DUMP" -type f | wc -l)" -ge "$ok" ] && break
		sleep 0.1
	done
	# accepts again by itself
	send 50
	ok=$(grep -c ' ok$' "$STATES")
	[ $((ok - a0)) = 50 ] ||
		fail "$NAME: after room returned $((ok - a0)) of 50 accepted: $(tail -3 "$REPLIES")"
	for i in $(seq 1 300); do
		[ "$(find "$DUMP" -type f | wc -l)" -ge "$ok" ] && break
		sleep 0.1
	done
	sleep 1
	stop_daemon "$DAEMON_PID"
	[ "$STOP_RC" = 0 ] || fail "$NAME: exit status $STOP_RC"
	kill "$SINK_PID"
	wait "$SINK_PID" 2>/dev/null
	"$PYTHON" "$HERE/oracle.py" check --name "store_full_$NAME" \
		--states "$STATES" --sink "$DUMP" --store "$store" \
		--config "$conf" --log "$LOG" || fail "$NAME: oracle check"
	grep -q 'info: store: takes mail again (it was full)' "$LOG" ||
		fail "$NAME: no log line for the room returning"
	echo "PASS $NAME: $a0 accepted while filling, refusals at the greeting (421 4.3.2): $n421c, at MAIL (452 4.3.1 / 421 4.3.2): $n452 / $n421m, at the end of data: $n451; 50 of 50 accepted again without a restart; none lost or doubled"
}

run map "$WORK/map/store" "[store]" "map_size = 1M" "map_max = 2M"

if [ "$(id -u)" != 0 ]; then
	echo "SKIP disk: mounting a tmpfs needs root"
	exit 0
fi
MNT=$WORK/fs
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=8m tmpfs "$MNT" 2>/dev/null; then
	MNT=""
	echo "SKIP disk: mount -t tmpfs failed"
	exit 0
fi
dd if=/dev/zero of="$MNT/ballast" bs=1M count=4 status=none
run disk "$MNT/store"
exit 0
