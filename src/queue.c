/*
 * queue.c - the operator's view of the queue and the operator's changes.
 *
 * Owns:    nothing stored of its own; changes go through claim.c's state
 *          moves (claim_move_txn, claim_finalize_txn) so that indexes,
 *          counters, history and the ledger stay in step exactly as they
 *          do for deliveries.
 * Threads: any; no state between calls.
 * Schema:  reads messages, recipients, history, ledger (lmdb-schema/).
 */
#include "queue.h"
#include "ledger.h"
#include "store_private.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHANGE_BATCH 256	/* entries per write transaction */

const char *
queue_op_name(enum queue_op op)
{
	switch (op) {
	case QUEUE_REPLAY:		return "replay";
	case QUEUE_HOLD:		return "hold";
	case QUEUE_RELEASE:		return "release";
	case QUEUE_DELETE:		return "delete";
	case QUEUE_RESOLVE_DELIVERED:	return "resolve --delivered";
	case QUEUE_RESOLVE_REDELIVER:	return "resolve --redeliver";
	}
	return "?";
}

/* --- owner liveness, cached per call ------------------------------------- */

struct owners {
	uint64_t id[32];
	bool alive[32];
	size_t n;
};

static bool
owner_alive(MDB_txn *txn, struct store *st, struct owners *o,
	    uint64_t instance)
{
	bool alive;

	for (size_t i = 0; i < o->n; i++)
		if (o->id[i] == instance)
			return o->alive[i];
	alive = store_instance_alive_txn(txn, st, instance);
	if (o->n < 32) {
		o->id[o->n] = instance;
		o->alive[o->n++] = alive;
	}
	return alive;
}

static void
entry_fill(struct queue_entry *e, uint64_t qid, uint32_t idx,
	   const struct rcpt_rec *rr, bool alive, uint64_t now_us)
{
	memset(e, 0, sizeof(*e));
	e->qid = qid;
	e->idx = idx;
	e->state = rr->state;
	e->sending = (rr->flags & RCPT_FLAG_SENDING) != 0;
	e->dead = (rr->flags & RCPT_FLAG_DEAD) != 0;
	e->attempts = rr->attempts;
	e->next_try_us = rr->next_try_us;
	e->lease_until_us = rr->lease_until_us;
	e->owner_instance = rr->owner_instance;
	e->owner_worker = rr->owner_worker;
	e->owner_alive = rr->state == ST_ACTIVE && alive &&
			 rr->lease_until_us > now_us;
	memcpy(e->rcpt, rr->rcpt, sizeof(e->rcpt));
	memcpy(e->reply, rr->reply, sizeof(e->reply));
}

/* --- filters -------------------------------------------------------------- */

static const char *
domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

static bool
contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	return n == 0;
}

static bool
msg_matches(const struct queue_filter *f, const struct msg_rec *mr,
	    uint64_t now_us)
{
	if (f->sender_domain != NULL &&
	    strcasecmp(domain_of(mr->sender), f->sender_domain) != 0)
		return false;
	if (f->older_than_us != 0 &&
	    (now_us < mr->accepted_us ||
	     now_us - mr->accepted_us < f->older_than_us))
		return false;
	return true;
}

static bool
entry_matches(const struct queue_filter *f, const struct queue_entry *e)
{
	if (f->states != 0 && !(f->states & QUEUE_STATE_BIT(e->state)))
		return false;
	if (f->dead && !e->dead)
		return false;
	if (f->expired && e->state == ST_ACTIVE && e->owner_alive)
		return false;
	if (f->rcpt != NULL && !contains_nocase(e->rcpt, f->rcpt))
		return false;
	if (f->rcpt_domain != NULL &&
	    strcasecmp(domain_of(e->rcpt), f->rcpt_domain) != 0)
		return false;
	return true;
}

static int
msg_get_txn(MDB_txn *txn, struct store *st, uint64_t qid,
	    struct msg_rec *mr)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	be64_put(key, qid);
	if ((rc = mdb_get(txn, st->db_messages, &k, &v)) != 0)
		return rc;
	return store_msg_decode(&v, mr) == 0 ? 0 : MDB_CORRUPTED;
}

