#!/bin/bash
# jmap_cyrus.sh - the jmap driver against a private Cyrus 3.6 (cyrus.sh),
# logged in as the delegate postern, one JMAP account per recipient
# (account = %l). Every count below is taken over JMAP (Email/query and
# Email/get of each Inbox), never from Cyrus's files.
#
#  1. JMAP_MSGS (default 30) messages, each to alice and bob, arrive
#     exactly once in each Inbox: every copy carries its own
#     X-Postern-Delivery (alice's name recipient 0, bob's recipient 1),
#     no Message-ID twice; nobody (no such account: accountNotFound)
#     bounces 5.1.1; postern audit --verify is sound. Over IMAP (as
#     the Cyrus admin) each Inbox holds the same messages.
#  2. Lost replies: cut_proxy.py drops the reply to the first 3
#     Email/imports and closes the connection. Those entries go
#     in-doubt, are looked for (Email/query by the header, Email/get to
#     check its value), found, and recorded as sent: alice has each
#     message exactly once.
#  3. SIGKILL: JMAP_KILL_MSGS (default 300) queued messages are delivered
#     while posternd is killed with SIGKILL three times, each soon after
#     a new copy shows up; after the last restart alice has every
#     message exactly once; audit --verify is sound.
#  4. An import in flight at the kill, stored only after the restart:
#     cut_proxy.py holds the Email/import request; Cyrus's httpd
#     processes are stopped (SIGSTOP) and the request goes on into their
#     socket; posternd is SIGKILLed and restarted; httpd goes on
#     (SIGCONT) and stores the message, while the proxy holds every
#     request of the restarted posternd (its gate) until the message is
#     in alice's Inbox. The restarted posternd finds it by look and does
#     not import it again. (The order is forced, not timed: under load,
#     a stopped httpd may take longer than posternd's 1 s look delay;
#     imap_restart_look.sh tests that delay with Dovecot.)
#  5. Over quota: carol's Inbox has a quota of 1 KiB (IMAP SETQUOTA);
#     a 4 KiB message to her is deferred 4.2.2 (Cyrus answers
#     notCreated overQuota), retried, deferred again; once the quota is
#     lifted it arrives, once.
#  6. A bearer token and a mailbox by name: Cyrus checks JSON Web Tokens
#     (http_jwt_key_dir, an HMAC key made here; the token names postern
#     in "sub"), posternd logs in with token_file alone. mailbox =
#     Postern, not in bob's account: bounced 5.1.1 "no mailbox";
#     create_mailbox = yes (postern given k on bob's INBOX): the mailbox
#     is made once, 3 messages land in it and none in the Inbox; carol
#     (no k) is deferred 4.3.0, the mailbox cannot be made. A token
#     signed with another key: the login is refused (401), the message
#     stays queued.
# Env: JMAP_MSGS (30), JMAP_KILL_MSGS (300); POSTERN_QUICK=1: 10 and 300
# (fewer kill messages are all delivered before the kills).
# Needs root and Cyrus (contrib/cyrus-test-peer.sh), else exit 77.
. "$(dirname "$0")/common.sh"
. "$HERE/cyrus.sh"

command -v ss >/dev/null || skip "ss not found (Debian package iproute2)"
MSGS=${JMAP_MSGS:-30}
KILL_MSGS=${JMAP_KILL_MSGS:-300}
[ -n "$POSTERN_QUICK" ] && MSGS=${JMAP_MSGS:-10}
STOPPED=""
trap 'for p in $STOPPED; do kill -CONT "$p" 2>/dev/null; done; cyrus_stop; cleanup' EXIT
# Step 6: Cyrus takes JSON Web Tokens signed with this HMAC key.
mkdir -p "$WORK/cyrus/jwt"
"$PYTHON" - "$WORK/cyrus/jwt/hmac.pem" "$WORK/token" "$WORK/badtoken" <<'PY' ||
import base64, hashlib, hmac, json, os, sys
key, bad = os.urandom(32), os.urandom(32)
with open(sys.argv[1], "w") as f:
    f.write("-----BEGIN HMAC KEY-----\n%s\n-----END HMAC KEY-----\n"
            % base64.b64encode(key).decode())
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def token(k):
    t = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps({"sub": "postern"}).encode())
    return t + "." + b64(hmac.new(k, t.encode(), hashlib.sha256).digest())
for path, k in ((sys.argv[2], key), (sys.argv[3], bad)):
    with open(path, "w") as f:
        f.write(token(k) + "\n")
