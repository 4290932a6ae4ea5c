/*
 * ledger.c - append terminal outcomes to the hash-chained ledger; verify.
 *
 * Owns:    the "ledger", "ledger_idx" and "ledger_mid" databases and the
 *          meta key "ledger_head". Nothing else writes them.
 * Threads: any; appends run inside the caller's write transaction.
 * Schema:  lmdb-schema/ledger.md, ledger_idx.md, ledger_mid.md
 */
#include "ledger.h"
#include "store_private.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_KEY "ledger_head"
#define HEAD_LEN (1 + 8 + 32)

char *
ledger_hex(const unsigned char hash[32], char *buf)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		buf[2 * i] = hex[hash[i] >> 4];
		buf[2 * i + 1] = hex[hash[i] & 15];
	}
	buf[64] = '\0';
	return buf;
}

static void
sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;

	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
		panic("SHA-256 failed");
}

size_t
ledger_rec_encode(const struct ledger_rec *r, unsigned char *buf)
{
	unsigned char *p = buf;

	*p++ = STORE_REC_VERSION_2;
	*p++ = r->kind;
	be64_put(p, r->qid);		p += 8;
	be32_put(p, r->idx);		p += 4;
	be64_put(p, r->accepted_us);	p += 8;
	be64_put(p, r->done_us);	p += 8;
	memcpy(p, r->body_sha, 32);	p += 32;
	memcpy(p, r->prev_hash, 32);	p += 32;
	p += store_str_put(p, r->rcpt, STORE_ADDR_MAX);
	p += store_str_put(p, r->msgid, STORE_MSGID_MAX);
	p += store_str_put(p, r->reply, STORE_REPLY_MAX);
	memcpy(p, r->received_sha, 32);	p += 32;
	return (size_t)(p - buf);
}

int
ledger_rec_decode(const MDB_val *v, struct ledger_rec *r)
{
	const unsigned char *p = v->mv_data, *end = p + v->mv_size;

	if (v->mv_size < LEDGER_FIXED || (p[0] != STORE_REC_VERSION &&
					  p[0] != STORE_REC_VERSION_2))
		return -1;
	r->kind = p[1];
	p += 2;
	r->qid = be64_get(p);		p += 8;
	r->idx = be32_get(p);		p += 4;
	r->accepted_us = be64_get(p);	p += 8;
	r->done_us = be64_get(p);	p += 8;
	memcpy(r->body_sha, p, 32);	p += 32;
	memcpy(r->prev_hash, p, 32);	p += 32;
	if (store_str_get(&p, end, r->rcpt, STORE_ADDR_MAX) < 0 ||
	    store_str_get(&p, end, r->msgid, STORE_MSGID_MAX) < 0 ||
	    store_str_get(&p, end, r->reply, STORE_REPLY_MAX) < 0)
		return -1;
	memset(r->received_sha, 0, 32);
	if (((const unsigned char *)v->mv_data)[0] == STORE_REC_VERSION_2) {
		if (end - p != 32)
			return -1;
		memcpy(r->received_sha, p, 32);
		p += 32;
	}
	if (p != end)
		return -1;
	if (r->kind < LEDGER_DELIVERED || r->kind > LEDGER_RESUBMISSION)
		return -1;
	return 0;
}

const char *
ledger_kind_name(enum ledger_kind kind)
{
	switch (kind) {
	case LEDGER_DELIVERED:	return "delivered";
	case LEDGER_BOUNCED:	return "bounced";
	case LEDGER_DELETED:	return "deleted";
	case LEDGER_NOTE:	return "note";
	case LEDGER_RESUBMISSION: return "resubmission";
	}
	return "?";
}

static int
head_get(MDB_txn *txn, struct store *st, uint64_t *seq_r,
	 unsigned char hash[32])
{
	MDB_val k = { strlen(HEAD_KEY), HEAD_KEY }, v;
	int rc = mdb_get(txn, st->db_meta, &k, &v);

	*seq_r = 0;
	memset(hash, 0, 32);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (v.mv_size != HEAD_LEN || ((unsigned char *)v.mv_data)[0] !=
	    STORE_REC_VERSION)
		return MDB_CORRUPTED;
	*seq_r = be64_get((unsigned char *)v.mv_data + 1);
	memcpy(hash, (unsigned char *)v.mv_data + 9, 32);
	return 0;
}

