#!/bin/bash
# fleet.sh - a fleet of three posternd instances behind one Postfix:
# exactly-once fleet-wide while one instance is SIGKILLed and kept down
# and another is stopped and restarted, under load.
#
# The fleet: three posternd, each with its own store, address (127.0.0.1,
# .2, .3: one host each, as at a site), port and [ingress] hostname
# (postern1..3.fleet.invalid), all delivering into ONE shared Maildir
# root. The foreign side of a real site is one mailbox store, so a shared
# root is the realistic choice, and it is safe: the Maildir driver names
# each file STOREID.QID.IDX.postern (posternd(8), MAILDIR DELIVERY;
# driver_maildir.c), the store id being 64 random bits drawn when the
# store is made, so two instances never write the same name, in tmp/ or
# new/, and each one's look ("did I deliver this already?") finds only
# its own files. Two copies of a message from two instances are two
# files: the count sees them. fleet_check.py checks that each instance
# wrote under one store id, its own.
#
# The home MTA: one private Postfix (postfix.sh, postfix_start_fleet) with
# exactly the lines of contrib/postfix/fleet.main.cf.fragment,
# fleet.master.cf.fragment and fleet_domains, addresses and ports
# substituted. Postfix 3.7 accepts a list of next hops in one nexthop
# (transport(5): "comma or whitespace (Postfix 3.5 and later)") but tries
# them IN ORDER (smtp_connect.c): a list is fail-over, the first instance
# would take all the mail. Postfix spreads by itself only over MX hosts of
# equal preference or the addresses of one host name, which needs DNS or
# /etc/hosts. So the example spreads with randmap (one instance at random
# per recipient, behind a pipemap that limits it to the fleet's domains)
# and fails over with a transport of its own, no connection cache, whose
# smtp_fallback_relay lists the three: a delivery that meets a dead
# instance (refused, or its connection lost) goes on to the next live one
# in the same attempt. The test adds only settings that make Postfix
# retry fast (queue_run_delay, backoff times), which a site would not
# copy; with the example, the runs so far needed no retry at all.
#
# The run: oracle.py sends batches of messages (each with a unique
# Message-ID and 1..FLEET_RCPTS recipients) into Postfix from
# FLEET_THREADS threads and records which ones Postfix accepted (250). In
# each of FLEET_ROUNDS rounds, under that load, one instance is SIGKILLed
# and kept down FLEET_DOWN seconds; meanwhile another is stopped with
# SIGTERM (exit 0 required) and started again at once; then the killed
# one is started again and its queue drains. The victims rotate between
# rounds. After the sender stops, Postfix's queue and every store drain,
# the three stop cleanly, and:
#   - each instance: postern -s STORE audit --verify is sound;
#   - fleet_ledger_audit (below): every instance's ledger exported and
#     checked together (postern audit --verify --fleet): sound chains, and
#     exactly the duplicates fleet_check.py explained;
#   - fleet-wide (fleet_check.py): every (message, recipient) that Postfix
#     accepted is in the Maildir exactly once over the three instances;
#     files and ledgers agree per instance; Postfix's queue is empty.
#     Printed: accepted / delivered / duplicates / lost; per instance; for
#     each SIGKILL how the survivors absorbed the dead instance's traffic
#     (ABSORB: the deliveries that met it dead and went on, the ones cut
#     in flight, and "absorbed in": from the kill until the last of those
#     was queued by a survivor) and how its own queue drained after the
#     restart (DRAIN); for each SIGTERM what its closed sessions cost.
#
# Duplicates. Each instance's resubmission index recognises a message that
# Postfix sends again to the SAME instance; a copy sent again to ANOTHER
# instance is not recognised. In this run that happens when an instance
# has committed a message and is SIGKILLed before its 250 goes out (the
# commit is there for the next process from the moment LMDB writes its
# meta page, while the process still waits for that write to reach the
# disk and then for its event loop to send the 250: up to tens of ms
# under load, so a kill under load often hits it):
# Postfix sees the connection lost after the end of data and sends the
# message at once to the next instance of its fall-back list. Such a
# duplicate is printed in full (both instances, both queue ids, Postfix's
# lines) and does NOT fail the test, but only with all the evidence of
# exactly that (fleet_check.py): copies on different instances; Postfix's
# one 250 names the other copy; Postfix logged the connection to the
# first copy's instance lost while sending end of data; that instance
# never logged the copy queued (it logs that just before the 250) and was
# SIGKILLed within 2 s after it queued it. Any other duplicate fails: two
# copies on one instance, a copy whose 250 was due, a copy on an instance
# that was only stopped (SIGTERM: posternd answers every commit before it
# closes the sessions; before ingress_free() did that, a stop lost such
# 250s and this test failed on them).
#
# Env (defaults; POSTERN_QUICK=1 in brackets, for make check):
#   FLEET_BATCH    messages per sender batch, 1000 [300]
#   FLEET_MIN      send at least this many messages, 10000 [900]
#   FLEET_THREADS  sender threads into Postfix, 10 [8]
#   FLEET_RCPTS    recipients per message 1..N, 3
#   FLEET_DOWN     seconds the SIGKILLed instance stays down, 10 [4]
#   FLEET_ROUNDS   kill + stop rounds, 3 [1]
#   FLEET_DRAIN    seconds to wait for everything to drain, 120
# KEEP_WORK=1 keeps the directory (stores, Maildir, logs).
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"
. "$HERE/postfix.sh"
[ "$(id -u)" = 0 ] || skip "a private Postfix instance needs root"
case $(postconf -d mail_version 2>/dev/null | sed 's/.*= *//') in
2.* | 3.[0-2] | 3.[0-2].*)
	skip "the fleet example needs Postfix 3.3 or later (pipemap)" ;;