PY
	fail "making the JWT key failed"
CYRUS_CONF_EXTRA="http_jwt_key_dir: $WORK/cyrus/jwt"
cyrus_start "$WORK/cyrus" alice bob carol || fail "cyrus did not start"
echo "cyrus started in $CYRUS_START_MS ms"
echo "$CYRUS_PASS" >"$WORK/pw"

# inbox USER: one line per email in USER's Inbox: its X-Postern-Delivery
# values (comma-separated), a space, its Message-ID.
inbox() {
	"$PYTHON" - "$CYRUS_API_URL" "$CYRUS_USER" "$CYRUS_PASS" "$1" <<'PY' ||
import base64, json, sys, urllib.request
url, user, pw, acc = sys.argv[1:5]
auth = "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()
def call(*calls):
    body = json.dumps({"using": ["urn:ietf:params:jmap:core",
                                 "urn:ietf:params:jmap:mail"],
                       "methodCalls": list(calls)}).encode()
    req = urllib.request.Request(url, data=body, headers={
        "Authorization": auth, "Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req, timeout=30))["methodResponses"]
    for name, args, tag in r:
        if name == "error":
            sys.exit("jmap: %r" % (args,))
    return r
box = call(["Mailbox/query", {"accountId": acc,
                              "filter": {"role": "inbox"}}, "m"])[0][1]["ids"][0]
r = call(["Email/query", {"accountId": acc, "filter": {"inMailbox": box},
                          "limit": 100000}, "q"],
         ["Email/get", {"accountId": acc, "#ids": {"resultOf": "q",
          "name": "Email/query", "path": "/ids"},
          "properties": ["header:X-Postern-Delivery:asText:all",
                         "messageId"]}, "g"])
for e in r[1][1]["list"]:
    print(",".join(e["header:X-Postern-Delivery:asText:all"]),
          (e["messageId"] or ["-"])[0])
PY
		fail "listing $1's Inbox over JMAP failed"
}
# count USER: how many emails USER's Inbox holds; fails (no output) when
# the listing fails, so that a failed listing never reads as a count
count() {
	local list
	list=$(inbox "$1") || return 1
	printf '%s' "$list" | grep -c .
}
# imap COMMAND USER [ARG]: over IMAP.
#   count USER: logged in as USER, the messages in INBOX and how many
#   carry an X-Postern-Delivery
#   quota USER KIB: as the Cyrus admin, SETQUOTA user.USER (STORAGE KIB);
#   KIB "" lifts it
#   acl USER RIGHTS: as the Cyrus admin, SETACL user.USER for the
#   delegate ($CYRUS_USER)
imap() {
	"$PYTHON" - "$CYRUS_IMAP_PORT" "$CYRUS_ADMIN_USER" "$CYRUS_ADMIN_PASS" \
		"$CYRUS_USER_PASS" "$CYRUS_USER" "$@" <<'PY' || fail "$STEP: IMAP $1 $2 failed"
import imaplib, sys
port, admin, adminpw, userpw, delegate, cmd, box = sys.argv[1:8]
m = imaplib.IMAP4("127.0.0.1", int(port))
if cmd == "acl":
    m.login(admin, adminpw)
    r = m.setacl("user." + box, delegate, sys.argv[8])
    if r[0] != "OK":
        sys.exit("SETACL: %r" % (r,))
elif cmd == "quota":
    m.login(admin, adminpw)
    kib = sys.argv[8]
    r = m.setquota("user." + box, "(STORAGE %s)" % kib if kib else "()")
    if r[0] != "OK":
        sys.exit("SETQUOTA: %r" % (r,))
else:
    m.login(box, userpw)
    typ, d = m.select("INBOX", readonly=True)
    n = int(d[0])
    with_id = 0
    if n:
        typ, d = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (X-Postern-Delivery)])")
        with_id = sum(1 for x in d if isinstance(x, tuple) and
                      b"x-postern-delivery:" in x[1].lower())
    print(n, with_id)
m.logout()
PY
}
# imap_same USER N: over IMAP too, USER's INBOX holds N messages, each
# with an X-Postern-Delivery (a second import of a copy that Cyrus did
# not take as the same email would show here).
imap_same() {
	local n
	n=$(imap count "$1")
	[ "$n" = "$2 $2" ] ||
		fail "$STEP: over IMAP $1's INBOX has $n (messages, with the header), want $2 $2"
}
# check USER N IDX: USER's Inbox holds N emails, no Message-ID and no
# X-Postern-Delivery twice, each copy's id names recipient IDX.
check() {
	local list n
	list=$(inbox "$1")
	n=$(printf '%s' "$list" | grep -c .)
	[ "$n" = "$2" ] || fail "$STEP: $1 has $n emails, want $2"
	n=$(printf '%s\n' "$list" | awk '{ print $2 }' | sort | uniq -d | wc -l)
	[ "$n" = 0 ] || fail "$STEP: $1 has $n Message-IDs twice"
	n=$(printf '%s\n' "$list" | awk '{ print $1 }' | sort | uniq -d | wc -l)
	[ "$n" = 0 ] || fail "$STEP: $1 has $n delivery ids twice"
	n=$(printf '%s\n' "$list" | grep -c -v "^<[0-9A-F]*\.[0-9A-F]*\.$3> ")
	[ "$n" = 0 ] || fail "$STEP: $1 has $n copies not for recipient $3:" \
		"$(printf '%s\n' "$list" | grep -v "\.$3> " | head -3)"
}
wait_for() { # wait_for USER N SECS: until USER's Inbox holds >= N
	local i
	for i in $(seq 1 $(($3 * 5))); do
		[ "$(count "$1")" -ge "$2" ] && return 0
		sleep 0.2
	done
	return 1
}