int
ledger_has_txn(struct store_wtx *w, uint64_t qid, uint32_t idx)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	MDB_val k = { sizeof(key), key }, v;
	int rc;

	store_rcpt_key(key, qid, idx);
	rc = mdb_get(w->txn, w->st->db_ledger_idx, &k, &v);
	if (rc == 0)
		return 1;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
ledger_append_txn(struct store_wtx *w, struct ledger_rec *rec)
{
	struct store *st = w->st;
	unsigned char buf[LEDGER_REC_MAX], head[HEAD_LEN], key[8],
		ikey[STORE_KEY_RCPT_LEN], sbuf[8], hash[32];
	MDB_val k, v;
	uint64_t seq;
	size_t len, midlen;
	int rc;

	if ((rc = head_get(w->txn, st, &seq, rec->prev_hash)) != 0)
		return rc;
	rec->seq = seq + 1;
	/* The refusal of a second terminal record: same txn as the append. */
	store_rcpt_key(ikey, rec->qid, rec->idx);
	be64_put(sbuf, rec->seq);
	k.mv_size = sizeof(ikey);
	k.mv_data = ikey;
	v.mv_size = 8;
	v.mv_data = sbuf;
	rc = rec->kind == LEDGER_NOTE || rec->kind == LEDGER_RESUBMISSION ? 0 :
	     mdb_put(w->txn, st->db_ledger_idx, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		w->fail = "ledger already holds a terminal record for this "
			  "(message, recipient)";
		return -1;
	}
	if (rc != 0)
		return rc;
	len = ledger_rec_encode(rec, buf);
	be64_put(key, rec->seq);
	k.mv_size = 8;
	k.mv_data = key;
	v.mv_size = len;
	v.mv_data = buf;
	if ((rc = mdb_put(w->txn, st->db_ledger, &k, &v, MDB_APPEND)) != 0)
		return rc;
	midlen = strlen(rec->msgid);
	if (midlen > 0) {
		k.mv_size = midlen > STORE_MID_KEY_MAX ? STORE_MID_KEY_MAX :
			    midlen;
		k.mv_data = rec->msgid;
		v.mv_size = 8;
		v.mv_data = key;
		if ((rc = mdb_put(w->txn, st->db_ledger_mid, &k, &v, 0)) != 0)
			return rc;
	}
	sha256(buf, len, hash);
	head[0] = STORE_REC_VERSION;
	be64_put(head + 1, rec->seq);
	memcpy(head + 9, hash, 32);
	k.mv_size = strlen(HEAD_KEY);
	k.mv_data = HEAD_KEY;
	v.mv_size = sizeof(head);
	v.mv_data = head;
	if ((rc = mdb_put(w->txn, st->db_meta, &k, &v, 0)) != 0)
		return rc;
	if (rec->kind == LEDGER_DELIVERED)
		w->c.delivered++;
	else if (rec->kind == LEDGER_BOUNCED)
		w->c.bounced++;
	else if (rec->kind == LEDGER_DELETED)
		w->c.deleted++;
	else if (rec->kind == LEDGER_RESUBMISSION)
		w->c.resubmitted++;
	return 0;
}

static int
get_txn(MDB_txn *txn, struct store *st, uint64_t seq, struct ledger_rec *rec)
{
	unsigned char key[8];
	MDB_val k = { 8, key }, v;
	int rc;

	be64_put(key, seq);
	if ((rc = mdb_get(txn, st->db_ledger, &k, &v)) != 0)
		return rc;
	if (ledger_rec_decode(&v, rec) < 0)
		return MDB_CORRUPTED;
	rec->seq = seq;
	return 0;
}

int
ledger_get(struct store *st, uint64_t seq, struct ledger_rec *rec,
	   const char **error_r)
{
	MDB_txn *txn;
	int rc;

	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = get_txn(txn, st, seq, rec);
	store_read_end(st, &txn);
	if (rc == 0)
		return 1;
	if (rc == MDB_NOTFOUND)
		return 0;
	return store_fail(st, rc, "read ledger", error_r);
}

