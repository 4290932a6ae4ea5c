/*
 * test_resubmit.c - the resubmission index: a message sent again is
 * recognised in the enqueue's own transaction, per recipient, within the
 * window; accounted in the counters, the ledger and verify; pruned; and
 * an old store (schema 3) upgraded on open.
 */
#include "testlib.h"
#include "store_private.h"
#include "claim.h"
#include "ledger.h"
#include "queue.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

TESTLIB_SUITE_DIR("resubmit")

#define HOUR_US (3600ull * 1000000u)
#define WINDOW_US (5 * 24 * HOUR_US)

static struct store *
open_fresh(const char *name, uint64_t window_us)
{
	struct store_settings set = { .resubmit_window_us = window_us };
	struct store *st = NULL;
	char path[512];
	const char *err = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	testlib_rmtree(path);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	return st;
}

/* A message as the ingress hands it over: TRACE (ours) + BODY. */
static struct store_msg
msg(const char *sender, const char *const *rcpts, size_t n,
    const char *trace, const char *body, char *buf, size_t cap,
    struct store_resubmit *res)
{
	snprintf(buf, cap, "%s%s", trace, body);
	return (struct store_msg){ .sender = sender, .rcpts = rcpts,
		.nrcpt = n, .msgid = "<m@home.example>", .body = buf,
		.body_len = strlen(buf), .trace_len = strlen(trace),
		.resub_r = res, .client = "[192.0.2.1]" };
}

static void
counters(struct store *st, struct store_counters *c)
{
	const char *err;

	CU_ASSERT_EQUAL_FATAL(store_counters_get(st, c, &err), STORE_OK);
}

static void
assert_sound(struct store *st)
{
	struct verify_report vr;
	const char *err;

	memset(&vr, 0, sizeof(vr));
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &vr, &err), 0);
}

static int
count_kind(const struct ledger_rec *r, void *arg)
{
	if (r->kind == LEDGER_RESUBMISSION)
		(*(unsigned *)arg)++;
	return 0;
}

static unsigned
resubmission_records(struct store *st)
{
	unsigned n = 0;
	const char *err;

	CU_ASSERT_EQUAL(ledger_foreach(st, 1, count_kind, &n, &err), 0);
	return n;
}

static void
test_resubmit_same_message_once(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct store *st = open_fresh("once", WINDOW_US);
	struct store_resubmit res[1];
	struct store_counters c;
	struct store_msg m;
	char buf[256];
	uint64_t q1, q2, now = store_now_us();
	const char *err;

	m = msg("a@home.example", r1, 1, "Received: one\r\n", "Subject: x\r\n"
		"\r\nhello\r\n", buf, sizeof(buf), res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now, &q1, &err),
			      STORE_OK);
	CU_ASSERT_NOT_EQUAL(q1, 0);
	CU_ASSERT_EQUAL(res[0].qid, 0);
	/* Again, an hour later, with another trace field of ours. */
	m = msg("a@home.example", r1, 1, "Received: two, longer\r\n",
		"Subject: x\r\n\r\nhello\r\n", buf, sizeof(buf), res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + HOUR_US, &q2,
					    &err), STORE_OK);
	CU_ASSERT_EQUAL(q2, 0);
	CU_ASSERT_EQUAL(res[0].qid, q1);
	CU_ASSERT_EQUAL(res[0].idx, 0);
	CU_ASSERT_EQUAL(res[0].first_us, now);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 1);
	CU_ASSERT_EQUAL(c.pending, 1);
	CU_ASSERT_EQUAL(c.resubmitted, 1);
	CU_ASSERT_EQUAL(resubmission_records(st), 1);
	assert_sound(st);
	store_close(&st);
}

