/*
 * test_queue.c - the operator's view and changes (queue.c): the filters of
 * queue_foreach, every operation against an entry in every state (and
 * against queue ids that are terminal or unknown), dry runs, entries of a
 * live owner, the ledger and history records the changes write, and the
 * history drop when a message completes.
 */
#include "testlib.h"
#include "corehelp.h"
#include "queue.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC 1000000ull
#define WHO "tester"
#define WHY "because"

TESTLIB_SUITE_DIR("queue")
static struct store *st;
static struct store_settings set = { .backoff_min = 300,
				     .backoff_max = 4000 };

/* The zoo: one single-recipient message per kind of entry. */
enum kind {
	K_PENDING, K_LIVE, K_EXPIRED, K_SENDING, K_DEFERRED, K_HELD, K_DEAD,
	K_INDOUBT, K_DONE, K_UNKNOWN, K_N
};
static const char *const kname[K_N] = {
	"pending", "live", "expired", "sending", "deferred", "held", "dead",
	"indoubt", "done", "unknown",
};
static uint64_t zq[K_N];	/* queue id of each kind */
static uint64_t zdone_seq;	/* K_DONE's terminal ledger record */

static void
fresh(const char *name)
{
	corehelp_fresh(&st, dir, name, &set);
}

static uint64_t
enqueue1(const char *sender, const char *rcpt, uint64_t at_us)
{
	const char *rcpts[1] = { rcpt };
	struct store_msg m = { .sender = sender, .rcpts = rcpts, .nrcpt = 1,
			       .msgid = "<zoo@send.example>",
			       .body = "Subject: zoo\r\n\r\nbody\r\n",
			       .body_len = 23 };
	uint64_t qid = 0;
	const char *err;

	CU_ASSERT_EQUAL_FATAL(store_enqueue(st, &m, 1, at_us, &qid, &err),
			      STORE_OK);
	return qid;
}

static void
claim1(uint32_t worker, unsigned lease, uint64_t now, struct claim_item *it)
{
	size_t n;
	uint64_t next;
	const char *err;

	CU_ASSERT_EQUAL_FATAL(claim_batch(st, worker, 1, lease, now, it, &n,
					  &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
}

static void
outcome1(const struct claim_item *it, enum claim_result res,
	 const char *reply, uint64_t now)
{
	struct claim_outcome o;
	const char *err;

	memset(&o, 0, sizeof(o));
	o.qid = it->qid;
	o.idx = it->idx;
	o.token = it->token;
	o.result = res;
	o.reply = reply;
	CU_ASSERT_EQUAL_FATAL(claim_outcome(st, &o, 1, now, &err), STORE_OK);
	CU_ASSERT_EQUAL(o.applied, 1);
}

/* Put entry (qid, 0) into a state directly, through the store internals
 * (a dead letter has no other way in yet). */
struct force {
	uint64_t qid;
	enum store_state to;
	uint8_t flags;
	uint32_t attempts;
};

static int
force_txn(struct store_wtx *w, void *arg)
{
	struct force *f = arg;
	struct rcpt_rec rr;
	int rc;

	if ((rc = claim_rcpt_get_txn(w, f->qid, 0, &rr)) != 0)
		return rc;
	rr.flags = f->flags;
	rr.attempts = f->attempts;
	return claim_move_txn(w, f->qid, 0, &rr, f->to, 0);
}

static void
force(uint64_t qid, enum store_state to, uint8_t flags, uint32_t attempts)
{
	struct force f = { qid, to, flags, attempts };
	const char *err;

	CU_ASSERT_EQUAL_FATAL(store_write(st, force_txn, &f, &err), STORE_OK);
}

static int
last_seq_fn(const struct ledger_rec *rec, void *arg)
{
	*(uint64_t *)arg = rec->seq;
	return 0;
}

/* A fresh store holding the zoo. Claims are made while the entry to claim
 * is the only one due, so each claim takes the intended entry. */
static void
zoo(const char *name)
{
	struct claim_item it;
	uint64_t now = store_now_us();
	const char *err;

	fresh(name);
	zq[K_LIVE] = enqueue1("s@send.example", "live@live.example", now);
	claim1(1, 3600, now, &it);
	zq[K_EXPIRED] = enqueue1("s@send.example", "expired@expired.example",
				 now - 200 * SEC);
	claim1(2, 10, now - 100 * SEC, &it);
	zq[K_SENDING] = enqueue1("s@send.example", "sending@sending.example",
				 now - 200 * SEC);
	claim1(3, 10, now - 100 * SEC, &it);
	CU_ASSERT_EQUAL_FATAL(claim_mark_sending(st, &it, 1, NULL, &err),
			      STORE_OK);
	zq[K_DEFERRED] = enqueue1("s@send.example",
				  "deferred@deferred.example", now);
	claim1(4, 60, now, &it);
	outcome1(&it, CLAIM_TEMPFAIL, "451 4.3.0 try later", now);
	zq[K_INDOUBT] = enqueue1("s@send.example", "indoubt@indoubt.example",
				 now);
	claim1(5, 60, now, &it);
	CU_ASSERT_EQUAL_FATAL(claim_mark_sending(st, &it, 1, NULL, &err),
			      STORE_OK);
	outcome1(&it, CLAIM_UNKNOWN, "connection lost after the dot", now);
	zq[K_DONE] = enqueue1("s@send.example", "done@done.example", now);
	claim1(6, 60, now, &it);
	outcome1(&it, CLAIM_DELIVERED, "250 2.0.0 ok", now);
	zdone_seq = 0;
	CU_ASSERT_EQUAL(ledger_foreach_qid(st, zq[K_DONE], last_seq_fn,
					   &zdone_seq, &err), STORE_OK);
	CU_ASSERT_NOT_EQUAL(zdone_seq, 0);
	zq[K_HELD] = enqueue1("s@send.example", "held@held.example", now);
	force(zq[K_HELD], ST_HELD, 0, 1);
	zq[K_DEAD] = enqueue1("s@send.example", "dead@dead.example", now);
	force(zq[K_DEAD], ST_HELD, RCPT_FLAG_DEAD, 7);
	zq[K_PENDING] = enqueue1("s@old.example", "pending@pending.example",
				 now - 3 * 3600 * SEC);
	zq[K_UNKNOWN] = 0xDEAD0000BEEFull;
	CU_ASSERT_EQUAL_FATAL(corehelp_verify(st), 0);
}

static struct store_counters
counters(void)
{
	struct store_counters c;
	const char *err;

	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	return c;
}

/* --- reading the queue back ------------------------------------------------ */

#define GOT_MAX 64
static struct queue_entry got[GOT_MAX];
static struct queue_msg got_msg[GOT_MAX];
static size_t ngot;

static int
collect_fn(const struct queue_msg *m, const struct queue_entry *e, size_t n,
	   void *arg)
{
	(void)arg;
	for (size_t i = 0; i < n && ngot < GOT_MAX; i++) {
		got_msg[ngot] = *m;
		got[ngot++] = e[i];
	}
	return 0;
}

static size_t
collect(const struct queue_filter *f)
{
	const char *err;

	ngot = 0;
	CU_ASSERT_EQUAL(queue_foreach(st, f, store_now_us(), collect_fn, NULL,
				      &err), STORE_OK);
	return ngot;
}

/* The kinds collect() found, as a bit set. */
static unsigned
got_kinds(void)
{
	unsigned bits = 0;

	for (size_t i = 0; i < ngot; i++)
		for (int k = 0; k < K_N; k++)
			if (got[i].qid == zq[k])
				bits |= 1u << k;
	return bits;
}

/* The entry (qid, 0), or NULL if it is not queued. */
static const struct queue_entry *
entry_of(uint64_t qid)
{
	static struct queue_entry e;
	struct queue_filter f = { .qids = &qid, .nqids = 1 };

	if (collect(&f) == 0)
		return NULL;
	e = got[0];
	return &e;
}

static size_t
history_len(uint64_t qid)
{
	struct queue_event *ev;
	size_t n = 0;
	const char *err;

	CU_ASSERT_EQUAL(queue_history(st, qid, &ev, &n, &err), STORE_OK);
	free(ev);
	return n;
}

static struct queue_event
history_last(uint64_t qid)
{
	struct queue_event *ev, last;
	size_t n = 0;
	const char *err;

	memset(&last, 0, sizeof(last));
	CU_ASSERT_EQUAL(queue_history(st, qid, &ev, &n, &err), STORE_OK);
	if (n > 0)
		last = ev[n - 1];
	free(ev);
	return last;
}

static uint64_t
ledger_records(void)
{
	struct verify_report r;
	const char *err;

	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &r, &err), 0);
	return r.records;
}

