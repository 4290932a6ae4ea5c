/*
 * test_claim.c - claim, outcome, release, recover, and conservation of
 * the counters under a long random sequence of operations.
 */
#include "testlib.h"
#include "corehelp.h"
#include "queue.h"

#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEC 1000000ull

TESTLIB_SUITE_DIR("claim")
static struct store *st;
static struct store_settings set = { .backoff_min = 60, .backoff_max = 600,
				     .max_lifetime = 3600 };


/* Each test starts on an empty store of its own. */
static void
fresh(const char *name)
{
	corehelp_fresh(&st, dir, name, &set);
}

static struct store_counters
counters(void)
{
	struct store_counters c;
	const char *err;

	CU_ASSERT_EQUAL(store_counters_get(st, &c, &err), STORE_OK);
	return c;
}

/* The outcome res of claimed entry it, not recorded. */
static void
outcome_fill(const struct claim_item *it, enum claim_result res,
	     struct claim_outcome *o)
{
	memset(o, 0, sizeof(*o));
	o->qid = it->qid;
	o->idx = it->idx;
	o->token = it->token;
	o->result = res;
	o->reply = "250 ok";
}

/* Record the outcome res of claimed entry it, alone. */
static void
outcome1(const struct claim_item *it, enum claim_result res, uint64_t now,
	 struct claim_outcome *o)
{
	const char *err;

	outcome_fill(it, res, o);
	CU_ASSERT_EQUAL(claim_outcome(st, o, 1, now, &err), STORE_OK);
}

