# postfix.sh - a private Postfix instance on loopback, for tests and
# benchmarks. Sourced after common.sh (needs $WORK, fail, skip); bash only.
#
#   postfix_start DIR PORT TRANSPORT
#       Configure and start Postfix with its files under DIR, smtpd on
#       127.0.0.1:PORT, relaying foreign.example by TRANSPORT (a transport
#       map right-hand side, e.g. "smtp:[127.0.0.1]:2525"). The main.cf
#       and transport lines are those of contrib/postfix/. Stopped by
#       postfix_stop DIR (the EXIT trap of common.sh calls it too).
#       $POSTFIX_MAIN_EXTRA, if set, is appended to main.cf (one
#       "name = value" a line), e.g. short retry times.
#   postfix_start_fleet DIR PORT "ADDR1:P1 ADDR2:P2 ADDR3:P3" [main.cf line...]
#       The same with the fleet example of contrib/postfix/ (fleet.*,
#       fleet_domains): foreign.example spread over the posternd
#       instances at ADDRn:Pn (the example's [192.0.2.11]:2525 ...), with
#       fail-over; each further argument is one more main.cf line.
#   postfix_log DIR   print the instance's log
#   postfix_queue_empty DIR   0 when Postfix's own queue is empty

command -v postfix >/dev/null 2>&1 ||
	skip "postfix not found (Debian package postfix)"

POSTFIX_DIRS=""

postfix_stop() {
	postfix -c "$1/etc" stop >/dev/null 2>&1
}

postfix_cleanup() {
	local d
	for d in $POSTFIX_DIRS; do
		postfix -c "$d/etc" abort >/dev/null 2>&1
	done
}

# postfix_configure DIR PORT: main.cf and master.cf of an instance under
# DIR with smtpd on 127.0.0.1:PORT; no routing yet. Sets PF_SRC to
# contrib/postfix/.
postfix_configure() {
	local dir=$1 port=$2
	PF_SRC=$HERE/../../contrib/postfix
	[ -r "$PF_SRC/main.cf.fragment" ] ||
		PF_SRC=$(cd "$HERE/../.." && pwd)/contrib/postfix
	mkdir -p "$dir/etc" "$dir/spool" "$dir/data" || return 1
	chown postfix "$dir/data" || return 1
	# postfix (the user) must reach DIR: mktemp -d made $WORK 0700
	local p=$dir
	while [ "$p" != / ] && [ -n "$p" ]; do
		chmod o+x "$p" 2>/dev/null
		[ "$p" = "$WORK" ] && break
		p=$(dirname "$p")
	done
	cp /etc/postfix/master.cf.proto "$dir/etc/master.cf" || return 1
	cp /etc/postfix/dynamicmaps.cf "$dir/etc/" 2>/dev/null
	{
		echo "compatibility_level = 3.6"
		echo "queue_directory = $dir/spool"
		echo "data_directory = $dir/data"
		echo "shlib_directory = /usr/lib/postfix"
		echo "meta_directory = /etc/postfix"
		echo "mail_owner = postfix"
		echo "setgid_group = postdrop"
		echo "inet_interfaces = 127.0.0.1"
		echo "inet_protocols = ipv4"
		echo "myhostname = home.example"
		echo "mydomain = home.example"
		echo "myorigin = home.example"
		echo "mydestination ="
		echo "mynetworks = 127.0.0.0/8"
		echo "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"
		echo "maillog_file_prefixes = $dir"
		echo "maillog_file = $dir/maillog"
	} >"$dir/etc/main.cf"
	# smtpd on our port only
	sed -i "s/^smtp \{1,\}inet .*smtpd$/127.0.0.1:$port inet n - n - - smtpd/" \
		"$dir/etc/master.cf"
}

# postfix_launch DIR PORT: start the configured instance, wait until it
# listens on 127.0.0.1:PORT.
postfix_launch() {
	local dir=$1 port=$2 i
	# no chroot (the spool has no copy of /lib)
	postconf -c "$dir/etc" -F '*/*/chroot=n' || return 1
	POSTFIX_DIRS="$POSTFIX_DIRS $dir"
	trap 'postfix_cleanup; cleanup' EXIT
	postfix -c "$dir/etc" check >/dev/null 2>&1
	if ! postfix -c "$dir/etc" start >/dev/null 2>&1; then
		echo "postfix did not start; its log:"
		tail -20 "$dir/maillog" 2>/dev/null
		return 1
	fi
	for i in $(seq 1 50); do
		"$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" \
			2>/dev/null && return 0
		sleep 0.1
	done
	echo "postfix is not listening on 127.0.0.1:$port; its log:"
	tail -20 "$dir/maillog" 2>/dev/null
	return 1
}

postfix_start() {
	local dir=$1 port=$2 transport=$3
	postfix_configure "$dir" "$port" || return 1
	# the example's lines, with the map where this instance keeps it
	sed -e "s|hash:/etc/postfix/transport|texthash:$dir/etc/transport|" \
		-e '/^#/d' "$PF_SRC/main.cf.fragment" >>"$dir/etc/main.cf"
	if [ -n "${POSTFIX_MAIN_EXTRA:-}" ]; then
		echo "$POSTFIX_MAIN_EXTRA" >>"$dir/etc/main.cf"
	fi
	echo "foreign.example $transport" >"$dir/etc/transport"
	postfix_launch "$dir" "$port"
}

postfix_start_fleet() {
	local dir=$1 port=$2 hops sub=() line n
	read -r -a hops <<<"$3"
	shift 3
	[ ${#hops[@]} = 3 ] || { echo "postfix_start_fleet: three next hops"; return 1; }
	postfix_configure "$dir" "$port" || return 1
	# the example's lines, with this instance's paths and next hops
	sub=(-e "s|/etc/postfix/fleet_domains|$dir/etc/fleet_domains|" -e '/^#/d')
	for n in 0 1 2; do
		sub+=(-e "s|\[192\.0\.2\.1$((n + 1))\]:2525|[${hops[$n]%:*}]:${hops[$n]##*:}|g")
	done
	sed "${sub[@]}" "$PF_SRC/fleet.main.cf.fragment" >>"$dir/etc/main.cf" ||
		return 1
	for line in "$@"; do
		echo "$line"
	done >>"$dir/etc/main.cf"
	sed "${sub[@]}" "$PF_SRC/fleet.master.cf.fragment" >>"$dir/etc/master.cf" ||
		return 1
	cp "$PF_SRC/fleet_domains" "$dir/etc/fleet_domains" || return 1
	postfix_launch "$dir" "$port"
}

postfix_log() {
	cat "$1/maillog" 2>/dev/null
}

postfix_queue_empty() {
	[ -z "$(find "$1/spool/incoming" "$1/spool/active" \
		"$1/spool/deferred" "$1/spool/maildrop" -type f 2>/dev/null)" ]
}
