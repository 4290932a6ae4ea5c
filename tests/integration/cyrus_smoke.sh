#!/bin/bash
# cyrus_smoke.sh - the private Cyrus 3.6 JMAP peer (cyrus.sh) works as the
# JMAP driver (issue #19) will use it, with curl alone:
#  1. it starts (the time it took is printed) and its JMAP session
#     (/.well-known/jmap -> /jmap/) lists alice and bob for the delegate
#     postern;
#  2. a message with "X-Postern-Delivery: test-1" uploaded as a blob to
#     alice's account and Email/imported into her Inbox is found by
#     Email/query {"header": ["X-Postern-Delivery", "test-1"]}: exactly
#     one; blobId and Email id are the SHA-1 of the bytes;
#  3. importing the same bytes again gives alreadyExists (still one);
#     a second copy that differs in a trace header makes two;
#  4. the header filter is a substring match ("test-1" finds "test-10"),
#     the value in Email/get header:...:asText is exact; bob's Inbox
#     holds nothing; alice's own login sees the same, a bad password
#     gets 401; nothing went to sendmail.
# In make check. Needs root and contrib/cyrus-test-peer.sh's
# packages (else exit 77). On a 2-core Debian 12 machine: start about
# 0.85 s, the whole script about 4.5 s, stop about 0.1 s.
. "$(dirname "$0")/common.sh"
. "$HERE/cyrus.sh"

USING='"using":["urn:ietf:params:jmap:core","urn:ietf:params:jmap:mail"]'
AUTH=(-u "postern:masterpw")

# jget EXPR [ARGS...]: evaluate EXPR over the JSON on stdin (as d; ARGS in
# sys.argv[2:]); print it.
jget() {
	"$PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$@"
}

# call NAME JSON: POST to the API as postern; the reply in $WORK/NAME.json.
call() {
	cyrus_jmap "$CYRUS_USER" "$CYRUS_PASS" "$2" >"$WORK/$1.json" ||
		fail "$1: JMAP POST failed: $(cat "$WORK/$1.json")"
	echo "$1: $(cat "$WORK/$1.json")"
}

# query ACCOUNT VALUE: Email/query for X-Postern-Delivery VALUE; sets IDS
# (the ids, space-separated) and N (how many).
query() {
	call query '{'"$USING"',"methodCalls":[["Email/query",{"accountId":"'"$1"'","filter":{"header":["X-Postern-Delivery","'"$2"'"]}},"q"]]}'
	IDS=$(jget '" ".join(d["methodResponses"][0][1]["ids"]) if d["methodResponses"][0][0] == "Email/query" else sys.exit(1)' \
		<"$WORK/query.json") || fail "not an Email/query reply"
	N=$(wc -w <<<"$IDS")
}

# upload ACCOUNT FILE: sets BLOB; notes whether it is G + sha1(FILE).
upload() {
	local url=$CYRUS_JMAP_URL${UPLOAD_URL/\{accountId\}/$1} sha
	curl -sf -m 30 "${AUTH[@]}" -H 'Content-Type: message/rfc822' \
		--data-binary "@$2" "$url" >"$WORK/upload.json" ||
		fail "upload of $2 to $url failed"
	echo "upload $2: $(cat "$WORK/upload.json")"
	BLOB=$(jget 'd["blobId"]' <"$WORK/upload.json") || fail "no blobId"
	sha=$(sha1sum <"$2" | cut -c1-40)
	[ "$BLOB" = "G$sha" ] && echo "  blobId = G + sha1 of the bytes"
	return 0
}

# import ACCOUNT BLOB MAILBOX: the Email/import reply in $WORK/import.json.
import() {
	call import '{'"$USING"',"methodCalls":[["Email/import",{"accountId":"'"$1"'","emails":{"e1":{"blobId":"'"$2"'","mailboxIds":{"'"$3"'":true},"keywords":{}}}},"i"]]}'
}

# --- 1. start, session
cyrus_start "$WORK/cyrus" alice bob || fail "cyrus did not start"
echo "cyrus started in $CYRUS_START_MS ms (JMAP $CYRUS_JMAP_URL, IMAP port $CYRUS_IMAP_PORT)"

code=$(curl -s -m 30 -o /dev/null -w '%{http_code} %{redirect_url}' "${AUTH[@]}" \
	"$CYRUS_JMAP_URL/.well-known/jmap")
echo "GET /.well-known/jmap: $code"
curl -sf -m 30 -L "${AUTH[@]}" "$CYRUS_JMAP_URL/.well-known/jmap" >"$WORK/session.json" ||
	fail "GET /.well-known/jmap (following redirects) failed"
echo "session (first 400 bytes): $(head -c 400 "$WORK/session.json")..."
jget '"urn:ietf:params:jmap:mail" in d["capabilities"] and d["apiUrl"] == "/jmap/" and "alice" in d["accounts"] and "bob" in d["accounts"] or sys.exit(1)' \
	<"$WORK/session.json" >/dev/null ||
	fail "session lacks the mail capability, apiUrl /jmap/ or the accounts alice and bob"
UPLOAD_URL=$(jget 'd["uploadUrl"]' <"$WORK/session.json")

call inbox '{'"$USING"',"methodCalls":[["Mailbox/query",{"accountId":"alice","filter":{"role":"inbox"}},"m"]]}'
INBOX=$(jget 'd["methodResponses"][0][1]["ids"][0]' <"$WORK/inbox.json") ||
	fail "no Inbox for alice"
query alice test-1
[ "$N" = 0 ] || fail "alice's Inbox is not empty at start"