# config NAME PORT URL [WORKERS]: a posternd config with driver = jmap.
config() {
	write_config "$WORK/$1.conf" "$WORK/$1" "$2"
	cat >>"$WORK/$1.conf" <<EOF
[foreign]
driver = jmap
[jmap]
url = $3
user = $CYRUS_USER
password_file = $WORK/pw
account = %l
timeout = 30s
[workers]
count = ${4:-2}
[queue]
backoff_min = 1s
backoff_max = 5s
EOF
}

audit() { # audit NAME: postern audit --verify on NAME's store
	"$POSTERN" -s "$WORK/$1/store" audit --verify >"$WORK/audit.out" 2>&1 ||
		fail "$STEP: audit --verify: $(cat "$WORK/audit.out")"
	grep -q 'sound' "$WORK/audit.out" ||
		fail "$STEP: audit --verify: $(cat "$WORK/audit.out")"
}
found() { grep -c 'status=sent (found by look' "$1"; }

# --- 1. exactly once into each Inbox; an unknown account bounces ----------
STEP=1
port=$(free_port)
# /.well-known/jmap: Cyrus redirects it to /jmap/
config one "$port" "$CYRUS_JMAP_URL/.well-known/jmap"
start_daemon "$WORK/one.conf" "$WORK/one.log" || fail "1: posternd did not start"
send_msgs "$port" 1 "$MSGS" jmap alice@foreign.example bob@foreign.example
send_msgs "$port" 1000 1000 jmap nobody@foreign.example
wait_for alice "$MSGS" 60 && wait_for bob "$MSGS" 60 ||
	fail "1: alice $(count alice), bob $(count bob) of $MSGS"
wait_until 60 grep -q 'to=<nobody@foreign.example>.*status=' "$WORK/one.log"
sleep 1		# a late duplicate would show now
stop_clean "$STEP" "$WORK/one.log"
check alice "$MSGS" 0
check bob "$MSGS" 1
# every copy recorded as sent once (delivered; or, after a reply that
# timed out on a loaded machine, found by look)
n=$(grep -c 'to=<\(alice\|bob\)@foreign.example>.*status=sent' "$WORK/one.log")
[ "$n" = $((2 * MSGS)) ] || fail "1: $n sent log lines, want $((2 * MSGS))"
grep 'to=<nobody@foreign.example>' "$WORK/one.log" |
	grep -q 'status=bounced (5.1.1 .*no JMAP mail account nobody' ||
	fail "1: nobody not bounced: $(grep 'to=<nobody' "$WORK/one.log")"
audit one
imap_same alice "$MSGS"
imap_same bob "$MSGS"
echo "1: $MSGS x 2 exactly once in the right Inbox (JMAP and IMAP agree)," \
	"nobody bounced 5.1.1, audit sound"

