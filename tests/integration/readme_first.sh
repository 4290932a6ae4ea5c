#!/bin/sh
# The README's first command ends by running the daemon on its built-in
# defaults; run exactly that (no configuration file at all), send a message
# with swaks and find it delivered once in the default Maildir.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
srcroot=${srcdir:-$top}
[ -f "$srcroot/README.md" ] || srcroot=$top
POSTERND=${POSTERND:-$top/src/posternd}
[ -x "$POSTERND" ] || POSTERND=$(pwd)/src/posternd

first=$(awk '/^```sh/{n++; next} /^```/{if(n==1) exit} n==1' \
	"$srcroot/README.md" | grep -v '^#')
case "$first" in
*"./src/posternd -f") ;;
*) echo "FAIL: README's first command does not end with ./src/posternd -f"
   echo "$first"; exit 1 ;;
esac
command -v swaks >/dev/null || { echo "SKIP: swaks missing (apt-get install swaks)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: the defaults need root (/var/lib/postern)"; exit 77; }
[ -e /etc/postern.conf ] && { echo "SKIP: /etc/postern.conf exists"; exit 77; }

# The defaults are the machine's own paths and port. Where it can, the
# test runs in a private mount and network namespace, with an empty tmpfs
# over /var/lib (the daemon makes /var/lib/postern as on a new machine,
# and nothing it writes outlives the test) and a loopback of its own
# (2525 is free whatever the machine runs). Where it cannot (a plain
# chroot, whose / is no mount point, cannot be made private), it uses
# the machine's /var/lib/postern only if there is none, and removes it.
if [ -z "${README_FIRST_NS:-}" ] && command -v unshare >/dev/null &&
	command -v ip >/dev/null &&
	unshare --mount --net --propagation private true 2>/dev/null; then
	README_FIRST_NS=1 POSTERND=$POSTERND srcdir=$srcroot \
		exec unshare --mount --net --propagation private sh "$0" "$@"
fi
if [ -n "${README_FIRST_NS:-}" ]; then
	mount -t tmpfs -o mode=0755 postern-readme /var/lib ||
		{ echo "FAIL: cannot mount a private /var/lib"; exit 1; }
	ip link set lo up || { echo "FAIL: cannot bring up the private loopback"; exit 1; }
	made_state=
else
	echo "no private namespace here: using the machine's /var/lib/postern"
	[ -e /var/lib/postern ] &&
		{ echo "SKIP: /var/lib/postern exists and no private namespace can hide it"; exit 77; }
	if python3 -c 'import socket; socket.create_connection(("127.0.0.1",2525),1)' 2>/dev/null; then
		echo "SKIP: port 2525 is taken"; exit 77
	fi
	made_state=/var/lib/postern
fi

rcpt="readme-$$-$(date +%s)@foreign.example"
dir=/var/lib/postern/maildir/$rcpt
log=$(mktemp)
"$POSTERND" -f 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir" "$log" $made_state' EXIT
i=0
until python3 -c 'import socket; socket.create_connection(("127.0.0.1",2525),1)' 2>/dev/null; do
	i=$((i + 1)); [ $i -gt 50 ] && { echo "FAIL: daemon did not listen"; cat "$log"; exit 1; }
	sleep 0.1
done
swaks --server 127.0.0.1:2525 --from alice@home.example --to "$rcpt" \
	--header "Subject: readme test" --body "hello from the README test" >/dev/null 2>&1 ||
	{ echo "FAIL: swaks was refused"; cat "$log"; exit 1; }
i=0
while [ "$(ls "$dir/new" 2>/dev/null | wc -l)" -lt 1 ]; do
	i=$((i + 1)); [ $i -gt 100 ] && { echo "FAIL: not delivered"; cat "$log"; exit 1; }
	sleep 0.1
done
n=$(ls "$dir/new" | wc -l)
grep -q "hello from the README test" "$dir"/new/* || { echo "FAIL: body missing"; exit 1; }
kill -TERM $pid; wait $pid; rc=$?
[ "$n" = 1 ] && [ $rc = 0 ] || { echo "FAIL: files=$n exit=$rc"; cat "$log"; exit 1; }
echo "PASS: README first command delivered 1 message, clean exit on SIGTERM"
exit 0