esac

if [ -n "$POSTERN_QUICK" ]; then
	BATCH=${FLEET_BATCH:-300}
	MIN_MSGS=${FLEET_MIN:-900}
	THREADS=${FLEET_THREADS:-8}
	DOWN=${FLEET_DOWN:-4}
	ROUNDS=${FLEET_ROUNDS:-1}
else
	BATCH=${FLEET_BATCH:-1000}
	MIN_MSGS=${FLEET_MIN:-10000}
	THREADS=${FLEET_THREADS:-10}
	DOWN=${FLEET_DOWN:-10}
	ROUNDS=${FLEET_ROUNDS:-3}
fi
RCPTS=${FLEET_RCPTS:-3}
DRAIN=${FLEET_DRAIN:-120}

T0=$(date +%s.%N)
N=3
ROOT=$WORK/maildir	# the one foreign Maildir root of the fleet
EVENTS=$WORK/events
STATES=$WORK/states
mkdir -p "$ROOT"
: >"$EVENTS"
declare -a ADDR PORT PID STORE CONF LOG HOST

now() { date +%s.%N; }
# calc EXPR: floating point, 3 decimals (awk: bc is not always there)
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
event() { echo "$(now) $1 p$2" >>"$EVENTS"; }

# fleet_config I: instance I's configuration (own store, port, hostname;
# the shared Maildir root).
fleet_config() {
	local i=$1
	mkdir -p "$WORK/p$i"
	STORE[$i]=$WORK/p$i/store
	CONF[$i]=$WORK/p$i/postern.conf
	LOG[$i]=$WORK/p$i/posternd.log
	HOST[$i]=postern$i.fleet.invalid
	cat >"${CONF[$i]}" <<-EOF
	[store]
	path = ${STORE[$i]}
	[ingress]
	listen = ${ADDR[$i]}:${PORT[$i]}
	accept_domains = foreign.example
	hostname = ${HOST[$i]}
	[maildir]
	root = $ROOT
	EOF
}

# start_inst I: the start event is the moment posternd is started (its
# workers may deliver before start_daemon sees it is up).
start_inst() {
	event start "$1"
	start_daemon "${CONF[$1]}" "${LOG[$1]}" || fail "p$1 did not start"
	PID[$1]=$DAEMON_PID
}

# queued I: entries in instance I's queue (its store, read-only).
queued() {
	"$POSTERN" -s "${STORE[$1]}" stats --json 2>/dev/null |
		"$PYTHON" -c 'import json, sys
c = json.load(sys.stdin)
print(sum(c.get(k, 0) for k in ("pending", "active", "deferred", "held",
                                "in_doubt", "indoubt")))' 2>/dev/null ||
		echo "?"
}

# free_port_on ADDR: a TCP port free on ADDR a moment ago.
free_port_on() {
	"$PYTHON" -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "$1"
}

for i in 1 2 3; do
	ADDR[$i]=127.0.0.$i	# one host each, as in a site
	PORT[$i]=$(free_port_on "${ADDR[$i]}")
	fleet_config "$i"
	start_inst "$i"
