# dovecot.sh - a private Dovecot instance for the integration tests.
# Sourced after common.sh (uses $WORK, $DAEMON_PIDS, free_port, skip);
# bash only. Reusable for LMTP now and IMAP later.
#
#   dovecot_start DIR USERS...   DIR/etc/dovecot.conf, base_dir, log and
#       DIR/mail/<user>/Maildir for each user (password "pw"); the domain
#       of an address is ignored (user@any.domain is user). A user
#       written "name:quota" gets a storage quota of that many bytes and
#       deferrals (4xx) when it is full. Listens for LMTP on the Unix
#       socket $DOVECOT_LMTP_SOCKET and on 127.0.0.1:$DOVECOT_LMTP_PORT,
#       for IMAP on 127.0.0.1:$DOVECOT_IMAP_PORT. A master user
#       "postern" (password "masterpw") may log in as any user with
#       "user*postern". DOVECOT_TLS=1 makes a self-signed certificate
#       for "localhost" (DIR/etc/cert.pem) and offers STARTTLS. Returns 1
#       on failure (the log is printed).
#   dovecot_stop                  stop it (also done by the EXIT trap).
#   dovecot_maildir_count USER    messages in USER's INBOX (new + cur).
#
# As root, Dovecot needs existing unprivileged users: it runs its
# internal processes as dovecot/dovenull and delivers as $DOVECOT_MAIL_USER
# (default: the owner of DIR, or nobody's uid when DIR is root's).

DOVECOT=${DOVECOT:-$(command -v dovecot || echo /usr/sbin/dovecot)}
DOVECOT_DIR=""

dovecot_start() {
	local dir=$1 u name quota uid gid i
	shift
	[ -x "$DOVECOT" ] ||
		skip "dovecot not found (Debian packages dovecot-core dovecot-lmtpd)"
	[ -x /usr/lib/dovecot/lmtp ] ||
		skip "dovecot lmtp not found (Debian package dovecot-lmtpd)"
	DOVECOT_DIR=$dir
	mkdir -p "$dir/etc" "$dir/run" "$dir/mail" "$dir/state"
	# Dovecot's unprivileged processes must reach the users file and
	# the mail: open the (private, mktemp -d) work directory to them.
	chmod 755 "$WORK" "$dir"
	if [ "$(id -u)" = 0 ]; then
		uid=$(id -u "${DOVECOT_MAIL_USER:-nobody}")
		gid=$(id -g "${DOVECOT_MAIL_USER:-nobody}")
	else
		uid=$(id -u)
		gid=$(id -g)
	fi
	DOVECOT_LMTP_SOCKET=$dir/run/lmtp-in
	DOVECOT_LMTP_PORT=$(free_port)
	DOVECOT_IMAP_PORT=$(free_port)
	: >"$dir/etc/users"
	for u in "$@"; do
		name=${u%%:*}
		quota=""
		[ "$name" != "$u" ] && quota="userdb_quota_rule=*:bytes=${u#*:}"
		echo "$name:{PLAIN}pw:$uid:$gid::$dir/mail/$name::$quota" \
			>>"$dir/etc/users"
		mkdir -p "$dir/mail/$name"
	done
	chown -R "$uid:$gid" "$dir/mail"
	echo "postern:{PLAIN}masterpw" >"$dir/etc/masters"
	local ssl="ssl = no"
	if [ "${DOVECOT_TLS:-0}" = 1 ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
			-subj /CN=localhost -addext subjectAltName=DNS:localhost \
			-keyout "$dir/etc/key.pem" -out "$dir/etc/cert.pem" \
			>/dev/null 2>&1 || { echo "openssl req failed"; return 1; }
		ssl="ssl = yes
ssl_cert = <$dir/etc/cert.pem
ssl_key = <$dir/etc/key.pem"
	fi
	cat >"$dir/etc/dovecot.conf" <<EOF
protocols = lmtp imap
base_dir = $dir/run
state_dir = $dir/state
instance_name = postern-test-$$
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
$ssl
disable_plaintext_auth = no
auth_mechanisms = plain
auth_username_format = %Ln
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
first_valid_uid = 1
mail_plugins = quota
quota_full_tempfail = yes
lmtp_rcpt_check_quota = yes
plugin {
  quota = maildir:User quota
}
auth_master_user_separator = *
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/etc/masters
  master = yes
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/etc/users
}
userdb {
  driver = passwd-file
  args = $dir/etc/users
}
service lmtp {
  unix_listener lmtp-in {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $DOVECOT_LMTP_PORT
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DOVECOT_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
EOF
	"$DOVECOT" -c "$dir/etc/dovecot.conf" || {
		echo "dovecot did not start:"; cat "$dir/dovecot.log"; return 1;
	}
	for i in $(seq 1 100); do
		[ -S "$DOVECOT_LMTP_SOCKET" ] && [ -f "$dir/run/master.pid" ] &&
			break
		sleep 0.1
	done
	[ -S "$DOVECOT_LMTP_SOCKET" ] || {
		echo "dovecot: no LMTP socket:"; cat "$dir/dovecot.log"; return 1;
	}
	DAEMON_PIDS="$DAEMON_PIDS $(cat "$dir/run/master.pid")"
	return 0
}

dovecot_stop() {
	[ -n "$DOVECOT_DIR" ] || return 0
	"$DOVECOT" -c "$DOVECOT_DIR/etc/dovecot.conf" stop 2>/dev/null
	DOVECOT_DIR=""
}

dovecot_maildir_count() {
	find "$DOVECOT_DIR/mail/$1/Maildir/new" \
		"$DOVECOT_DIR/mail/$1/Maildir/cur" -type f 2>/dev/null | wc -l
}