static void
test_resubmit_per_recipient(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	static const char *const r3[] = { "c@foreign.example",
		"B@Foreign.Example", "c@foreign.example" };
	struct store *st = open_fresh("rcpt", WINDOW_US);
	struct store_resubmit res[3];
	struct store_counters c;
	struct store_msg m;
	char buf[256];
	uint64_t q1, q2, q3, now = store_now_us();
	const char *err;

	m = msg("a@home.example", r1, 1, "", "body\r\n", buf, sizeof(buf),
		res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now, &q1, &err),
			      STORE_OK);
	/* A retry that adds a recipient (and repeats one): only the new
	 * one is queued. The case of an address does not matter. */
	m = msg("a@home.example", r3, 3, "", "body\r\n", buf, sizeof(buf),
		res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + 1, &q2, &err),
			      STORE_OK);
	CU_ASSERT_NOT_EQUAL(q2, 0);
	CU_ASSERT_NOT_EQUAL(q2, q1);
	CU_ASSERT_EQUAL(res[0].qid, 0);
	CU_ASSERT_EQUAL(res[1].qid, q1);
	CU_ASSERT_EQUAL(res[2].qid, 0);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 2);
	CU_ASSERT_EQUAL(c.resubmitted, 1);
	/* Now all of them again: nothing new. */
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + 2, &q3, &err),
			      STORE_OK);
	CU_ASSERT_EQUAL(q3, 0);
	CU_ASSERT_EQUAL(res[0].qid, q2);
	CU_ASSERT_EQUAL(res[0].idx, 0);
	CU_ASSERT_EQUAL(res[1].qid, q1);
	CU_ASSERT_EQUAL(res[2].qid, q2);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 2);
	CU_ASSERT_EQUAL(c.resubmitted, 3);
	CU_ASSERT_EQUAL(resubmission_records(st), 3);
	assert_sound(st);
	store_close(&st);
}

static void
test_resubmit_no_false_positives(void)
{
	static const char *const rb[] = { "b@foreign.example" };
	static const char *const rc[] = { "c@foreign.example" };
	struct store *st = open_fresh("nofalse", WINDOW_US);
	struct store_msg m[4];
	char b[4][256];
	uint64_t q[4], now = store_now_us();
	struct store_counters c;
	const char *err;

	/* One Message-ID, two bodies; one body, two recipients; one body,
	 * two senders. */
	m[0] = msg("a@home.example", rb, 1, "", "one\r\n", b[0], 256, NULL);
	m[1] = msg("a@home.example", rb, 1, "", "two\r\n", b[1], 256, NULL);
	m[2] = msg("a@home.example", rc, 1, "", "one\r\n", b[2], 256, NULL);
	m[3] = msg("z@home.example", rb, 1, "", "one\r\n", b[3], 256, NULL);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, m, 4, now, q, &err),
			      STORE_OK);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_NOT_EQUAL(q[i], 0);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 4);
	CU_ASSERT_EQUAL(c.resubmitted, 0);
	store_close(&st);
}

static void
test_resubmit_same_batch_makes_one_entry(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct store *st = open_fresh("batch", WINDOW_US);
	struct store_resubmit res[8][1];
	struct store_msg m[8];
	char b[8][128];
	uint64_t q[8];
	struct store_counters c;
	size_t queued = 0;
	const char *err;

	for (int i = 0; i < 8; i++)
		m[i] = msg("a@home.example", r1, 1, "", "same\r\n", b[i], 128,
			   res[i]);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, m, 8, store_now_us(), q,
					    &err), STORE_OK);
	for (int i = 0; i < 8; i++) {
		queued += q[i] != 0;
		if (i > 0)
			CU_ASSERT_EQUAL(res[i][0].qid, q[0]);
	}
	CU_ASSERT_EQUAL(queued, 1);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 1);
	CU_ASSERT_EQUAL(c.resubmitted, 7);
	assert_sound(st);
	store_close(&st);
}

/* Threads that enqueue the same message at the same moment, each its
 * own store_enqueue (the group commit may or may not join them). */
struct racer {
	struct store *st;
	pthread_barrier_t *go;
	uint64_t qid;
};

static void *
race(void *arg)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct racer *r = arg;
	char buf[128];
	struct store_msg m = msg("a@home.example", r1, 1, "", "raced\r\n",
				 buf, sizeof(buf), NULL);
	const char *err;

	pthread_barrier_wait(r->go);
	if (store_enqueue(r->st, &m, 1, store_now_us(), &r->qid, &err) !=
	    STORE_OK)
		r->qid = UINT64_MAX;
	return NULL;
}

static void
test_resubmit_threads_race_to_one_entry(void)
{
	struct store_settings set = { .resubmit_window_us = WINDOW_US,
				      .group_wait_us = 2000 };
	struct store *st = NULL;
	struct racer r[20];
	pthread_t t[20];
	pthread_barrier_t go;
	struct store_counters c;
	char path[512];
	const char *err;
	size_t queued = 0;

	snprintf(path, sizeof(path), "%s/threads", dir);
	testlib_rmtree(path);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	pthread_barrier_init(&go, NULL, 20);
	for (int i = 0; i < 20; i++) {
		r[i] = (struct racer){ st, &go, 0 };
		pthread_create(&t[i], NULL, race, &r[i]);
	}
	for (int i = 0; i < 20; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT_NOT_EQUAL(r[i].qid, UINT64_MAX);
		queued += r[i].qid != 0;
	}
	pthread_barrier_destroy(&go);
	CU_ASSERT_EQUAL(queued, 1);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 1);
	CU_ASSERT_EQUAL(c.resubmitted, 19);
	assert_sound(st);
	store_close(&st);
}

