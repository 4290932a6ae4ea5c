# cyrus.sh - a private Cyrus IMAP 3.6 instance with JMAP, for the
# integration tests (the peer of the JMAP driver, issue #19). Sourced
# after common.sh (uses $WORK, $PYTHON, free_port, skip); bash only.
#
#   cyrus_start DIR [USERS...]   (USERS default: alice bob) a Cyrus
#       master under DIR, running as the user "cyrus", serving JMAP on
#       127.0.0.1:$CYRUS_HTTP_PORT and IMAP on 127.0.0.1:$CYRUS_IMAP_PORT
#       (IMAP is what creates the mailboxes; tests may read it too).
#       Each USER is a Cyrus user of that plain name with an empty INBOX
#       (IMAP user.NAME), password "pw"; the domain of an address is
#       ignored (alice@any.domain is alice), as in dovecot.sh. A delegate
#       "postern" (password "masterpw", no mailbox of its own) has the
#       rights $CYRUS_DELEGATE_RIGHTS (default lrswi) on each user's
#       INBOX: the driver logs in once as postern and works in the JMAP
#       account named after the recipient ("accountId": "alice"). lrswi
#       is the least Email/import takes: with lrsi it answers notCreated
#       invalidProperties ["mailboxIds"].
#       Returns once postern's JMAP session lists every user, or 1 (the
#       log printed). Sets:
#         CYRUS_JMAP_URL   http://127.0.0.1:PORT (the session resource is
#                          $CYRUS_JMAP_URL/jmap/; /.well-known/jmap
#                          redirects there)
#         CYRUS_API_URL    $CYRUS_JMAP_URL/jmap/ (apiUrl, for POSTs)
#         CYRUS_USER CYRUS_PASS            postern masterpw
#         CYRUS_USER_PASS                  pw (each USER's own password:
#                          a user may also log in and use its own account)
#         CYRUS_ADMIN_USER CYRUS_ADMIN_PASS  cyrusadmin adminpw (IMAP
#                          admin: CREATE user.NAME, SETACL)
#         CYRUS_HTTP_PORT CYRUS_IMAP_PORT CYRUS_MASTER_PID
#         CYRUS_DIR        DIR (imapd.conf, master.log, sendmail.log)
#         CYRUS_START_MS   milliseconds cyrus_start took
#       CYRUS_CONF_EXTRA (newline-separated imapd.conf lines) is appended
#       to the config. Run as root (Cyrus's master drops to "cyrus").
#       Takes about 0.85 s (2 cores): master, ctl_cyrusdb -r, the IMAP
#       provisioning, the first JMAP session.
#   cyrus_stop           SIGTERM the master (it stops its children), wait;
#       then SIGKILL whatever is left in its process group. Also run at
#       EXIT, before common.sh's cleanup.
#   cyrus_jmap USER PASS JSON   POST JSON to the API; prints the reply,
#       returns 1 unless HTTP 200.
#   cyrus_inbox_count USER   emails in USER's Inbox (JMAP, as postern).
#
# Packages (Debian 12). cyrus-imapd itself cannot be installed next to
# Dovecot (it Conflicts: imap-server, which dovecot-imapd Provides), so:
#   apt-get install --no-install-recommends cyrus-common cyrus-caldav
#       (cyrus-common: master, ctl_cyrusdb, lmtpd, the libraries, and db-util
#       for db_load; cyrus-caldav: httpd, which serves JMAP; with Postfix
#       and Dovecot installed it removes nothing, upgrades nothing)
#   apt-get download cyrus-imapd && dpkg -x cyrus-imapd_*.deb \
#       /opt/postern-cyrus-imapd   (only its imapd is used; never installed)
# contrib/cyrus-test-peer.sh does both, keeping the package's postinst from
# starting a system-wide Cyrus (policy-rc.d) and disabling the
# cyrus-imapd unit it enables. imapd is looked for at $CYRUS_IMAPD, then
# /usr/lib/cyrus/bin/imapd, then /opt/postern-cyrus-imapd/usr/lib/cyrus/bin/imapd.
# Tests skip (77) when any of it is missing.
#
# Configuration (DIR/imapd.conf, DIR/cyrus.conf; every program is given
# -C DIR/imapd.conf, because master's -C is NOT passed on to the services
# it starts: without it httpd reads /etc/imapd.conf):
#   configdirectory, partition-default, sievedir: under DIR, so nothing
#       touches /var/lib/cyrus or /run/cyrus (proc, lock and socket paths
#       default to configdirectory).
#   httpmodules: jmap          the JMAP module of httpd.
#   conversations: 1, conversations_db: twoskip  JMAP needs the per-user
#       conversations database (Email and thread ids): without it httpd
#       answers 404 on /jmap/.
#   sasl_pwcheck_method: auxprop, sasl_auxprop_plugin: sasldb,
#   sasl_sasldb_path: DIR/conf/sasldb2   real passwords, no saslauthd:
#       the file is written with db_load (db-util, a cyrus-common
#       dependency; saslpasswd2 is not needed, and sasl2-bin would upgrade
#       libsasl2). Keys are NAME\0SERVERNAME\0userPassword, so servername is
#       set. (sasl_pwcheck_method: alwaystrue also works with Debian's
#       libsasl2, but then any password is accepted.)
#   allowplaintext: yes        HTTP Basic and IMAP LOGIN without TLS.
#   admins: cyrusadmin         for CREATE user.NAME and SETACL over IMAP.
#   unixhierarchysep: no       IMAP names are user.alice, not user/alice.
#   search_engine: none (the default): no Xapian index, no squatter.
#   sendmail: DIR/sendmail     a stub SMTP speaker (sendmail -bs) that
#       refuses all mail and logs to DIR/sendmail.log: httpd runs it for
#       every session resource it builds (the EHLO reply fills the
#       urn:ietf:params:jmap:submission capability), and nothing this
#       instance does may reach the machine's Postfix.
#
# Cyrus 3.6 JMAP facts met here (see cyrus_smoke.sh, which shows each):
#   - Authentication is HTTP Basic only. "Authorize-As" (proxy auth) is
#     refused outside a Murder backend, and an admin cannot open other
#     users' accounts over JMAP: hence the delegate with an ACL. A shared
#     account shows up in postern's session "accounts" once postern has
#     rights on that INBOX; uploads to /jmap/upload/alice/ work with them.
#   - httpd never creates a user's INBOX: JMAP for a user without one
#     answers accountNotFound (autocreate_* works only on IMAP/POP login
#     and LMTP delivery). So the users are made over IMAP first.
#   - accountId is the plain user name ("alice"). "using" must hold
#     urn:ietf:params:jmap:core and urn:ietf:params:jmap:mail, or Mailbox/*
#     and Email/* give unknownMethod. POSTs need Content-Type:
#     application/json (415 otherwise).
#   - The Inbox's mailbox id is an opaque uuid: find it with Mailbox/query
#     {"filter": {"role": "inbox"}} (Email/import's mailboxIds is a map, so
#     it cannot take a back-reference).
#   - Blobs and emails are content-addressed: blobId is "G" + the SHA-1
#     of the uploaded bytes, the Email id "M" + its first 24 hex digits.
#     Importing byte-identical mail again into the same account gives
#     notCreated {"type": "alreadyExists", "existingId": ...}, not a
#     second copy; mail that differs in one byte is a second email.
#   - Email/query {"header": ["X-Postern-Delivery", "test-1"]} works with
#     no search index (search_engine none: Cyrus reads the messages) and
#     sees an import at once, in the same request too. The match is a
#     case-insensitive SUBSTRING match: "test-1" also finds "test-10".
#     Check the value with Email/get "header:X-Postern-Delivery:asText".
#   - Replies carry "Connection: Upgrade", "Upgrade: h2c": harmless for
#     an HTTP/1.1 client that does not ask for the upgrade.
#   - Cyrus logs to syslog only; with no /dev/log the logs are lost.
#     DIR/master.log has master's own stderr.

