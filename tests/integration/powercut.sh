#!/bin/bash
# powercut.sh - power cuts at every sync point (issue #18; the model is in
# tests/integration/POWERCUT.md).
#
# posternd runs under powercut.so, an LD_PRELOAD layer that journals what
# is not yet durable and kills the process at the N-th sync point (an
# fsync, an fdatasync, a write through an O_DSYNC descriptor: LMDB's
# commits, the Maildir's file and directory syncs, the ccmail drop's).
# powercut_apply.py then leaves the store and the foreign side as a power
# cut may (unsynced writes kept, dropped or torn at 512 bytes; directory
# entries not yet made durable undone; seeded), and posternd starts again
# on what survived, without the layer. While oracle.py sends a load over
# SMTP. After each point the queue drains and oracle.py checks, over
# everything sent so far: every message the client got 250 for is
# delivered or still queued (I1), nothing is on the foreign side twice
# (I2), nothing refused is there (I4), every delivery in the ledger is on
# the foreign side, `postern audit --verify` is sound, and LMDB opens
# with no stale readers (I5).
#
# Drivers: maildir, then ccmail. Points: a run without a cut first counts
# the sync points T of one round (a new store's included); then cuts on
# new stores (PC_FRESH of them, spread over 1 .. T: the cut lands while
# the store and the Maildir are new), then on one store that all later
# points share (each point also recovers what the earlier ones left):
# PC_SPREAD points spread over 1 .. T and PC_RANDOM at random N, each
# with a seed of its own. PC_FULL=1 (make check-long): every N of 1 .. T.
# Then the variant that must fail: tests/posternd_nodirsync does not
# fsync the Maildir's new/ after a delivery; with every unsynced entry
# lost, the sweep must report a loss.
#
# Env: PC_MSGS (messages per point, default 6), PC_FRESH (3; full 10),
# PC_SPREAD (10), PC_RANDOM (3; full 20), PC_DRIVERS ("maildir ccmail"),
# PC_SEED (1).
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

SO=${POWERCUT:-}
[ -n "$SO" ] && [ -f "$SO" ] || skip "powercut.so not built (make check builds it)"
MDB_STAT=$(command -v mdb_stat) || skip "mdb_stat not found (Debian package lmdb-utils)"
if ldd "$POSTERND" 2>/dev/null | grep -q 'lib[at]san'; then
	skip "posternd is built with a sanitizer; the layer needs a plain build"
fi
# Under the layer a start journals what it writes: on a loaded machine
# (make -j2 check) it may take longer than the usual 15 s.
START_SECS=60
MSGS=${PC_MSGS:-6}
DRIVERS=${PC_DRIVERS:-maildir ccmail}
SEED=${PC_SEED:-1}
if [ -n "$PC_FULL" ]; then
	FRESH=${PC_FRESH:-10}
	SPREAD=0	# every N
	RANDOM_CUTS=${PC_RANDOM:-20}
else
	FRESH=${PC_FRESH:-3}
	SPREAD=${PC_SPREAD:-10}
	RANDOM_CUTS=${PC_RANDOM:-3}
fi
PC=$WORK/pc
mkdir -p "$PC"
POINTS=0
CUTS=0
NEXT_ID=0

# setup DRIVER NAME [BINARY]: a store and a foreign side of their own.
setup() {
	local driver=$1 name=$2
	BIN=${3:-$POSTERND}
	PORT=$(free_port)
	CONF=$WORK/$name.conf
	LOG=$WORK/$name.log
	STORE=$WORK/$name/store
	STATES=$WORK/$name.states
	[ -f "$STATES" ] || : >"$STATES"
	write_config "$CONF" "$WORK/$name" "$PORT"
	{
		echo "[workers]"
		echo "count = 2"
		echo "[queue]"
		echo "backoff_min = 1"
		echo "backoff_max = 2"
	} >>"$CONF"
	if [ "$driver" = ccmail ]; then
		ccmail_config "$CONF" "$WORK/$name/drop"
	else
		TARGET=$WORK/$name/maildir
		TOPT=--maildir
	fi
	ROOTS=$WORK/$name/store:$TARGET
	# posternd under the layer; AT is read at each start
	cat >"$PC/posternd" <<-EOF
	#!/bin/sh
	exec env LD_PRELOAD="$SO" POWERCUT_JOURNAL="$PC/journal" \\
		POWERCUT_ROOTS="$ROOTS" POWERCUT_COUNT="$PC/count" \\
		POWERCUT_AT="\$(cat "$PC/at")" "$BIN" "\$@"
	EOF
	chmod +x "$PC/posternd"
}

