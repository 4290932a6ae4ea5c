#!/bin/bash
# drop_root.sh - posternd started as root with [daemon] user = nobody binds
# its SMTP and [admin] listeners on ports below 1024, then runs as nobody
# (/proc/PID/status Uid, Gid and Groups), opens the store as nobody and
# delivers; a store directory that is not the user's, an unknown user and
# a missing user key are handled as documented in postern.conf(5).
. "$(dirname "$0")/common.sh"

[ "$(id -u)" = 0 ] || skip "not root"
NOBODY_UID=$(id -u nobody 2>/dev/null) || skip "no user nobody"
NOBODY_GID=$(id -g nobody)
command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"

# low_port: a port below 1024 on 127.0.0.1 that was free a moment ago
low_port() {
	"$PYTHON" -c 'import random, socket
for p in random.sample(range(600, 1000), 400):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break'
}

# mktemp -d is 0700: nobody must be able to reach its store
chmod 755 "$WORK"
PORT=$(low_port)
APORT=$(low_port)
[ -n "$PORT" ] && [ -n "$APORT" ] && [ "$PORT" != "$APORT" ] ||
	skip "no two free ports below 1024"
D=$WORK/d
LOG=$WORK/d.log
write_config "$WORK/d.conf" "$D" "$PORT"
printf '[admin]\nlisten = 127.0.0.1:%s\n[daemon]\nuser = nobody\n' "$APORT" \
	>>"$WORK/d.conf"
mkdir -p "$D/store"

# --- a store directory that is not the user's ------------------------------
out=$("$POSTERND" -f -c "$WORK/d.conf" 2>&1) && fail "started with root's store"
echo "$out" | grep -q "\[store\] path $D/store belongs to uid 0, not to \[daemon\] user nobody (uid $NOBODY_UID): chown -R nobody $D/store" ||
	fail "store owner: $out"
echo "PASS store owner: refused with a chown hint"

# --- an unknown user ------------------------------------------------------------
sed 's/^user = nobody$/user = postern-no-such-user/' "$WORK/d.conf" >"$WORK/u.conf"
out=$("$POSTERND" -f -c "$WORK/u.conf" 2>&1) && fail "started as an unknown user"
echo "$out" | grep -q '\[daemon\] user postern-no-such-user: no such user' ||
	fail "unknown user: $out"
echo "PASS unknown user: refused"

# --- the drop ------------------------------------------------------------------
chown -R nobody "$D/store" "$D/maildir"
start_daemon "$WORK/d.conf" "$LOG" || fail "no start"
grep -q "info: running as nobody (uid $NOBODY_UID, gid $NOBODY_GID)" "$LOG" ||
	fail "no 'running as' line: $(tail -3 "$LOG")"
st=/proc/$DAEMON_PID/status
grep -q "^Uid:	$NOBODY_UID	$NOBODY_UID	$NOBODY_UID	$NOBODY_UID$" "$st" &&
	grep -q "^Gid:	$NOBODY_GID	$NOBODY_GID	$NOBODY_GID	$NOBODY_GID$" "$st" ||
	fail "ids: $(grep -E '^(Uid|Gid)' "$st")"
groups=$(sed -n 's/^Groups:[	 ]*//p' "$st")
for g in $groups; do
	[ "$g" = 0 ] && fail "still in group 0: $groups"
done
grep -q '^CapEff:	0000000000000000$' "$st" || fail "capabilities: $(grep ^Cap "$st")"
echo "PASS ids: Uid and Gid are nobody's ($NOBODY_UID/$NOBODY_GID), groups '$groups', no capabilities"

swaks --server "127.0.0.1:$PORT" --from a@home.example \
	--to low@foreign.example --timeout 30 >"$WORK/swaks.out" 2>&1 ||
	fail "swaks on port $PORT: $(tail -5 "$WORK/swaks.out")"
for i in $(seq 1 200); do
	[ "$(maildir_count "$D/maildir")" -ge 1 ] && break
	sleep 0.1
done
F=$(find "$D/maildir/low@foreign.example/new" -type f | head -1)
[ -n "$F" ] || fail "not delivered"
[ "$(stat -c %u "$F")" = "$NOBODY_UID" ] || fail "delivered file owned by $(stat -c %U "$F")"
[ "$(stat -c %u "$D/store/data.mdb")" = "$NOBODY_UID" ] ||
	fail "store file owned by $(stat -c %U "$D/store/data.mdb")"
[ "$(stat -c %u "$D/store/posternd.sock")" = "$NOBODY_UID" ] ||
	fail "admin socket owned by $(stat -c %U "$D/store/posternd.sock")"
"$PYTHON" -c 'import sys, urllib.request
r = urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=30)
assert r.status == 200' "$APORT" || fail "admin /healthz on port $APORT"
stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "exit status $STOP_RC"
echo "PASS drop: SMTP on port $PORT and admin on $APORT bound as root; store, socket and delivery as nobody"

# --- root without a user ------------------------------------------------------------
P=$(free_port)
write_config "$WORK/r.conf" "$WORK/r" "$P"
start_daemon "$WORK/r.conf" "$WORK/r.log" || fail "root: no start"
grep -q 'warning: running as root: set \[daemon\] user' "$WORK/r.log" ||
	fail "root: no warning: $(tail -3 "$WORK/r.log")"
stop_daemon "$DAEMON_PID"
echo "PASS root: no [daemon] user runs as root with a warning"
exit 0