/* --- running a change ------------------------------------------------------ */

#define REP_MAX 16
static struct queue_change rep[REP_MAX];
static size_t nrep;

static void
report_fn(const struct queue_change *c, void *arg)
{
	(void)arg;
	if (nrep < REP_MAX)
		rep[nrep] = *c;
	nrep++;
}

static int
change(enum queue_op op, bool dry, const struct queue_filter *f,
       size_t *applied, size_t *skipped)
{
	struct queue_op_args a = { op, WHO, WHY, dry };
	const char *err;

	nrep = 0;
	return queue_change(st, &a, f, report_fn, NULL, applied, skipped,
			    &err);
}

/* Change the one message qid; CU-asserts exactly one report. */
static const struct queue_change *
change_qid(enum queue_op op, bool dry, uint64_t qid)
{
	struct queue_filter f = { .qids = &qid, .nqids = 1 };
	size_t applied, skipped;

	CU_ASSERT_EQUAL_FATAL(change(op, dry, &f, &applied, &skipped),
			      STORE_OK);
	CU_ASSERT_EQUAL_FATAL(nrep, 1);
	CU_ASSERT_EQUAL(applied + skipped, 1);
	CU_ASSERT_EQUAL(applied, rep[0].applied ? 1 : 0);
	return &rep[0];
}

/* --- filters ------------------------------------------------------------------ */

#define B(k) (1u << (k))
#define ALL_QUEUED (B(K_PENDING) | B(K_LIVE) | B(K_EXPIRED) | B(K_SENDING) | \
		    B(K_DEFERRED) | B(K_HELD) | B(K_DEAD) | B(K_INDOUBT))

static void
test_queue_filters_select_by_state_and_flags(void)
{
	struct {
		struct queue_filter f;
		unsigned want;
	} t[] = {
		{ { 0 }, ALL_QUEUED },
		{ { .states = QUEUE_STATE_BIT(ST_PENDING) }, B(K_PENDING) },
		{ { .states = QUEUE_STATE_BIT(ST_ACTIVE) },
		  B(K_LIVE) | B(K_EXPIRED) | B(K_SENDING) },
		{ { .states = QUEUE_STATE_BIT(ST_DEFERRED) }, B(K_DEFERRED) },
		{ { .states = QUEUE_STATE_BIT(ST_HELD) }, B(K_HELD) | B(K_DEAD) },
		{ { .states = QUEUE_STATE_BIT(ST_INDOUBT) }, B(K_INDOUBT) },
		{ { .states = QUEUE_STATE_BIT(ST_DEFERRED) |
			      QUEUE_STATE_BIT(ST_INDOUBT) },
		  B(K_DEFERRED) | B(K_INDOUBT) },
		{ { .dead = true }, B(K_DEAD) },
		{ { .states = QUEUE_STATE_BIT(ST_HELD), .dead = true },
		  B(K_DEAD) },
		{ { .states = QUEUE_STATE_BIT(ST_ACTIVE), .expired = true },
		  B(K_EXPIRED) | B(K_SENDING) },
		{ { .expired = true }, ALL_QUEUED & ~B(K_LIVE) },
	};

	zoo("filters-state");
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		collect(&t[i].f);
		if (got_kinds() != t[i].want)
			fprintf(stderr, "filter %zu: got %#x, want %#x\n", i,
				got_kinds(), t[i].want);
		CU_ASSERT_EQUAL(got_kinds(), t[i].want);
	}
	store_close(&st);
}