int
ledger_foreach_qid(struct store *st, uint64_t qid,
		   int (*fn)(const struct ledger_rec *rec, void *arg),
		   void *arg, const char **error_r)
{
	unsigned char key[STORE_KEY_RCPT_LEN];
	struct ledger_rec rec;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k = { sizeof(key), key }, v;
	MDB_cursor_op op = MDB_SET_RANGE;
	int rc;

	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	store_rcpt_key(key, qid, 0);
	rc = mdb_cursor_open(txn, st->db_ledger_idx, &cur);
	while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    be64_get(k.mv_data) != qid)
			break;
		if (v.mv_size != 8) {
			rc = MDB_CORRUPTED;
			break;
		}
		if ((rc = get_txn(txn, st, be64_get(v.mv_data), &rec)) != 0 ||
		    fn(&rec, arg) != 0)
			break;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(st, &txn);
	if (rc == 0 || rc == MDB_NOTFOUND)
		return STORE_OK;
	return store_fail(st, rc, "read ledger index", error_r);
}

/* ledger_foreach(): adapt fn to ledger_foreach_raw(). */
struct plain_fn {
	int (*fn)(const struct ledger_rec *rec, void *arg);
	void *arg;
};

static int
plain_fn(const struct ledger_rec *rec, const unsigned char *raw, size_t len,
	 void *arg)
{
	struct plain_fn *p = arg;

	(void)raw;
	(void)len;
	return p->fn(rec, p->arg);
}

int
ledger_foreach(struct store *st, uint64_t from,
	       int (*fn)(const struct ledger_rec *rec, void *arg), void *arg,
	       const char **error_r)
{
	struct plain_fn p = { fn, arg };

	return ledger_foreach_raw(st, from, plain_fn, &p, error_r);
}

int
ledger_head(struct store *st, uint64_t *seq_r, unsigned char hash[32],
	    const char **error_r)
{
	MDB_txn *txn;
	int rc;

	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = head_get(txn, st, seq_r, hash);
	store_read_end(st, &txn);
	return rc == 0 ? STORE_OK : store_fail(st, rc, "ledger head", error_r);
}

void
ledger_sha256(const void *data, size_t len, unsigned char out[32])
{
	sha256(data, len, out);
}

int
ledger_foreach_raw(struct store *st, uint64_t from,
		   int (*fn)(const struct ledger_rec *rec,
			     const unsigned char *raw, size_t len, void *arg),
		   void *arg, const char **error_r)
{
	unsigned char key[8];
	struct ledger_rec rec;
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k = { 8, key }, v;
	MDB_cursor_op op = MDB_SET_RANGE;
	int rc;

	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	be64_put(key, from);
	rc = mdb_cursor_open(txn, st->db_ledger, &cur);
	while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size != 8 || ledger_rec_decode(&v, &rec) < 0) {
			rc = MDB_CORRUPTED;
			break;
		}
		rec.seq = be64_get(k.mv_data);
		if (fn(&rec, v.mv_data, v.mv_size, arg) != 0)
			break;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_read_end(st, &txn);
	if (rc == 0 || rc == MDB_NOTFOUND)
		return STORE_OK;
	return store_fail(st, rc, "read ledger", error_r);
}

/* --- verify ------------------------------------------------------------ */

struct vctx {
	struct store *st;
	MDB_txn *txn;
	FILE *out;
	struct verify_report *r;
	uint64_t total;		/* ledger records, for progress */
};

/* One problem: counted, written to out as a line, and handed to the
 * report's on_problem with its kind (a stable name, for JSON) and the
 * ledger record it is about (0: not one record). */
