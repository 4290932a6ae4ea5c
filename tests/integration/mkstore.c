/*
 * mkstore.c - build a store with entries in every state, for
 * postern_tool.sh (a stopped store: nothing runs on it afterwards).
 *
 * usage: mkstore DIR
 * Creates the store in DIR and prints one line "KIND QUEUE-ID" per
 * message, KIND one of pending, pending2 (two recipients), deferred,
 * held, dead, indoubt, expired, sending (expired while being sent),
 * delivered, bounced, partly (one recipient delivered, one deferred).
 * The second delivered message's ledger record has the reply
 * "250 2.0.0 tamper-target", found in data.mdb by the test's tamper step.
 * Exit 0, or 1 with a message on stderr.
 */
#include "claim.h"
#include "ledger.h"
#include "store_private.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000ull

static struct store *st;
static const char *err = "?";

static void
die(const char *what)
{
	fprintf(stderr, "mkstore: %s: %s\n", what, err);
	exit(1);
}

static uint64_t
enqueue(const char *kind, const char *rcpt0, const char *rcpt1,
	uint64_t at_us)
{
	const char *rcpts[2] = { rcpt0, rcpt1 };
	struct store_msg m = { .sender = "sender@home.example",
			       .rcpts = rcpts, .nrcpt = rcpt1 != NULL ? 2 : 1,
			       .msgid = "<mkstore@home.example>",
			       .body = "Subject: mkstore\r\nX-Kind: test\r\n"
				       "\r\nbody line\r\n" };
	uint64_t qid;

	m.body_len = strlen(m.body);
	if (store_enqueue(st, &m, 1, at_us, &qid, &err) != STORE_OK)
		die("enqueue");
	printf("%s %016" PRIX64 "\n", kind, qid);
	return qid;
}

/* Claim every due entry (the caller makes sure only the intended ones
 * are due); returns how many. */
static size_t
claim(struct claim_item *it, size_t max, unsigned lease, uint64_t now)
{
	uint64_t next;
	size_t n;

	if (claim_batch(st, 1, max, lease, now, it, &n, &next, &err) !=
	    STORE_OK)
		die("claim");
	return n;
}

static void
outcome(const struct claim_item *it, enum claim_result res,
	const char *reply, uint64_t now)
{
	struct claim_outcome o;

	memset(&o, 0, sizeof(o));
	o.qid = it->qid;
	o.idx = it->idx;
	o.token = it->token;
	o.result = res;
	o.reply = reply;
	if (claim_outcome(st, &o, 1, now, &err) != STORE_OK || !o.applied)
		die("outcome");
}

struct force {
	uint64_t qid;
	uint8_t flags;
	uint32_t attempts;
};

static int
dead_txn(struct store_wtx *w, void *arg)
{
	struct force *f = arg;
	struct rcpt_rec rr;
	int rc;

	if ((rc = claim_rcpt_get_txn(w, f->qid, 0, &rr)) != 0)
		return rc;
	rr.flags = f->flags;
	rr.attempts = f->attempts;
	return claim_move_txn(w, f->qid, 0, &rr, ST_HELD, 0);
}

static void
hold(uint64_t qid, uint8_t flags, uint32_t attempts)
{
	struct force f = { qid, flags, attempts };

	if (store_write(st, dead_txn, &f, &err) != STORE_OK)
		die("hold");
}

int
main(int argc, char **argv)
{
	struct store_settings set = { 0 };
	struct claim_item it[4];
	uint64_t now = store_now_us(), q;
	char rcpt[64];

	if (argc != 2) {
		fprintf(stderr, "usage: mkstore DIR\n");
		return 2;
	}
	if (store_open(argv[1], &set, &st, &err) != STORE_OK)
		die(argv[1]);
	/* Each step claims what is due at that moment, so it enqueues only
	 * the messages it claims; pending ones come last. */
	enqueue("delivered", "d1@done.example", NULL, now - 30 * SEC);
	enqueue("delivered", "d2@done.example", NULL, now - 30 * SEC);
	enqueue("bounced", "b1@done.example", NULL, now - 30 * SEC);
	if (claim(it, 4, 60, now - 20 * SEC) != 3)
		die("claim the terminal ones");
	outcome(&it[0], CLAIM_DELIVERED, "250 2.0.0 ok", now - 20 * SEC);
	outcome(&it[1], CLAIM_DELIVERED, "250 2.0.0 tamper-target",
		now - 10 * SEC);
	outcome(&it[2], CLAIM_PERMFAIL, "550 5.1.1 no such user", now - SEC);
	enqueue("partly", "p1@partly.example", "p2@partly.example", now);
	if (claim(it, 4, 60, now) != 2)
		die("claim partly");
	outcome(&it[0], CLAIM_DELIVERED, "250 2.0.0 ok", now);
	outcome(&it[1], CLAIM_TEMPFAIL, "451 4.3.0 try later", now);
	enqueue("deferred", "def@deferred.example", NULL, now);
	claim(it, 1, 60, now);
	outcome(&it[0], CLAIM_TEMPFAIL, "451 4.3.0 try later", now);
	for (int i = 1; i <= 3; i++) {
		snprintf(rcpt, sizeof(rcpt), "doubt%d@indoubt.example", i);
		enqueue("indoubt", rcpt, NULL, now);
		claim(it, 1, 60, now);
		if (claim_mark_sending(st, it, 1, NULL, &err) != STORE_OK)
			die("mark sending");
		outcome(&it[0], CLAIM_UNKNOWN, "connection lost after the dot",
			now);
	}
	enqueue("expired", "exp@active.example", NULL, now - 200 * SEC);
	claim(it, 1, 10, now - 100 * SEC);
	enqueue("sending", "snd@active.example", NULL, now - 200 * SEC);
	claim(it, 1, 10, now - 100 * SEC);
	if (claim_mark_sending(st, it, 1, NULL, &err) != STORE_OK)
		die("mark sending");
	q = enqueue("held", "held@held.example", NULL, now);
	hold(q, 0, 1);
	q = enqueue("dead", "dead@held.example", NULL, now);
	hold(q, RCPT_FLAG_DEAD, 7);
	enqueue("pending", "pend@pending.example", NULL, now - 3 * 3600 * SEC);
	enqueue("pending2", "a@two.example", "b@two.example", now);
	store_close(&st);
	return 0;
}