static void
test_queue_filters_select_by_address_age_and_id(void)
{
	uint64_t ids[4];
	struct {
		struct queue_filter f;
		unsigned want;
	} t[] = {
		{ { .rcpt = "DEFERRED@" }, B(K_DEFERRED) },
		{ { .rcpt = "e" }, ALL_QUEUED },	/* every one has an e */
		{ { .rcpt = "nobody" }, 0 },
		{ { .rcpt_domain = "held.example" }, B(K_HELD) },
		{ { .rcpt_domain = "HELD.Example" }, B(K_HELD) },
		{ { .rcpt_domain = "example" }, 0 },	/* not a suffix match */
		{ { .sender_domain = "old.example" }, B(K_PENDING) },
		{ { .sender_domain = "send.example" },
		  ALL_QUEUED & ~B(K_PENDING) },
		{ { .older_than_us = 3600 * SEC }, B(K_PENDING) },
		{ { .older_than_us = 150 * SEC },
		  B(K_PENDING) | B(K_EXPIRED) | B(K_SENDING) },
		{ { .rcpt = "held", .states = QUEUE_STATE_BIT(ST_PENDING) },
		  0 },
		{ { .qids = ids, .nqids = 4 }, B(K_DEFERRED) | B(K_INDOUBT) },
		{ { .qids = ids, .nqids = 4,
		    .states = QUEUE_STATE_BIT(ST_INDOUBT) }, B(K_INDOUBT) },
	};

	zoo("filters-addr");
	ids[0] = zq[K_DEFERRED];
	ids[1] = zq[K_DONE];		/* terminal: not listed */
	ids[2] = zq[K_UNKNOWN];		/* unknown: not listed */
	ids[3] = zq[K_INDOUBT];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		collect(&t[i].f);
		if (got_kinds() != t[i].want)
			fprintf(stderr, "filter %zu: got %#x, want %#x\n", i,
				got_kinds(), t[i].want);
		CU_ASSERT_EQUAL(got_kinds(), t[i].want);
	}
	store_close(&st);
}

static void
test_queue_entries_carry_their_details(void)
{
	const struct queue_entry *e;

	zoo("details");
	e = entry_of(zq[K_LIVE]);
	CU_ASSERT_FATAL(e != NULL);
	CU_ASSERT(e->state == ST_ACTIVE && e->owner_alive);
	CU_ASSERT_EQUAL(e->owner_worker, 1);
	CU_ASSERT_EQUAL(e->owner_instance, store_instance(st));
	e = entry_of(zq[K_EXPIRED]);
	CU_ASSERT(e->state == ST_ACTIVE && !e->owner_alive && !e->sending);
	e = entry_of(zq[K_SENDING]);
	CU_ASSERT(e->state == ST_ACTIVE && !e->owner_alive && e->sending);
	e = entry_of(zq[K_DEFERRED]);
	CU_ASSERT_EQUAL(e->state, ST_DEFERRED);
	CU_ASSERT_EQUAL(e->attempts, 1);
	CU_ASSERT_STRING_EQUAL(e->reply, "451 4.3.0 try later");
	CU_ASSERT(e->next_try_us > store_now_us() + 200 * SEC);
	e = entry_of(zq[K_DEAD]);
	CU_ASSERT(e->state == ST_HELD && e->dead);
	CU_ASSERT_EQUAL(e->attempts, 7);
	e = entry_of(zq[K_INDOUBT]);
	CU_ASSERT(e->state == ST_INDOUBT && e->sending);
	CU_ASSERT_STRING_EQUAL(e->reply, "connection lost after the dot");
	e = entry_of(zq[K_PENDING]);
	CU_ASSERT_STRING_EQUAL(e->rcpt, "pending@pending.example");
	CU_ASSERT_STRING_EQUAL(got_msg[0].sender, "s@old.example");
	CU_ASSERT_STRING_EQUAL(got_msg[0].msgid, "<zoo@send.example>");
	CU_ASSERT_EQUAL(got_msg[0].nrcpt, 1);
	CU_ASSERT_EQUAL(got_msg[0].remaining, 1);
	CU_ASSERT_EQUAL(got_msg[0].body_len, 23);
	CU_ASSERT_PTR_NULL(entry_of(zq[K_DONE]));
	CU_ASSERT_PTR_NULL(entry_of(zq[K_UNKNOWN]));
	store_close(&st);
}

/* --- every operation against every kind ------------------------------------ */

enum {
	T_DELIVERED = 100,	/* terminal: delivered */
	T_DELETED,		/* terminal: deleted */
};

struct cell {
	bool applied;
	const char *why;	/* a part of the report */
	int to;			/* new state, T_*, or 0: unchanged */
	int ledger;		/* kind of the record written, or 0 */
	const char *text;	/* its reply field */
};

#define SKIP(w)		{ false, w, 0, 0, NULL }
#define MOVE(w, s)	{ true, w, s, 0, NULL }
#define NOTE(w, s, t)	{ true, w, s, LEDGER_NOTE, t }
#define TERM(w, s, k, t) { true, w, s, k, t }
#define LIVE		SKIP("being delivered now by worker 1 of a running")
#define DONE		SKIP("already delivered (ledger record ")
#define UNKNOWN		SKIP("no such message in the queue or the ledger")
#define DELETED(w)	TERM(w, T_DELETED, LEDGER_DELETED, \
			     "deleted by " WHO ": " WHY)