CYRUS_MASTER=${CYRUS_MASTER:-/usr/lib/cyrus/bin/master}
CYRUS_BIN=${CYRUS_BIN:-/usr/lib/cyrus/bin}
CYRUS_DIR=""
CYRUS_MASTER_PID=""

cyrus_find_imapd() {
	local c
	for c in "${CYRUS_IMAPD:-}" "$CYRUS_BIN/imapd" \
		/opt/postern-cyrus-imapd/usr/lib/cyrus/bin/imapd; do
		[ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
	done
	return 1
}

cyrus_now_ms() { date +%s%3N; }

cyrus_start() {
	local dir=$1 t0 imapd dbload u i conf
	local -a users
	shift
	users=("$@")
	[ ${#users[@]} -gt 0 ] || users=(alice bob)
	t0=$(cyrus_now_ms)
	[ "$(id -u)" = 0 ] || skip "cyrus.sh needs root (Cyrus's master runs as user cyrus)"
	[ -x "$CYRUS_MASTER" ] ||
		skip "cyrus master not found (Debian package cyrus-common; see tests/integration/cyrus.sh)"
	[ -x "$CYRUS_BIN/httpd" ] ||
		skip "cyrus httpd not found (Debian package cyrus-caldav)"
	imapd=$(cyrus_find_imapd) ||
		skip "cyrus imapd not found (apt-get download cyrus-imapd; dpkg -x it into /opt/postern-cyrus-imapd: contrib/cyrus-test-peer.sh)"
	dbload=$(command -v db_load || command -v db5.3_load) ||
		skip "db_load not found (Debian package db-util)"
	id cyrus >/dev/null 2>&1 || skip "no user cyrus (Debian package cyrus-common)"
	command -v curl >/dev/null 2>&1 || skip "curl not found"

	CYRUS_DIR=$dir
	mkdir -p "$dir/conf" "$dir/spool" "$dir/sieve"
	chmod 755 "$WORK" "$dir"
	CYRUS_HTTP_PORT=$(free_port)
	CYRUS_IMAP_PORT=$(free_port)
	while [ "$CYRUS_IMAP_PORT" = "$CYRUS_HTTP_PORT" ]; do
		CYRUS_IMAP_PORT=$(free_port)
	done
	CYRUS_JMAP_URL=http://127.0.0.1:$CYRUS_HTTP_PORT
	CYRUS_API_URL=$CYRUS_JMAP_URL/jmap/
	CYRUS_USER=postern
	CYRUS_PASS=masterpw
	CYRUS_USER_PASS=pw
	CYRUS_ADMIN_USER=cyrusadmin
	CYRUS_ADMIN_PASS=adminpw
	conf=$dir/imapd.conf
	# httpd runs "sendmail -bs" for the session resource (it asks the
	# SMTP server's EHLO for the submission capability): this stub
	# speaks just enough SMTP, refuses every message and logs to
	# DIR/sendmail.log.
	cat >"$dir/sendmail" <<EOF
#!/bin/sh
echo "sendmail \$*" >>"$dir/sendmail.log"
printf '220 postern-test-cyrus sendmail stub\r\n'
while IFS= read -r line; do
	echo "> \$line" >>"$dir/sendmail.log"
	case \$line in
	[EeHh][HhEe][Ll][Oo]*) printf '250-postern-test-cyrus\r\n250 8BITMIME\r\n' ;;
	[Qq][Uu][Ii][Tt]*) printf '221 bye\r\n'; exit 0 ;;
	*) printf '554 5.7.0 the test peer sends no mail\r\n' ;;
	esac
done
EOF
	chmod 755 "$dir/sendmail"
	cat >"$conf" <<EOF
configdirectory: $dir/conf
defaultpartition: default
partition-default: $dir/spool
sievedir: $dir/sieve
sendmail: $dir/sendmail
servername: cyrus.postern.test
syslog_prefix: postern-test-cyrus
admins: $CYRUS_ADMIN_USER
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/conf/sasldb2
sasl_mech_list: PLAIN
unixhierarchysep: no
httpmodules: jmap
conversations: 1
conversations_db: twoskip
${CYRUS_CONF_EXTRA:-}
EOF
	# sasldb: Berkeley DB hash, key NAME NUL REALM NUL userPassword,
	# value the password; db_load -T reads \00 as a NUL.
	{
		printf '%s\\00cyrus.postern.test\\00userPassword\n%s\n' \
			"$CYRUS_ADMIN_USER" "$CYRUS_ADMIN_PASS" \
			"$CYRUS_USER" "$CYRUS_PASS"
		for u in "${users[@]}"; do
			printf '%s\\00cyrus.postern.test\\00userPassword\n%s\n' \
				"$u" "$CYRUS_USER_PASS"
		done
	} | "$dbload" -T -t hash "$dir/conf/sasldb2" || {
		echo "db_load failed"; return 1; }
	cat >"$dir/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -C $conf -r"
}
SERVICES {
  imap cmd="$imapd -C $conf" listen="127.0.0.1:$CYRUS_IMAP_PORT" prefork=0
  http cmd="httpd -C $conf" listen="127.0.0.1:$CYRUS_HTTP_PORT" prefork=0
}
EVENTS {
}
EOF
	chown -R cyrus:mail "$dir"
	# setsid: master and its children in a process group of their own
	# (pgid = $!), so that cyrus_stop can reach any straggler.
	setsid "$CYRUS_MASTER" -C "$conf" -M "$dir/cyrus.conf" \
		-p "$dir/master.pid" >>"$dir/master.log" 2>&1 &
	CYRUS_MASTER_PID=$!
	for i in $(seq 1 100); do
		kill -0 "$CYRUS_MASTER_PID" 2>/dev/null || break
		(exec 3<>"/dev/tcp/127.0.0.1/$CYRUS_IMAP_PORT") 2>/dev/null &&
			(exec 3<>"/dev/tcp/127.0.0.1/$CYRUS_HTTP_PORT") 2>/dev/null &&
			break
		sleep 0.1
	done
	if ! kill -0 "$CYRUS_MASTER_PID" 2>/dev/null ||
		! (exec 3<>"/dev/tcp/127.0.0.1/$CYRUS_HTTP_PORT") 2>/dev/null; then
		echo "cyrus master did not listen on $CYRUS_IMAP_PORT/$CYRUS_HTTP_PORT; $dir/master.log:"
		cat "$dir/master.log"
		return 1
	fi
	# The users' mailboxes: httpd never creates them (see above).
	"$PYTHON" - "$CYRUS_IMAP_PORT" "$CYRUS_ADMIN_USER" "$CYRUS_ADMIN_PASS" \
		"$CYRUS_USER" "${CYRUS_DELEGATE_RIGHTS:-lrswi}" "${users[@]}" <<'EOF' || { echo "cyrus: making the mailboxes failed"; cat "$dir/master.log"; return 1; }
