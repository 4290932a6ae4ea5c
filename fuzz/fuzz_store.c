/*
 * fuzz_store.c - the decoders of stored records: recipients and messages
 * (src/store.c), ledger (src/ledger.c) and history (store.c), which read
 * whatever bytes a damaged or foreign store holds.
 *
 * Input: byte 0 picks the decoder, the rest is the value. Oracles: no
 * sanitizer report; a record that decodes re-encodes within the record's
 * maximum size and decodes again to the same fields (strings compare as
 * C strings: a stored NUL ends them).
 */
#include "fuzz.h"
#include "store_private.h"

#include <string.h>

static void
rcpt(const MDB_val *v)
{
	struct rcpt_rec a, b;
	unsigned char buf[RCPT_REC_MAX];
	MDB_val w = { 0, buf };

	if (store_rcpt_decode(v, &a) < 0)
		return;
	w.mv_size = store_rcpt_encode(&a, buf, sizeof(buf));
	FUZZ_CHECK(w.mv_size <= v->mv_size);
	FUZZ_CHECK(store_rcpt_decode(&w, &b) == 0);
	FUZZ_CHECK(a.state == b.state && a.flags == b.flags &&
		   a.attempts == b.attempts &&
		   a.next_try_us == b.next_try_us && a.token == b.token &&
		   a.owner_instance == b.owner_instance &&
		   a.owner_worker == b.owner_worker &&
		   a.lease_until_us == b.lease_until_us &&
		   strcmp(a.rcpt, b.rcpt) == 0 &&
		   strcmp(a.reply, b.reply) == 0);
}

static void
msg(const MDB_val *v)
{
	struct msg_rec a, b;
	unsigned char buf[MSG_REC_MAX];
	MDB_val w = { 0, buf };

	if (store_msg_decode(v, &a) < 0)
		return;
	w.mv_size = store_msg_encode(&a, buf, sizeof(buf));
	/* A version 1 record comes back as version 2: 32 bytes more. */
	FUZZ_CHECK(w.mv_size <= v->mv_size +
		   (((const unsigned char *)v->mv_data)[0] == 1 ? 32 : 0));
	FUZZ_CHECK(store_msg_decode(&w, &b) == 0);
	FUZZ_CHECK(a.accepted_us == b.accepted_us && a.nrcpt == b.nrcpt &&
		   a.remaining == b.remaining && a.body_len == b.body_len &&
		   strcmp(a.sender, b.sender) == 0 &&
		   strcmp(a.msgid, b.msgid) == 0 &&
		   memcmp(a.received_sha, b.received_sha, 32) == 0);
}

static void
ledger(const MDB_val *v)
{
	struct ledger_rec a, b;
	unsigned char buf[LEDGER_REC_MAX];
	MDB_val w = { 0, buf };

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	if (ledger_rec_decode(v, &a) < 0)
		return;
	w.mv_size = ledger_rec_encode(&a, buf);
	FUZZ_CHECK(w.mv_size <= v->mv_size +
		   (((const unsigned char *)v->mv_data)[0] == 1 ? 32 : 0));
	FUZZ_CHECK(ledger_rec_decode(&w, &b) == 0);
	FUZZ_CHECK(a.kind == b.kind && a.qid == b.qid && a.idx == b.idx &&
		   a.accepted_us == b.accepted_us && a.done_us == b.done_us &&
		   memcmp(a.body_sha, b.body_sha, 32) == 0 &&
		   memcmp(a.prev_hash, b.prev_hash, 32) == 0 &&
		   strcmp(a.rcpt, b.rcpt) == 0 &&
		   strcmp(a.msgid, b.msgid) == 0 &&
		   strcmp(a.reply, b.reply) == 0 &&
		   memcmp(a.received_sha, b.received_sha, 32) == 0);
}

static void
history(const MDB_val *v)
{
	char note[STORE_REPLY_MAX + 1];
	uint8_t from, to;

	if (store_history_decode(v, &from, &to, note) < 0)
		return;
	FUZZ_CHECK(strlen(note) <= STORE_REPLY_MAX);
	FUZZ_CHECK(v->mv_size >= 5);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MDB_val v;
	unsigned char *copy;

	if (size < 1)
		return 0;
	/* An exact-size copy, so that ASan sees a read past the value. */
	copy = malloc(size - 1 > 0 ? size - 1 : 1);
	if (copy == NULL)
		abort();
	if (size > 1)
		memcpy(copy, data + 1, size - 1);
	v.mv_data = copy;
	v.mv_size = size - 1;
	switch (data[0] & 3) {
	case 0: rcpt(&v); break;
	case 1: msg(&v); break;
	case 2: ledger(&v); break;
	default: history(&v); break;
	}
	free(copy);
	return 0;
}