static void
msg_copy(struct queue_msg *m, uint64_t qid, const struct msg_rec *mr)
{
	memset(m, 0, sizeof(*m));
	m->qid = qid;
	m->accepted_us = mr->accepted_us;
	m->nrcpt = mr->nrcpt;
	m->remaining = mr->remaining;
	m->body_len = mr->body_len;
	memcpy(m->sender, mr->sender, sizeof(m->sender));
	memcpy(m->msgid, mr->msgid, sizeof(m->msgid));
}

/* --- listing -------------------------------------------------------------- */

/* Visit the entries of message qid (cursor positioned by the caller at
 * its first entry, or anywhere: it seeks). Returns 0, MDB_NOTFOUND when
 * the message is not queued, the callback's stop (1), or an LMDB code. */
static int
visit_msg(MDB_txn *txn, struct store *st, MDB_cursor *cur, uint64_t qid,
	  const struct queue_filter *f, uint64_t now_us, struct owners *o,
	  struct queue_entry **ents, size_t *cap, queue_fn *fn, void *arg)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	MDB_val k = { sizeof(key), key }, v;
	struct msg_rec mr;
	struct queue_msg m;
	struct rcpt_rec rr;
	size_t n = 0;
	int rc;

	if ((rc = msg_get_txn(txn, st, qid, &mr)) != 0)
		return rc;
	if (!msg_matches(f, &mr, now_us))
		return 0;
	store_rcpt_key(key, qid, 0);
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct queue_entry e;
		uint32_t idx;

		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    be64_get(k.mv_data) != qid)
			break;
		if (store_rcpt_decode(&v, &rr) < 0)
			return MDB_CORRUPTED;
		idx = be32_get((unsigned char *)k.mv_data + 8);
		entry_fill(&e, qid, idx, &rr, rr.state == ST_ACTIVE &&
			   owner_alive(txn, st, o, rr.owner_instance), now_us);
		if (!entry_matches(f, &e))
			continue;
		if (n == *cap) {
			*cap = *cap ? *cap * 2 : 16;
			*ents = xrealloc(*ents, *cap * sizeof(**ents));
		}
		(*ents)[n++] = e;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (n == 0)
		return 0;
	msg_copy(&m, qid, &mr);
	return fn(&m, *ents, n, arg) != 0 ? 1 : 0;
}