busy() {
	"$POSTERN" -c "$CONF" queue --state pending,active,deferred 2>/dev/null |
		grep -c '@foreign.example'
}

# cut_happened: the layer cut the power (its count file says so; the
# journal's binary pre-images leave its records where grep cannot see).
cut_happened() {
	grep -q ' cut$' "$PC/count" 2>/dev/null
}

# after_cut SEED: the files as the power cut left them, then posternd
# again, without the layer.
after_cut() {
	"$PYTHON" "$HERE/powercut_apply.py" --journal "$PC/journal" \
		--roots "$ROOTS" --seed "$1" $ALL_LOST >>"$PC/apply.out" ||
		fail "$WHAT: powercut_apply.py failed"
	CUTS=$((CUTS + 1))
	# A store the cut undid altogether is not a failure by itself (a
	# cut before its first commit): posternd makes a new one, and the
	# oracle finds out if it had acknowledged anything.
	[ ! -e "$STORE/data.mdb" ] ||
	"$MDB_STAT" -e "$STORE" >"$WORK/mdb.out" 2>&1 ||
		fail "$WHAT: LMDB does not open after the cut: $(cat "$WORK/mdb.out"); $(tail -1 "$PC/apply.out")"
	start_daemon "$CONF" "$LOG" ||
		fail "$WHAT: posternd did not start after the cut: $(tail -1 "$PC/apply.out")"
}

# point N SEED: cut the power at sync point N (0: never) under a load.
point() {
	local n=$1 seed=$2 sender rc i cut=0 pid
	WHAT="$DRIVER point $n seed $seed"
	echo "$n" >"$PC/at"
	rm -rf "$PC/journal" "$PC/journal.shadow" "$PC/count"
	if ! start_daemon "$CONF" "$LOG" "$PC/posternd" >/dev/null; then
		cut_happened || fail "$WHAT: posternd did not start: $(tail -3 "$LOG")"
		cut=1
		after_cut "$seed"
	fi
	pid=$DAEMON_PID
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$MSGS" \
		--threads 2 --id-base "$NEXT_ID" --append --states "$STATES" \
		--rcpts 2 --progress "$WORK/progress" >>"$WORK/send.out" 2>&1 &
	sender=$!
	NEXT_ID=$((NEXT_ID + MSGS))
	while [ $cut = 0 ]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			rc=$?
			[ $rc = 137 ] || fail "$WHAT: posternd ended with $rc, not the cut: $(tail -3 "$LOG")"
			cut=1
			after_cut "$seed"
			break
		fi
		kill -0 "$sender" 2>/dev/null || [ "$(busy)" != 0 ] || break
		sleep 0.05
	done
	wait "$sender" || fail "$WHAT: oracle send failed"
	for i in $(seq 1 300); do
		[ "$(busy)" = 0 ] && break
		if [ $cut = 0 ] && ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			[ $? = 137 ] || fail "$WHAT: posternd ended, not the cut"
			cut=1
			after_cut "$seed"
		fi
		sleep 0.1
	done
	[ "$(busy)" = 0 ] || fail "$WHAT: the queue did not drain in 30 s: $("$POSTERN" -c "$CONF" queue | tail -3)"
	# a stop under the layer may still reach the cut
	stop_daemon "$DAEMON_PID"
	if [ "$STOP_RC" = 137 ] && [ $cut = 0 ] && cut_happened; then
		cut=1
		after_cut "$seed"
		stop_daemon "$DAEMON_PID"
	fi
	[ "$STOP_RC" = 0 ] || fail "$WHAT: exit status $STOP_RC at SIGTERM"
	POINTS=$((POINTS + 1))
	"$MDB_STAT" -r "$STORE" >"$WORK/readers" 2>&1
	grep -q '(no active readers)' "$WORK/readers" ||
		fail "$WHAT: readers left after the stop: $(cat "$WORK/readers")"
	"$PYTHON" "$HERE/oracle.py" check --name "powercut_$DRIVER" \
		--states "$STATES" "$TOPT" "$TARGET" --rcpts 2 --store "$STORE" \
		--config "$CONF" --log "$LOG" >"$WORK/check.out" 2>&1
}

