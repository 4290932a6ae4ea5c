/*
 * claim.c - lease pending notifications to delivery workers, and close the
 * lease with an outcome.
 *
 * Owns:    every change of an entry after store.c's enqueue wrote it:
 *          its "recipients" and "notify" rows, its lease in "active"
 *          (only here), its "history" rows, the message's remaining
 *          count, and the delete of its "messages" and "bodies" rows
 *          with the last entry; the meta key "next_token". A struct
 *          claim_item belongs to the worker that asked for it.
 * Threads: any; each public call is one store_write() body (a write txn
 *          it may share with other threads' bodies: group commit), and
 *          every find-then-change happens inside that one txn.
 * Schema:  lmdb-schema/recipients.md, notify.md, active.md
 */
#include "claim.h"
#include "ledger.h"
#include "store_private.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEXT_TOKEN "next_token"

uint64_t
claim_backoff_us(const struct store_settings *set, uint64_t qid,
		 uint32_t idx, uint32_t attempts)
{
	uint64_t secs = set->backoff_min, h;
	uint32_t i;

	for (i = 1; i < attempts && secs < set->backoff_max; i++)
		secs *= 2;
	if (secs > set->backoff_max)
		secs = set->backoff_max;
	/* splitmix64 of the entry: jitter without shared RNG state. */
	h = qid * 0x9E3779B97F4A7C15ull ^ ((uint64_t)idx << 32 | attempts);
	h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
	h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
	h ^= h >> 31;
	/* secs * [0.75, 1.25) in microseconds */
	return secs * 750000u + (h % (secs * 500000u + 1));
}

/* --- state moves, inside a write txn ------------------------------------ */

static int
rcpt_get(struct store_wtx *w, uint64_t qid, uint32_t idx,
	 struct rcpt_rec *rr)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	MDB_val k = { sizeof(key), key }, v;
	int rc;

	store_rcpt_key(key, qid, idx);
	rc = mdb_get(w->txn, w->st->db_rcpts, &k, &v);
	if (rc != 0)
		return rc;
	return store_rcpt_decode(&v, rr) == 0 ? 0 : MDB_CORRUPTED;
}

static int
rcpt_put(struct store_wtx *w, uint64_t qid, uint32_t idx,
	 const struct rcpt_rec *rr)
{
	unsigned char key[STORE_KEY_RCPT_LEN], buf[RCPT_REC_MAX];
	MDB_val k = { sizeof(key), key }, v = { 0, buf };

	store_rcpt_key(key, qid, idx);
	v.mv_size = store_rcpt_encode(rr, buf, sizeof(buf));
	return mdb_put(w->txn, w->st->db_rcpts, &k, &v, 0);
}

/* Take the entry out of the index its state keeps it in. */
static int
index_del(struct store_wtx *w, uint64_t qid, uint32_t idx,
	  const struct rcpt_rec *rr)
{
	unsigned char key[STORE_KEY_NOTIFY_LEN];
	MDB_val k = { 0, key };
	MDB_dbi dbi;

	if (rr->state == ST_PENDING || rr->state == ST_DEFERRED) {
		store_notify_key(key, rr->next_try_us, qid, idx);
		k.mv_size = STORE_KEY_NOTIFY_LEN;
		dbi = w->st->db_notify;
	} else if (rr->state == ST_ACTIVE) {
		store_rcpt_key(key, qid, idx);
		k.mv_size = STORE_KEY_RCPT_LEN;
		dbi = w->st->db_active;
	} else {
		return 0;
	}
	return mdb_del(w->txn, dbi, &k, NULL);
}