static const enum queue_op ops[] = {
	QUEUE_REPLAY, QUEUE_HOLD, QUEUE_RELEASE, QUEUE_DELETE,
	QUEUE_RESOLVE_DELIVERED, QUEUE_RESOLVE_REDELIVER,
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

static const struct cell matrix[N_OPS][K_N] = {
	{	/* replay */
		[K_PENDING] = SKIP("already pending"),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = MOVE("active -> pending, due now", ST_PENDING),
		[K_SENDING] = MOVE("owner gone while it was being sent: now "
				   "in-doubt", ST_INDOUBT),
		[K_DEFERRED] = MOVE("deferred -> pending, due now",
				    ST_PENDING),
		[K_HELD] = MOVE("held -> pending, due now", ST_PENDING),
		[K_DEAD] = MOVE("held -> pending, due now", ST_PENDING),
		[K_INDOUBT] = NOTE("in-doubt: sent again now", ST_PENDING,
				   "in-doubt entry sent again (replay) by "
				   WHO ": " WHY),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	}, {	/* hold */
		[K_PENDING] = MOVE("pending -> held", ST_HELD),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = MOVE("active -> held", ST_HELD),
		[K_SENDING] = MOVE("owner gone while it was being sent: now "
				   "in-doubt", ST_INDOUBT),
		[K_DEFERRED] = MOVE("deferred -> held", ST_HELD),
		[K_HELD] = SKIP("already held"),
		[K_DEAD] = SKIP("already held"),
		[K_INDOUBT] = SKIP("in-doubt entries wait for the operator"),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	}, {	/* release */
		[K_PENDING] = SKIP("not held (pending)"),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = SKIP("not held (active)"),
		[K_SENDING] = SKIP("not held (active)"),
		[K_DEFERRED] = SKIP("not held (deferred)"),
		[K_HELD] = MOVE("held -> pending, due now", ST_PENDING),
		[K_DEAD] = MOVE("held (dead letter) -> pending, due now",
				ST_PENDING),
		[K_INDOUBT] = SKIP("not held (in-doubt)"),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	}, {	/* delete */
		[K_PENDING] = DELETED("pending -> deleted"),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = DELETED("active -> deleted"),
		[K_SENDING] = DELETED("active -> deleted"),
		[K_DEFERRED] = DELETED("deferred -> deleted"),
		[K_HELD] = DELETED("held -> deleted"),
		[K_DEAD] = DELETED("held -> deleted"),
		[K_INDOUBT] = DELETED("in-doubt -> deleted"),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	}, {	/* resolve --delivered */
		[K_PENDING] = SKIP("not in-doubt (pending)"),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = SKIP("not in-doubt (active)"),
		[K_SENDING] = SKIP("not in-doubt (active)"),
		[K_DEFERRED] = SKIP("not in-doubt (deferred)"),
		[K_HELD] = SKIP("not in-doubt (held)"),
		[K_DEAD] = SKIP("not in-doubt (held)"),
		[K_INDOUBT] = TERM("in-doubt -> delivered", T_DELIVERED,
				   LEDGER_DELIVERED, "resolved as delivered "
				   "by " WHO ": " WHY),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	}, {	/* resolve --redeliver */
		[K_PENDING] = SKIP("not in-doubt (pending)"),
		[K_LIVE] = LIVE,
		[K_EXPIRED] = SKIP("not in-doubt (active)"),
		[K_SENDING] = SKIP("not in-doubt (active)"),
		[K_DEFERRED] = SKIP("not in-doubt (deferred)"),
		[K_HELD] = SKIP("not in-doubt (held)"),
		[K_DEAD] = SKIP("not in-doubt (held)"),
		[K_INDOUBT] = NOTE("in-doubt -> pending, sent again now",
				   ST_PENDING, "resolved for redelivery by "
				   WHO ": " WHY),
		[K_DONE] = DONE,
		[K_UNKNOWN] = UNKNOWN,
	},
};

/* What the store looks like from outside, for before/after comparison. */
struct snap {
	struct store_counters c;
	struct verify_report vr;
	size_t hist[K_N];
	struct queue_entry e[K_N];
	bool queued[K_N];
};

static bool
same_entry(const struct queue_entry *a, const struct queue_entry *b)
{
	return a->qid == b->qid && a->idx == b->idx && a->state == b->state &&
	       a->sending == b->sending && a->dead == b->dead &&
	       a->attempts == b->attempts &&
	       a->next_try_us == b->next_try_us &&
	       a->lease_until_us == b->lease_until_us &&
	       a->owner_instance == b->owner_instance &&
	       a->owner_worker == b->owner_worker &&
	       strcmp(a->rcpt, b->rcpt) == 0 &&
	       strcmp(a->reply, b->reply) == 0;
}

/* before and after hold the same entries, field by field. */
static bool
same_entries(const struct snap *before, const struct snap *after)
{
	for (int k = 0; k < K_N; k++)
		if (before->queued[k] != after->queued[k] ||
		    (before->queued[k] &&
		     !same_entry(&before->e[k], &after->e[k])))
			return false;
	return true;
}

static void
snapshot(struct snap *s)
{
	const char *err;

	memset(s, 0, sizeof(*s));
	s->c = counters();
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &s->vr, &err), 0);
	for (int k = 0; k < K_N; k++) {
		const struct queue_entry *e = entry_of(zq[k]);

		s->hist[k] = history_len(zq[k]);
		s->queued[k] = e != NULL;
		if (e != NULL)
			s->e[k] = *e;
	}
}

static int
find_rec_fn(const struct ledger_rec *rec, void *arg)
{
	struct ledger_rec *want = arg;

	if (rec->seq == want->seq)
		*want = *rec;
	return 0;
}

static struct ledger_rec
record(uint64_t seq)
{
	struct ledger_rec r;
	const char *err;

	memset(&r, 0, sizeof(r));
	r.seq = seq;
	CU_ASSERT_EQUAL(ledger_foreach(st, seq, find_rec_fn, &r, &err),
			STORE_OK);
	return r;
}

static uint64_t *
counter(struct store_counters *c, int to)
{
	if (to == T_DELIVERED)
		return &c->delivered;
	if (to == T_DELETED)
		return &c->deleted;
	return store_counter_for(c, (enum store_state)to);
}