static void
problem(struct vctx *x, const char *kind, uint64_t record,
	const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
problem(struct vctx *x, const char *kind, uint64_t record,
	const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	x->r->problems++;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (x->out != NULL)
		fprintf(x->out, "%s\n", text);
	if (x->r->on_problem != NULL)
		x->r->on_problem(kind, record, text, x->r->problem_arg);
}

/* Walk the chain; each record's own hash must be what the next one (or
 * the head) recorded. */
static int
verify_chain(struct vctx *x, uint64_t *terminal_r)
{
	struct store *st = x->st;
	unsigned char prev[32] = { 0 }, head_hash[32], ikey[12];
	char h1[65], h2[65];
	struct ledger_rec rec;
	MDB_cursor *cur = NULL;
	MDB_val k, v, ik, iv;
	uint64_t last = 0, head_seq, seq;
	bool prev_ok = true;
	int rc;

	MDB_stat ls;

	if ((rc = head_get(x->txn, st, &head_seq, head_hash)) != 0)
		return rc;
	if ((rc = mdb_stat(x->txn, st->db_ledger, &ls)) != 0)
		return rc;
	x->total = ls.ms_entries;
	if ((rc = mdb_cursor_open(x->txn, st->db_ledger, &cur)) != 0)
		return rc;
	*terminal_r = 0;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		seq = k.mv_size == 8 ? be64_get(k.mv_data) : 0;
		x->r->records++;
		if (x->r->progress != NULL && (x->r->records & 0xffff) == 0)
			x->r->progress(x->r->records, x->total,
				       x->r->progress_arg);
		if (seq != last + 1)
			problem(x, "sequence_gap", seq,
				"ledger record %" PRIu64 ": sequence gap "
				"after record %" PRIu64, seq, last);
		if (ledger_rec_decode(&v, &rec) < 0) {
			problem(x, "malformed_record", seq,
				"ledger record %" PRIu64 ": malformed "
				"(cannot be decoded)", seq);
			sha256(v.mv_data, v.mv_size, prev);
			last = seq;
			prev_ok = false;
			continue;
		}
		if (memcmp(rec.prev_hash, prev, 32) != 0 && prev_ok)
			problem(x, "chain_mismatch", last,
				"ledger record %" PRIu64 ": does not match "
				"the hash chained in record %" PRIu64
				" (tampered or corrupt): %s != %s", last, seq,
				ledger_hex(prev, h1),
				ledger_hex(rec.prev_hash, h2));
		prev_ok = true;
		sha256(v.mv_data, v.mv_size, prev);
		last = seq;
		if (rec.kind == LEDGER_NOTE)
			continue;
		if (rec.kind == LEDGER_RESUBMISSION) {
			x->r->counted.resubmitted++;
			continue;
		}
		if (rec.kind == LEDGER_DELIVERED)
			x->r->counted.delivered++;
		else if (rec.kind == LEDGER_BOUNCED)
			x->r->counted.bounced++;
		else
			x->r->counted.deleted++;
		(*terminal_r)++;
		store_rcpt_key(ikey, rec.qid, rec.idx);
		ik.mv_size = sizeof(ikey);
		ik.mv_data = ikey;
		if (mdb_get(x->txn, st->db_ledger_idx, &ik, &iv) != 0 ||
		    iv.mv_size != 8 || be64_get(iv.mv_data) != seq)
			problem(x, "second_terminal", seq,
				"ledger record %" PRIu64 ": second terminal "
				"record for queue id %016" PRIX64 " recipient "
				"%u <%s>", seq, rec.qid, rec.idx, rec.rcpt);
		if (mdb_get(x->txn, st->db_rcpts, &ik, &iv) == 0)
			problem(x, "terminal_still_queued", seq,
				"ledger record %" PRIu64 ": queue id %016"
				PRIX64 " recipient %u is terminal but still "
				"queued", seq, rec.qid, rec.idx);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	if (head_seq != last)
		problem(x, "head_mismatch", head_seq,
			"ledger head names record %" PRIu64 " but the "
			"last record is %" PRIu64, head_seq, last);
	else if (last > 0 && memcmp(head_hash, prev, 32) != 0)
		problem(x, "head_hash_mismatch", last,
			"ledger record %" PRIu64 ": does not match the "
			"hash chained in the ledger head (tampered or corrupt)",
			last);
	return 0;
}

static int
verify_queue(struct vctx *x)
{
	struct store *st = x->st;
	unsigned char nkey[STORE_KEY_NOTIFY_LEN];
	struct rcpt_rec rr;
	MDB_cursor *cur = NULL;
	MDB_val k, v, nk, nv;
	MDB_stat ns, as;
	uint64_t qid;
	uint32_t idx;
	int rc;

	if ((rc = mdb_cursor_open(x->txn, st->db_rcpts, &cur)) != 0)
		return rc;
	while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    store_rcpt_decode(&v, &rr) < 0) {
			problem(x, "malformed_entry", 0,
				"recipients: malformed entry");
			continue;
		}
		qid = be64_get(k.mv_data);
		idx = be32_get((unsigned char *)k.mv_data + 8);
		(*store_counter_for(&x->r->counted, rr.state))++;
		if (rr.state == ST_PENDING || rr.state == ST_DEFERRED) {
			store_notify_key(nkey, rr.next_try_us, qid, idx);
			nk.mv_size = sizeof(nkey);
			nk.mv_data = nkey;
		} else if (rr.state == ST_ACTIVE) {
			nk = k;
		} else {
			continue;
		}
		if (mdb_get(x->txn, rr.state == ST_ACTIVE ? st->db_active :
			    st->db_notify, &nk, &nv) != 0)
			problem(x, "missing_from_index", 0,
				"queue id %016" PRIX64 " recipient %u is %s "
				"but missing from its index", qid, idx,
				store_state_name(rr.state));
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	mdb_stat(x->txn, st->db_notify, &ns);
	mdb_stat(x->txn, st->db_active, &as);
	if (ns.ms_entries != x->r->counted.pending + x->r->counted.deferred)
		problem(x, "notify_count", 0,
			"notify holds %zu entries, expected %" PRIu64,
			ns.ms_entries,
			x->r->counted.pending + x->r->counted.deferred);
	if (as.ms_entries != x->r->counted.active)
		problem(x, "active_count", 0,
			"active holds %zu entries, expected %" PRIu64,
			as.ms_entries, x->r->counted.active);
	return 0;
}