# --- 2. lost replies to Email/import --------------------------------------
STEP=2
start_cut_proxy jmap "$CYRUS_HTTP_PORT" 3 "$WORK/proxy-cut.out"
port=$(free_port)
config cut "$port" "http://127.0.0.1:$PROXY_PORT/jmap/"
a0=$(count alice) || fail "$STEP: cannot count alice's Inbox"
start_daemon "$WORK/cut.conf" "$WORK/cut.log" || fail "2: posternd did not start"
send_msgs "$port" 101 $((100 + MSGS)) jmap alice@foreign.example
wait_for alice $((a0 + MSGS)) 60 || fail "2: alice $(count alice) of $((a0 + MSGS))"
for i in $(seq 1 100); do
	[ "$(found "$WORK/cut.log")" -ge 3 ] && break
	sleep 0.1
done
sleep 1
stop_clean "$STEP" "$WORK/cut.log"
n=$(grep -c '^cut' "$WORK/proxy-cut.out")
[ "$n" = 3 ] || fail "2: the proxy cut $n times, not 3"
n=$(grep -c 'status=in-doubt' "$WORK/cut.log")
[ "$n" -ge 3 ] || fail "2: $n in-doubt outcomes, want 3"
n=$(found "$WORK/cut.log")
[ "$n" -ge 3 ] || fail "2: $n found by look, want 3 (one per cut)"
check alice $((a0 + MSGS)) 0
audit cut
echo "2: 3 lost Email/import replies found by look, alice" \
	"$(count alice) exactly once"

# --- 3. SIGKILL while deliveries are in flight ----------------------------
STEP=3
port=$(free_port)
config kill "$port" "http://127.0.0.1:$(free_port)/jmap/"
a0=$(count alice) || fail "$STEP: cannot count alice's Inbox"
# queue everything while the JMAP server is unreachable
start_daemon "$WORK/kill.conf" "$WORK/kill.log" || fail "3: posternd did not start"
send_msgs "$port" 2001 $((2000 + KILL_MSGS)) jmap alice@foreign.example
stop_clean "$STEP" "$WORK/kill.log"
sed -i "s|^url = .*|url = $CYRUS_JMAP_URL/jmap/|" "$WORK/kill.conf"
echo "3: $KILL_MSGS queued; alice had $a0"
kill_on_progress "$WORK/kill.conf" "$WORK/kill.log" 3 count alice
start_daemon "$WORK/kill.conf" "$WORK/kill.log" || fail "3: last restart"
wait_for alice $((a0 + KILL_MSGS)) 90 ||
	fail "3: alice $(($(count alice) - a0)) of $KILL_MSGS"
sleep 1
stop_clean "$STEP" "$WORK/kill.log"
check alice $((a0 + KILL_MSGS)) 0
imap_same alice $((a0 + KILL_MSGS))
audit kill
echo "3: $KILL_MSGS after 3 SIGKILLs exactly once ($(found "$WORK/kill.log")" \
	"found by look, $(grep -c 'status=sent (already in jmap' "$WORK/kill.log")" \
	"already there)"

# --- 4. an import in flight at the kill, stored after the restart ----------
STEP=4
rm -f "$WORK/go" "$WORK/gate"
start_cut_proxy jmap "$CYRUS_HTTP_PORT" 1 "$WORK/proxy-hold.out" \
	"hold=$WORK/go gate=$WORK/gate"
port=$(free_port)
config look "$port" "http://127.0.0.1:$PROXY_PORT/jmap/" 1
a0=$(count alice) || fail "$STEP: cannot count alice's Inbox"
start_daemon "$WORK/look.conf" "$WORK/look.log" || fail "4: posternd did not start"
send_msgs "$port" 3001 3001 jmap alice@foreign.example
wait_until 30 grep -q '^held' "$WORK/proxy-hold.out"
grep -q '^held' "$WORK/proxy-hold.out" || fail "4: no Email/import came"
[ "$(count alice)" = "$a0" ] || fail "4: alice has it before the import"
# Stop every httpd of the master: the one behind the proxy's connection
# gets the import into its socket and does not read it yet.
STOPPED=$(pgrep -P "$CYRUS_MASTER_PID" -x httpd | tr '\n' ' ')
[ -n "$STOPPED" ] || fail "4: no httpd under cyrus master $CYRUS_MASTER_PID"
kill -STOP $STOPPED
unread() {
	ss -tnH state established "( sport = :$CYRUS_HTTP_PORT )" |
		awk '{ n += $1 } END { print n + 0 }'
}
touch "$WORK/go"
for i in $(seq 1 100); do
	[ "$(unread)" -gt 100 ] && break
	sleep 0.05
