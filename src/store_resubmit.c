/*
 * store_resubmit.c - the resubmission index: what the home side handed
 * over, so that the same message sent again (its 250 was lost) is
 * recognised and not queued a second time.
 *
 * Owns:    the "resubmit" and "resubmit_seq" databases.
 * Threads: any; the *_txn functions run inside the caller's write
 *          transaction (store.c's enqueue), which is what makes the lookup
 *          and the insert one atomic step.
 * Schema:  lmdb-schema/resubmit.md
 */
#include "store_private.h"
#include "ledger.h"
#include "lib/log.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define RESUBMIT_REC_LEN (1 + 8 + 4 + 8 + 4 + 8)
#define RESUBMIT_SEQ_LEN (1 + 8 + STORE_RESUBMIT_KEY_LEN)
#define PRUNE_DEFAULT 1000

/* The index record of one digest. */
struct resubmit_rec {
	uint64_t qid;
	uint32_t idx;
	uint64_t first_us;	/* queued */
	uint32_t count;		/* times sent again since */
	uint64_t last_us;	/* the last of them (0: none) */
};

static void
rec_encode(const struct resubmit_rec *r, unsigned char buf[RESUBMIT_REC_LEN])
{
	buf[0] = STORE_REC_VERSION;
	be64_put(buf + 1, r->qid);
	be32_put(buf + 9, r->idx);
	be64_put(buf + 13, r->first_us);
	be32_put(buf + 21, r->count);
	be64_put(buf + 25, r->last_us);
}

static int
rec_decode(const MDB_val *v, struct resubmit_rec *r)
{
	const unsigned char *p = v->mv_data;

	if (v->mv_size != RESUBMIT_REC_LEN || p[0] != STORE_REC_VERSION)
		return -1;
	r->qid = be64_get(p + 1);
	r->idx = be32_get(p + 9);
	r->first_us = be64_get(p + 13);
	r->count = be32_get(p + 21);
	r->last_us = be64_get(p + 25);
	return 0;
}

/* Feed s lower-cased, and its NUL, to the digest. */
static void
digest_lower(EVP_MD_CTX *ctx, const char *s)
{
	char chunk[64];
	size_t n = 0;

	for (;; s++) {
		chunk[n++] = (char)tolower((unsigned char)*s);
		if (n == sizeof(chunk) || *s == '\0') {
			if (EVP_DigestUpdate(ctx, chunk, n) != 1)
				panic("resubmit: SHA-256 failed");
			n = 0;
		}
		if (*s == '\0')
			break;
	}
}

void
store_resubmit_keys(const struct store_msg *m,
		    const unsigned char body_sha[32], unsigned char *keys)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n;

	if (ctx == NULL)
		panic("resubmit: SHA-256 failed");
	for (size_t i = 0; i < m->nrcpt; i++) {
		n = 32;
		if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
			panic("resubmit: SHA-256 failed");
		digest_lower(ctx, m->sender);
		digest_lower(ctx, m->rcpts[i]);
		if (EVP_DigestUpdate(ctx, body_sha, 32) != 1 ||
		    EVP_DigestFinal_ex(ctx, keys + i * STORE_RESUBMIT_KEY_LEN,
				       &n) != 1)
			panic("resubmit: SHA-256 failed");
	}
	EVP_MD_CTX_free(ctx);
}