done
PF=$WORK/pf
PF_PORT=$(free_port)
# The test's own settings: retry at once (a site keeps its defaults).
postfix_start_fleet "$PF" "$PF_PORT" \
	"${ADDR[1]}:${PORT[1]} ${ADDR[2]}:${PORT[2]} ${ADDR[3]}:${PORT[3]}" \
	"queue_run_delay = 1s" "minimal_backoff_time = 1s" \
	"maximal_backoff_time = 2s" ||
	fail "postfix did not start"
echo "fleet: p1 ${ADDR[1]}:${PORT[1]}, p2 ${ADDR[2]}:${PORT[2]}," \
	"p3 ${ADDR[3]}:${PORT[3]}, one Maildir" \
	"root; Postfix :$PF_PORT spreads foreign.example over them" \
	"(contrib/postfix/fleet.*)"

# The sender: batches until told to stop and at least MIN_MSGS sent.
sent_total() {
	local b p
	b=$(cat "$WORK/sent_batches" 2>/dev/null || echo 0)
	p=$(cat "$WORK/progress" 2>/dev/null || echo 0)
	echo $((b + p))
}
sender() {
	local base=0
	while [ ! -e "$WORK/stop_sending" ] || [ $base -lt "$MIN_MSGS" ]; do
		echo 0 >"$WORK/progress"
		"$PYTHON" "$HERE/oracle.py" send --port "$PF_PORT" \
			--msgs "$BATCH" --threads "$THREADS" --rcpts "$RCPTS" \
			--id-base "$base" --append --states "$STATES" \
			--progress "$WORK/progress" --connect-retry 30 ||
			return 1
		base=$((base + BATCH))
		echo "$base" >"$WORK/sent_batches"
		echo 0 >"$WORK/progress"
	done
}
sender >"$WORK/sender.log" 2>&1 &
SENDER=$!
DAEMON_PIDS="$DAEMON_PIDS $SENDER"

wait_sent() {
	while [ "$(sent_total)" -lt "$1" ] && kill -0 "$SENDER" 2>/dev/null; do
		sleep 0.05
	done
	kill -0 "$SENDER" 2>/dev/null || fail "the sender ended early: $(tail -3 "$WORK/sender.log")"
}

for r in $(seq 0 $((ROUNDS - 1))); do
	k=$((r % N + 1))		# SIGKILLed, kept down
	s=$(((r + 1) % N + 1))		# stopped cleanly, restarted
	wait_sent $(($(sent_total) + BATCH / 2))
	tk=$(now)
	event kill9 "$k"
	kill9_daemon "${PID[$k]}"
	# the other one stops while this one is down (at least 2 s after the
	# kill: Postfix logs whole seconds), so that for a moment one
	# instance takes all the mail
	sleep "$(calc "$DOWN / 2 < 2 ? 2 : $DOWN / 2")"
	kill -0 "$SENDER" 2>/dev/null || fail "the sender ended early"
	event term "$s"
	stop_daemon "${PID[$s]}"
	[ "$STOP_RC" = 0 ] || fail "p$s: SIGTERM exit status $STOP_RC, expected 0"
	start_inst "$s"
	left=$(calc "$DOWN - ($(now) - $tk)")
	case $left in -*) ;; *) sleep "$left" ;; esac
	q=$(queued "$k")
	start_inst "$k"
	echo "round $((r + 1)): p$k SIGKILLed, down $(calc "$(now) - $tk") s, $q entries in its queue at restart; p$s" \
		"stopped (exit 0) and restarted meanwhile; $(sent_total) sent"
	# traffic on all three again before the next round or the end
	wait_sent $(($(sent_total) + BATCH / 2))
done
touch "$WORK/stop_sending"
wait "$SENDER" || fail "the sender failed: $(tail -3 "$WORK/sender.log")"
grep '^oracle send' "$WORK/sender.log" | tail -1
t_sent=$(now)

# Drain: Postfix's queue empty, every store's queue empty, the Maildir
# count steady for 1 s.
prev=-1 stable=0 n=0
for i in $(seq 1 $((DRAIN * 5))); do
	n=$(maildir_count "$ROOT")
	if [ "$n" -eq "$prev" ]; then stable=$((stable + 1)); else stable=0; fi
	prev=$n
	if [ $stable -ge 5 ] && postfix_queue_empty "$PF" &&
		[ "$(queued 1)" = 0 ] && [ "$(queued 2)" = 0 ] &&
		[ "$(queued 3)" = 0 ]; then
		break
	fi
	sleep 0.2