/* One cell: the report, then the store after the change. */
static void
check_cell(size_t o, int k, bool dry)
{
	const struct cell *want = &matrix[o][k];
	const struct queue_change *c;
	const struct queue_entry *e;
	struct snap before, after;
	struct ledger_rec lr;
	uint64_t qid = zq[k];

	snapshot(&before);
	c = change_qid(ops[o], dry, qid);
	if (c->applied != want->applied || strstr(c->why, want->why) == NULL)
		fprintf(stderr, "\n%s %s%s: applied %d \"%s\", want %d \"%s\"\n",
			queue_op_name(ops[o]), kname[k], dry ? " (dry)" : "",
			c->applied, c->why, want->applied, want->why);
	CU_ASSERT_EQUAL(c->applied, want->applied);
	CU_ASSERT_PTR_NOT_NULL(strstr(c->why, want->why));
	CU_ASSERT_EQUAL(c->qid, qid);
	CU_ASSERT_EQUAL(c->idx, k == K_UNKNOWN ? UINT32_MAX : 0);
	if (k == K_DONE) {
		CU_ASSERT_EQUAL(c->ledger_seq, zdone_seq);
		CU_ASSERT_STRING_EQUAL(c->rcpt, "done@done.example");
	}
	snapshot(&after);
	if (dry || !want->applied) {
		/* Nothing changed: counters, ledger, history, entries. */
		CU_ASSERT_EQUAL(memcmp(&before.c, &after.c, sizeof(before.c)),
				0);
		CU_ASSERT_EQUAL(after.vr.records, before.vr.records);
		CU_ASSERT_EQUAL(memcmp(&before.vr.counted, &after.vr.counted,
				       sizeof(before.vr.counted)), 0);
		CU_ASSERT_EQUAL(memcmp(before.hist, after.hist,
				       sizeof(before.hist)), 0);
		CU_ASSERT(same_entries(&before, &after));
		if (k != K_DONE)
			CU_ASSERT_EQUAL(c->ledger_seq, 0);
		return;
	}
	/* The counters moved by exactly one entry. */
	(*counter(&before.c, before.e[k].state))--;
	(*counter(&before.c, want->to))++;
	CU_ASSERT_EQUAL(memcmp(&before.c, &after.c, sizeof(before.c)), 0);
	CU_ASSERT_EQUAL(after.vr.records, before.vr.records +
			(want->ledger != 0 ? 1 : 0));
	if (want->ledger != 0) {
		CU_ASSERT_EQUAL(c->ledger_seq, after.vr.records);
		lr = record(c->ledger_seq);
		CU_ASSERT_EQUAL(lr.kind, want->ledger);
		CU_ASSERT_EQUAL(lr.qid, qid);
		CU_ASSERT_EQUAL(lr.idx, 0);
		CU_ASSERT_STRING_EQUAL(lr.rcpt, before.e[k].rcpt);
		CU_ASSERT_STRING_EQUAL(lr.msgid, "<zoo@send.example>");
		CU_ASSERT_STRING_EQUAL(lr.reply, want->text);
	} else {
		CU_ASSERT_EQUAL(c->ledger_seq, 0);
	}
	if (want->to >= T_DELIVERED) {
		/* Terminal: the message is gone, and its history with it. */
		CU_ASSERT_FALSE(after.queued[k]);
		CU_ASSERT_EQUAL(after.hist[k], 0);
		return;
	}
	e = &after.e[k];
	CU_ASSERT_EQUAL(e->state, want->to);
	CU_ASSERT_EQUAL(after.hist[k], before.hist[k] + 1);
	if (history_len(qid) > 0) {
		struct queue_event ev = history_last(qid);

		CU_ASSERT_EQUAL(ev.from, before.e[k].state);
		CU_ASSERT_EQUAL(ev.to, want->to);
		CU_ASSERT_PTR_NOT_NULL(strstr(ev.note, WHO ": " WHY));
	}
	if (want->to == ST_PENDING) {
		/* Due now, never "being sent", never a dead letter. */
		CU_ASSERT(e->next_try_us <= store_now_us());
		CU_ASSERT_FALSE(e->sending);
		CU_ASSERT_FALSE(e->dead);
		if (k == K_DEAD)
			CU_ASSERT_EQUAL(e->attempts, 0);
		if (k == K_DEFERRED)
			CU_ASSERT_EQUAL(e->attempts, 1);
	}
	if (want->to == ST_INDOUBT)
		CU_ASSERT(e->sending);
}

static void
run_matrix(bool dry)
{
	char name[64];

	for (size_t o = 0; o < N_OPS; o++)
		for (int k = 0; k < K_N; k++) {
			snprintf(name, sizeof(name), "m%s-%zu-%d",
				 dry ? "dry" : "", o, k);
			zoo(name);
			check_cell(o, k, dry);
			CU_ASSERT_EQUAL(corehelp_verify(st), 0);
		}
	store_close(&st);
}

static void
test_queue_every_op_on_every_state(void)
{
	run_matrix(false);
}

static void
test_queue_dry_run_decides_alike_and_changes_nothing(void)
{
	run_matrix(true);
}

/* All operations at once over the whole zoo, dry: the same counts as the
 * matrix says, and the store is untouched. */
static void
test_queue_dry_run_over_everything(void)
{
	struct queue_filter f = { 0 };
	struct snap before, after;
	size_t applied, skipped;

	zoo("dry-all");
	snapshot(&before);
	for (size_t o = 0; o < N_OPS; o++) {
		size_t want = 0;

		for (int k = 0; k < K_N; k++)
			if (k != K_DONE && k != K_UNKNOWN &&
			    matrix[o][k].applied)
				want++;
		CU_ASSERT_EQUAL(change(ops[o], true, &f, &applied, &skipped),
				STORE_OK);
		CU_ASSERT_EQUAL(applied, want);
		CU_ASSERT_EQUAL(applied + skipped, 8);
		CU_ASSERT_EQUAL(nrep, 8);
	}
	snapshot(&after);
	CU_ASSERT_EQUAL(memcmp(&before.c, &after.c, sizeof(before.c)), 0);
	CU_ASSERT_EQUAL(memcmp(&before.vr, &after.vr, sizeof(before.vr)), 0);
	CU_ASSERT_EQUAL(memcmp(before.hist, after.hist, sizeof(before.hist)),
			0);
	CU_ASSERT(same_entries(&before, &after));
	store_close(&st);
}