int
store_resubmit_get_txn(struct store_wtx *w, const unsigned char *key,
		       uint64_t since_us, struct store_resubmit *hit_r)
{
	MDB_val k = { STORE_RESUBMIT_KEY_LEN, (void *)key }, v;
	struct resubmit_rec r;
	int rc;

	rc = mdb_get(w->txn, w->st->db_resubmit, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (rec_decode(&v, &r) < 0) {
		w->fail = "resubmission index: malformed record";
		return -1;
	}
	if (r.first_us < since_us)
		return 0;	/* out of the window, not pruned yet */
	hit_r->qid = r.qid;
	hit_r->idx = r.idx;
	hit_r->first_us = r.first_us;
	return 1;
}

int
store_resubmit_put_txn(struct store_wtx *w, const unsigned char *key,
		       uint64_t qid, uint32_t idx, uint64_t now_us)
{
	struct resubmit_rec r = { qid, idx, now_us, 0, 0 };
	unsigned char buf[RESUBMIT_REC_LEN], skey[STORE_KEY_RCPT_LEN],
		sbuf[RESUBMIT_SEQ_LEN];
	MDB_val k = { STORE_RESUBMIT_KEY_LEN, (void *)key },
		v = { sizeof(buf), buf };
	int rc;

	rec_encode(&r, buf);
	/* A digest out of the window but not yet pruned is overwritten;
	 * its old resubmit_seq record then no longer matches it, and the
	 * prune leaves this one alone. */
	if ((rc = mdb_put(w->txn, w->st->db_resubmit, &k, &v, 0)) != 0)
		return rc;
	store_rcpt_key(skey, qid, idx);
	sbuf[0] = STORE_REC_VERSION;
	be64_put(sbuf + 1, now_us);
	memcpy(sbuf + 9, key, STORE_RESUBMIT_KEY_LEN);
	k.mv_size = sizeof(skey);
	k.mv_data = skey;
	v.mv_size = sizeof(sbuf);
	v.mv_data = sbuf;
	/* Queue ids only grow, so this appends (pages filled, not split in
	 * half); a key that is not the last falls back to a plain put. */
	rc = mdb_put(w->txn, w->st->db_resubmit_seq, &k, &v, MDB_APPEND);
	if (rc == MDB_KEYEXIST)
		rc = mdb_put(w->txn, w->st->db_resubmit_seq, &k, &v, 0);
	return rc;
}

int
store_resubmit_seen_txn(struct store_wtx *w, const unsigned char *key,
			const struct store_resubmit *hit,
			const struct store_msg *m, const char *rcpt,
			const unsigned char body_sha[32], uint64_t now_us)
{
	struct store *st = w->st;
	unsigned char buf[RESUBMIT_REC_LEN];
	MDB_val k = { STORE_RESUBMIT_KEY_LEN, (void *)key }, v;
	struct resubmit_rec r;
	struct ledger_rec lr;
	char note[STORE_REPLY_MAX + 1];
	int rc;

	if ((rc = mdb_get(w->txn, st->db_resubmit, &k, &v)) != 0)
		return rc;
	if (rec_decode(&v, &r) < 0) {
		w->fail = "resubmission index: malformed record";
		return -1;
	}
	r.count++;
	r.last_us = now_us;
	rec_encode(&r, buf);
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	if ((rc = mdb_put(w->txn, st->db_resubmit, &k, &v, 0)) != 0)
		return rc;
	snprintf(note, sizeof(note), "resubmission%s%s recognised, not "
		 "queued again", m->client != NULL ? " from " : "",
		 m->client != NULL ? m->client : "");
	memset(&lr, 0, sizeof(lr));
	lr.kind = LEDGER_RESUBMISSION;
	lr.qid = hit->qid;
	lr.idx = hit->idx;
	lr.accepted_us = hit->first_us;
	lr.done_us = now_us;
	memcpy(lr.received_sha, body_sha, 32);
	snprintf(lr.rcpt, sizeof(lr.rcpt), "%s", rcpt);
	snprintf(lr.msgid, sizeof(lr.msgid), "%s", m->msgid);
	snprintf(lr.reply, sizeof(lr.reply), "%s", note);
	return ledger_append_txn(w, &lr);
}

/* --- prune ---------------------------------------------------------------- */

struct prune_args {
	uint64_t before_us;	/* forget what was queued before this */
	unsigned max;
	unsigned pruned;
};

static int
prune_txn(struct store_wtx *w, void *arg)
{
	struct prune_args *a = arg;
	struct store *st = w->st;
	MDB_cursor *cur = NULL;
	MDB_val k, v, dk, dv;
	struct resubmit_rec r;
	const unsigned char *p;
	unsigned char skey[STORE_KEY_RCPT_LEN];
	int rc;

	a->pruned = 0;
	if ((rc = mdb_cursor_open(w->txn, st->db_resubmit_seq, &cur)) != 0)
		return rc;
	/* Queue order is time order: the oldest are first. Seek the first
	 * afresh after each delete. */
	while (a->pruned < a->max &&
	       (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
		p = v.mv_data;
		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    v.mv_size != RESUBMIT_SEQ_LEN || p[0] != STORE_REC_VERSION) {
			w->fail = "resubmission index: malformed sequence "
				  "record";
			rc = -1;
			break;
		}
		if (be64_get(p + 1) >= a->before_us)
			break;
		memcpy(skey, k.mv_data, sizeof(skey));
		dk.mv_size = STORE_RESUBMIT_KEY_LEN;
		dk.mv_data = (void *)(p + 9);
		rc = mdb_get(w->txn, st->db_resubmit, &dk, &dv);
		/* Only if the digest still names this entry: a later
		 * submission out of the window took the digest over. */
		if (rc == 0 && rec_decode(&dv, &r) == 0 &&
		    r.qid == be64_get(skey) && r.idx == be32_get(skey + 8))
			rc = mdb_del(w->txn, st->db_resubmit, &dk, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		a->pruned++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
store_resubmit_prune(struct store *st, uint64_t now_us, unsigned max,
		     unsigned *pruned_r, const char **error_r)
{
	uint64_t window = atomic_load(&st->resubmit_window_us);
	/* Off: nothing is remembered, so forget what an earlier run left. */
	struct prune_args a = { window < now_us ? now_us - window : 0,
				max != 0 ? max : PRUNE_DEFAULT, 0 };
	int rc;

	if (window == 0)
		a.before_us = UINT64_MAX;
	rc = store_write(st, prune_txn, &a, error_r);
	*pruned_r = rc == STORE_OK ? a.pruned : 0;
	return rc;
}

void
store_resubmit_window_set(struct store *st, uint64_t window_us)
{
	atomic_store(&st->resubmit_window_us, window_us);
}

int
store_resubmit_stat(struct store *st, uint64_t *entries_r,
		    uint64_t *bytes_r, const char **error_r)
{
	MDB_txn *txn;
	MDB_stat a, b;
	int rc;

	*entries_r = *bytes_r = 0;
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = mdb_stat(txn, st->db_resubmit, &a);
	if (rc == 0)
		rc = mdb_stat(txn, st->db_resubmit_seq, &b);
	store_read_end(st, &txn);
	if (rc != 0)
		return store_fail(st, rc, "resubmission index", error_r);
	*entries_r = a.ms_entries;
	*bytes_r = (uint64_t)a.ms_psize * (a.ms_branch_pages +
		a.ms_leaf_pages + a.ms_overflow_pages) +
		(uint64_t)b.ms_psize * (b.ms_branch_pages + b.ms_leaf_pages +
		b.ms_overflow_pages);
	return STORE_OK;
}

int
store_resubmit_foreach_qid(struct store *st, uint64_t qid,
			   int (*fn)(const struct store_resubmit_info *ri,
				     void *arg),
			   void *arg, const char **error_r)
{
	unsigned char skey[STORE_KEY_RCPT_LEN];
	MDB_cursor *cur = NULL;
	MDB_txn *txn;
	MDB_val k, v, dk, dv;
	struct resubmit_rec r;
	struct store_resubmit_info ri;
	int rc;

	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	if ((rc = mdb_cursor_open(txn, st->db_resubmit_seq, &cur)) != 0)
		goto out;
	store_rcpt_key(skey, qid, 0);
	k.mv_size = sizeof(skey);
	k.mv_data = skey;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != STORE_KEY_RCPT_LEN ||
		    be64_get(k.mv_data) != qid)
			break;
		if (v.mv_size != RESUBMIT_SEQ_LEN)
			continue;
		dk.mv_size = STORE_RESUBMIT_KEY_LEN;
		dk.mv_data = (unsigned char *)v.mv_data + 9;
		if (mdb_get(txn, st->db_resubmit, &dk, &dv) != 0 ||
		    rec_decode(&dv, &r) < 0 || r.qid != qid ||
		    r.idx != be32_get((unsigned char *)k.mv_data + 8) ||
		    r.count == 0)
			continue;
		ri.idx = r.idx;
		ri.first_us = r.first_us;
		ri.count = r.count;
		ri.last_us = r.last_us;
		if (fn(&ri, arg) != 0)
			break;
	}
	rc = rc == MDB_NOTFOUND ? 0 : rc;
	mdb_cursor_close(cur);
out:
	store_read_end(st, &txn);
	return rc == 0 ? STORE_OK : store_fail(st, rc, "resubmission index",
					       error_r);
}