static int
index_put(struct store_wtx *w, uint64_t qid, uint32_t idx,
	  const struct rcpt_rec *rr)
{
	unsigned char key[STORE_KEY_NOTIFY_LEN], abuf[ACTIVE_REC_LEN];
	MDB_val k = { 0, key }, v = { 0, NULL };

	if (rr->state == ST_PENDING || rr->state == ST_DEFERRED) {
		store_notify_key(key, rr->next_try_us, qid, idx);
		k.mv_size = STORE_KEY_NOTIFY_LEN;
		return mdb_put(w->txn, w->st->db_notify, &k, &v, 0);
	}
	if (rr->state == ST_ACTIVE) {
		store_rcpt_key(key, qid, idx);
		k.mv_size = STORE_KEY_RCPT_LEN;
		store_active_encode(abuf, rr->owner_instance,
				    rr->owner_worker, rr->lease_until_us,
				    rr->token);
		v.mv_size = sizeof(abuf);
		v.mv_data = abuf;
		return mdb_put(w->txn, w->st->db_active, &k, &v, 0);
	}
	return 0;
}

/* Move a queued entry to state `to` (rr holds the new fields apart from
 * state and retry time); keeps indexes and counters in step. next_try_us,
 * when not 0, becomes the entry's new due time. */
static int
move_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
	 struct rcpt_rec *rr, enum store_state to, uint64_t next_try_us)
{
	int rc;

	uint8_t from = rr->state;

	if ((rc = index_del(w, qid, idx, rr)) != 0)
		return rc;
	(*store_counter_for(&w->c, rr->state))--;
	rr->state = to;
	if (next_try_us != 0)
		rr->next_try_us = next_try_us;
	if (to != ST_ACTIVE) {
		rr->token = 0;
		rr->owner_instance = 0;
		rr->owner_worker = 0;
		rr->lease_until_us = 0;
	}
	(*store_counter_for(&w->c, to))++;
	if ((rc = index_put(w, qid, idx, rr)) != 0)
		return rc;
	/* Leases are routine; every other move is history worth showing. */
	if (to != ST_ACTIVE &&
	    (rc = store_history_put_txn(w, qid, idx, store_now_us(), from, to,
					w->note ? w->note : rr->reply)) != 0)
		return rc;
	return rcpt_put(w, qid, idx, rr);
}

static int
msg_get(struct store_wtx *w, uint64_t qid, struct msg_rec *mr)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	be64_put(key, qid);
	if ((rc = mdb_get(w->txn, w->st->db_messages, &k, &v)) != 0)
		return rc;
	return store_msg_decode(&v, mr) == 0 ? 0 : MDB_CORRUPTED;
}

/* The entry reached a terminal result: ledger record, out of the queue,
 * and the message itself goes when its last entry is done (then
 * *removed_r, if not NULL, is set to 1). */
static int
finalize_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
	     const struct rcpt_rec *rr, enum ledger_kind kind,
	     const char *reply, const unsigned char sha[32], uint64_t now_us,
	     int *removed_r)
{
	unsigned char key[STORE_KEY_RCPT_LEN], buf[MSG_REC_MAX];
	struct ledger_rec lr;
	struct msg_rec mr;
	MDB_val k, v;
	int rc;

	if ((rc = msg_get(w, qid, &mr)) != 0)
		return rc;
	if ((rc = index_del(w, qid, idx, rr)) != 0)
		return rc;
	(*store_counter_for(&w->c, rr->state))--;
	store_rcpt_key(key, qid, idx);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	if ((rc = mdb_del(w->txn, w->st->db_rcpts, &k, NULL)) != 0)
		return rc;
	memset(&lr, 0, sizeof(lr));
	lr.kind = kind;
	lr.qid = qid;
	lr.idx = idx;
	lr.accepted_us = mr.accepted_us;
	lr.done_us = now_us;
	if (sha != NULL)
		memcpy(lr.body_sha, sha, 32);
	snprintf(lr.rcpt, sizeof(lr.rcpt), "%s", rr->rcpt);
	snprintf(lr.msgid, sizeof(lr.msgid), "%s", mr.msgid);
	snprintf(lr.reply, sizeof(lr.reply), "%s", reply ? reply : "");
	memcpy(lr.received_sha, mr.received_sha, 32);
	if ((rc = ledger_append_txn(w, &lr)) != 0)
		return rc;
	be64_put(key, qid);
	k.mv_size = 8;
	if (--mr.remaining == 0) {
		if (removed_r != NULL)
			*removed_r = 1;
		if ((rc = mdb_del(w->txn, w->st->db_messages, &k, NULL)) != 0 ||
		    (rc = store_history_drop_txn(w, qid)) != 0)
			return rc;
		return mdb_del(w->txn, w->st->db_bodies, &k, NULL);
	}
	v.mv_data = buf;
	v.mv_size = store_msg_encode(&mr, buf, sizeof(buf));
	return mdb_put(w->txn, w->st->db_messages, &k, &v, 0);
}