int
queue_foreach(struct store *st, const struct queue_filter *f,
	      uint64_t now_us, queue_fn *fn, void *arg, const char **error_r)
{
	static const struct queue_filter none;
	struct queue_entry *ents = NULL;
	struct owners o = { .n = 0 };
	MDB_cursor *mcur = NULL, *rcur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	size_t cap = 0;
	int rc;

	if (f == NULL)
		f = &none;
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	if ((rc = mdb_cursor_open(txn, st->db_rcpts, &rcur)) != 0)
		goto out;
	if (f->nqids > 0) {
		for (size_t i = 0; i < f->nqids && rc == 0; i++) {
			rc = visit_msg(txn, st, rcur, f->qids[i], f, now_us,
				       &o, &ents, &cap, fn, arg);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
	} else if ((rc = mdb_cursor_open(txn, st->db_messages, &mcur)) == 0) {
		while ((rc = mdb_cursor_get(mcur, &k, &v, MDB_NEXT)) == 0) {
			if (k.mv_size != 8) {
				rc = MDB_CORRUPTED;
				break;
			}
			rc = visit_msg(txn, st, rcur, be64_get(k.mv_data), f,
				       now_us, &o, &ents, &cap, fn, arg);
			if (rc != 0)
				break;
		}
		mdb_cursor_close(mcur);
	}
	mdb_cursor_close(rcur);
out:
	store_read_end(st, &txn);
	free(ents);
	if (rc == 0 || rc == 1 || rc == MDB_NOTFOUND)
		return STORE_OK;
	return store_fail(st, rc, "read queue", error_r);
}

int
queue_history(struct store *st, uint64_t qid, struct queue_event **ev_r,
	      size_t *n_r, const char **error_r)
{
	unsigned char key[8];
	struct queue_event *ev = NULL;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k = { 8, key }, v;
	MDB_cursor_op op = MDB_SET_RANGE;
	size_t n = 0, cap = 0;
	int rc;

	*ev_r = NULL;
	*n_r = 0;
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	be64_put(key, qid);
	rc = mdb_cursor_open(txn, st->db_history, &cur);
	while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		uint8_t from, to;

		op = MDB_NEXT;
		if (k.mv_size != STORE_KEY_HISTORY_LEN ||
		    be64_get(k.mv_data) != qid)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			ev = xrealloc(ev, cap * sizeof(*ev));
		}
		if (store_history_decode(&v, &from, &to, ev[n].note) < 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		ev[n].idx = be32_get((unsigned char *)k.mv_data + 8);
		ev[n].at_us = be64_get((unsigned char *)k.mv_data + 12);
		ev[n].from = from;
		ev[n].to = to;
		n++;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(st, &txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		free(ev);
		return store_fail(st, rc, "read history", error_r);
	}
	*ev_r = ev;
	*n_r = n;
	return STORE_OK;
}

/* --- changes -------------------------------------------------------------- */

struct target {
	uint64_t qid;
	uint32_t idx;
};

struct gather {
	struct target *t;
	size_t n, cap;
};

static int
gather_fn(const struct queue_msg *m, const struct queue_entry *e, size_t n,
	  void *arg)
{
	struct gather *g = arg;

	(void)m;
	for (size_t i = 0; i < n; i++) {
		if (g->n == g->cap) {
			g->cap = g->cap ? g->cap * 2 : 64;
			g->t = xrealloc(g->t, g->cap * sizeof(*g->t));
		}
		g->t[g->n].qid = e[i].qid;
		g->t[g->n++].idx = e[i].idx;
	}
	return 0;
}

struct change_args {
	const struct queue_op_args *a;
	const struct target *t;
	size_t n;
	uint64_t now_us;
	struct queue_change *out;	/* n results */
	struct owners o;
};

static void
say(struct queue_change *c, bool applied, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
say(struct queue_change *c, bool applied, const char *fmt, ...)
{
	va_list ap;

	c->applied = applied;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

/* Back to pending, due now: clears the being-sent and dead-letter flags;
 * a dead letter starts counting its attempts afresh. */
static int
to_pending(struct store_wtx *w, const struct target *t, struct rcpt_rec *rr,
	   uint64_t now_us)
{
	if (rr->flags & RCPT_FLAG_DEAD)
		rr->attempts = 0;
	rr->flags = 0;
	return claim_move_txn(w, t->qid, t->idx, rr, ST_PENDING, now_us);
}

static int
note_txn(struct store_wtx *w, const struct target *t,
	 const struct rcpt_rec *rr, const char *text, uint64_t now_us,
	 uint64_t *seq_r)
{
	struct ledger_rec lr;
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	struct msg_rec mr;
	int rc;

	be64_put(key, t->qid);
	if ((rc = mdb_get(w->txn, w->st->db_messages, &k, &v)) != 0)
		return rc;
	if (store_msg_decode(&v, &mr) < 0)
		return MDB_CORRUPTED;
	memset(&lr, 0, sizeof(lr));
	lr.kind = LEDGER_NOTE;
	lr.qid = t->qid;
	lr.idx = t->idx;
	lr.accepted_us = mr.accepted_us;
	lr.done_us = now_us;
	snprintf(lr.rcpt, sizeof(lr.rcpt), "%s", rr->rcpt);
	snprintf(lr.msgid, sizeof(lr.msgid), "%s", mr.msgid);
	snprintf(lr.reply, sizeof(lr.reply), "%s", text);
	memcpy(lr.received_sha, mr.received_sha, 32);
	if ((rc = ledger_append_txn(w, &lr)) != 0)
		return rc;
	*seq_r = lr.seq;
	return 0;
}

/* The terminal record of (qid, idx) in w's txn: its seq, 0, or < 0. */
static int64_t
terminal_seq(struct store_wtx *w, uint64_t qid, uint32_t idx)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	MDB_val k = { sizeof(key), key }, v;
	int rc;

	store_rcpt_key(key, qid, idx);
	rc = mdb_get(w->txn, w->st->db_ledger_idx, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return -rc;
	return v.mv_size == 8 ? (int64_t)be64_get(v.mv_data) : 0;
}

/* An active entry whose owner is gone and which may have been handed
 * over: in-doubt, as recovery would make it; only resolve settles it. */
static int
sending_to_indoubt(struct store_wtx *w, const struct target *t,
		   struct rcpt_rec *rr, struct queue_change *c, bool dry)
{
	say(c, true, "owner gone while it was being sent: now in-doubt; "
	    "settle it with postern resolve");
	return dry ? 0 : claim_move_txn(w, t->qid, t->idx, rr, ST_INDOUBT, 0);
}

/* Decide and (unless a dry run) apply the operation to one entry. */
static int
change_one(struct store_wtx *w, struct change_args *x, const struct target *t,
	   struct queue_change *c)
{
	const struct queue_op_args *a = x->a;
	const char *who = a->who ? a->who : "operator";
	const char *reason = a->reason ? a->reason : "no reason given";
	char note[STORE_REPLY_MAX + 1];
	struct rcpt_rec rr;
	bool live, dry = a->dry_run;
	int64_t seq;
	int rc;

	memset(c, 0, sizeof(*c));
	c->qid = t->qid;
	c->idx = t->idx;
	rc = claim_rcpt_get_txn(w, t->qid, t->idx, &rr);
	if (rc == MDB_NOTFOUND) {
		seq = terminal_seq(w, t->qid, t->idx);
		if (seq < 0)
			return (int)-seq;
		c->ledger_seq = (uint64_t)seq;
		say(c, false, seq > 0 ? "no longer queued: terminal in ledger "
		    "record %" PRId64 "; not changed" : "no longer queued",
		    seq);
		return 0;
	}
	if (rc != 0)
		return rc;
	c->from = rr.state;
	memcpy(c->rcpt, rr.rcpt, sizeof(c->rcpt));
	live = rr.state == ST_ACTIVE && rr.lease_until_us > x->now_us &&
	       owner_alive(w->txn, w->st, &x->o, rr.owner_instance);
	if (live) {
		say(c, false, "being delivered now by worker %u of a running "
		    "posternd; try again when it is done", rr.owner_worker);
		return 0;
	}
	snprintf(note, sizeof(note), "%s by %s: %s", queue_op_name(a->op),
		 who, reason);
	w->note = note;
	switch (a->op) {
	case QUEUE_REPLAY:
		if (rr.state == ST_PENDING) {
			say(c, false, "already pending");
			return 0;
		}
		if (rr.state == ST_ACTIVE && (rr.flags & RCPT_FLAG_SENDING))
			return sending_to_indoubt(w, t, &rr, c, dry);
		if (rr.state == ST_INDOUBT) {
			say(c, true, "in-doubt: sent again now, which may make "
			    "a second copy; noted in the ledger");
			if (dry)
				return 0;
			snprintf(note, sizeof(note), "in-doubt entry sent "
				 "again (replay) by %s: %s", who, reason);
			if ((rc = note_txn(w, t, &rr, note, x->now_us,
					   &c->ledger_seq)) != 0)
				return rc;
		} else {
			say(c, true, "%s -> pending, due now",
			    store_state_name(rr.state));
		}
		return dry ? 0 : to_pending(w, t, &rr, x->now_us);
	case QUEUE_HOLD:
		if (rr.state == ST_HELD) {
			say(c, false, "already held");
			return 0;
		}
		if (rr.state == ST_INDOUBT) {
			say(c, false, "in-doubt entries wait for the operator "
			    "already; use postern resolve");
			return 0;
		}
		/* Held and then released, it would be sent again with no
		 * trace that it may have arrived already. */
		if (rr.state == ST_ACTIVE && (rr.flags & RCPT_FLAG_SENDING))
			return sending_to_indoubt(w, t, &rr, c, dry);
		say(c, true, "%s -> held", store_state_name(rr.state));
		if (dry)
			return 0;
		return claim_move_txn(w, t->qid, t->idx, &rr, ST_HELD, 0);
	case QUEUE_RELEASE:
		if (rr.state != ST_HELD) {
			say(c, false, "not held (%s)", store_state_name(rr.state));
			return 0;
		}
		say(c, true, "held%s -> pending, due now",
		    rr.flags & RCPT_FLAG_DEAD ? " (dead letter)" : "");
		return dry ? 0 : to_pending(w, t, &rr, x->now_us);
	case QUEUE_DELETE:
		say(c, true, "%s -> deleted; recorded in the ledger",
		    store_state_name(rr.state));
		if (dry)
			return 0;
		snprintf(note, sizeof(note), "deleted by %s: %s", who, reason);
		if ((rc = claim_finalize_txn(w, t->qid, t->idx, &rr,
					     LEDGER_DELETED, note,
					     x->now_us)) != 0)
			return rc;
		seq = terminal_seq(w, t->qid, t->idx);
		c->ledger_seq = seq > 0 ? (uint64_t)seq : 0;
		return 0;
	case QUEUE_RESOLVE_DELIVERED:
		if (rr.state != ST_INDOUBT) {
			say(c, false, "not in-doubt (%s)",
			    store_state_name(rr.state));
			return 0;
		}
		say(c, true, "in-doubt -> delivered; recorded in the ledger");
		if (dry)
			return 0;
		snprintf(note, sizeof(note), "resolved as delivered by %s: %s",
			 who, reason);
		if ((rc = claim_finalize_txn(w, t->qid, t->idx, &rr,
					     LEDGER_DELIVERED, note,
					     x->now_us)) != 0)
			return rc;
		seq = terminal_seq(w, t->qid, t->idx);
		c->ledger_seq = seq > 0 ? (uint64_t)seq : 0;
		return 0;
	case QUEUE_RESOLVE_REDELIVER:
		if (rr.state != ST_INDOUBT) {
			say(c, false, "not in-doubt (%s)",
			    store_state_name(rr.state));
			return 0;
		}
		say(c, true, "in-doubt -> pending, sent again now; noted in "
		    "the ledger");
		if (dry)
			return 0;
		snprintf(note, sizeof(note), "resolved for redelivery by %s: "
			 "%s", who, reason);
		if ((rc = note_txn(w, t, &rr, note, x->now_us,
				   &c->ledger_seq)) != 0)
			return rc;
		return to_pending(w, t, &rr, x->now_us);
	}
	say(c, false, "unknown operation");
	return 0;
}

static int
change_txn(struct store_wtx *w, void *arg)
{
	struct change_args *x = arg;
	int rc;

	/* The body may run again after the map grew: start from scratch. */
	x->o.n = 0;
	for (size_t i = 0; i < x->n; i++) {
		w->note = NULL;
		if ((rc = change_one(w, x, &x->t[i], &x->out[i])) != 0)
			return rc;
	}
	w->note = NULL;
	return 0;
}

struct named_args {
	queue_report_fn *report;
	void *arg;
	size_t count;
};

static int
named_terminal_fn(const struct ledger_rec *rec, void *arg)
{
	struct named_args *na = arg;
	struct queue_change c;

	memset(&c, 0, sizeof(c));
	c.qid = rec->qid;
	c.idx = rec->idx;
	c.ledger_seq = rec->seq;
	snprintf(c.rcpt, sizeof(c.rcpt), "%s", rec->rcpt);
	snprintf(c.why, sizeof(c.why), "already %s (ledger record %" PRIu64
		 "); not changed", ledger_kind_name(rec->kind), rec->seq);
	na->report(&c, na->arg);
	na->count++;
	return 0;
}

/* The entries of a named message that the filter left out. */
struct unselected_args {
	const struct gather *g;
	queue_report_fn *report;
	void *arg;
	size_t count;
};

static int
unselected_fn(const struct queue_msg *m, const struct queue_entry *e,
	      size_t n, void *arg)
{
	struct unselected_args *ua = arg;
	struct queue_change c;

	(void)m;
	for (size_t i = 0; i < n; i++) {
		bool selected = false;

		for (size_t j = 0; j < ua->g->n && !selected; j++)
			selected = ua->g->t[j].qid == e[i].qid &&
				   ua->g->t[j].idx == e[i].idx;
		if (selected)
			continue;
		memset(&c, 0, sizeof(c));
		c.qid = e[i].qid;
		c.idx = e[i].idx;
		c.from = e[i].state;
		memcpy(c.rcpt, e[i].rcpt, sizeof(c.rcpt));
		snprintf(c.why, sizeof(c.why), "%s, which this does not "
			 "select; not changed", store_state_name(e[i].state));
		ua->report(&c, ua->arg);
		ua->count++;
	}
	return 0;
}

/* A named queue id: report its recipients that are terminal already, the
 * queued ones the filter left out, and "no such message" when it is
 * neither queued nor in the ledger. */
static int
report_named(struct store *st, uint64_t qid, const struct gather *g,
	     queue_report_fn *report, void *arg, size_t *skipped,
	     const char **error_r)
{
	struct named_args na = { report, arg, 0 };
	struct unselected_args ua = { g, report, arg, 0 };
	struct queue_filter only = { .qids = &qid, .nqids = 1 };
	struct queue_change c;
	int rc;

	rc = ledger_foreach_qid(st, qid, named_terminal_fn, &na, error_r);
	if (rc != STORE_OK)
		return rc;
	*skipped += na.count;
	rc = queue_foreach(st, &only, store_now_us(), unselected_fn, &ua,
			   error_r);
	if (rc != STORE_OK)
		return rc;
	*skipped += ua.count;
	if (na.count == 0 && ua.count == 0) {
		bool queued = false;

		for (size_t j = 0; j < g->n && !queued; j++)
			queued = g->t[j].qid == qid;
		if (queued)
			return STORE_OK;
		memset(&c, 0, sizeof(c));
		c.qid = qid;
		c.idx = UINT32_MAX;
		snprintf(c.why, sizeof(c.why), "no such message in the queue "
			 "or the ledger");
		report(&c, arg);
		(*skipped)++;
	}
	return STORE_OK;
}

int
queue_change(struct store *st, const struct queue_op_args *a,
	     const struct queue_filter *f, queue_report_fn *report, void *arg,
	     size_t *applied_r, size_t *skipped_r, const char **error_r)
{
	struct gather g = { NULL, 0, 0 };
	struct queue_change out[CHANGE_BATCH];
	uint64_t now_us = store_now_us();
	int rc;

	*applied_r = *skipped_r = 0;
	rc = queue_foreach(st, f, now_us, gather_fn, &g, error_r);
	for (size_t i = 0; rc == STORE_OK && f != NULL && i < f->nqids; i++)
		rc = report_named(st, f->qids[i], &g, report, arg, skipped_r,
				  error_r);
	for (size_t off = 0; rc == STORE_OK && off < g.n; off += CHANGE_BATCH) {
		/* out is where change_txn writes its results; nothing
		 * reads it before. */
		/* cppcheck-suppress legacyUninitvar */
		struct change_args x = { a, g.t + off, g.n - off, now_us, out,
					 { .n = 0 } };

		if (x.n > CHANGE_BATCH)
			x.n = CHANGE_BATCH;
		if (a->dry_run) {
			/* The same decisions in a transaction that is
			 * thrown away: nothing changes. */
			rc = store_read_only_run(st, change_txn, &x, error_r);
		} else {
			rc = store_write(st, change_txn, &x, error_r);
		}
		if (rc != STORE_OK)
			break;
		for (size_t i = 0; i < x.n; i++) {
			if (out[i].applied)
				(*applied_r)++;
			else
				(*skipped_r)++;
			report(&out[i], arg);
		}
	}
	free(g.t);
	return rc;
}

/* --- stats ------------------------------------------------------------------ */

int
queue_oldest(struct store *st, uint64_t *qid_r, uint64_t *accepted_us_r,
	     const char **error_r)
{
	struct msg_rec mr;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	*qid_r = *accepted_us_r = 0;
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = mdb_cursor_open(txn, st->db_messages, &cur);
	if (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
		if (k.mv_size != 8 || store_msg_decode(&v, &mr) < 0) {
			rc = MDB_CORRUPTED;
		} else {
			*qid_r = be64_get(k.mv_data);
			*accepted_us_r = mr.accepted_us;
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(st, &txn);
	if (rc == 0 || rc == MDB_NOTFOUND)
		return STORE_OK;
	return store_fail(st, rc, "oldest message", error_r);
}

int
queue_stats(struct store *st, uint64_t now_us, struct queue_stats *s,
	    const char **error_r)
{
	struct msg_rec mr;
	struct rcpt_rec rr;
	struct ledger_rec lr;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	MDB_stat ls;
	int rc;

	memset(s, 0, sizeof(*s));
	store_map_usage(st, &s->map_size, &s->map_used);
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	if ((rc = store_counters_load_txn(txn, st, &s->c)) != 0)
		goto out;
	if ((rc = mdb_stat(txn, st->db_ledger, &ls)) != 0)
		goto out;
	s->ledger_records = ls.ms_entries;
	if ((rc = mdb_cursor_open(txn, st->db_messages, &cur)) != 0)
		goto out;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (store_msg_decode(&v, &mr) < 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		s->messages++;
		s->bytes += mr.body_len;
		if (s->oldest_us == 0 || mr.accepted_us < s->oldest_us) {
			s->oldest_us = mr.accepted_us;
			s->oldest_qid = k.mv_size == 8 ? be64_get(k.mv_data) : 0;
		}
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (rc != MDB_NOTFOUND)
		goto out;
	/* Queued entries by the age of their message, in hours. */
	if ((rc = mdb_cursor_open(txn, st->db_rcpts, &cur)) != 0)
		goto out;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		uint64_t age;

		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    store_rcpt_decode(&v, &rr) < 0 ||
		    msg_get_txn(txn, st, be64_get(k.mv_data), &mr) != 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		age = now_us > mr.accepted_us ? now_us - mr.accepted_us : 0;
		s->accepted_hour[age / 3600000000u < 23 ?
				 age / 3600000000u : 23]++;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (rc != MDB_NOTFOUND)
		goto out;
	/* Outcomes of the last 24 hours, read backwards from the end. */
	if ((rc = mdb_cursor_open(txn, st->db_ledger, &cur)) != 0)
		goto out;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) == 0) {
		uint64_t age;
		unsigned char *p = v.mv_data;

		if (v.mv_size < 30) {
			rc = MDB_CORRUPTED;
			break;
		}
		lr.kind = p[1];
		lr.done_us = be64_get(p + 22);
		age = now_us > lr.done_us ? now_us - lr.done_us : 0;
		if (age >= 24 * 3600000000ull)
			break;
		/* Outcomes only: not a note, not a resubmission (the
		 * message it names was queued, and is counted, once). */
		if (lr.kind != LEDGER_DELIVERED && lr.kind != LEDGER_BOUNCED &&
		    lr.kind != LEDGER_DELETED)
			continue;
		s->done_hour[age / 3600000000u]++;
		if (age < 60000000u)
			s->done_minute++;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(st, &txn);
	return rc == 0 ? STORE_OK : store_fail(st, rc, "stats", error_r);
}