# spread K T: K points spread evenly over 1 .. T
spread() {
	local k
	for k in $(seq 1 "$1"); do
		echo $((($2 * k + $1 / 2) / ($1 + 1) + 1))
	done
}

# sweep DRIVER: count one round's sync points, then the points.
sweep() {
	local n t list seed=$SEED k
	DRIVER=$1
	ALL_LOST=
	setup "$DRIVER" "pc_${DRIVER}_count"
	point 0 0 || fail "$DRIVER without a cut: $(cat "$WORK/check.out")"
	t=$(cut -d' ' -f1 "$PC/count")
	k=0
	for n in $(spread "$FRESH" "$t"); do
		k=$((k + 1))
		seed=$((seed + 1))
		setup "$DRIVER" "pc_${DRIVER}_new$k"
		point "$n" "$seed" ||
			fail "$DRIVER: cut at sync point $n of a new store (seed $seed): $(cat "$WORK/check.out"); $(tail -1 "$PC/apply.out")"
	done
	if [ "$SPREAD" = 0 ]; then
		list=$(seq 1 "$t")
	else
		list=$(spread "$SPREAD" "$t")
	fi
	for k in $(seq 1 "$RANDOM_CUTS"); do
		list="$list r$("$PYTHON" -c "import random; print(random.Random($SEED * 1000 + $k).randint(1, $t))")"
	done
	setup "$DRIVER" "pc_$DRIVER"
	for n in $list; do
		seed=$((seed + 1))
		point "${n#r}" "$seed" ||
			fail "$DRIVER: cut at sync point $n (r: at random; seed $seed): $(cat "$WORK/check.out"); $(tail -1 "$PC/apply.out")"
	done
	echo "$DRIVER: $t sync points a round; $(tail -1 "$WORK/check.out")"
}

for d in $DRIVERS; do
	sweep "$d"
done
echo "RESULT powercut: $POINTS points, $CUTS cuts landed, 0 losses"
awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(kept|dropped|torn|undone)$/) s[$i] += $(i + 1) }
	END { printf "crash states: writes kept %d, dropped %d, torn %d; entries undone %d\n",
		s["kept"], s["dropped"], s["torn"], s["undone"] }' "$PC/apply.out"

# The variant that must fail: no fsync of new/ after a Maildir delivery,
# and every unsynced entry lost at the cut. A cut after the delivery's
# outcome committed leaves a ledger record with no file: a loss.
if [ -x "${POSTERND_NODIRSYNC:-}" ]; then
	DRIVER=maildir
	ALL_LOST=--all-lost
	setup maildir pc_nodirsync "$POSTERND_NODIRSYNC"
	point 0 0 || fail "nodirsync without a cut: $(cat "$WORK/check.out")"
	# Count again on the store that now exists: the first round's count
	# includes the new store's own sync points, and the cuts below go to
	# the last ones of a round, after its deliveries' outcomes are
	# committed.
	point 0 0 || fail "nodirsync without a cut: $(cat "$WORK/check.out")"
	t=$(cut -d' ' -f1 "$PC/count")
	found=0
	c0=$CUTS
	for n in $(seq "$t" -1 $((t > 12 ? t - 12 : 1))); do
		if ! point "$n" 0; then
			found=1
			echo "nodirsync: cut at sync point $n: the sweep saw the loss: $(grep -m1 -E 'I1|lost|FAIL' "$WORK/check.out")"
			break
		fi
	done
	[ $found = 1 ] || fail "the variant without the directory fsync lost nothing at points $t .. $((t > 12 ? t - 12 : 1)) ($((CUTS - c0)) cuts landed): the sweep cannot see a loss"
else
	echo "note: tests/posternd_nodirsync not built: the must-fail variant did not run"
fi
echo "PASS"