import imaplib, sys
port, admin, adminpw, delegate, rights = sys.argv[1:6]
users = sys.argv[6:]
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(admin, adminpw)
def ok(what, r):
    if r[0] != "OK":
        sys.exit("cyrus: %s: %r" % (what, r))
for u in users:
    ok("CREATE user." + u, m.create("user." + u))
    ok("SETACL user.%s %s" % (u, delegate),
       m.setacl("user." + u, delegate, rights))
m.logout()
EOF
	# Ready when postern's JMAP session lists every user's account.
	for _ in $(seq 1 50); do
		if curl -sf -m 10 -u "$CYRUS_USER:$CYRUS_PASS" "$CYRUS_API_URL" \
			>"$dir/session.json" 2>/dev/null &&
			"$PYTHON" -c 'import json, sys
a = json.load(open(sys.argv[1]))["accounts"]
sys.exit(0 if all(u in a for u in sys.argv[2:]) else 1)' \
				"$dir/session.json" "${users[@]}"; then
			CYRUS_START_MS=$(($(cyrus_now_ms) - t0))
			return 0
		fi
		sleep 0.1
	done
	echo "cyrus: JMAP session at $CYRUS_API_URL not ready:"
	cat "$dir/session.json" "$dir/master.log" 2>/dev/null
	return 1
}

