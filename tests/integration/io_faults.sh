#!/bin/bash
# io_faults.sh - I/O error injection with libfiu (RELIABILITY.md 4, T9).
#
# posternd (maildir) runs under fiu-run with one fault point failing at
# random, while oracle.py sends FIU_MSGS messages from 10 threads:
#   posix/io/sync/fdatasync  EIO, 10 %    (the store's commits: group
#                                          commit makes them few)
#   posix/io/rw/pwrite       ENOSPC, 1 %  (the store's pages and meta
#                                          page: MDB_PANIC, then reopen)
#   posix/io/sync/fsync      EIO, 2 %     (the Maildir files)
#   posix/io/rw/readv        ECONNRESET, 1 % (the SMTP sessions' reads)
#   posix/io/rw/writev       EPIPE, 1 %   (the SMTP sessions' replies)
# Then posternd is stopped (SIGTERM, exit 0: it neither crashed nor
# hung), restarted without faults to deliver what was deferred, and
# oracle.py check must find every acknowledged message exactly once,
# nothing of a refused one, and a ledger that verifies.
#
# After a failed commit the store cannot take mail until a commit works
# again (posternd(8), "WHEN IT CANNOT STORE"): new connections get 421
# 4.3.2 meanwhile, and oracle.py retries them (--connect-retry).
#
# Each fault is armed only once posternd has said "started" (fiu-ctrl,
# through the named pipe that fiu-run's preload library opens): a fault
# that fires while the daemon opens its store is a different case, run
# first on its own: with the store's writes or syncs failing from the
# start, posternd must refuse to start, exit 1 and name the cause.
#
# Env: FIU_MSGS (default 2000; POSTERN_QUICK=1: 500). Needs fiu-run
# (Debian package fiu-utils) and a build without sanitizers (their
# runtime must come first, before fiu's preload library).
[ -z "$PYTHON" ] && [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
. "$(dirname "$0")/common.sh"

FIU_RUN=$(command -v fiu-run) || skip "fiu-run not found (Debian package fiu-utils)"
if ldd "$POSTERND" 2>/dev/null | grep -q 'lib[at]san'; then
	skip "posternd is built with a sanitizer; fiu-run needs a plain build"
fi
if [ -n "$POSTERN_QUICK" ]; then
	MSGS=${FIU_MSGS:-500}
else
	MSGS=${FIU_MSGS:-2000}
fi

FIU_CTRL=$(command -v fiu-ctrl) || skip "fiu-ctrl not found (Debian package fiu-utils)"

# A fault at start: the store cannot be opened or registered. A clean
# refusal, not a crash, a hang or a daemon that runs without its store.
for spec in "posix/io/sync/fdatasync,failinfo=5:Input/output error" \
	"posix/io/rw/pwrite,failinfo=28:No space left on device" \
	"posix/io/rw/writev,failinfo=32:Broken pipe"; do
	want=${spec#*:}
	spec=${spec%%:*}
	name=start_$(echo "$spec" | cut -d, -f1 | tr / _)
	D=$WORK/$name
	write_config "$D.conf" "$D" "$(free_port)"
	rc=0
	timeout 30 "$FIU_RUN" -x -c "enable name=$spec" \
		"$POSTERND" -f -c "$D.conf" >"$D.log" 2>&1 || rc=$?
	[ "$rc" = 1 ] || fail "$name: exit status $rc, not 1: $(tail -3 "$D.log")"
	grep -q "error: cannot start: .*$want" "$D.log" ||
		fail "$name: no refusal naming \"$want\": $(tail -3 "$D.log")"
	grep -q 'info: started: ' "$D.log" && fail "$name: started anyway"
	echo "PASS $name: refused to start: $(grep 'cannot start' "$D.log" | sed 's/^postern: error: //')"
done

for spec in "posix/io/sync/fdatasync,probability=0.1,failinfo=5" \
	"posix/io/rw/pwrite,probability=0.01,failinfo=28" \
	"posix/io/sync/fsync,probability=0.02,failinfo=5" \
	"posix/io/rw/readv,probability=0.01,failinfo=104" \
	"posix/io/rw/writev,probability=0.01,failinfo=32"; do
	name=$(echo "$spec" | cut -d, -f1 | tr / _)
	PORT=$(free_port)
	D=$WORK/$name
	write_config "$D.conf" "$D" "$PORT"
	printf '[queue]\nbackoff_min = 1\nbackoff_max = 2\n' >>"$D.conf"
	# fiu-run execs posternd: $P is posternd, and its control pipes
	# are $D.fiu-$P.in and .out.
	"$FIU_RUN" -x -f "$D.fiu" "$POSTERND" -f -c "$D.conf" >>"$D.log" 2>&1 &
	P=$!
	DAEMON_PIDS="$DAEMON_PIDS $P"
	for i in $(seq 1 150); do
		grep -q 'info: started: ' "$D.log" && break
		kill -0 "$P" 2>/dev/null || fail "$name: posternd exited at start: $(tail -3 "$D.log")"
		sleep 0.1
	done
	grep -q 'info: started: ' "$D.log" || fail "$name: posternd did not start"
	"$FIU_CTRL" -f "$D.fiu" -c "enable_random name=$spec" "$P" ||
		fail "$name: fiu-ctrl could not arm the fault"
	"$PYTHON" "$HERE/oracle.py" send --port "$PORT" --msgs "$MSGS" \
		--threads 10 --states "$D.st" --progress "$D.pr" \
		--connect-retry 3 || fail "$name: oracle send failed"
	sleep 3
	kill -0 "$P" 2>/dev/null || fail "$name: posternd died: $(tail -5 "$D.log")"
	stop_daemon "$P"
	[ "$STOP_RC" = 0 ] || fail "$name: exit status $STOP_RC at SIGTERM: $(tail -5 "$D.log")"
	start_daemon "$D.conf" "$D.log" || fail "$name: restart without faults"
	for i in $(seq 1 100); do
		[ "$(maildir_count "$D/maildir")" -ge "$(grep -c ' ok$' "$D.st")" ] && break
		sleep 0.2
	done
	sleep 1
	stop_daemon "$DAEMON_PID"
	"$PYTHON" "$HERE/oracle.py" check --name "io_faults_$name" --states "$D.st" \
		--maildir "$D/maildir" --store "$D/store" --config "$D.conf" ||
		fail "$name: oracle check"
	echo "PASS $spec: $(grep -c ' ok$' "$D.st") of $MSGS acknowledged and delivered once, $(grep -c ' failed$' "$D.st") refused, $(grep -c 'reopened after a panic' "$D.log") store reopens after MDB_PANIC, $(grep -c ': err' "$D.log") errors logged; the store could not take mail $(grep -c 'store: cannot take mail' "$D.log") times ($(grep -c 'CONNECT from .*: 421 4\.3\.2 ' "$D.log") connections refused with 421 4.3.2)"
done
exit 0