done
[ "$(unread)" -gt 100 ] || fail "4: the import did not reach httpd ($(unread) bytes)"
kill9_daemon "$DAEMON_PID"
start_daemon "$WORK/look.conf" "$WORK/look.log" || fail "4: posternd did not restart"
# The restarted posternd's requests wait at the proxy's gate until httpd
# has stored the message it was sent before the kill.
kill -CONT $STOPPED
STOPPED=""
wait_for alice $((a0 + 1)) 30 ||
	fail "4: httpd did not store the import in flight at the kill"
touch "$WORK/gate"
wait_until 60 grep -q 'to=<alice@foreign.example>.*status=sent' "$WORK/look.log" ||
	fail "4: not recorded as sent: $(tail -3 "$WORK/look.log")"
sleep 1
stop_clean "$STEP" "$WORK/look.log"
grep 'to=<alice@foreign.example>' "$WORK/look.log" | tail -1
n=$(found "$WORK/look.log")
[ "$n" = 1 ] || fail "4: $n found by look, want 1"
check alice $((a0 + 1)) 0
imap_same alice $((a0 + 1))
audit look
echo "4: the import in flight at the kill was stored after the restart," \
	"found by look, stored once"

# --- 5. over quota: deferred 4.2.2, then delivered once --------------------
STEP=5
imap quota carol 1
port=$(free_port)
config quota "$port" "$CYRUS_JMAP_URL/jmap/"
sed -i 's/^backoff_min = .*/backoff_min = 1/; s/^backoff_max = .*/backoff_max = 1/' \
	"$WORK/quota.conf"
start_daemon "$WORK/quota.conf" "$WORK/quota.log" || fail "5: posternd did not start"
"$PYTHON" - "$port" <<'PY' || fail "5: sending failed"
import smtplib, sys
body = ("Subject: big\r\nMessage-ID: <big.5@postern.test>\r\n\r\n" +
        ("y" * 70 + "\r\n") * 60)
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.sendmail("home@home.example", ["carol@foreign.example"], body)
s.quit()
PY
deferred_twice() {
	[ "$(grep -c 'to=<carol@foreign.example>.*status=deferred' "$WORK/quota.log")" -ge 2 ]
}
wait_until 60 deferred_twice
line=$(grep 'to=<carol@foreign.example>.*status=deferred' "$WORK/quota.log" | tail -1)
case $line in
*"status=deferred (4.2.2 "*"over quota in account carol"*) ;;
*) fail "5: not deferred 4.2.2 over quota (twice): ${line:-$(tail -3 "$WORK/quota.log")}" ;;
esac
[ "$(count carol)" = 0 ] || fail "5: carol has $(count carol) emails over quota"
imap quota carol ""
wait_for carol 1 30 || fail "5: carol has nothing after the quota was lifted"
sleep 1
stop_clean "$STEP" "$WORK/quota.log"
check carol 1 0
n=$(grep -c 'to=<carol@foreign.example>.*status=deferred' "$WORK/quota.log")
audit quota
echo "5: over quota: deferred 4.2.2 $n times, delivered once the quota was lifted"