static void
test_resubmit_window_and_prune(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct store *st = open_fresh("window", HOUR_US);
	struct store_resubmit res[1];
	struct store_counters c;
	struct store_msg m;
	char buf[128];
	uint64_t q1, q2, q3, entries, bytes, now = store_now_us();
	unsigned pruned;
	const char *err;

	m = msg("a@home.example", r1, 1, "", "late\r\n", buf, sizeof(buf),
		res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now, &q1, &err),
			      STORE_OK);
	/* Sent again after the window, before any prune: a new message. */
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + HOUR_US + 1, &q2,
					    &err), STORE_OK);
	CU_ASSERT_NOT_EQUAL(q2, 0);
	CU_ASSERT_EQUAL(res[0].qid, 0);
	/* Within the window of that one: recognised as q2. */
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + HOUR_US + 2, &q3,
					    &err), STORE_OK);
	CU_ASSERT_EQUAL(q3, 0);
	CU_ASSERT_EQUAL(res[0].qid, q2);
	CU_ASSERT_EQUAL(store_resubmit_stat(st, &entries, &bytes, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(entries, 1);
	/* q1's sequence record is past the window; the digest now names q2
	 * and stays. */
	CU_ASSERT_EQUAL(store_resubmit_prune(st, now + HOUR_US + 3, 10,
					     &pruned, &err), STORE_OK);
	CU_ASSERT_EQUAL(pruned, 1);
	CU_ASSERT_EQUAL(store_resubmit_stat(st, &entries, &bytes, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(entries, 1);
	/* Past q2's window too: empty, in bounded steps. */
	CU_ASSERT_EQUAL(store_resubmit_prune(st, now + 3 * HOUR_US, 10,
					     &pruned, &err), STORE_OK);
	CU_ASSERT_EQUAL(pruned, 1);
	CU_ASSERT_EQUAL(store_resubmit_prune(st, now + 3 * HOUR_US, 10,
					     &pruned, &err), STORE_OK);
	CU_ASSERT_EQUAL(pruned, 0);
	CU_ASSERT_EQUAL(store_resubmit_stat(st, &entries, &bytes, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(entries, 0);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.accepted, 2);
	CU_ASSERT_EQUAL(c.resubmitted, 1);
	assert_sound(st);
	store_close(&st);
}

static void
test_resubmit_prune_is_bounded(void)
{
	const char *rcpts[1];
	struct store *st = open_fresh("bounded", HOUR_US);
	char addr[64], buf[64];
	struct store_msg m;
	uint64_t q, entries, bytes, now = store_now_us();
	unsigned pruned, txns = 0;
	const char *err;

	for (int i = 0; i < 250; i++) {
		snprintf(addr, sizeof(addr), "r%d@foreign.example", i);
		rcpts[0] = addr;
		m = msg("a@home.example", rcpts, 1, "", "x\r\n", buf,
			sizeof(buf), NULL);
		CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + (uint64_t)i,
						    &q, &err), STORE_OK);
	}
	do {
		CU_ASSERT_EQUAL_FATAL(store_resubmit_prune(st, now + 2 * HOUR_US,
							   100, &pruned, &err),
				      STORE_OK);
		txns++;
	} while (pruned == 100);
	CU_ASSERT_EQUAL(txns, 3);
	CU_ASSERT_EQUAL(pruned, 50);
	CU_ASSERT_EQUAL(store_resubmit_stat(st, &entries, &bytes, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(entries, 0);
	store_close(&st);
}

static void
test_resubmit_off(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct store *st = open_fresh("off", 0);
	struct store_resubmit res[1];
	struct store_msg m;
	char buf[128];
	uint64_t q1, q2, entries, bytes;
	const char *err;

	m = msg("a@home.example", r1, 1, "", "off\r\n", buf, sizeof(buf),
		res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, store_now_us(), &q1,
					    &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, store_now_us(), &q2,
					    &err), STORE_OK);
	CU_ASSERT_NOT_EQUAL(q2, 0);
	CU_ASSERT_NOT_EQUAL(q1, q2);
	CU_ASSERT_EQUAL(store_resubmit_stat(st, &entries, &bytes, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(entries, 0);
	store_close(&st);
}

/* A message delivered, then sent again: recognised all the same (the
 * index outlives the queue), and postern show's rows name it. */
static int
info_fn(const struct store_resubmit_info *ri, void *arg)
{
	*(struct store_resubmit_info *)arg = *ri;
	return 0;
}

static void
test_resubmit_after_delivery(void)
{
	static const char *const r1[] = { "b@foreign.example" };
	struct store *st = open_fresh("delivered", WINDOW_US);
	struct claim_item it[4];
	struct claim_outcome out;
	struct store_resubmit res[1];
	struct store_resubmit_info ri = { 0 };
	struct store_counters c;
	struct store_msg m;
	char buf[128];
	unsigned char sha[32] = { 0 };
	uint64_t q1, q2, due, now = store_now_us();
	size_t n = 0;
	const char *err;

	m = msg("a@home.example", r1, 1, "", "done\r\n", buf, sizeof(buf),
		res);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now, &q1, &err),
			      STORE_OK);
	CU_ASSERT_EQUAL_FATAL(claim_batch(st, 1, 4, 60, now, it, &n, &due,
					  &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	memset(&out, 0, sizeof(out));
	out.qid = it[0].qid;
	out.idx = it[0].idx;
	out.token = it[0].token;
	out.result = CLAIM_DELIVERED;
	out.reply = "ok";
	memcpy(out.body_sha, sha, 32);
	CU_ASSERT_EQUAL_FATAL(claim_outcome(st, &out, 1, now + 1, &err),
			      STORE_OK);
	CU_ASSERT_EQUAL(out.applied, 1);
	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, now + 2, &q2, &err),
			      STORE_OK);
	CU_ASSERT_EQUAL(q2, 0);
	CU_ASSERT_EQUAL(res[0].qid, q1);
	CU_ASSERT_EQUAL(store_resubmit_foreach_qid(st, q1, info_fn, &ri,
						   &err), STORE_OK);
	CU_ASSERT_EQUAL(ri.count, 1);
	CU_ASSERT_EQUAL(ri.first_us, now);
	CU_ASSERT_EQUAL(ri.last_us, now + 2);
	counters(st, &c);
	CU_ASSERT_EQUAL(c.delivered, 1);
	CU_ASSERT_EQUAL(c.pending, 0);
	CU_ASSERT_EQUAL(c.resubmitted, 1);
	/* postern stats: one outcome (the delivery); the resubmission
	 * record is no outcome. */
	{
		struct queue_stats qs;

		CU_ASSERT_EQUAL_FATAL(queue_stats(st, now + 3, &qs, &err),
				      STORE_OK);
		CU_ASSERT_EQUAL(qs.ledger_records, 2);
		CU_ASSERT_EQUAL(qs.done_minute, 1);
		CU_ASSERT_EQUAL(qs.done_hour[0], 1);
	}
	/* Both ledger records carry the digest of the bytes as received:
	 * the same that any other instance would record. */
	{
		struct ledger_rec lr;
		unsigned char want[32];
		unsigned int len = 32;

		CU_ASSERT_EQUAL_FATAL(EVP_Digest("done\r\n", 6, want, &len,
						 EVP_sha256(), NULL), 1);
		CU_ASSERT_EQUAL_FATAL(ledger_get(st, 1, &lr, &err), 1);
		CU_ASSERT_EQUAL(lr.kind, LEDGER_DELIVERED);
		CU_ASSERT_EQUAL(memcmp(lr.received_sha, want, 32), 0);
		CU_ASSERT_EQUAL_FATAL(ledger_get(st, 2, &lr, &err), 1);
		CU_ASSERT_EQUAL(lr.kind, LEDGER_RESUBMISSION);
		CU_ASSERT_EQUAL(memcmp(lr.received_sha, want, 32), 0);
	}
	assert_sound(st);
	store_close(&st);
}

static CU_TestInfo tests[] = {
	{ "the same message once", test_resubmit_same_message_once },
	{ "per recipient", test_resubmit_per_recipient },
	{ "no false positives", test_resubmit_no_false_positives },
	{ "one batch makes one entry",
	  test_resubmit_same_batch_makes_one_entry },
	{ "20 threads race to one entry",
	  test_resubmit_threads_race_to_one_entry },
	{ "window and prune", test_resubmit_window_and_prune },
	{ "prune is bounded", test_resubmit_prune_is_bounded },
	{ "off", test_resubmit_off },
	{ "after delivery", test_resubmit_after_delivery },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "resubmit", suite_init, suite_clean, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