/* --- claim ------------------------------------------------------------- */

struct claim_args {
	uint32_t worker;
	size_t max;
	unsigned lease_secs;
	uint64_t now_us;
	struct claim_item *items;
	size_t n;
	uint64_t next_due;
	bool indoubt;
	bool sending;		/* mark as being sent (RCPT_FLAG_SENDING) */
	bool one_message;	/* only the entries of the first message */
};

/* Lease one queued entry to the worker and copy it out into it. */
static int
lease_txn(struct store_wtx *w, struct claim_args *a, uint64_t qid,
	  uint32_t idx, uint64_t *token)
{
	struct claim_item *it = &a->items[a->n];
	struct rcpt_rec rr;
	struct msg_rec mr;
	int rc;

	if ((rc = rcpt_get(w, qid, idx, &rr)) != 0 ||
	    (rc = msg_get(w, qid, &mr)) != 0)
		return rc;
	if (a->indoubt ? rr.state != ST_INDOUBT :
	    rr.state != ST_PENDING && rr.state != ST_DEFERRED) {
		w->fail = "notify index names an entry that is not pending";
		return -1;
	}
	rr.token = ++*token;
	rr.owner_instance = w->st->instance;
	rr.owner_worker = a->worker;
	rr.lease_until_us = a->now_us + (uint64_t)a->lease_secs * 1000000u;
	/* An in-doubt entry stays marked: put back unsent (peer down) or
	 * left by a crash, it is in-doubt again, never plain pending. */
	rr.flags = a->sending || a->indoubt ? RCPT_FLAG_SENDING : 0;
	if ((rc = move_txn(w, qid, idx, &rr, ST_ACTIVE, 0)) != 0)
		return rc;
	memset(it, 0, sizeof(*it));
	it->qid = qid;
	it->idx = idx;
	it->token = rr.token;
	it->attempts = rr.attempts;
	it->accepted_us = mr.accepted_us;
	it->lease_until_us = rr.lease_until_us;
	it->was_indoubt = a->indoubt;
	memcpy(it->rcpt, rr.rcpt, sizeof(it->rcpt));
	memcpy(it->sender, mr.sender, sizeof(it->sender));
	memcpy(it->msgid, mr.msgid, sizeof(it->msgid));
	a->n++;
	return 0;
}

/* The keys to claim are gathered first and leased after, all in this one
 * transaction: nothing else can write in between. */
