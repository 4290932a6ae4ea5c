#!/bin/bash
# store_full.sh - full disk and full map (RELIABILITY.md 4, T7 and T8).
#
# posternd (driver smtp) queues for a next hop that is down, so nothing
# leaves the store, while oracle.py keeps sending 8 KB messages:
#   map   [store] map_size = 1M, map_max = 2M (no root needed)
#   disk  the store on an 8 MiB tmpfs with 4 MiB of ballast (root only;
#         SKIP otherwise)
# Checked: messages are refused with 452 4.3.1 at MAIL once the store is
# low (some may still get 451/452 4.3.x at the commit), never a 250 for a
# message that is then lost; when the room returns (map: the peer comes
# back and the queue drains; disk: the ballast is removed) posternd
# accepts again by itself, without a restart; and at the end oracle.py
# check finds every acknowledged message at the sink, none twice, and
# postern audit --verify passes.
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
send() {
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$1" \
		--threads 4 --id-base "$NEXT_ID" --append --states "$STATES" \
		--replies "$REPLIES" --pad 8000 --connect-retry 2 \
		--progress "$WORK/progress" >>"$WORK/send.out" 2>&1 ||
		fail "$NAME: oracle send failed"
	NEXT_ID=$((NEXT_ID + $1))
}

# run NAME STOREDIR [store lines...]
run() {
	local sport conf i ok a0 n452 n451 other
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
	send "$MSGS"
	ok=$(grep -c ' ok$' "$STATES")
	n452=$(grep -c ' MAIL 452 4\.3\.1' "$REPLIES")
	n451=$(grep -c ' DOT 45[12] 4\.3\.[01]' "$REPLIES")
	other=$(grep -v ' ok$' "$STATES" | wc -l)
	echo "$NAME: $MSGS sent into a filling store: $ok ok, $n452 refused at MAIL with 452 4.3.1, $n451 at the end of data with 451/452 4.3.x, $other not ok in all"
	[ "$ok" -gt 0 ] && [ "$other" -gt 0 ] ||
		fail "$NAME: the store never filled ($ok ok, $other not)"
	# the store is low before it is full: MAIL is refused first (before
	# the fix nothing checked at MAIL, and every refusal came after
	# the data had been sent)
	[ "$n452" -gt 0 ] ||
		fail "$NAME: no 452 4.3.1 at MAIL: $(grep -v ' 250' "$REPLIES" | cut -d' ' -f2- | sort | uniq -c | head -5)"
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
	echo "PASS $NAME: $a0 accepted while filling, refusals at MAIL (452 4.3.1): $n452, at the end of data: $n451; 50 of 50 accepted again without a restart; none lost or doubled"
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