static void
test_claim_takes_due_entries_up_to_batch(void)
{
	struct claim_item it[8];
	size_t n;
	uint64_t next;
	const char *err;

	fresh("batch");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 5, 2, 5, 100 * SEC), 0);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 8, 60, 99 * SEC, it, &n, &next,
				    &err), STORE_OK);
	CU_ASSERT_EQUAL(n, 0);			/* not due yet */
	CU_ASSERT_EQUAL(next, 100 * SEC);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 8, 60, 100 * SEC, it, &n, &next,
				    &err), STORE_OK);
	CU_ASSERT_EQUAL(n, 8);
	CU_ASSERT_STRING_EQUAL(it[0].rcpt, "r0@x.example");
	CU_ASSERT_STRING_EQUAL(it[0].sender, "s@home.example");
	CU_ASSERT_EQUAL(it[0].lease_until_us, 160 * SEC);
	CU_ASSERT_NOT_EQUAL(it[0].token, it[1].token);
	CU_ASSERT_EQUAL(counters().active, 8);
	CU_ASSERT_EQUAL(counters().pending, 2);
	CU_ASSERT_EQUAL(claim_batch(st, 2, 8, 60, 100 * SEC, it, &n, &next,
				    &err), STORE_OK);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(claim_batch(st, 2, 8, 60, 100 * SEC, it, &n, &next,
				    &err), STORE_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(next, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_delivered_goes_to_ledger_and_frees_message(void)
{
	struct claim_item it[2];
	struct claim_outcome o;
	struct verify_report r;
	size_t n, len;
	uint64_t next;
	void *body;
	const char *err;

	fresh("delivered");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 2, 1, SEC), 0);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 2, 60, SEC, it, &n, &next, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	outcome1(&it[0], CLAIM_DELIVERED, 2 * SEC, &o);
	CU_ASSERT_EQUAL(o.applied, 1);
	CU_ASSERT_EQUAL(store_body_get(st, it[0].qid, &body, &len, &err), 1);
	free(body);
	outcome1(&it[1], CLAIM_DELIVERED, 2 * SEC, &o);
	/* The last recipient is done: the message itself is gone. */
	CU_ASSERT_EQUAL(store_body_get(st, it[0].qid, &body, &len, &err), 0);
	CU_ASSERT_EQUAL(counters().delivered, 2);
	CU_ASSERT_EQUAL(counters().active, 0);
	CU_ASSERT_EQUAL(ledger_verify(st, stderr, &r, &err), 0);
	CU_ASSERT_EQUAL(r.records, 2);
	/* A second outcome for the same claim is stale and changes nothing. */
	outcome1(&it[1], CLAIM_DELIVERED, 3 * SEC, &o);
	CU_ASSERT_EQUAL(o.applied, 0);
	CU_ASSERT_EQUAL(counters().delivered, 2);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_tempfail_defers_with_backoff(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n;
	uint64_t next, delay;
	const char *err;

	fresh("tempfail");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	outcome1(&it[0], CLAIM_TEMPFAIL, 10 * SEC, &o);
	CU_ASSERT_EQUAL(o.recorded, CLAIM_TEMPFAIL);
	delay = o.next_try_us - 10 * SEC;
	CU_ASSERT(delay >= 45 * SEC && delay <= 75 * SEC);
	CU_ASSERT_EQUAL(counters().deferred, 1);
	claim_batch(st, 1, 1, 60, 11 * SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(next, o.next_try_us);
	claim_batch(st, 1, 1, 60, o.next_try_us, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(it[0].attempts, 1);
	CU_ASSERT_EQUAL(counters().deferred, 0);
	CU_ASSERT_EQUAL(counters().active, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_tempfail_past_max_attempts_is_dead_letter(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n;
	uint64_t next, now = SEC;
	const char *err;

	set.max_attempts = 3;
	fresh("dead");
	set.max_attempts = 0;
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	for (int i = 1; i <= 3; i++) {
		claim_batch(st, 1, 1, 60, now, it, &n, &next, &err);
		CU_ASSERT_EQUAL_FATAL(n, 1);
		outcome1(&it[0], CLAIM_TEMPFAIL, now + SEC, &o);
		CU_ASSERT_EQUAL(o.dead, i == 3);
		now = o.next_try_us != 0 ? o.next_try_us : now + SEC;
		o.next_try_us = 0;
	}
	/* Held: never claimed again, still queued (not bounced). */
	CU_ASSERT_EQUAL(counters().held, 1);
	CU_ASSERT_EQUAL(counters().deferred, 0);
	CU_ASSERT_EQUAL(counters().bounced, 0);
	claim_batch(st, 1, 1, 60, now + 3600 * SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_tempfail_past_lifetime_bounces(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("expire");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	outcome1(&it[0], CLAIM_TEMPFAIL, 3602 * SEC, &o);
	CU_ASSERT_EQUAL(o.recorded, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(counters().bounced, 1);
	CU_ASSERT_EQUAL(counters().deferred, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_permfail_bounces(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("permfail");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	outcome1(&it[0], CLAIM_PERMFAIL, 2 * SEC, &o);
	CU_ASSERT_EQUAL(counters().bounced, 1);
	CU_ASSERT_EQUAL(counters().accepted, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_unknown_is_indoubt_until_looked_at(void)
{
	struct claim_item it[2];
	struct claim_outcome o;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("indoubt");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(claim_mark_sending(st, it, 1, NULL, &err), STORE_OK);
	outcome1(&it[0], CLAIM_UNKNOWN, 2 * SEC, &o);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	/* In-doubt entries are never claimed as ordinary work... */
	claim_batch(st, 1, 2, 60, 100 * SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(n, 0);
	/* ...only by a driver that can look. */
	CU_ASSERT_EQUAL(claim_indoubt(st, 1, 2, 60, 3 * SEC, it, &n, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT(it[0].was_indoubt);
	outcome1(&it[0], CLAIM_DELIVERED, 4 * SEC, &o);
	CU_ASSERT_EQUAL(counters().delivered, 1);
	CU_ASSERT_EQUAL(counters().indoubt, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_stale_owner_result_is_ignored(void)
{
	struct claim_item old[1], cur[1];
	struct claim_outcome o;
	struct claim_recover_stats rs;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("stale");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 10, SEC, old, &n, &next, &err);
	/* The lease runs out; recovery hands the entry to someone else. */
	CU_ASSERT_EQUAL(claim_recover(st, 20 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_pending, 1);
	claim_batch(st, 2, 1, 10, 21 * SEC, cur, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	outcome1(&old[0], CLAIM_TEMPFAIL, 22 * SEC, &o);
	CU_ASSERT_EQUAL(o.applied, 0);
	CU_ASSERT_EQUAL(counters().active, 1);
	/* A late delivery by the old owner is a fact: it is recorded, and
	 * the current owner's result is then ignored. */
	outcome1(&old[0], CLAIM_DELIVERED, 23 * SEC, &o);
	CU_ASSERT_EQUAL(o.applied, 1);
	outcome1(&cur[0], CLAIM_DELIVERED, 24 * SEC, &o);
	CU_ASSERT_EQUAL(o.applied, 0);
	CU_ASSERT_EQUAL(counters().delivered, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_recover_expired_and_sending(void)
{
	struct claim_item it[4];
	struct claim_recover_stats rs;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("recover");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 4, 1, 4, SEC), 0);
	claim_batch(st, 1, 2, 10, SEC, it, &n, &next, &err);
	claim_mark_sending(st, it, 1, NULL, &err);
	claim_batch(st, 2, 2, 1000, SEC, it + 2, &n, &next, &err);
	CU_ASSERT_EQUAL(claim_recover(st, 5 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_pending + rs.to_indoubt, 0);	/* live */
	CU_ASSERT_EQUAL(claim_recover(st, 20 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_pending, 1);
	CU_ASSERT_EQUAL(rs.to_indoubt, 1);
	CU_ASSERT_EQUAL(counters().active, 2);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	CU_ASSERT_EQUAL(counters().pending, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* claim_batch_sending: the claim itself makes the mark, so a lease that
 * runs out is in-doubt, while claim_requeue (nothing handed over) still
 * puts the entry back as pending. */
static void
test_claim_batch_sending_marks_in_the_claim(void)
{
	struct claim_item it[2];
	struct claim_recover_stats rs;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("sending");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 2, 1, 2, SEC), 0);
	CU_ASSERT_EQUAL(claim_batch_sending(st, 1, 1, false, 10, SEC, it, &n,
					   &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(claim_batch_sending(st, 2, 1, false, 10, SEC, it + 1,
					   &n, &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(claim_requeue(st, it + 1, 1, SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(claim_recover(st, 20 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_indoubt, 1);
	CU_ASSERT_EQUAL(rs.to_pending, 0);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	CU_ASSERT_EQUAL(counters().pending, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* A claim that finds nothing due writes nothing: no new LMDB transaction
 * id, so no page write and no fdatasync. */
static void
test_claim_empty_claim_commits_nothing(void)
{
	struct claim_item it[1];
	MDB_envinfo before, after;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("empty");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, 100 * SEC), 0);
	mdb_env_info(st->env, &before);
	CU_ASSERT_EQUAL(claim_batch(st, 1, 1, 10, SEC, it, &n, &next, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT(next != 0);
	mdb_env_info(st->env, &after);
	CU_ASSERT_EQUAL(after.me_last_txnid, before.me_last_txnid);
	/* and one that claims does commit */
	CU_ASSERT_EQUAL(claim_batch(st, 1, 1, 10, next, it, &n, &next, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(n, 1);
	mdb_env_info(st->env, &after);
	CU_ASSERT_EQUAL(after.me_last_txnid, before.me_last_txnid + 1);
}

/* claim_outcome_next: the batch's outcomes and the next claim are one
 * commit; the next entries are leased (as being sent when asked). */
static void
test_claim_outcome_next_is_one_commit(void)
{
	struct claim_item it[2], nx[2];
	struct claim_outcome o;
	struct claim_recover_stats rs;
	MDB_envinfo before, after;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("next");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 1, 3, SEC), 0);
	CU_ASSERT_EQUAL(claim_batch_sending(st, 1, 1, false, 10, SEC, it, &n,
					   &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	outcome_fill(&it[0], CLAIM_DELIVERED, &o);
	mdb_env_info(st->env, &before);
	CU_ASSERT_EQUAL(claim_outcome_next(st, &o, 1, 2 * SEC, 1, 2, 10,
					   CLAIM_MARK, nx, &n, &next, &err), STORE_OK);
	mdb_env_info(st->env, &after);
	CU_ASSERT_EQUAL(after.me_last_txnid, before.me_last_txnid + 1);
	CU_ASSERT_EQUAL(o.applied, 1);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT(nx[0].qid != it[0].qid && nx[1].qid != it[0].qid);
	CU_ASSERT_EQUAL(counters().delivered, 1);
	CU_ASSERT_EQUAL(counters().active, 2);
	/* claimed as being sent: a lost lease is in-doubt */
	CU_ASSERT_EQUAL(claim_recover(st, 30 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_indoubt, 2);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* in_doubt_window = message: a claim with one_message takes only the
 * entries of the first due message (however large the batch), marked;
 * so a lost lease leaves that one message in-doubt and the others
 * pending. claim_outcome_next() claims the same way. */
static void
test_claim_one_message(void)
{
	struct claim_item it[8], nx[8];
	struct claim_outcome o[3];
	struct claim_recover_stats rs;
	size_t n, m;
	uint64_t next;
	const char *err;

	fresh("onemsg");
	/* 3 messages of 3 recipients each */
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 3, 3, SEC), 0);
	CU_ASSERT_EQUAL(claim_batch_sending(st, 1, 8, true, 10, SEC, it, &n,
					   &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT(it[0].qid == it[1].qid && it[1].qid == it[2].qid);
	for (size_t i = 0; i < 3; i++)
		outcome_fill(&it[i], CLAIM_DELIVERED, &o[i]);
	CU_ASSERT_EQUAL(claim_outcome_next(st, o, 3, 2 * SEC, 1, 8, 10,
					   CLAIM_MARK | CLAIM_ONE_MESSAGE, nx,
					   &m, &next, &err), STORE_OK);
	CU_ASSERT_EQUAL_FATAL(m, 3);
	CU_ASSERT(nx[0].qid != it[0].qid);
	CU_ASSERT(nx[0].qid == nx[1].qid && nx[1].qid == nx[2].qid);
	CU_ASSERT_EQUAL(counters().delivered, 3);
	CU_ASSERT_EQUAL(counters().active, 3);
	CU_ASSERT_EQUAL(counters().pending, 3);
	/* the crash: the claimed message is in-doubt, the last one never
	 * left the queue */
	CU_ASSERT_EQUAL(claim_recover(st, 30 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_indoubt, 3);
	CU_ASSERT_EQUAL(counters().pending, 3);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* An in-doubt entry claimed again (to be looked for, or sent again under
 * in_doubt_policy = retry) stays in-doubt whatever happens before its
 * outcome: put back unsent, or its worker gone. And a mark of an entry
 * whose lease was lost is refused and counted. */
static void
test_claim_indoubt_stays_indoubt(void)
{
	struct claim_item it[2], old;
	struct claim_outcome o;
	struct claim_recover_stats rs;
	size_t n, lost = 0;
	uint64_t next;
	const char *err;

	fresh("staysindoubt");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(claim_mark_sending(st, it, 1, NULL, &err), STORE_OK);
	outcome1(&it[0], CLAIM_UNKNOWN, 2 * SEC, &o);
	/* put back unsent (the peer was down) */
	CU_ASSERT_EQUAL(claim_indoubt(st, 1, 2, 60, 3 * SEC, it, &n, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(claim_release(st, it, 1, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	CU_ASSERT_EQUAL(counters().pending, 0);
	/* its worker gone before it marked anything */
	CU_ASSERT_EQUAL(claim_indoubt(st, 1, 2, 10, 4 * SEC, it, &n, &err),
			STORE_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	old = it[0];
	CU_ASSERT_EQUAL(claim_recover(st, 100 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_indoubt, 1);
	CU_ASSERT_EQUAL(rs.to_pending, 0);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	/* the old claim's lease is gone: its mark is refused, counted */
	CU_ASSERT_EQUAL(claim_mark_sending(st, &old, 1, &lost, &err),
			STORE_OK);
	CU_ASSERT_EQUAL(lost, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* Workers as under in_doubt_window = message, from several threads at
 * once: each claims one message, then records its outcome with the claim
 * of the next. The calls that meet share commits (store_write's group
 * commit), and every one is applied exactly as if it had committed
 * alone. */
#define GROUP_THREADS 4
#define GROUP_EACH 50

struct group_arg {
	uint32_t worker;
	int failures;
	size_t done;
};

static void *
group_thread(void *arg)
{
	struct group_arg *g = arg;
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n = 0;
	uint64_t next;
	const char *err;

	if (claim_batch_sending(st, g->worker, 1, true, 60, SEC, it, &n,
				&next, &err) != STORE_OK) {
		g->failures++;
		return NULL;
	}
	while (n == 1) {
		outcome_fill(&it[0], CLAIM_DELIVERED, &o);
		if (claim_outcome_next(st, &o, 1, 2 * SEC, g->worker, 1, 60,
				       CLAIM_MARK | CLAIM_ONE_MESSAGE, it, &n,
				       &next, &err) != STORE_OK ||
		    o.applied != 1)
			g->failures++;
		g->done++;
	}
	return NULL;
}

static void
group_commit_run(const char *name, unsigned wait_us)
{
	pthread_t t[GROUP_THREADS];
	struct group_arg g[GROUP_THREADS];
	MDB_envinfo before, after;
	size_t done = 0;

	set.group_wait_us = wait_us;
	fresh(name);
	set.group_wait_us = 0;
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, GROUP_THREADS * GROUP_EACH, 1,
					    50, SEC), 0);
	mdb_env_info(st->env, &before);
	for (size_t i = 0; i < GROUP_THREADS; i++) {
		memset(&g[i], 0, sizeof(g[i]));
		g[i].worker = (uint32_t)i + 1;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, group_thread,
						     &g[i]), 0);
	}
	for (size_t i = 0; i < GROUP_THREADS; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT_EQUAL(g[i].failures, 0);
		done += g[i].done;
	}
	mdb_env_info(st->env, &after);
	CU_ASSERT_EQUAL(done, GROUP_THREADS * GROUP_EACH);
	CU_ASSERT_EQUAL(counters().delivered, GROUP_THREADS * GROUP_EACH);
	CU_ASSERT_EQUAL(counters().active, 0);
	CU_ASSERT_EQUAL(counters().indoubt, 0);
	/* at most one commit per call (fewer when they met) */
	CU_ASSERT(after.me_last_txnid - before.me_last_txnid <=
		  GROUP_THREADS + GROUP_THREADS * GROUP_EACH);
	fprintf(stderr, "[group_wait %u us: %zu commits for %d outcome+claim "
		"calls] ", wait_us,
		(size_t)(after.me_last_txnid - before.me_last_txnid),
		GROUP_THREADS * (GROUP_EACH + 1));
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

/* ... with no wait, and with a leader that waits (up to 2 ms) for as
 * many callers as the last commit had. */
static void
test_claim_group_commit(void)
{
	group_commit_run("group", 0);
	group_commit_run("groupwait", 2000);
}

/* A body that fails inside a shared commit fails only its own caller:
 * the others' bodies run again alone and are kept. */
#define FAIL_ROUNDS 200

struct fail_arg {
	int id;
	bool fails;
	pthread_barrier_t *bar;
	int wrong;
};

static int
fail_body(struct store_wtx *w, void *arg)
{
	struct fail_arg *f = arg;
	char key[32];
	uint64_t v = 0;
	int rc;

	if (f->fails) {
		w->fail = "this body always fails";
		return -1;
	}
	snprintf(key, sizeof(key), "test_count_%d", f->id);
	rc = store_meta_u64_get(w->txn, w->st, key, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	return store_meta_u64_put(w->txn, w->st, key, v + 1);
}

static void *
fail_thread(void *arg)
{
	struct fail_arg *f = arg;
	const char *err = NULL;

	for (int i = 0; i < FAIL_ROUNDS; i++) {
		pthread_barrier_wait(f->bar);
		int rc = store_write(st, fail_body, f, &err);

		if (f->fails ? rc != STORE_ERR ||
		    strcmp(err, "this body always fails") != 0 :
		    rc != STORE_OK)
			f->wrong++;
	}
	return NULL;
}

static void
test_claim_group_commit_failure_is_one_callers(void)
{
	pthread_barrier_t bar;
	pthread_t t[3];
	struct fail_arg f[3];
	MDB_txn *txn;
	uint64_t v;
	char key[32];
	const char *err;

	fresh("groupfail");
	pthread_barrier_init(&bar, NULL, 3);
	for (int i = 0; i < 3; i++) {
		f[i] = (struct fail_arg){ i, i == 1, &bar, 0 };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, fail_thread,
						     &f[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT_EQUAL(f[i].wrong, 0);
	}
	pthread_barrier_destroy(&bar);
	CU_ASSERT_EQUAL_FATAL(store_read_begin(st, &txn, &err), STORE_OK);
	for (int i = 0; i < 3; i += 2) {
		snprintf(key, sizeof(key), "test_count_%d", i);
		CU_ASSERT_EQUAL(store_meta_u64_get(txn, st, key, &v), 0);
		CU_ASSERT_EQUAL(v, FAIL_ROUNDS);
	}
	store_read_end(st, &txn);
}

static void
test_claim_recover_dead_instance_before_lease_ends(void)
{
	struct claim_recover_stats rs;
	char path[512];
	const char *err;
	int status;
	pid_t pid;

	fresh("dead");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 3, 1, 3, SEC), 0);
	store_close(&st);
	snprintf(path, sizeof(path), "%s/dead", dir);
	pid = fork();
	if (pid == 0) {
		struct store *cst;
		struct claim_item it[3];
		size_t n;
		uint64_t next;

		if (store_open(path, &set, &cst, &err) != STORE_OK ||
		    claim_batch(cst, 1, 3, 3600, SEC, it, &n, &next,
				&err) != STORE_OK || n != 3)
			_exit(1);
		_exit(0);	/* dies holding three claims */
	}
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_EQUAL_FATAL(store_open(path, &set, &st, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().active, 3);
	CU_ASSERT_EQUAL(claim_recover(st, 2 * SEC, &rs, &err), STORE_OK);
	CU_ASSERT_EQUAL(rs.to_pending, 3);
	CU_ASSERT_EQUAL(counters().active, 0);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_requeue_is_not_an_attempt(void)
{
	struct claim_item it[2];
	size_t n;
	uint64_t next;
	const char *err;

	fresh("requeue");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 2, 1, 2, SEC), 0);
	claim_batch(st, 1, 2, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(claim_mark_sending(st, it, 2, NULL, &err), STORE_OK);
	/* The peer was down: back to pending, due at 5 s, flag cleared. */
	CU_ASSERT_EQUAL(claim_requeue(st, it, 2, 5 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().pending, 2);
	CU_ASSERT_EQUAL(counters().active, 0);
	CU_ASSERT_EQUAL(counters().indoubt, 0);
	claim_batch(st, 1, 2, 60, 4 * SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(next, 5 * SEC);
	claim_batch(st, 1, 2, 60, 5 * SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(it[0].attempts, 0);
	CU_ASSERT_EQUAL(it[1].attempts, 0);
	/* A stale token is skipped; the "being sent" flag did not survive:
	 * a crash now leaves the entries pending, not in-doubt. */
	CU_ASSERT_EQUAL(claim_requeue(st, it, 2, 9 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(claim_requeue(st, it, 2, 9 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().pending, 2);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_unknown_with_retry_policy_is_deferred(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("indoubt_retry");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL(claim_mark_sending(st, it, 1, NULL, &err), STORE_OK);
	outcome_fill(&it[0], CLAIM_UNKNOWN, &o);
	o.indoubt_retry = true;
	o.reply = "4.4.2 connection lost after end of data";
	CU_ASSERT_EQUAL(claim_outcome(st, &o, 1, 2 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(o.applied, 1);
	CU_ASSERT_EQUAL(o.recorded, CLAIM_TEMPFAIL);
	CU_ASSERT(o.next_try_us > 2 * SEC);
	CU_ASSERT_EQUAL(counters().indoubt, 0);
	CU_ASSERT_EQUAL(counters().deferred, 1);
	claim_batch(st, 1, 1, 60, o.next_try_us, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(it[0].attempts, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static int
first_attempts(const struct queue_msg *m, const struct queue_entry *e,
	       size_t n, void *arg)
{
	(void)m;
	(void)n;
	*(uint32_t *)arg = e[0].attempts;
	return 1;
}

/* The attempts an outcome reports (the log line) are those stored (what
 * postern queue lists): an in-doubt entry was logged attempts=1 and
 * listed (attempts 0). */
static void
test_claim_outcome_attempts_match_the_stored_count(void)
{
	struct claim_item it[1];
	struct claim_outcome o;
	uint32_t listed = 99;
	size_t n;
	uint64_t next;
	const char *err;

	fresh("attempts");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 1, 1, 1, SEC), 0);
	claim_batch(st, 1, 1, 60, SEC, it, &n, &next, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(it[0].attempts, 0);
	CU_ASSERT_EQUAL(claim_mark_sending(st, it, 1, NULL, &err), STORE_OK);
	outcome_fill(&it[0], CLAIM_UNKNOWN, &o);
	o.reply = "4.4.2 connection lost after end of data";
	CU_ASSERT_EQUAL(claim_outcome(st, &o, 1, 2 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(o.recorded, CLAIM_UNKNOWN);
	CU_ASSERT_EQUAL(o.attempts, 1);
	CU_ASSERT_EQUAL(o.removed, 0);
	CU_ASSERT_EQUAL(queue_foreach(st, NULL, 2 * SEC, first_attempts,
				      &listed, &err), STORE_OK);
	CU_ASSERT_EQUAL(listed, o.attempts);
	/* settled by a look: the second attempt, and the message goes */
	claim_indoubt(st, 1, 1, 60, 3 * SEC, it, &n, &err);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(it[0].attempts, 1);
	outcome_fill(&it[0], CLAIM_DELIVERED, &o);
	CU_ASSERT_EQUAL(claim_outcome(st, &o, 1, 4 * SEC, &err), STORE_OK);
	CU_ASSERT_EQUAL(o.attempts, 2);
	CU_ASSERT_EQUAL(o.removed, 1);
	CU_ASSERT_EQUAL(counters().delivered, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_release_returns_to_pending(void)
{
	struct claim_item it[2];
	size_t n;
	uint64_t next;
	const char *err;

	fresh("release");
	CU_ASSERT_EQUAL_FATAL(corehelp_fill(st, 2, 1, 2, SEC), 0);
	claim_batch(st, 1, 2, 60, SEC, it, &n, &next, &err);
	claim_mark_sending(st, it + 1, 1, NULL, &err);
	CU_ASSERT_EQUAL(claim_release(st, it, 2, &err), STORE_OK);
	CU_ASSERT_EQUAL(counters().pending, 1);
	CU_ASSERT_EQUAL(counters().indoubt, 1);
	CU_ASSERT_EQUAL(corehelp_verify(st), 0);
}

static void
test_claim_backoff_grows_to_cap_with_jitter(void)
{
	struct store_settings s = { .backoff_min = 300, .backoff_max = 4000 };
	uint64_t prev = 0, d;

	for (uint32_t a = 1; a <= 12; a++) {
		uint64_t base = 300ull << (a - 1);

		if (base > 4000)
			base = 4000;
		d = claim_backoff_us(&s, 42, 0, a);
		CU_ASSERT(d >= base * 750000u && d <= base * 1250000u);
		if (base < 4000)
			CU_ASSERT(d > prev / 2);
		prev = d;
	}
	CU_ASSERT_NOT_EQUAL(claim_backoff_us(&s, 1, 0, 1),
			    claim_backoff_us(&s, 2, 0, 1));
}

/* A long random walk over every operation; after each step the counters
 * must equal a full scan (ledger_verify checks exactly that). */
static void
test_claim_conservation_under_random_operations(void)
{
	struct claim_item held[64], it[8];
	struct claim_recover_stats rs;
	struct claim_outcome o;
	size_t nheld = 0, n;
	uint64_t now = SEC, next;
	unsigned seed = 12345;
	const char *err;
	int bad = 0;

	fresh("conserve");
	for (int step = 0; step < 1500 && !bad; step++) {
		int op = testlib_rnd(&seed) % 8;

		now += (uint64_t)(testlib_rnd(&seed) % 30) * SEC;
		if (op == 0) {
			corehelp_fill(st, 1 + testlib_rnd(&seed) % 3,
				      1 + testlib_rnd(&seed) % 3, 2, now);
		} else if ((op == 1 || nheld == 0) && nheld < 56) {
			claim_batch(st, 1, 8, 100, now, it, &n, &next, &err);
			memcpy(held + nheld, it, n * sizeof(it[0]));
			nheld += n;
		} else if (op == 2) {
			claim_mark_sending(st, held, nheld / 2, NULL, &err);
		} else if (op == 3) {
			claim_recover(st, now, &rs, &err);
		} else if (op == 4) {
			claim_indoubt(st, 2, 1, 100, now, it, &n, &err);
			if (n == 1 && nheld < 64)
				held[nheld++] = it[0];
		} else {
			size_t i = (size_t)testlib_rnd(&seed) % nheld;

			outcome1(&held[i], (enum claim_result)(1 +
				 testlib_rnd(&seed) % 4), now, &o);
			held[i] = held[--nheld];
		}
		if (corehelp_verify(st) != 0) {
			fprintf(stderr, "conservation broken at step %d\n",
				step);
			bad = 1;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(counters().accepted > 500);
	CU_ASSERT(counters().delivered > 0);
	CU_ASSERT(counters().deferred + counters().pending > 0);
	store_close(&st);
}

static CU_TestInfo claim_tests[] = {
	{ "takes due entries up to batch",
	  test_claim_takes_due_entries_up_to_batch },
	{ "delivered goes to ledger and frees message",
	  test_claim_delivered_goes_to_ledger_and_frees_message },
	{ "tempfail defers with backoff",
	  test_claim_tempfail_defers_with_backoff },
	{ "tempfail past max attempts is dead letter",
	  test_claim_tempfail_past_max_attempts_is_dead_letter },
	{ "tempfail past lifetime bounces",
	  test_claim_tempfail_past_lifetime_bounces },
	{ "permfail bounces", test_claim_permfail_bounces },
	{ "unknown is in-doubt until looked at",
	  test_claim_unknown_is_indoubt_until_looked_at },
	{ "stale owner result is ignored",
	  test_claim_stale_owner_result_is_ignored },
	{ "recover expired and sending",
	  test_claim_recover_expired_and_sending },
	{ "batch sending marks in the claim",
	  test_claim_batch_sending_marks_in_the_claim },
	{ "empty claim commits nothing",
	  test_claim_empty_claim_commits_nothing },
	{ "outcome next is one commit",
	  test_claim_outcome_next_is_one_commit },
	{ "one message a claim (message window)",
	  test_claim_one_message },
	{ "an in-doubt entry stays in-doubt", test_claim_indoubt_stays_indoubt },
	{ "outcome and next claim share commits across threads",
	  test_claim_group_commit },
	{ "a failing body in a shared commit fails only its caller",
	  test_claim_group_commit_failure_is_one_callers },
	{ "recover dead instance before lease ends",
	  test_claim_recover_dead_instance_before_lease_ends },
	{ "requeue is not an attempt", test_claim_requeue_is_not_an_attempt },
	{ "unknown with retry policy is deferred",
	  test_claim_unknown_with_retry_policy_is_deferred },
	{ "outcome attempts match the stored count",
	  test_claim_outcome_attempts_match_the_stored_count },
	{ "release returns to pending", test_claim_release_returns_to_pending },
	{ "backoff grows to cap with jitter",
	  test_claim_backoff_grows_to_cap_with_jitter },
	{ "conservation under random operations",
	  test_claim_conservation_under_random_operations },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "claim", suite_init, suite_clean, NULL, NULL, claim_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
