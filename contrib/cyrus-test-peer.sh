#!/bin/sh
# Install the Cyrus IMAP 3.6 JMAP test peer (tests/integration/cyrus.sh)
# on Debian 12, as root, next to Postfix and Dovecot, without touching them.
#
# cyrus-imapd cannot be installed there: it Conflicts with imap-server,
# which dovecot-imapd Provides. What is installed:
#   cyrus-common  master, ctl_cyrusdb, the Cyrus libraries; pulls in db-util
#                 (db_load writes the private sasldb) and libxapian30 etc.
#   cyrus-caldav  httpd, which serves JMAP (httpmodules: jmap)
# with --no-install-recommends; on a Debian 12 with Postfix and Dovecot
# this removes nothing and upgrades nothing (checked with apt-get -s first,
# and refused here if it would remove anything). The imapd that
# creates the users' mailboxes comes from cyrus-imapd's .deb, unpacked
# with dpkg -x into /opt/postern-cyrus-imapd (not installed: dpkg knows
# nothing of it; remove the directory to undo).
#
# cyrus-common's postinst would start a system-wide Cyrus (imap, pop3,
# http on 8008, ...) from /etc/cyrus.conf: a policy-rc.d answering 101
# keeps it from starting (one that is already there is left alone), and
# the cyrus-imapd unit it enables is disabled. Nothing here edits
# /etc/imapd.conf or /etc/cyrus.conf; the tests never read them.
set -eu
export DEBIAN_FRONTEND=noninteractive
DEST=${CYRUS_IMAPD_DIR:-/opt/postern-cyrus-imapd}
PKGS="cyrus-common cyrus-caldav"

apt-get update -q
sim=$(apt-get -s install --no-install-recommends $PKGS)
if echo "$sim" | grep -q '^Remv '; then
	echo "$sim" | grep '^Remv '
	echo "cyrus-test-peer.sh: installing $PKGS would remove packages; not done" >&2
	exit 1
fi

made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	made_policy=1
fi
rc=0
apt-get install -y -q --no-install-recommends $PKGS || rc=$?
[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
[ "$rc" = 0 ] || exit "$rc"

# Never a system-wide Cyrus: disable the unit and the init script links
# (the tests run their own master), stop one if it runs anyway.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable cyrus-imapd >/dev/null 2>&1 || true
	systemctl stop cyrus-imapd >/dev/null 2>&1 || true
fi
update-rc.d cyrus-imapd disable >/dev/null 2>&1 || true
if [ -f /run/cyrus-master.pid ] && [ -x /etc/init.d/cyrus-imapd ]; then
	/etc/init.d/cyrus-imapd stop || true
fi

# imapd from cyrus-imapd's .deb, the version of the cyrus-common installed.
ver=$(dpkg-query -W -f '${Version}' cyrus-common)
if [ ! -x "$DEST/usr/lib/cyrus/bin/imapd" ] ||
	[ "$(cat "$DEST/version" 2>/dev/null)" != "$ver" ]; then
	tmp=$(mktemp -d)
	chown _apt "$tmp" 2>/dev/null || true # apt-get download runs as _apt
	(cd "$tmp" && apt-get download -q "cyrus-imapd=$ver")
	rm -rf "$DEST"
	mkdir -p "$DEST"
	dpkg -x "$tmp"/cyrus-imapd_*.deb "$DEST"
	echo "$ver" >"$DEST/version"
	rm -rf "$tmp"
fi
echo "cyrus test peer: $PKGS $ver installed, imapd in $DEST/usr/lib/cyrus/bin"