# --- 6. a bearer token; a mailbox by name, made with create_mailbox -------
STEP=6
# box_count USER NAME: emails in USER's mailboxes named exactly NAME, one
# line "MAILBOXES EMAILS" (over JMAP, Basic login as postern)
box_count() {
	"$PYTHON" - "$CYRUS_API_URL" "$CYRUS_USER" "$CYRUS_PASS" "$1" "$2" <<'PY' ||
import base64, json, sys, urllib.request
url, user, pw, acc, name = sys.argv[1:6]
auth = "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()
body = json.dumps({"using": ["urn:ietf:params:jmap:core",
                             "urn:ietf:params:jmap:mail"],
                   "methodCalls": [["Mailbox/get", {"accountId": acc,
                       "properties": ["name", "totalEmails"]}, "g"]]}).encode()
req = urllib.request.Request(url, data=body, headers={
    "Authorization": auth, "Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req, timeout=30))["methodResponses"][0]
if r[0] != "Mailbox/get":
    sys.exit("jmap: %r" % (r,))
boxes = [m for m in r[1]["list"] if m["name"] == name]
print(len(boxes), sum(m["totalEmails"] for m in boxes))
PY
		fail "$STEP: Mailbox/get in $1 failed"
}
# config_token NAME PORT TOKENFILE CREATE: a config with token_file and
# mailbox = Postern
config_token() {
	config "$1" "$2" "$CYRUS_API_URL"
	sed -i '/^user = /d; /^password_file = /d' "$WORK/$1.conf"
	sed -i "s|^account = .*|account = %l\ntoken_file = $3\nmailbox = Postern\ncreate_mailbox = $4|" \
		"$WORK/$1.conf"
}
b0=$(count bob) || fail "6: cannot count bob's Inbox"
port=$(free_port)
config_token nobox "$port" "$WORK/token" no
start_daemon "$WORK/nobox.conf" "$WORK/nobox.log" || fail "6: posternd did not start"
send_msgs "$port" 6001 6001 jmap bob@foreign.example
wait_until 60 grep -q 'to=<bob@foreign.example>.*status=' "$WORK/nobox.log"
stop_clean "$STEP" "$WORK/nobox.log"
grep 'to=<bob@foreign.example>' "$WORK/nobox.log" |
	grep -q 'status=bounced (5.1.1 .*no mailbox Postern in account bob' ||
	fail "6: not bounced for the missing mailbox: $(grep 'to=<bob' "$WORK/nobox.log" | tail -2)"
[ "$(box_count bob Postern)" = "0 0" ] || fail "6: a mailbox Postern appeared without create_mailbox"

imap acl bob lrswik
port=$(free_port)
config_token mkbox "$port" "$WORK/token" yes
start_daemon "$WORK/mkbox.conf" "$WORK/mkbox.log" || fail "6: posternd did not start"
send_msgs "$port" 6101 6103 jmap bob@foreign.example
# carol's INBOX gives postern no k: the mailbox cannot be made there,
# which defers (never bounces) her copy
send_msgs "$port" 6104 6104 jmap carol@foreign.example
both_settled() {
	[ "$(grep -c 'to=<bob@foreign.example>.*status=sent' "$WORK/mkbox.log")" = 3 ] &&
		grep -q 'to=<carol@foreign.example>.*status=' "$WORK/mkbox.log"
}
wait_until 60 both_settled ||
	fail "6: bob's 3 not sent or carol not settled: $(tail -4 "$WORK/mkbox.log")"
line=$(grep 'to=<carol@foreign.example>.*status=' "$WORK/mkbox.log" | tail -1)
case $line in
*"status=deferred (4.3.0 "*"cannot create mailbox Postern in account carol"*) ;;
*) fail "6: carol (no right to make the mailbox) not deferred 4.3.0: ${line:-$(tail -3 "$WORK/mkbox.log")}" ;;
esac
sleep 1
stop_clean "$STEP" "$WORK/mkbox.log"
n=$(grep -c 'to=<bob@foreign.example>.*status=sent' "$WORK/mkbox.log")
[ "$n" = 3 ] || fail "6: $n of 3 sent into Postern: $(grep 'to=<bob' "$WORK/mkbox.log" | tail -2)"
[ "$(box_count bob Postern)" = "1 3" ] ||
	fail "6: bob's mailboxes named Postern, emails: $(box_count bob Postern), want 1 3"
[ "$(count bob)" = "$b0" ] || fail "6: bob's Inbox went from $b0 to $(count bob)"
n=$(grep -c 'created mailbox Postern in account bob' "$WORK/mkbox.log")
[ "$n" = 1 ] || fail "6: created the mailbox $n times"
audit mkbox

port=$(free_port)
config_token tokenbad "$port" "$WORK/badtoken" yes
start_daemon "$WORK/tokenbad.conf" "$WORK/tokenbad.log" || fail "6: posternd did not start"
send_msgs "$port" 6201 6201 jmap bob@foreign.example
wait_until 60 grep -q 'login was refused (HTTP 401)' "$WORK/tokenbad.log"
grep -q 'login was refused (HTTP 401)' "$WORK/tokenbad.log" ||
	fail "6: a bad token was not refused: $(tail -3 "$WORK/tokenbad.log")"
"$POSTERN" -c "$WORK/tokenbad.conf" queue >"$WORK/q.out" 2>&1
grep -q 'bob@foreign.example' "$WORK/q.out" ||
	fail "6: the message is not queued after the refused login: $(cat "$WORK/q.out")"
stop_clean "$STEP" "$WORK/tokenbad.log"
[ "$(box_count bob Postern)" = "1 3" ] || fail "6: a bad token delivered"
echo "6: bearer token: no mailbox Postern bounced 5.1.1; create_mailbox made it" \
	"once and 3 landed in it, where it cannot be made deferred 4.3.0; a bad token is refused (401), the message stays queued"
exit 0
