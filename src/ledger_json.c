/*
 * ledger_json.c - ledger records as JSON (ledger_json.h).
 *
 * Owns:    nothing.
 * Threads: any.
 */
#include "ledger_json.h"
#include "lib/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

json_t *
json_text(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j != NULL)
		return j;
	copy = xstrdup(s);
	for (unsigned char *p = (unsigned char *)copy; *p != '\0'; p++)
		if (*p > 0x7e)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

void
fmt_iso(uint64_t us, char *buf, size_t cap)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (us == 0 || gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, cap, "%s", "");
		return;
	}
	strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *
ledger_json(const struct ledger_rec *r)
{
	char q[STORE_QID_STRLEN], t1[64], t2[64], h[65];
	json_t *o = json_object();

	fmt_iso(r->accepted_us, t1, sizeof(t1));
	fmt_iso(r->done_us, t2, sizeof(t2));
	json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
	json_object_set_new(o, "kind", json_text(ledger_kind_name(r->kind)));
	json_object_set_new(o, "queue_id",
			    json_text(store_qid_str(r->qid, q)));
	json_object_set_new(o, "recipient_index", json_integer(r->idx));
	json_object_set_new(o, "recipient", json_text(r->rcpt));
	json_object_set_new(o, "message_id", json_text(r->msgid));
	json_object_set_new(o, "accepted", json_text(t1));
	json_object_set_new(o, "done", json_text(t2));
	json_object_set_new(o, "accepted_us",
			    json_integer((json_int_t)r->accepted_us));
	json_object_set_new(o, "done_us",
			    json_integer((json_int_t)r->done_us));
	json_object_set_new(o, "body_sha256",
			    json_text(ledger_hex(r->body_sha, h)));
	json_object_set_new(o, "received_sha256",
			    json_text(ledger_hex(r->received_sha, h)));
	json_object_set_new(o, "reply", json_text(r->reply));
	return o;
}