/* --- named queue ids ----------------------------------------------------------- */

static void
test_queue_named_ids_terminal_and_unknown(void)
{
	uint64_t ids[3];
	struct queue_filter f = { .qids = ids, .nqids = 3 };
	size_t applied, skipped;
	char want[128];

	zoo("named");
	ids[0] = zq[K_DONE];
	ids[1] = zq[K_UNKNOWN];
	ids[2] = zq[K_DEFERRED];
	CU_ASSERT_EQUAL(change(QUEUE_REPLAY, false, &f, &applied, &skipped),
			STORE_OK);
	CU_ASSERT_EQUAL(applied, 1);
	CU_ASSERT_EQUAL(skipped, 2);
	CU_ASSERT_EQUAL_FATAL(nrep, 3);
	snprintf(want, sizeof(want), "already delivered (ledger record %"
		 PRIu64 "); not changed", zdone_seq);
	for (size_t i = 0; i < nrep; i++) {
		if (rep[i].qid == zq[K_DONE]) {
			CU_ASSERT_STRING_EQUAL(rep[i].why, want);
			CU_ASSERT_FALSE(rep[i].applied);
		} else if (rep[i].qid == zq[K_UNKNOWN]) {
			CU_ASSERT_EQUAL(rep[i].idx, UINT32_MAX);
			CU_ASSERT_STRING_EQUAL(rep[i].why, "no such message in "
					       "the queue or the ledger");
		} else {
			CU_ASSERT_EQUAL(rep[i].qid, zq[K_DEFERRED]);
			CU_ASSERT(rep[i].applied);
		}
	}
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* A message with one recipient delivered and one queued: the delivered
 * one is reported as such, the queued one is changed. */
static void
test_queue_named_id_partly_delivered(void)
{
	struct claim_item it[2];
	struct queue_filter f = { .nqids = 1 };
	size_t applied, skipped, n;
	uint64_t now = store_now_us(), next, qid;
	const char *err;

	fresh("partly");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 2, 1, now), 0);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 2, 60, now, it, &n, &next, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	outcome1(&it[0], CLAIM_DELIVERED, "250 ok", now);
	outcome1(&it[1], CLAIM_TEMPFAIL, "451 later", now);
	qid = it[0].qid;
	f.qids = &qid;
	CU_ASSERT_EQUAL(change(QUEUE_HOLD, false, &f, &applied, &skipped),
			STORE_OK);
	CU_ASSERT_EQUAL(applied, 1);
	CU_ASSERT_EQUAL(skipped, 1);
	CU_ASSERT_EQUAL_FATAL(nrep, 2);
	for (size_t i = 0; i < 2; i++) {
		if (rep[i].idx == 0) {
			CU_ASSERT_FALSE(rep[i].applied);
			CU_ASSERT_PTR_NOT_NULL(strstr(rep[i].why,
						      "already delivered"));
		} else {
			CU_ASSERT(rep[i].applied);
			CU_ASSERT_STRING_EQUAL(rep[i].why, "deferred -> held");
		}
	}
	CU_ASSERT_EQUAL(counters().held, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* A named message that is queued but has no entry the filter selects
 * (resolve names a pending message) exists: its entries are reported as
 * not selected, not as "no such message". */
static void
test_queue_named_id_outside_the_filter_is_not_missing(void)
{
	uint64_t qid;
	struct queue_filter f = { .states = QUEUE_STATE_BIT(ST_INDOUBT),
				  .qids = &qid, .nqids = 1 };
	size_t applied, skipped;

	zoo("named-filter");
	qid = zq[K_PENDING];
	CU_ASSERT_EQUAL(change(QUEUE_RESOLVE_DELIVERED, false, &f, &applied,
			       &skipped), STORE_OK);
	CU_ASSERT_EQUAL(applied, 0);
	CU_ASSERT_EQUAL(skipped, 1);
	CU_ASSERT_EQUAL_FATAL(nrep, 1);
	CU_ASSERT_EQUAL(rep[0].qid, qid);
	CU_ASSERT_EQUAL(rep[0].idx, 0);
	CU_ASSERT_FALSE(rep[0].applied);
	CU_ASSERT_STRING_EQUAL(rep[0].rcpt, "pending@pending.example");
	CU_ASSERT_STRING_EQUAL(rep[0].why, "pending, which this does not "
			       "select; not changed");
	CU_ASSERT_EQUAL(entry_of(qid)->state, ST_PENDING);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* Holding an entry whose owner died while it was being sent must not
 * forget that it may have been handed over: it becomes in-doubt, as
 * recovery and replay make it, and a release cannot resend it unseen. */
static void
test_queue_hold_of_entry_being_sent_makes_it_indoubt(void)
{
	const struct queue_change *c;
	const struct queue_entry *e;

	zoo("hold-sending");
	c = change_qid(QUEUE_HOLD, false, zq[K_SENDING]);
	CU_ASSERT(c->applied);
	CU_ASSERT_PTR_NOT_NULL(strstr(c->why, "now in-doubt"));
	e = entry_of(zq[K_SENDING]);
	CU_ASSERT_FATAL(e != NULL);
	CU_ASSERT_EQUAL(e->state, ST_INDOUBT);
	CU_ASSERT(e->sending);
	c = change_qid(QUEUE_RELEASE, false, zq[K_SENDING]);
	CU_ASSERT_FALSE(c->applied);
	CU_ASSERT_EQUAL(counters().indoubt, 2);
	CU_ASSERT_EQUAL(counters().held, 2);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* --- live owners ------------------------------------------------------------------ */

/* Entries claimed by another running process are left alone by every
 * operation, whatever the filter. */
static void
test_queue_live_owner_of_another_process_is_never_touched(void)
{
	int go[2], stop[2], status;
	struct queue_filter f = { 0 };
	size_t applied, skipped;
	char path[512], c;
	const char *err;
	pid_t pid;

	fresh("other");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 1, 3, store_now_us()), 0);
	store_close(&st);
	snprintf(path, sizeof(path), "%s/other", dir);
	CU_ASSERT_FATAL(pipe(go) == 0 && pipe(stop) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct store *cst;
		struct claim_item it[3];
		size_t n;
		uint64_t next;

		close(go[0]);
		close(stop[1]);
		if (store_open(path, &set, &cst, &err) != STORE_OK ||
		    claim_batch(cst, 9, 3, 3600, store_now_us(), it, &n,
				&next, &err) != STORE_OK || n != 3)
			_exit(1);
		if (write(go[1], "g", 1) != 1)
			_exit(1);
		/* Hold the claims until the parent is done. */
		if (read(stop[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(go[1]);
	close(stop[0]);
	CU_ASSERT_EQUAL_FATAL(read(go[0], &c, 1), 1);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().active, 3);
	for (size_t o = 0; o < N_OPS; o++) {
		CU_ASSERT_EQUAL(change(ops[o], false, &f, &applied, &skipped),
				STORE_OK);
		CU_ASSERT_EQUAL(applied, 0);
		CU_ASSERT_EQUAL(skipped, 3);
		for (size_t i = 0; i < nrep && i < REP_MAX; i++)
			CU_ASSERT_PTR_NOT_NULL(strstr(rep[i].why,
				"being delivered now by worker 9"));
	}
	f.expired = true;
	CU_ASSERT_EQUAL(collect(&f), 0);
	CU_ASSERT_EQUAL(counters().active, 3);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	close(stop[1]);
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(go[0]);
	/* The owner is gone now: its entries are expired, and may move. */
	CU_ASSERT_EQUAL(collect(&f), 3);
	CU_ASSERT_EQUAL(change(QUEUE_REPLAY, false, &f, &applied, &skipped),
			STORE_OK);
	CU_ASSERT_EQUAL(applied, 3);
	CU_ASSERT_EQUAL(counters().pending, 3);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* --- in-doubt, replayed, then delivered ------------------------------------------ */

static int
count_fn(const struct ledger_rec *rec, void *arg)
{
	size_t *n = arg;

	n[rec->kind]++;
	return 0;
}

static void
check_one_terminal_after_resend(enum queue_op op)
{
	struct claim_item it;
	struct claim_outcome o;
	size_t all[5] = { 0 }, mine[5] = { 0 };
	const struct queue_change *c;
	const char *err;

	zoo(op == QUEUE_REPLAY ? "resend-replay" : "resend-redeliver");
	force(zq[K_PENDING], ST_HELD, 0, 0);	/* out of the way */
	c = change_qid(op, false, zq[K_INDOUBT]);
	CU_ASSERT(c->applied);
	/* The entry is due now and the only one: the next claim takes it. */
	claim1(7, 60, store_now_us(), &it);
	CU_ASSERT_EQUAL(it.qid, zq[K_INDOUBT]);
	CU_ASSERT_FALSE(it.was_indoubt);
	outcome1(&it, CLAIM_DELIVERED, "250 2.0.0 ok again", store_now_us());
	/* A second result for the same claim changes nothing. */
	memset(&o, 0, sizeof(o));
	o.qid = it.qid;
	o.token = it.token;
	o.result = CLAIM_DELIVERED;
	o.reply = "250 late";
	CU_ASSERT_EQUAL(claim_outcome(st, &o, 1, store_now_us(), &err),
			STORE_OK);
	CU_ASSERT_EQUAL(o.applied, 0);
	/* The ledger: K_DONE's delivery, the note, this delivery. */
	CU_ASSERT_EQUAL(ledger_foreach(st, 1, count_fn, all, &err), STORE_OK);
	CU_ASSERT_EQUAL(all[LEDGER_NOTE], 1);
	CU_ASSERT_EQUAL(all[LEDGER_DELIVERED], 2);
	CU_ASSERT_EQUAL(all[LEDGER_BOUNCED] + all[LEDGER_DELETED], 0);
	/* Exactly one terminal record for the entry. */
	CU_ASSERT_EQUAL(ledger_foreach_qid(st, zq[K_INDOUBT], count_fn, mine,
					   &err), STORE_OK);
	CU_ASSERT_EQUAL(mine[LEDGER_DELIVERED], 1);
	CU_ASSERT_EQUAL(mine[LEDGER_BOUNCED] + mine[LEDGER_DELETED], 0);
	/* Asked again by name: already delivered, nothing written. */
	c = change_qid(op, false, zq[K_INDOUBT]);
	CU_ASSERT_FALSE(c->applied);
	CU_ASSERT_PTR_NOT_NULL(strstr(c->why, "already delivered"));
	CU_ASSERT_EQUAL(ledger_records(), 3);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

static void
test_queue_replayed_indoubt_is_recorded_once_when_delivered(void)
{
	check_one_terminal_after_resend(QUEUE_REPLAY);
	check_one_terminal_after_resend(QUEUE_RESOLVE_REDELIVER);
}

/* --- history ------------------------------------------------------------------------ */

/* Schema 2: a message's history lives while it is queued and goes in the
 * transaction that makes its last entry terminal; its neighbours keep
 * theirs. */
static void
test_queue_history_dropped_when_message_completes(void)
{
	struct claim_item it[6];
	struct queue_event *ev;
	size_t n, nev;
	uint64_t now = store_now_us(), next, a, b;
	const char *err;

	fresh("history");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 2, 3, now), 0);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 6, 60, now, it, &n, &next, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 6);
	a = it[2].qid;		/* the middle message */
	b = it[4].qid;
	for (size_t i = 0; i < 6; i++)
		outcome1(&it[i], CLAIM_TEMPFAIL, "451 not now", now);
	CU_ASSERT_EQUAL(history_len(a), 2);
	CU_ASSERT_EQUAL(history_len(b), 2);
	{
		struct queue_filter f = { .qids = &a, .nqids = 1 };
		size_t applied, skipped;

		CU_ASSERT_EQUAL(change(QUEUE_REPLAY, false, &f, &applied,
				       &skipped), STORE_OK);
		CU_ASSERT_EQUAL(applied, 2);
	}
	CU_ASSERT_EQUAL(queue_history(st, a, &ev, &nev, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(nev, 4);
	/* recipient order, then time order */
	CU_ASSERT(ev[0].idx == 0 && ev[1].idx == 0 && ev[2].idx == 1);
	CU_ASSERT(ev[0].from == ST_ACTIVE && ev[0].to == ST_DEFERRED);
	CU_ASSERT_STRING_EQUAL(ev[0].note, "451 not now");
	CU_ASSERT(ev[1].from == ST_DEFERRED && ev[1].to == ST_PENDING);
	CU_ASSERT_STRING_EQUAL(ev[1].note, "replay by " WHO ": " WHY);
	CU_ASSERT(ev[0].at_us <= ev[1].at_us);
	free(ev);
	/* Deliver the first recipient: the history stays... */
	claim_batch(st, 1, 1, 60, store_now_us(), it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(it[0].qid, a);
	outcome1(&it[0], CLAIM_DELIVERED, "250 ok", store_now_us());
	CU_ASSERT_EQUAL(history_len(a), 4);
	/* ...until the last one is done. */
	claim_batch(st, 1, 1, 60, store_now_us(), it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	outcome1(&it[0], CLAIM_PERMFAIL, "550 no", store_now_us());
	CU_ASSERT_EQUAL(history_len(a), 0);
	CU_ASSERT_EQUAL(history_len(a - 1), 2);
	CU_ASSERT_EQUAL(history_len(b), 2);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

/* --- batches, stats -------------------------------------------------------------------- */

static void
test_queue_change_spans_several_transactions(void)
{
	struct queue_filter f = { .states = QUEUE_STATE_BIT(ST_PENDING) };
	size_t applied, skipped;

	fresh("batches");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 300, 2, 100,
					    store_now_us()), 0);
	CU_ASSERT_EQUAL(change(QUEUE_HOLD, false, &f, &applied, &skipped),
			STORE_OK);
	CU_ASSERT_EQUAL(applied, 600);
	CU_ASSERT_EQUAL(skipped, 0);
	CU_ASSERT_EQUAL(nrep, 600);
	CU_ASSERT_EQUAL(counters().held, 600);
	f.states = QUEUE_STATE_BIT(ST_HELD);
	CU_ASSERT_EQUAL(change(QUEUE_DELETE, false, &f, &applied, &skipped),
			STORE_OK);
	CU_ASSERT_EQUAL(applied, 600);
	CU_ASSERT_EQUAL(counters().deleted, 600);
	CU_ASSERT_EQUAL(ledger_records(), 600);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
	store_close(&st);
}

static void
test_queue_stats_counts_the_zoo(void)
{
	struct queue_stats s;
	const char *err;

	zoo("stats");
	CU_ASSERT_EQUAL(queue_stats(st, store_now_us(), &s, &err), STORE_OK);
	CU_ASSERT_EQUAL(s.messages, 8);
	CU_ASSERT_EQUAL(s.bytes, 8 * 23);
	CU_ASSERT_EQUAL(s.oldest_qid, zq[K_PENDING]);
	CU_ASSERT_EQUAL(s.accepted_hour[3], 1);
	CU_ASSERT_EQUAL(s.accepted_hour[0], 7);
	CU_ASSERT_EQUAL(s.done_minute, 1);
	CU_ASSERT_EQUAL(s.done_hour[0], 1);
	CU_ASSERT_EQUAL(s.ledger_records, 1);
	CU_ASSERT_EQUAL(s.c.active, 3);
	CU_ASSERT_EQUAL(s.c.held, 2);
	CU_ASSERT_EQUAL(s.c.delivered, 1);
	/* A note is not an outcome: not counted as done. */
	change_qid(QUEUE_RESOLVE_REDELIVER, false, zq[K_INDOUBT]);
	CU_ASSERT_EQUAL(queue_stats(st, store_now_us(), &s, &err), STORE_OK);
	CU_ASSERT_EQUAL(s.ledger_records, 2);
	CU_ASSERT_EQUAL(s.done_minute, 1);
	store_close(&st);
}

static CU_TestInfo queue_tests[] = {
	{ "filters select by state and flags",
	  test_queue_filters_select_by_state_and_flags },
	{ "filters select by address, age and id",
	  test_queue_filters_select_by_address_age_and_id },
	{ "entries carry their details",
	  test_queue_entries_carry_their_details },
	{ "every op on every state", test_queue_every_op_on_every_state },
	{ "dry run decides alike and changes nothing",
	  test_queue_dry_run_decides_alike_and_changes_nothing },
	{ "dry run over everything", test_queue_dry_run_over_everything },
	{ "named ids terminal and unknown",
	  test_queue_named_ids_terminal_and_unknown },
	{ "named id partly delivered", test_queue_named_id_partly_delivered },
	{ "named id outside the filter is not missing",
	  test_queue_named_id_outside_the_filter_is_not_missing },
	{ "hold of entry being sent makes it in-doubt",
	  test_queue_hold_of_entry_being_sent_makes_it_indoubt },
	{ "live owner of another process is never touched",
	  test_queue_live_owner_of_another_process_is_never_touched },
	{ "replayed in-doubt is recorded once when delivered",
	  test_queue_replayed_indoubt_is_recorded_once_when_delivered },
	{ "history dropped when message completes",
	  test_queue_history_dropped_when_message_completes },
	{ "change spans several transactions",
	  test_queue_change_spans_several_transactions },
	{ "stats counts the zoo", test_queue_stats_counts_the_zoo },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "queue", suite_init, suite_clean, NULL, NULL, queue_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