cyrus_stop() {
	local pid=$CYRUS_MASTER_PID
	[ -n "$pid" ] || return 0
	CYRUS_MASTER_PID=""
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	# master waits for its children on SIGTERM; anything still in its
	# process group after 10 s is killed
	kill -KILL -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# cyrus_jmap USER PASS JSON
cyrus_jmap() {
	local out code
	out=$(curl -s -m 30 -w '\n%{http_code}' -u "$1:$2" \
		-H 'Content-Type: application/json' --data-binary "$3" \
		"$CYRUS_API_URL") || return 1
	code=${out##*$'\n'}
	printf '%s\n' "${out%$'\n'*}"
	[ "$code" = 200 ]
}

# cyrus_inbox_count USER
cyrus_inbox_count() {
	cyrus_jmap "$CYRUS_USER" "$CYRUS_PASS" '{"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"],"methodCalls":[["Mailbox/query",{"accountId":"'"$1"'","filter":{"role":"inbox"}},"q"],["Mailbox/get",{"accountId":"'"$1"'","#ids":{"resultOf":"q","name":"Mailbox/query","path":"/ids"},"properties":["totalEmails"]},"g"]]}' |
		"$PYTHON" -c 'import json, sys
r = json.load(sys.stdin)["methodResponses"][1]
print(r[1]["list"][0]["totalEmails"])'
}

trap 'cyrus_stop; cleanup' EXIT