static void
verify_counters(struct vctx *x)
{
	const struct store_counters *s = &x->r->stored;
	struct store_counters *c = &x->r->counted;
	static const char *const names[] = { "delivered", "bounced",
		"deleted", "pending", "active", "deferred", "held",
		"in-doubt" };
	const uint64_t sv[] = { s->delivered, s->bounced, s->deleted,
		s->pending, s->active, s->deferred, s->held, s->indoubt };
	const uint64_t cv[] = { c->delivered, c->bounced, c->deleted,
		c->pending, c->active, c->deferred, c->held, c->indoubt };

	c->accepted = 0;
	for (int i = 0; i < 8; i++) {
		c->accepted += cv[i];
		if (sv[i] != cv[i])
			problem(x, "counter", 0,
				"counter %s is %" PRIu64 " but a full scan "
				"finds %" PRIu64, names[i], sv[i], cv[i]);
	}
	if (s->accepted != c->accepted)
		problem(x, "conservation", 0,
			"conservation: accepted %" PRIu64 " != delivered + "
			"bounced + deleted + queued %" PRIu64, s->accepted, c->accepted);
	/* Not an entry, so outside the sum: each recognised resubmission
	 * has its ledger record. */
	if (s->resubmitted != c->resubmitted)
		problem(x, "counter", 0,
			"counter resubmitted is %" PRIu64 " but the ledger "
			"holds %" PRIu64 " resubmission records",
			s->resubmitted, c->resubmitted);
}

int
ledger_verify(struct store *st, FILE *out, struct verify_report *r,
	      const char **error_r)
{
	return ledger_verify_progress(st, out, r, NULL, NULL, error_r);
}

int
ledger_verify_progress(struct store *st, FILE *out, struct verify_report *r,
		       void (*progress)(uint64_t done, uint64_t total,
					void *arg),
		       void *arg, const char **error_r)
{
	struct verify_hooks h = { .progress = progress, .arg = arg };

	return ledger_verify_hooks(st, out, r, &h, error_r);
}

int
ledger_verify_hooks(struct store *st, FILE *out, struct verify_report *r,
		    const struct verify_hooks *h, const char **error_r)
{
	struct vctx x = { .st = st, .out = out, .r = r };
	MDB_stat is;
	uint64_t terminal;
	int rc;

	memset(r, 0, sizeof(*r));
	r->progress = h->progress;
	r->progress_arg = h->arg;
	r->on_problem = h->on_problem;
	r->problem_arg = h->arg;
	if ((rc = store_read_begin(st, &x.txn, error_r)) != STORE_OK)
		return rc;
	if (store_counters_load_txn(x.txn, st, &r->stored) != 0)
		problem(&x, "malformed_counters", 0,
			"counters record is malformed");
	if ((rc = verify_chain(&x, &terminal)) == 0 &&
	    (rc = verify_queue(&x)) == 0) {
		mdb_stat(x.txn, st->db_ledger_idx, &is);
		if (is.ms_entries != terminal)
			problem(&x, "index_count", 0,
				"ledger index holds %zu entries for %"
				PRIu64 " terminal records", is.ms_entries,
				terminal);
		verify_counters(&x);
	}
	store_read_end(st, &x.txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_fail(st, rc, "verify", error_r);
	return r->problems == 0 ? 0 : 1;
}