done
echo "drained $(calc "$(now) - $t_sent") s after the" \
	"sender: $n files in the Maildir; queues: p1 $(queued 1), p2 $(queued 2)," \
	"p3 $(queued 3)"
rc=0
if ! postfix_queue_empty "$PF"; then
	echo "FAIL Postfix's queue is not empty after ${DRAIN} s:"
	postqueue -c "$PF/etc" -p | tail -20
	rc=1
fi

for i in 1 2 3; do
	stop_daemon "${PID[$i]}"
	[ "$STOP_RC" = 0 ] || { echo "FAIL p$i: SIGTERM exit status $STOP_RC"; rc=1; }
done
postfix_stop "$PF"

# Each instance's own books.
for i in 1 2 3; do
	if ! out=$("$POSTERN" -s "${STORE[$i]}" audit --verify 2>&1); then
		echo "FAIL p$i: audit --verify:"
		echo "$out" | tail -10
		rc=1
	else
		echo "p$i: $(echo "$out" | tail -1)"
	fi
done

"$PYTHON" "$HERE/fleet_check.py" --states "$STATES" --rcpts "$RCPTS" \
	--maildir "$ROOT" --postfix-log "$PF/maillog" --events "$EVENTS" \
	--instance "p1=${STORE[1]},${ADDR[1]}:${PORT[1]},${HOST[1]},${LOG[1]}" \
	--instance "p2=${STORE[2]},${ADDR[2]}:${PORT[2]},${HOST[2]},${LOG[2]}" \
	--instance "p3=${STORE[3]},${ADDR[3]}:${PORT[3]},${HOST[3]},${LOG[3]}" \
	>"$WORK/fleet_check.out" || rc=1
cat "$WORK/fleet_check.out"

# The fleet-wide ledger audit: each instance's ledger exported, then all
# of them checked together (postern audit --verify --fleet). Its chains
# must be sound, and the messages it finds delivered twice must be
# exactly the duplicates that fleet_check.py explained (a 250 lost to a
# SIGKILL, the copy sent again to another instance): as many, each "by
# different instances", none "by one instance".
fleet_ledger_audit() {
	local i exports=() want got one
	for i in 1 2 3; do
		"$POSTERN" -s "${STORE[$i]}" ledger export >"$WORK/p$i.ledger" ||
			{ echo "FAIL p$i: postern ledger export"; return 1; }
		exports+=("$WORK/p$i.ledger")
	done
	"$POSTERN" audit --verify --fleet "${exports[@]}" >"$WORK/fleet_audit.out"
	cat "$WORK/fleet_audit.out"
	grep -q '^fleet: .*(0 problems, ' "$WORK/fleet_audit.out" ||
		{ echo "FAIL postern audit --verify --fleet: the ledgers"; return 1; }
	want=$(sed -n 's/^RESULT fleet .*(explained \([0-9]*\),.*/\1/p' \
		"$WORK/fleet_check.out")
	got=$(grep -c '^delivered 2 times: .* by different instances' \
		"$WORK/fleet_audit.out")
	one=$(grep -c '^delivered .* by one instance' "$WORK/fleet_audit.out")
	if [ "$got" != "${want:-0}" ] || [ "$one" != 0 ]; then
		echo "FAIL postern audit --verify --fleet: $got across instances," \
			"$one within one; fleet_check.py explained ${want:-0}"
		return 1
	fi
	echo "fleet ledger audit: chains sound; $got delivered twice across" \
		"instances, as fleet_check.py explained"
}
fleet_ledger_audit || rc=1

echo "RESULT fleet_time rounds=$ROUNDS down=${DOWN}s seconds=$(calc \
	"$(now) - $T0")"
if [ $rc -ne 0 ]; then
	for i in 1 2 3; do
		echo "--- p$i log, not info (head) ---"
		grep -v ': info: ' "${LOG[$i]}" | head -10
	done
	echo "--- Postfix log, not sent (tail) ---"
	grep -v 'status=sent' "$PF/maillog" | grep -v -e 'postfix/smtpd' \
		-e 'postfix/cleanup' -e 'qmgr.*removed' -e 'queue active' |
		tail -20
fi
exit $rc