# --- 2. upload, import, query
msg() { # msg FILE DELIVERY [extra first header line]
	{
		[ -n "${3:-}" ] && printf '%s\r\n' "$3"
		printf 'From: <sender@foreign.example>\r\n'
		printf 'To: <alice@test.example>\r\n'
		printf 'Subject: cyrus smoke\r\n'
		printf 'Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n'
		printf 'Message-ID: <smoke-%s@postern.test>\r\n' "$2"
		printf 'X-Postern-Delivery: %s\r\n' "$2"
		printf '\r\nhello\r\n'
	} >"$1"
}
msg "$WORK/m1.eml" test-1
upload alice "$WORK/m1.eml"
BLOB1=$BLOB
t0=$(cyrus_now_ms)
import alice "$BLOB1" "$INBOX"
ID1=$(jget 'd["methodResponses"][0][1]["created"]["e1"]["id"]' <"$WORK/import.json") ||
	fail "Email/import created nothing"
query alice test-1
echo "import + query took $(($(cyrus_now_ms) - t0)) ms"
[ "$IDS" = "$ID1" ] || fail "Email/query for test-1 gave [$IDS], want exactly [$ID1]"
[ "$ID1" = "M$(sha1sum <"$WORK/m1.eml" | cut -c1-24)" ] &&
	echo "  Email id = M + the first 24 hex digits of the sha1"
echo "OK: Email/query finds exactly one: $IDS"

# --- 3. the same bytes again; then a second copy
import alice "$BLOB1" "$INBOX"
jget 'd["methodResponses"][0][1]["notCreated"]["e1"]["type"] == "alreadyExists" and d["methodResponses"][0][1]["notCreated"]["e1"]["existingId"] == sys.argv[2] or sys.exit(1)' \
	"$ID1" <"$WORK/import.json" >/dev/null 2>&1 ||
	fail "importing the same bytes again did not give alreadyExists $ID1"
query alice test-1
[ "$N" = 1 ] || fail "the same bytes twice made $N emails"
echo "OK: the same bytes again: alreadyExists, still one"

msg "$WORK/m2.eml" test-1 \
	'Received: from retry by postern.test; Fri, 04 Dec 2026 12:00:01 +0000'
upload alice "$WORK/m2.eml"
import alice "$BLOB" "$INBOX"
ID2=$(jget 'd["methodResponses"][0][1]["created"]["e1"]["id"]' <"$WORK/import.json") ||
	fail "Email/import of the second copy created nothing"
query alice test-1
[ "$N" = 2 ] || fail "Email/query for test-1 found $N after a second copy, want 2"
echo "OK: a second copy ($ID2): Email/query finds two"

# --- 4. substring match, other account, own login, bad password
msg "$WORK/m3.eml" test-10
upload alice "$WORK/m3.eml"
import alice "$BLOB" "$INBOX"
query alice test-1
[ "$N" = 3 ] || fail "Email/query for test-1 found $N with a test-10 beside, want 3 (substring match)"
call exact '{'"$USING"',"methodCalls":[["Email/query",{"accountId":"alice","filter":{"header":["X-Postern-Delivery","test-1"]}},"q"],["Email/get",{"accountId":"alice","#ids":{"resultOf":"q","name":"Email/query","path":"/ids"},"properties":["header:X-Postern-Delivery:asText"]},"g"]]}'
n=$(jget 'sum(1 for e in d["methodResponses"][1][1]["list"] if e["header:X-Postern-Delivery:asText"] == "test-1")' <"$WORK/exact.json")
[ "$n" = 2 ] || fail "Email/get: $n emails with X-Postern-Delivery exactly test-1, want 2"
echo "OK: the filter is a substring match (test-1 finds test-10: 3); exactly test-1 by Email/get: 2"

query bob test-1
[ "$N" = 0 ] || fail "bob's Inbox has alice's mail"
n=$(cyrus_inbox_count alice) && [ "$n" = 3 ] ||
	fail "alice's Inbox holds ${n:-?} emails, want 3"
own=$(cyrus_jmap alice pw '{'"$USING"',"methodCalls":[["Email/query",{"accountId":"alice","filter":{"header":["X-Postern-Delivery","test-1"]}},"q"]]}' |
	jget 'len(d["methodResponses"][0][1]["ids"])') || fail "alice's own login failed"
[ "$own" = 3 ] || fail "alice's own login sees $own, want 3"
code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -u alice:wrong "$CYRUS_API_URL")
[ "$code" = 401 ] || fail "a bad password got HTTP $code, want 401"
echo "OK: bob has none; alice's Inbox holds 3; her own login sees them; a bad password gets 401"
# httpd runs "sendmail -bs" (the stub) for each session resource: EHLO
# and QUIT only, no message.
if grep -v -i -E '^(sendmail -bs|> (EHLO|HELO|QUIT)\b)' "$WORK/cyrus/sendmail.log" 2>/dev/null; then
	fail "cyrus tried to send mail through the sendmail stub (above)"
fi
echo "OK: sendmail stub: $(grep -c '^sendmail -bs' "$WORK/cyrus/sendmail.log" 2>/dev/null) EHLO probes, no message"

t0=$(cyrus_now_ms)
cyrus_stop
echo "cyrus stopped in $(($(cyrus_now_ms) - t0)) ms"
left=$(pgrep -u cyrus -a 2>/dev/null | grep -F "$WORK/cyrus/" || true)
[ -z "$left" ] || fail "cyrus processes left: $left"
echo "PASS: cyrus JMAP smoke test"