static int
claim_txn(struct store_wtx *w, void *arg)
{
	struct claim_args *a = arg;
	uint64_t qids[256], token, due;
	uint32_t idxs[256];
	size_t found = 0, max = a->max > 256 ? 256 : a->max;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	MDB_cursor_op op = MDB_FIRST;
	int rc;

	a->n = 0;
	a->next_due = 0;
	if ((rc = mdb_cursor_open(w->txn, w->st->db_notify, &cur)) != 0)
		return rc;
	while (found < max && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		due = be64_get(k.mv_data);
		if (due > a->now_us) {
			a->next_due = due;
			break;
		}
		qids[found] = be64_get((unsigned char *)k.mv_data + 8);
		if (a->one_message && found > 0 && qids[found] != qids[0])
			break;
		idxs[found++] = be32_get((unsigned char *)k.mv_data + 16);
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (found == 0)
		return 0;
	if ((rc = store_meta_u64_get(w->txn, w->st, NEXT_TOKEN, &token)) != 0)
		return rc;
	for (size_t i = 0; i < found; i++)
		if ((rc = lease_txn(w, a, qids[i], idxs[i], &token)) != 0)
			return rc;
	return store_meta_u64_put(w->txn, w->st, NEXT_TOKEN, token);
}

static int
claim_run(struct store *st, struct claim_args *a, size_t *n_r,
	  uint64_t *next_due_r, const char **error_r)
{
	int rc = store_write(st, claim_txn, a, error_r);

	*n_r = rc == STORE_OK ? a->n : 0;
	*next_due_r = a->next_due;
	return rc;
}

int
claim_batch(struct store *st, uint32_t worker, size_t max,
	    unsigned lease_secs, uint64_t now_us, struct claim_item *items,
	    size_t *n_r, uint64_t *next_due_r, const char **error_r)
{
	struct claim_args a = {
		.worker = worker, .max = max, .lease_secs = lease_secs,
		.now_us = now_us, .items = items,
	};

	return claim_run(st, &a, n_r, next_due_r, error_r);
}

int
claim_batch_sending(struct store *st, uint32_t worker, size_t max,
		    bool one_message, unsigned lease_secs, uint64_t now_us,
		    struct claim_item *items, size_t *n_r,
		    uint64_t *next_due_r, const char **error_r)
{
	struct claim_args a = {
		.worker = worker, .max = max, .lease_secs = lease_secs,
		.now_us = now_us, .items = items, .sending = true,
		.one_message = one_message,
	};

	return claim_run(st, &a, n_r, next_due_r, error_r);
}

static int
claim_indoubt_txn(struct store_wtx *w, void *arg)
{
	struct claim_args *a = arg;
	uint64_t qids[256], token;
	uint32_t idxs[256];
	size_t found = 0, max = a->max > 256 ? 256 : a->max;
	struct rcpt_rec rr;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	a->n = 0;
	if ((rc = mdb_cursor_open(w->txn, w->st->db_rcpts, &cur)) != 0)
		return rc;
	while (found < max &&
	       (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (store_rcpt_decode(&v, &rr) == 0 && rr.state == ST_INDOUBT) {
			qids[found] = be64_get(k.mv_data);
			idxs[found++] = be32_get((unsigned char *)k.mv_data + 8);
		}
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (found == 0)
		return 0;
	if ((rc = store_meta_u64_get(w->txn, w->st, NEXT_TOKEN, &token)) != 0)
		return rc;
	for (size_t i = 0; i < found; i++)
		if ((rc = lease_txn(w, a, qids[i], idxs[i], &token)) != 0)
			return rc;
	return store_meta_u64_put(w->txn, w->st, NEXT_TOKEN, token);
}

int
claim_indoubt(struct store *st, uint32_t worker, size_t max,
	      unsigned lease_secs, uint64_t now_us, struct claim_item *items,
	      size_t *n_r, const char **error_r)
{
	struct claim_args a = {
		.worker = worker, .max = max, .lease_secs = lease_secs,
		.now_us = now_us, .items = items, .indoubt = true,
	};
	int rc = store_write(st, claim_indoubt_txn, &a, error_r);

	*n_r = rc == STORE_OK ? a.n : 0;
	return rc;
}

/* --- mark sending, release ------------------------------------------------ */

struct items_args {
	const struct claim_item *items;
	size_t n;
	size_t lost;		/* entries no longer ours: not marked */
};

/* 1 if the entry is still active under this token (rr filled in), 0 if
 * the lease was lost or the entry is gone, or an LMDB code. */
static int
still_mine(struct store_wtx *w, uint64_t qid, uint32_t idx, uint64_t token,
	   struct rcpt_rec *rr)
{
	int rc = rcpt_get(w, qid, idx, rr);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	return rr->state == ST_ACTIVE && rr->token == token ? 1 : 0;
}

static int
mark_sending_txn(struct store_wtx *w, void *arg)
{
	struct items_args *a = arg;
	struct rcpt_rec rr;
	int rc;

	a->lost = 0;	/* the body may run again */
	for (size_t i = 0; i < a->n; i++) {
		const struct claim_item *it = &a->items[i];

		rc = still_mine(w, it->qid, it->idx, it->token, &rr);
		if (rc == 0) {
			a->lost++;
			continue;
		}
		if (rc != 1)
			return rc;
		rr.flags |= RCPT_FLAG_SENDING;
		if ((rc = rcpt_put(w, it->qid, it->idx, &rr)) != 0)
			return rc;
	}
	return 0;
}

int
claim_mark_sending(struct store *st, const struct claim_item *items,
		   size_t n, size_t *lost_r, const char **error_r)
{
	struct items_args a = { .items = items, .n = n };
	int rc = store_write(st, mark_sending_txn, &a, error_r);

	if (lost_r != NULL)
		*lost_r = rc == STORE_OK ? a.lost : 0;
	return rc;
}

/* Back to the queue: in-doubt if it may have been handed over, else
 * pending and due now. */
static int
requeue_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
	    struct rcpt_rec *rr, uint64_t now_us)
{
	if (rr->flags & RCPT_FLAG_SENDING)
		return move_txn(w, qid, idx, rr, ST_INDOUBT, 0);
	return move_txn(w, qid, idx, rr, ST_PENDING, now_us);
}

struct release_args {
	const struct claim_item *items;
	size_t n;
	uint64_t now_us;
	bool unsent;	/* never handed over: pending, mark cleared */
};

static int
release_txn(struct store_wtx *w, void *arg)
{
	struct release_args *a = arg;
	struct rcpt_rec rr;
	int rc;

	for (size_t i = 0; i < a->n; i++) {
		const struct claim_item *it = &a->items[i];

		rc = still_mine(w, it->qid, it->idx, it->token, &rr);
		if (rc == 0)
			continue;
		if (rc != 1)
			return rc;
		if (a->unsent) {
			rr.flags &= (uint8_t)~RCPT_FLAG_SENDING;
			rc = move_txn(w, it->qid, it->idx, &rr, ST_PENDING,
				      a->now_us);
		} else {
			rc = requeue_txn(w, it->qid, it->idx, &rr, a->now_us);
		}
		if (rc != 0)
			return rc;
	}
	return 0;
}

int
claim_release(struct store *st, const struct claim_item *items, size_t n,
	      const char **error_r)
{
	struct release_args a = {
		.items = items, .n = n, .now_us = store_now_us(),
	};

	return store_write(st, release_txn, &a, error_r);
}

int
claim_requeue(struct store *st, const struct claim_item *items, size_t n,
	      uint64_t due_us, const char **error_r)
{
	struct release_args a = {
		.items = items, .n = n, .now_us = due_us, .unsent = true,
	};

	return store_write(st, release_txn, &a, error_r);
}

/* --- outcome -------------------------------------------------------------- */

struct outcome_args {
	struct claim_outcome *o;
	size_t n;
	uint64_t now_us;
};

static int
outcome_one(struct store_wtx *w, struct claim_outcome *o, uint64_t now_us)
{
	const struct store_settings *set = &w->st->set;
	struct rcpt_rec rr;
	struct msg_rec mr;
	int rc, mine;

	/* outputs first: the body may run again (store_write) */
	o->applied = 0;
	o->dead = 0;
	o->removed = 0;
	o->attempts = 0;
	o->next_try_us = 0;
	o->recorded = o->result;
	mine = still_mine(w, o->qid, o->idx, o->token, &rr);
	if (mine < 0 || mine > 1)
		return mine;
	if (mine == 0) {
		/* Lease lost. Only a delivery is still news: record it if
		 * the entry is not terminal yet. */
		if (o->result != CLAIM_DELIVERED)
			return 0;
		rc = rcpt_get(w, o->qid, o->idx, &rr);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc != 0)
			return rc;
		if (rr.state == ST_ACTIVE)
			log_warn("%016" PRIX64 ": to=<%s>, delivered by a "
				 "worker whose lease had expired; the current "
				 "owner's result will be ignored", o->qid,
				 rr.rcpt);
	}
	snprintf(rr.reply, sizeof(rr.reply), "%s", o->reply ? o->reply : "");
	o->applied = 1;
	/* Every result is one attempt, whatever it was: the count the
	 * log line shows and the one stored (postern queue) are this
	 * one. */
	rr.attempts++;
	o->attempts = rr.attempts;
	switch (o->result) {
	case CLAIM_DELIVERED:
		return finalize_txn(w, o->qid, o->idx, &rr, LEDGER_DELIVERED,
				    o->reply, o->body_sha, now_us,
				    &o->removed);
	case CLAIM_PERMFAIL:
		return finalize_txn(w, o->qid, o->idx, &rr, LEDGER_BOUNCED,
				    o->reply, NULL, now_us, &o->removed);
	case CLAIM_UNKNOWN:
		if (o->indoubt_retry) {
			o->recorded = CLAIM_TEMPFAIL;
			break;
		}
		rr.flags |= RCPT_FLAG_SENDING;
		return move_txn(w, o->qid, o->idx, &rr, ST_INDOUBT, 0);
	case CLAIM_TEMPFAIL:
		break;
	}
	if ((rc = msg_get(w, o->qid, &mr)) != 0)
		return rc;
	if (now_us >= mr.accepted_us + (uint64_t)set->max_lifetime * 1000000u) {
		o->recorded = CLAIM_PERMFAIL;
		return finalize_txn(w, o->qid, o->idx, &rr, LEDGER_BOUNCED,
				    o->reply, NULL, now_us, &o->removed);
	}
	rr.flags = 0;
	if (set->max_attempts != 0 && rr.attempts >= set->max_attempts) {
		/* Give up, but keep the message for the operator: it is
		 * replayable, unlike a bounce. */
		o->dead = 1;
		rr.flags = RCPT_FLAG_DEAD;
		snprintf(rr.reply, sizeof(rr.reply), "dead letter after %u "
			 "attempts: %s", rr.attempts, o->reply ? o->reply : "");
		return move_txn(w, o->qid, o->idx, &rr, ST_HELD, 0);
	}
	o->next_try_us = now_us + claim_backoff_us(set, o->qid, o->idx,
						   rr.attempts);
	return move_txn(w, o->qid, o->idx, &rr, ST_DEFERRED, o->next_try_us);
}

static int
outcome_txn(struct store_wtx *w, void *arg)
{
	struct outcome_args *a = arg;
	int rc;

	for (size_t i = 0; i < a->n; i++)
		if ((rc = outcome_one(w, &a->o[i], a->now_us)) != 0)
			return rc;
	return 0;
}

int
claim_outcome(struct store *st, struct claim_outcome *o, size_t n,
	      uint64_t now_us, const char **error_r)
{
	struct outcome_args a = { .o = o, .n = n, .now_us = now_us };

	return store_write(st, outcome_txn, &a, error_r);
}

struct outcome_next_args {
	struct outcome_args o;
	struct claim_args c;
};

static int
outcome_next_txn(struct store_wtx *w, void *arg)
{
	struct outcome_next_args *a = arg;
	int rc = outcome_txn(w, &a->o);

	return rc != 0 ? rc : claim_txn(w, &a->c);
}

int
claim_outcome_and_claim(struct store *st, struct claim_outcome *o,
			size_t n, uint64_t now_us, struct claim_next *next,
			const char **error_r)
{
	struct outcome_next_args a = {
		.o = { .o = o, .n = n, .now_us = now_us },
		.c = {
			.worker = next->worker, .max = next->max,
			.lease_secs = next->lease_secs, .now_us = now_us,
			.items = next->items, .sending = next->mark,
			.one_message = next->one_message,
		},
	};
	int rc = store_write(st, outcome_next_txn, &a, error_r);

	next->n = rc == STORE_OK ? a.c.n : 0;
	next->next_due_us = a.c.next_due;
	return rc;
}

int
claim_outcome_next(struct store *st, struct claim_outcome *o, size_t n,
		   uint64_t now_us, uint32_t worker, size_t max,
		   unsigned lease_secs, unsigned how,
		   struct claim_item *items, size_t *n_r,
		   uint64_t *next_due_r, const char **error_r)
{
	struct claim_next next = {
		.worker = worker, .max = max, .lease_secs = lease_secs,
		.mark = (how & CLAIM_MARK) != 0,
		.one_message = (how & CLAIM_ONE_MESSAGE) != 0,
		.items = items,
	};
	int rc = claim_outcome_and_claim(st, o, n, now_us, &next, error_r);

	*n_r = next.n;
	*next_due_r = next.next_due_us;
	return rc;
}

/* --- recover -------------------------------------------------------------- */

struct recover_args {
	uint64_t now_us;
	struct claim_recover_stats *r;
};

static bool
owner_gone(struct store_wtx *w, uint64_t instance, uint64_t *dead,
	   size_t *ndead, uint64_t *alive, size_t *nalive)
{
	for (size_t i = 0; i < *ndead; i++)
		if (dead[i] == instance)
			return true;
	for (size_t i = 0; i < *nalive; i++)
		if (alive[i] == instance)
			return false;
	if (store_instance_alive_txn(w->txn, w->st, instance)) {
		if (*nalive < 32)
			alive[(*nalive)++] = instance;
		return false;
	}
	if (*ndead < 32)
		dead[(*ndead)++] = instance;
	return true;
}

static int
recover_txn(struct store_wtx *w, void *arg)
{
	struct recover_args *a = arg;
	uint64_t dead[32], alive[32], *keys = NULL;
	size_t ndead = 0, nalive = 0, nkeys = 0, cap = 0;
	struct rcpt_rec rr;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	memset(a->r, 0, sizeof(*a->r));
	if ((rc = mdb_cursor_open(w->txn, w->st->db_active, &cur)) != 0)
		return rc;
	/* Gather first, change after: move_txn deletes from "active". */
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		const unsigned char *p = v.mv_data;

		if (v.mv_size != ACTIVE_REC_LEN ||
		    k.mv_size != STORE_KEY_RCPT_LEN) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (be64_get(p + 13) > a->now_us &&
		    !owner_gone(w, be64_get(p + 1), dead, &ndead, alive,
				&nalive))
			continue;
		if (nkeys == cap) {
			cap = cap ? cap * 2 : 64;
			keys = xrealloc(keys, cap * 2 * sizeof(*keys));
		}
		keys[2 * nkeys] = be64_get(k.mv_data);
		keys[2 * nkeys++ + 1] = be32_get((unsigned char *)k.mv_data + 8);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	for (size_t i = 0; rc == 0 && i < nkeys; i++) {
		uint64_t qid = keys[2 * i];
		uint32_t idx = (uint32_t)keys[2 * i + 1];

		if ((rc = rcpt_get(w, qid, idx, &rr)) != 0 ||
		    (rc = requeue_txn(w, qid, idx, &rr, a->now_us)) != 0)
			break;
		if (rr.state == ST_INDOUBT)
			a->r->to_indoubt++;
		else
			a->r->to_pending++;
	}
	free(keys);
	return rc;
}

int
claim_recover(struct store *st, uint64_t now_us,
	      struct claim_recover_stats *r, const char **error_r)
{
	struct recover_args a = { .now_us = now_us, .r = r };
	int rc = store_write(st, recover_txn, &a, error_r);

	if (rc == STORE_OK && (r->to_pending > 0 || r->to_indoubt > 0))
		log_info("recover: %zu claim(s) of dead or expired owners "
			 "back to pending, %zu in-doubt", r->to_pending,
			 r->to_indoubt);
	return rc;
}

/* --- for the operator's changes (queue.c) -------------------------------- */

int
claim_move_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
	       struct rcpt_rec *rr, enum store_state to, uint64_t next_try_us)
{
	return move_txn(w, qid, idx, rr, to, next_try_us);
}

int
claim_finalize_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		   const struct rcpt_rec *rr, enum ledger_kind kind,
		   const char *reply, uint64_t now_us)
{
	return finalize_txn(w, qid, idx, rr, kind, reply, NULL, now_us, NULL);
}

int
claim_rcpt_get_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		   struct rcpt_rec *rr)
{
	return rcpt_get(w, qid, idx, rr);
}
