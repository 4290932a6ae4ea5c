/*
 * store.c - the LMDB environment, its schema check, the write runner that
 * keeps counters and grows the map, the record encoders, and enqueue.
 *
 * Owns:    the MDB_env and its DBI handles (opened once, then read-only);
 *          the "meta" database; the rows of a message as enqueue writes
 *          them ("messages", "bodies", and each entry's "recipients" and
 *          "notify" rows), which only claim.c changes from then on; the
 *          encoding of every stored record.
 * Threads: any; each call holds txn_lock for reading around its txn.
 * Schema:  lmdb-schema/meta.md, messages.md, bodies.md, recipients.md
 */
#include "store_private.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <stddef.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define META_VERSION	"version"
#define META_STORE_ID	"store_id"
#define META_COUNTERS	"counters"
#define COUNTERS_LEN_V1	(1 + 8 * 8)
#define COUNTERS_LEN_V2	(1 + 9 * 8)	/* schema 2 and 3 */
#define COUNTERS_LEN	(1 + 10 * 8)
#define INSTANCE_PREFIX	"instance:"
#define INSTANCE_REC_LEN (1 + 4 + 8 + 8)

static _Thread_local char errbuf[STORE_ERRBUF_LEN];

char *
store_errbuf(void)
{
	return errbuf;
}

uint64_t
store_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

char *
store_qid_str(uint64_t qid, char *buf)
{
	snprintf(buf, STORE_QID_STRLEN, "%016" PRIX64, qid);
	return buf;
}

int
store_qid_parse(const char *s, uint64_t *qid_r)
{
	char *end;
	size_t len = strlen(s);

	if (len == 0 || len > 16 || strspn(s, "0123456789abcdefABCDEF") != len)
		return -1;
	errno = 0;
	*qid_r = strtoull(s, &end, 16);
	return errno == 0 && *end == '\0' ? 0 : -1;
}

const char *
store_state_name(enum store_state state)
{
	switch (state) {
	case ST_PENDING:	return "pending";
	case ST_ACTIVE:		return "active";
	case ST_DEFERRED:	return "deferred";
	case ST_HELD:		return "held";
	case ST_INDOUBT:	return "in-doubt";
	case ST_NONE:		break;
	}
	return "none";
}

uint64_t *
store_counter_for(struct store_counters *c, enum store_state state)
{
	switch (state) {
	case ST_PENDING:	return &c->pending;
	case ST_ACTIVE:		return &c->active;
	case ST_DEFERRED:	return &c->deferred;
	case ST_HELD:		return &c->held;
	case ST_INDOUBT:	return &c->indoubt;
	case ST_NONE:		break;
	}
	panic("no counter for state %d", (int)state);
}

int
store_fail(struct store *st, int rc, const char *what, const char **error_r)
{
	int ret = STORE_ERR;

	if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT) {
		snprintf(errbuf, sizeof(errbuf), "store full: %s: %s", what,
			 mdb_strerror(rc));
		ret = STORE_FULL;
	} else if (rc == MDB_PANIC) {
		atomic_store(&st->panicked, true);
		snprintf(errbuf, sizeof(errbuf),
			 "store needs to be reopened: %s: %s", what,
			 mdb_strerror(rc));
		ret = STORE_PANIC;
	} else {
		snprintf(errbuf, sizeof(errbuf), "store error: %s: %s", what,
			 mdb_strerror(rc));
	}
	if (error_r != NULL)
		*error_r = errbuf;
	return ret;
}

/* --- encoders ----------------------------------------------------------- */

void
store_rcpt_key(unsigned char key[STORE_KEY_RCPT_LEN], uint64_t qid,
	       uint32_t idx)
{
	be64_put(key, qid);
	be32_put(key + 8, idx);
}

void
store_notify_key(unsigned char key[STORE_KEY_NOTIFY_LEN], uint64_t due_us,
		 uint64_t qid, uint32_t idx)
{
	be64_put(key, due_us);
	be64_put(key + 8, qid);
	be32_put(key + 16, idx);
}

void
store_active_encode(unsigned char buf[ACTIVE_REC_LEN], uint64_t instance,
		    uint32_t worker, uint64_t lease_until_us, uint64_t token)
{
	buf[0] = STORE_REC_VERSION;
	be64_put(buf + 1, instance);
	be32_put(buf + 9, worker);
	be64_put(buf + 13, lease_until_us);
	be64_put(buf + 21, token);
}

size_t
store_str_put(unsigned char *p, const char *s, size_t max)
{
	size_t len = strnlen(s, max);

	be16_put(p, (uint16_t)len);
	memcpy(p + 2, s, len);
	return 2 + len;
}

int
store_str_get(const unsigned char **p, const unsigned char *end, char *dst,
	size_t max)
{
	size_t len;

	if (end - *p < 2)
		return -1;
	len = be16_get(*p);
	if (len > max || (size_t)(end - *p - 2) < len)
		return -1;
	memcpy(dst, *p + 2, len);
	dst[len] = '\0';
	*p += 2 + len;
	return 0;
}

size_t
store_rcpt_encode(const struct rcpt_rec *r, unsigned char *buf, size_t cap)
{
	unsigned char *p = buf;

	if (cap < RCPT_REC_MAX)
		panic("rcpt record buffer too small");
	*p++ = STORE_REC_VERSION;
	*p++ = r->state;
	*p++ = r->flags;
	*p++ = 0;
	be32_put(p, r->attempts);		p += 4;
	be64_put(p, r->next_try_us);		p += 8;
	be64_put(p, r->token);			p += 8;
	be64_put(p, r->owner_instance);		p += 8;
	be32_put(p, r->owner_worker);		p += 4;
	be64_put(p, r->lease_until_us);		p += 8;
	p += store_str_put(p, r->rcpt, STORE_ADDR_MAX);
	p += store_str_put(p, r->reply, STORE_REPLY_MAX);
	return (size_t)(p - buf);
}

int
store_rcpt_decode(const MDB_val *v, struct rcpt_rec *r)
{
	const unsigned char *p = v->mv_data, *end = p + v->mv_size;

	if (v->mv_size < 44 || p[0] != STORE_REC_VERSION)
		return -1;
	r->state = p[1];
	r->flags = p[2];
	p += 4;
	r->attempts = be32_get(p);		p += 4;
	r->next_try_us = be64_get(p);		p += 8;
	r->token = be64_get(p);			p += 8;
	r->owner_instance = be64_get(p);	p += 8;
	r->owner_worker = be32_get(p);		p += 4;
	r->lease_until_us = be64_get(p);	p += 8;
	if (store_str_get(&p, end, r->rcpt, STORE_ADDR_MAX) < 0 ||
	    store_str_get(&p, end, r->reply, STORE_REPLY_MAX) < 0 || p != end)
		return -1;
	if (r->state < ST_PENDING || r->state > ST_INDOUBT)
		return -1;
	return 0;
}

size_t
store_msg_encode(const struct msg_rec *m, unsigned char *buf, size_t cap)
{
	unsigned char *p = buf;

	if (cap < MSG_REC_MAX)
		panic("message record buffer too small");
	*p++ = STORE_REC_VERSION_2;
	be64_put(p, m->accepted_us);	p += 8;
	be32_put(p, m->nrcpt);		p += 4;
	be32_put(p, m->remaining);	p += 4;
	be32_put(p, m->body_len);	p += 4;
	p += store_str_put(p, m->sender, STORE_ADDR_MAX);
	p += store_str_put(p, m->msgid, STORE_MSGID_MAX);
	memcpy(p, m->received_sha, 32);	p += 32;
	return (size_t)(p - buf);
}

int
store_msg_decode(const MDB_val *v, struct msg_rec *m)
{
	const unsigned char *p = v->mv_data, *end = p + v->mv_size;

	uint8_t ver;

	if (v->mv_size < 25 || (p[0] != STORE_REC_VERSION &&
				p[0] != STORE_REC_VERSION_2))
		return -1;
	ver = *p++;
	m->accepted_us = be64_get(p);	p += 8;
	m->nrcpt = be32_get(p);		p += 4;
	m->remaining = be32_get(p);	p += 4;
	m->body_len = be32_get(p);	p += 4;
	if (store_str_get(&p, end, m->sender, STORE_ADDR_MAX) < 0 ||
	    store_str_get(&p, end, m->msgid, STORE_MSGID_MAX) < 0)
		return -1;
	memset(m->received_sha, 0, 32);
	if (ver == STORE_REC_VERSION_2) {
		if (end - p != 32)
			return -1;
		memcpy(m->received_sha, p, 32);
		p += 32;
	}
	if (p != end)
		return -1;
	return 0;
}

static void
counters_encode(const struct store_counters *c, unsigned char *p)
{
	const uint64_t v[10] = { c->accepted, c->delivered, c->bounced,
		c->pending, c->active, c->deferred, c->held, c->indoubt,
		c->deleted, c->resubmitted };

	p[0] = STORE_REC_VERSION;
	for (int i = 0; i < 10; i++)
		be64_put(p + 1 + 8 * i, v[i]);
}

int
store_counters_load_txn(MDB_txn *txn, struct store *st, struct store_counters *c)
{
	MDB_val k = { strlen(META_COUNTERS), META_COUNTERS }, v;
	const unsigned char *p;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = mdb_get(txn, st->db_meta, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	p = v.mv_data;
	/* The records of schema 1 (no "deleted") and 2-3 (no
	 * "resubmitted") are read only while upgrading. */
	if ((v.mv_size != COUNTERS_LEN && v.mv_size != COUNTERS_LEN_V2 &&
	     v.mv_size != COUNTERS_LEN_V1) || p[0] != STORE_REC_VERSION)
		return MDB_CORRUPTED;
	c->accepted = be64_get(p + 1);
	c->delivered = be64_get(p + 9);
	c->bounced = be64_get(p + 17);
	c->pending = be64_get(p + 25);
	c->active = be64_get(p + 33);
	c->deferred = be64_get(p + 41);
	c->held = be64_get(p + 49);
	c->indoubt = be64_get(p + 57);
	if (v.mv_size >= COUNTERS_LEN_V2)
		c->deleted = be64_get(p + 65);
	if (v.mv_size == COUNTERS_LEN)
		c->resubmitted = be64_get(p + 73);
	return 0;
}

static bool
counters_equal(const struct store_counters *a, const struct store_counters *b)
{
	unsigned char ea[COUNTERS_LEN], eb[COUNTERS_LEN];

	counters_encode(a, ea);
	counters_encode(b, eb);
	return memcmp(ea, eb, sizeof(ea)) == 0;
}

static int
counters_save(MDB_txn *txn, struct store *st, const struct store_counters *c)
{
	unsigned char buf[COUNTERS_LEN];
	MDB_val k = { strlen(META_COUNTERS), META_COUNTERS };
	MDB_val v = { sizeof(buf), buf };

	counters_encode(c, buf);
	return mdb_put(txn, st->db_meta, &k, &v, 0);
}

int
store_meta_u64_get(MDB_txn *txn, struct store *st, const char *key,
		   uint64_t *v_r)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc = mdb_get(txn, st->db_meta, &k, &v);

	*v_r = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (v.mv_size != 8)
		return MDB_CORRUPTED;
	*v_r = be64_get(v.mv_data);
	return 0;
}

int
store_meta_u64_put(MDB_txn *txn, struct store *st, const char *key,
		   uint64_t val)
{
	unsigned char buf[8];
	MDB_val k = { strlen(key), (void *)key }, v = { 8, buf };

	be64_put(buf, val);
	return mdb_put(txn, st->db_meta, &k, &v, 0);
}

/* --- transactions -------------------------------------------------------- */

/* Called with txn_lock held for writing: adopt a size another process set,
 * or double ours. Returns 0, or MDB_MAP_FULL at the cap. */
static int
map_grow_locked(struct store *st, uint64_t seen_size)
{
	MDB_envinfo info;
	uint64_t next;
	int rc;

	mdb_env_info(st->env, &info);
	if (info.me_mapsize != seen_size)
		return 0;	/* another thread grew it already */
	if (info.me_mapsize >= st->set.map_max)
		return MDB_MAP_FULL;
	next = info.me_mapsize * 2;
	if (next > st->set.map_max)
		next = st->set.map_max;
	rc = mdb_env_set_mapsize(st->env, next);
	if (rc == 0)
		log_info("store: map grown from %zu to %" PRIu64 " bytes",
			 info.me_mapsize, next);
	return rc;
}

static int
map_adopt_locked(struct store *st)
{
	return mdb_env_set_mapsize(st->env, 0);
}

static uint64_t
map_size_now(struct store *st)
{
	MDB_envinfo info;

	mdb_env_info(st->env, &info);
	return info.me_mapsize;
}

/* Begin a txn under the read side of txn_lock, adopting a map resize by
 * another process. On success the lock stays held. */
static int
txn_begin_locked(struct store *st, unsigned flags, MDB_txn **txn_r)
{
	int rc;

	for (;;) {
		pthread_rwlock_rdlock(&st->txn_lock);
		*txn_r = NULL;
		/* no environment: a reopen after a panic failed; the next
		 * one (store_recover()) may work */
		rc = st->env != NULL ?
			mdb_txn_begin(st->env, NULL, flags, txn_r) : MDB_PANIC;
		if (rc != MDB_MAP_RESIZED)
			break;
		pthread_rwlock_unlock(&st->txn_lock);
		pthread_rwlock_wrlock(&st->txn_lock);
		rc = map_adopt_locked(st);
		pthread_rwlock_unlock(&st->txn_lock);
		if (rc != 0)
			return rc;
	}
	if (rc != 0) {
		*txn_r = NULL;
		pthread_rwlock_unlock(&st->txn_lock);
	}
	return rc;
}

int
store_read_begin(struct store *st, MDB_txn **txn_r, const char **error_r)
{
	int rc = txn_begin_locked(st, MDB_RDONLY, txn_r);

	if (rc != 0)
		return store_fail(st, rc, "begin read transaction", error_r);
	return STORE_OK;
}

void
store_read_end(struct store *st, MDB_txn **txn)
{
	if (*txn == NULL)
		return;
	mdb_txn_abort(*txn);
	*txn = NULL;
	pthread_rwlock_unlock(&st->txn_lock);
}

/* What write_once()'s mdb_txn_commit did, for the store's health. */
enum commit_io {
	COMMIT_IO_NONE,		/* not called, or nothing to write */
	COMMIT_IO_WROTE,	/* it wrote and synced a new transaction */
	COMMIT_IO_FAILED,	/* it failed */
};

/* One attempt: begin, run the body, save counters, commit. */
static int
write_once(struct store *st, store_txn_fn *fn, void *arg,
	   const char **fail_r, uint64_t *mapsize_r, enum commit_io *io_r)
{
	struct store_wtx w = { .st = st };
	struct store_counters before;
	int rc;

	*fail_r = NULL;
	*io_r = COMMIT_IO_NONE;
	rc = txn_begin_locked(st, 0, &w.txn);
	if (rc != 0)
		return rc;
	*mapsize_r = map_size_now(st);
	rc = store_counters_load_txn(w.txn, st, &w.c);
	before = w.c;
	if (rc == 0)
		rc = fn(&w, arg);
	/* Unchanged counters are not written again: a transaction that
	 * wrote nothing (a claim that found no work) then commits without
	 * a page write or an fdatasync. */
	if (rc == 0 && !counters_equal(&before, &w.c))
		rc = counters_save(w.txn, st, &w.c);
	if (rc == 0) {
		struct timespec t0, t1;
		int64_t ns;
		uint64_t dt;
		size_t i, id = mdb_txn_id(w.txn);
		MDB_envinfo info;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = mdb_txn_commit(w.txn);
		w.txn = NULL;	/* gone, whether the commit worked or not */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		/* A commit with nothing to write returns at once and leaves
		 * the last transaction id where it was. */
		if (rc != 0) {
			*io_r = COMMIT_IO_FAILED;
		} else {
			mdb_env_info(st->env, &info);
			if (info.me_last_txnid >= id)
				*io_r = COMMIT_IO_WROTE;
		}
		/* Signed first: tv_nsec goes down across a second. */
		ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 +
		     (int64_t)(t1.tv_nsec - t0.tv_nsec);
		dt = ns > 0 ? (uint64_t)ns / 1000u : 0;
		for (i = 0; i < STORE_COMMIT_NBOUNDS &&
		     dt > store_commit_bounds_us[i]; i++)
			;
		atomic_fetch_add_explicit(&st->commit_count[i], 1,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&st->commit_sum_us, dt,
					  memory_order_relaxed);
	} else {
		mdb_txn_abort(w.txn);
		w.txn = NULL;
	}
	pthread_rwlock_unlock(&st->txn_lock);
	*fail_r = w.fail;
	return rc;
}

int
store_schema_version(const char *path, uint32_t *ver_r, const char **error_r)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi meta;
	MDB_val k = { strlen(META_VERSION), META_VERSION }, v;
	int rc;

	*ver_r = 0;
	if ((rc = mdb_env_create(&env)) == 0 &&
	    (rc = mdb_env_set_maxdbs(env, 16)) == 0 &&
	    (rc = mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0600)) == 0 &&
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) == 0 &&
	    (rc = mdb_dbi_open(txn, "meta", 0, &meta)) == 0 &&
	    (rc = mdb_get(txn, meta, &k, &v)) == 0)
		*ver_r = v.mv_size == 4 ? be32_get(v.mv_data) : 0;
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (env != NULL)
		mdb_env_close(env);
	if (rc != 0) {
		snprintf(errbuf, sizeof(errbuf), "store %s: cannot read its "
			 "schema version: %s", path, rc == MDB_NOTFOUND ?
			 "not a postern store" : mdb_strerror(rc));
		*error_r = errbuf;
		return STORE_ERR;
	}
	return STORE_OK;
}

/* --- the next hop's state (meta "nexthop") ------------------------------- */

#define META_NEXTHOP "nexthop"

static int
nexthop_decode(const MDB_val *v, struct store_nexthop *nh)
{
	const unsigned char *p = v->mv_data, *end = p + v->mv_size;

	if (v->mv_size < 1 + 8 + 8 + 2 || p[0] != STORE_REC_VERSION)
		return -1;
	nh->since_us = be64_get(p + 1);
	nh->last_us = be64_get(p + 9);
	p += 17;
	if (store_str_get(&p, end, nh->reason, STORE_REPLY_MAX) < 0 ||
	    p != end)
		return -1;
	nh->down = true;
	return 0;
}

/* On the caller's stack; the group commit may run nexthop_txn on another
 * writer's thread while the caller waits, so both pointers are borrowed
 * for the call only. */
struct nexthop_args {
	const char *reason;	/* NULL: up */
	uint64_t now_us;
};

static int
nexthop_txn(struct store_wtx *w, void *arg)
{
	struct nexthop_args *a = arg;
	struct store_nexthop old = { 0 };
	unsigned char buf[1 + 8 + 8 + 2 + STORE_REPLY_MAX];
	MDB_val k = { strlen(META_NEXTHOP), META_NEXTHOP }, v;
	int rc;

	rc = mdb_get(w->txn, w->st->db_meta, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (a->reason == NULL)
		return rc == MDB_NOTFOUND ? 0 :
		       mdb_del(w->txn, w->st->db_meta, &k, NULL);
	if (rc == 0 && nexthop_decode(&v, &old) < 0)
		old.down = false;	/* unreadable: start afresh */
	buf[0] = STORE_REC_VERSION;
	be64_put(buf + 1, old.down ? old.since_us : a->now_us);
	be64_put(buf + 9, a->now_us);
	v.mv_size = 17 + store_str_put(buf + 17, a->reason, STORE_REPLY_MAX);
	v.mv_data = buf;
	return mdb_put(w->txn, w->st->db_meta, &k, &v, 0);
}

int
store_nexthop_set(struct store *st, const char *reason, uint64_t now_us,
		  const char **error_r)
{
	struct nexthop_args a = { reason, now_us };

	return store_write(st, nexthop_txn, &a, error_r);
}

int
store_nexthop_get(struct store *st, struct store_nexthop *nh_r,
		  const char **error_r)
{
	MDB_val k = { strlen(META_NEXTHOP), META_NEXTHOP }, v;
	MDB_txn *txn;
	int rc;

	memset(nh_r, 0, sizeof(*nh_r));
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = mdb_get(txn, st->db_meta, &k, &v);
	/* A display hint only: a record that cannot be read shows nothing
	 * (the next write replaces it). */
	if (rc == 0 && nexthop_decode(&v, nh_r) < 0)
		memset(nh_r, 0, sizeof(*nh_r));
	store_read_end(st, &txn);
	if (rc == MDB_NOTFOUND)
		return STORE_OK;
	return rc == 0 ? STORE_OK : store_fail(st, rc, "next hop state",
					      error_r);
}

const uint64_t store_commit_bounds_us[STORE_COMMIT_NBOUNDS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 1000000,
};

void
store_commit_latency(struct store *st,
		     uint64_t counts_r[STORE_COMMIT_NBOUNDS + 1],
		     uint64_t *sum_us_r)
{
	for (size_t i = 0; i <= STORE_COMMIT_NBOUNDS; i++)
		counts_r[i] = atomic_load_explicit(&st->commit_count[i],
						   memory_order_relaxed);
	*sum_us_r = atomic_load_explicit(&st->commit_sum_us,
					 memory_order_relaxed);
}

/* fn alone in its own transaction(s). */
static int
write_alone(struct store *st, store_txn_fn *fn, void *arg,
	    const char **error_r)
{
	enum commit_io io;
	const char *fail;
	uint64_t seen = 0;
	int rc;

	if (atomic_load(&st->panicked))
		return store_fail(st, MDB_PANIC, "earlier failure", error_r);
	for (;;) {
		rc = write_once(st, fn, arg, &fail, &seen, &io);
		if (io != COMMIT_IO_NONE)
			store_health_commit(st, io == COMMIT_IO_WROTE ? 0 : rc,
					    io == COMMIT_IO_WROTE);
		if (rc != MDB_MAP_FULL)
			break;
		pthread_rwlock_wrlock(&st->txn_lock);
		rc = map_grow_locked(st, seen);
		pthread_rwlock_unlock(&st->txn_lock);
		if (rc != 0)
			break;
	}
	if (rc == 0)
		return STORE_OK;
	if (rc == -1) {
		snprintf(errbuf, sizeof(errbuf), "%s", fail ? fail : "failed");
		if (error_r != NULL)
			*error_r = errbuf;
		return STORE_ERR;
	}
	return store_fail(st, rc, "commit", error_r);
}

/* One caller's body waiting to share a commit with the others'. It lives
 * on the caller's stack: the leader that takes it fills in rc and err,
 * sets done and signals cond under group_lock, and never touches it
 * again. Each caller sleeps on its own cond, so that a finished commit
 * wakes the callers it served and the next leader, no one else. */
struct store_group_req {
	store_txn_fn *fn;
	void *arg;
	int rc;
	bool done;
	bool lead;		/* handed the lead: commit the queue */
	bool again;		/* the shared commit failed: run alone */
	char err[STORE_ERRBUF_LEN];
	pthread_cond_t cond;
	struct store_group_req *next;
};

/* The bodies of a group, one after another in one transaction. */
static int
group_txn(struct store_wtx *w, void *arg)
{
	int rc;

	for (struct store_group_req *r = arg; r != NULL; r = r->next) {
		w->fail = NULL;
		w->note = NULL;
		if ((rc = r->fn(w, r->arg)) != 0)
			return rc;
	}
	return 0;
}

/* Commit the queue (group_lock held; released while committing): the
 * leader's own request is in it. Then hand the lead to the first caller
 * that queued meanwhile, if any. */
static void
group_lead_locked(struct store *st, struct store_group_req *me)
{
	struct store_group_req *batch, *r, *next;
	const char *err = NULL;
	struct timespec ts;
	size_t n = 0;
	int rc;

	/* Under load (the last commit was shared), wait a little for as
	 * many callers as the last commit had: those it served are on
	 * their way back. Alone, go at once. */
	if (st->set.group_wait_us > 0 && st->group_last > 1 &&
	    st->group_n < st->group_last) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)st->set.group_wait_us * 1000L;
		while (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		st->group_want = st->group_last;
		st->group_wake = &me->cond;
		while (st->group_n < st->group_want &&
		       pthread_cond_timedwait(&me->cond, &st->group_lock,
					      &ts) == 0)
			;
		st->group_want = 0;
		st->group_wake = NULL;
	}
	batch = st->group_head;
	st->group_n = 0;
	st->group_head = NULL;
	st->group_tail = &st->group_head;
	pthread_mutex_unlock(&st->group_lock);
	for (r = batch; r != NULL; r = r->next)
		n++;
	rc = n == 1 ? write_alone(st, batch->fn, batch->arg, &err) :
		write_alone(st, group_txn, batch, &err);
	if (rc != STORE_OK && n > 1)
		log_warn("store: a commit shared by %zu writers failed (%s); "
			 "each runs again alone", n, err ? err : "?");
	pthread_mutex_lock(&st->group_lock);
	st->group_last = n;
	for (r = batch; r != NULL; r = next) {
		next = r->next;
		r->rc = rc;
		r->again = rc != STORE_OK && n > 1;
		snprintf(r->err, sizeof(r->err), "%s",
			 rc == STORE_OK || err == NULL ? "" : err);
		r->done = true;
		/* r's caller cannot go before group_lock is released */
		pthread_cond_signal(&r->cond);
	}
	if (st->group_head != NULL) {
		st->group_head->lead = true;
		pthread_cond_signal(&st->group_head->cond);
	} else {
		st->group_busy = false;
	}
}

/* Group commit for every writer of this process (the ingress committer,
 * the workers, housekeeping): a caller that finds no commit running
 * commits its body at once; the callers that arrive while a commit
 * syncs queue up, and the first of them, when it is handed the lead,
 * takes every body queued so far into one transaction, so that they
 * share its fdatasync. When a shared transaction fails, each body is run
 * again alone by its own caller, so that one body's failure (a full map,
 * a bad message) is never another's. */
int
store_write(struct store *st, store_txn_fn *fn, void *arg,
	    const char **error_r)
{
	struct store_group_req me = { .fn = fn, .arg = arg, .rc = STORE_ERR };
	pthread_condattr_t ca;

	/* monotonic: a clock step must not stretch the leader's wait */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&me.cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&st->group_lock);
	/* On purpose: me stays queued only until done is set under
	 * group_lock, and this function does not return before that;
	 * cppcheck cannot see the wait. */
	/* cppcheck-suppress autoVariables */
	*st->group_tail = &me;
	/* cppcheck-suppress autoVariables */
	st->group_tail = &me.next;
	st->group_n++;
	if (!st->group_busy) {
		st->group_busy = true;
		me.lead = true;
	} else if (st->group_wake != NULL && st->group_n >= st->group_want) {
		pthread_cond_signal(st->group_wake);
	}
	while (!me.done) {
		if (me.lead)
			group_lead_locked(st, &me);
		else
			pthread_cond_wait(&me.cond, &st->group_lock);
	}
	pthread_mutex_unlock(&st->group_lock);
	pthread_cond_destroy(&me.cond);
	if (me.again)
		return write_alone(st, fn, arg, error_r);
	if (me.rc != STORE_OK) {
		snprintf(errbuf, sizeof(errbuf), "%s", me.err);
		if (error_r != NULL)
			*error_r = errbuf;
	}
	return me.rc;
}

int
store_read_only_run(struct store *st, store_txn_fn *fn, void *arg,
		    const char **error_r)
{
	struct store_wtx w = { .st = st };
	int rc;

	if ((rc = store_read_begin(st, &w.txn, error_r)) != STORE_OK)
		return rc;
	rc = store_counters_load_txn(w.txn, st, &w.c);
	if (rc == 0)
		rc = fn(&w, arg);
	store_read_end(st, &w.txn);
	if (rc == 0)
		return STORE_OK;
	if (rc == -1) {
		snprintf(errbuf, sizeof(errbuf), "%s",
			 w.fail ? w.fail : "failed");
		if (error_r != NULL)
			*error_r = errbuf;
		return STORE_ERR;
	}
	return store_fail(st, rc, "read", error_r);
}

/* --- open / close ---------------------------------------------------------- */

static void
settings_defaults(struct store_settings *s)
{
	if (s->map_size == 0)
		s->map_size = 64ull << 20;
	if (s->map_max == 0)
		s->map_max = 16ull << 30;
	if (s->map_max < s->map_size)
		s->map_max = s->map_size;
	if (s->backoff_min == 0)
		s->backoff_min = 300;
	if (s->backoff_max == 0)
		s->backoff_max = 4000;
	if (s->backoff_max < s->backoff_min)
		s->backoff_max = s->backoff_min;
	if (s->max_lifetime == 0)
		s->max_lifetime = 5 * 86400;
}

/* Start time of pid in clock ticks since boot (field 22 of /proc/PID/stat),
 * or 0 if it cannot be read. Together with the pid it names one process. */
static uint64_t
proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');	/* the command name may hold spaces */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
				"%*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
				&start) != 1)
		return 0;
	return start;
}

static void
instance_key(char *buf, size_t cap, uint64_t instance)
{
	snprintf(buf, cap, INSTANCE_PREFIX "%016" PRIx64, instance);
}

bool
store_instance_alive_txn(MDB_txn *txn, struct store *st, uint64_t instance)
{
	char key[64];
	MDB_val k, v;
	const unsigned char *p;
	pid_t pid;

	if (instance == st->instance)
		return true;
	instance_key(key, sizeof(key), instance);
	k.mv_size = strlen(key);
	k.mv_data = key;
	if (mdb_get(txn, st->db_meta, &k, &v) != 0 ||
	    v.mv_size != INSTANCE_REC_LEN)
		return false;
	p = v.mv_data;
	pid = (pid_t)be32_get(p + 1);
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	return proc_start_ticks(pid) == be64_get(p + 5);
}

static int
open_dbis(MDB_txn *txn, struct store *st, unsigned create)
{
	static const struct { const char *name; size_t off; unsigned flags; }
	dbs[] = {
		{ "messages", offsetof(struct store, db_messages), 0 },
		{ "bodies", offsetof(struct store, db_bodies), 0 },
		{ "recipients", offsetof(struct store, db_rcpts), 0 },
		{ "notify", offsetof(struct store, db_notify), 0 },
		{ "active", offsetof(struct store, db_active), 0 },
		{ "ledger", offsetof(struct store, db_ledger), 0 },
		{ "ledger_idx", offsetof(struct store, db_ledger_idx), 0 },
		{ "ledger_mid", offsetof(struct store, db_ledger_mid),
		  MDB_DUPSORT | MDB_DUPFIXED },
		{ "history", offsetof(struct store, db_history), 0 },
		{ "resubmit", offsetof(struct store, db_resubmit), 0 },
		{ "resubmit_seq", offsetof(struct store, db_resubmit_seq), 0 },
	};
	int rc;

	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)st + dbs[i].off);

		rc = mdb_dbi_open(txn, dbs[i].name, create | dbs[i].flags,
				  dbi);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* --- history ------------------------------------------------------------- */

int
store_history_put_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		      uint64_t at_us, uint8_t from, uint8_t to,
		      const char *note)
{
	unsigned char key[STORE_KEY_HISTORY_LEN], buf[3 + 2 + STORE_REPLY_MAX];
	MDB_val k = { sizeof(key), key }, v = { 0, buf };
	int rc;

	buf[0] = STORE_REC_VERSION;
	buf[1] = from;
	buf[2] = to;
	v.mv_size = 3 + store_str_put(buf + 3, note ? note : "",
				      STORE_REPLY_MAX);
	be64_put(key, qid);
	be32_put(key + 8, idx);
	/* Two moves of one entry in the same microsecond: the later one
	 * sorts after. */
	for (int i = 0; i < 16; i++) {
		be64_put(key + 12, at_us + (uint64_t)i);
		rc = mdb_put(w->txn, w->st->db_history, &k, &v,
			     MDB_NOOVERWRITE);
		if (rc != MDB_KEYEXIST)
			return rc;
	}
	return 0;	/* sixteen in one microsecond: drop this one */
}

int
store_history_decode(const MDB_val *v, uint8_t *from_r, uint8_t *to_r,
		     char *note)
{
	const unsigned char *p = v->mv_data, *end = p + v->mv_size;

	if (v->mv_size < 5 || p[0] != STORE_REC_VERSION)
		return -1;
	*from_r = p[1];
	*to_r = p[2];
	p += 3;
	if (store_str_get(&p, end, note, STORE_REPLY_MAX) < 0 || p != end)
		return -1;
	return 0;
}

int
store_history_drop_txn(struct store_wtx *w, uint64_t qid)
{
	unsigned char key[8];
	MDB_cursor *cur = NULL;
	MDB_val k = { 8, key }, v;
	int rc;

	if ((rc = mdb_cursor_open(w->txn, w->st->db_history, &cur)) != 0)
		return rc;
	/* Seek afresh after each delete rather than trust the cursor's
	 * position past a deleted last item. */
	for (;;) {
		be64_put(key, qid);
		k.mv_size = 8;
		k.mv_data = key;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc != 0 || k.mv_size != STORE_KEY_HISTORY_LEN ||
		    be64_get(k.mv_data) != qid)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* Schema 1, 2 or 3 -> 4 (lmdb-schema/VERSIONS.md), in the open
 * transaction: the "history", "resubmit" and "resubmit_seq" databases are
 * already created (empty) by open_dbis(); the counters record gains
 * "deleted" (1 -> 2) and "resubmitted" (-> 4) as 0 if it lacks them; then
 * the version (2 -> 3 adds only the meta key "nexthop", absent until it
 * is needed). */
static int
upgrade_txn(MDB_txn *txn, struct store *st)
{
	struct store_counters c;
	unsigned char vbuf[4];
	MDB_val k = { strlen(META_VERSION), META_VERSION }, v = { 4, vbuf };
	int rc;

	if ((rc = store_counters_load_txn(txn, st, &c)) != 0 ||
	    (rc = counters_save(txn, st, &c)) != 0)
		return rc;
	be32_put(vbuf, STORE_SCHEMA_VERSION);
	return mdb_put(txn, st->db_meta, &k, &v, 0);
}

/* Drop the instance records of processes that are gone: an instance is
 * "alive" by its record (store_instance_alive_txn), so a missing record
 * and a dead one mean the same to recovery, and the records no longer
 * pile up, one per start. */
static int
prune_instances_txn(MDB_txn *txn, struct store *st, unsigned *pruned_r)
{
	const size_t plen = strlen(INSTANCE_PREFIX);
	char key[64];
	MDB_cursor *cur = NULL;
	MDB_val k = { plen, (void *)INSTANCE_PREFIX }, v;
	uint64_t inst;
	int rc;

	*pruned_r = 0;
	if ((rc = mdb_cursor_open(txn, st->db_meta, &cur)) != 0)
		return rc;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > plen && k.mv_size < sizeof(key) &&
	       memcmp(k.mv_data, INSTANCE_PREFIX, plen) == 0) {
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		inst = strtoull(key + plen, NULL, 16);
		if (inst != 0 && !store_instance_alive_txn(txn, st, inst)) {
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			(*pruned_r)++;
			/* Seek past the deleted key afresh rather than trust
			 * the cursor's position after a delete. */
			k.mv_size = strlen(key);
			k.mv_data = key;
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			continue;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* A reading or changing command's open: the store must be there, of this
 * schema version; nothing is written in read-only mode. */
static int
open_schema_existing(struct store *st, const char **error_r)
{
	bool ro = st->set.mode == STORE_OPEN_READONLY;
	MDB_txn *txn = NULL;
	MDB_val k = { strlen(META_VERSION), META_VERSION }, v;
	uint32_t ver;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, ro ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		return store_fail(st, rc, "begin", error_r);
	rc = mdb_dbi_open(txn, "meta", 0, &st->db_meta);
	if (rc == 0)
		rc = mdb_get(txn, st->db_meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		snprintf(errbuf, sizeof(errbuf), "%s holds an LMDB "
			 "environment that is not a postern store (no schema "
			 "version); refusing it", st->path);
		*error_r = errbuf;
		return STORE_ERR;
	}
	if (rc != 0)
		goto fail;
	ver = v.mv_size == 4 ? be32_get(v.mv_data) : 0;
	if (ver != STORE_SCHEMA_VERSION) {
		mdb_txn_abort(txn);
		if (ver >= 1 && ver < STORE_SCHEMA_VERSION)
			snprintf(errbuf, sizeof(errbuf), "store %s has schema "
				 "version %u: start posternd on it once to "
				 "upgrade it to version %u", st->path, ver,
				 STORE_SCHEMA_VERSION);
		else
			snprintf(errbuf, sizeof(errbuf), "store %s has schema "
				 "version %u, this postern reads version %u; "
				 "refusing to open it", st->path, ver,
				 STORE_SCHEMA_VERSION);
		*error_r = errbuf;
		return STORE_ERR;
	}
	if ((rc = open_dbis(txn, st, 0)) != 0 ||
	    (rc = store_meta_u64_get(txn, st, META_STORE_ID,
				     &st->store_id)) != 0)
		goto fail;
	/* Committing (also a read-only transaction) keeps the handles. */
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		goto fail;
	return STORE_OK;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return store_fail(st, rc, "open schema", error_r);
}

/* posternd's open: check or write the schema version, prune the records
 * of instances that are gone, register this instance. */
static int
open_schema(struct store *st, const char **error_r)
{
	MDB_txn *txn = NULL;
	MDB_val k, v;
	unsigned char buf[INSTANCE_REC_LEN], vbuf[4];
	char key[64];
	uint64_t next;
	uint32_t upgrade_from = 0;
	unsigned pruned = 0;
	int rc;

	if (st->set.mode != STORE_OPEN_DAEMON)
		return open_schema_existing(st, error_r);
	rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc != 0)
		return store_fail(st, rc, "begin", error_r);
	rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->db_meta);
	if (rc != 0)
		goto fail;
	k.mv_size = strlen(META_VERSION);
	k.mv_data = META_VERSION;
	rc = mdb_get(txn, st->db_meta, &k, &v);
	if (rc == 0) {
		uint32_t ver = v.mv_size == 4 ? be32_get(v.mv_data) : 0;

		if (ver >= 1 && ver < STORE_SCHEMA_VERSION) {
			upgrade_from = ver;
		} else if (ver != STORE_SCHEMA_VERSION) {
			mdb_txn_abort(txn);
			snprintf(errbuf, sizeof(errbuf),
				 "store %s has schema version %u, this postern "
				 "reads version %u; refusing to open it",
				 st->path, ver, STORE_SCHEMA_VERSION);
			*error_r = errbuf;
			return STORE_ERR;
		}
	} else if (rc == MDB_NOTFOUND) {
		be32_put(vbuf, STORE_SCHEMA_VERSION);
		v.mv_size = 4;
		v.mv_data = vbuf;
		rc = mdb_put(txn, st->db_meta, &k, &v, 0);
		if (rc == 0) {
			uint64_t id = 0;

			while (id == 0)
				if (getrandom(&id, sizeof(id), 0) < 0)
					id = store_now_us() ^ (uint64_t)getpid();
			rc = store_meta_u64_put(txn, st, META_STORE_ID, id);
		}
		if (rc != 0)
			goto fail;
	} else {
		goto fail;
	}
	if ((rc = open_dbis(txn, st, MDB_CREATE)) != 0 ||
	    (upgrade_from != 0 && (rc = upgrade_txn(txn, st)) != 0) ||
	    (rc = store_meta_u64_get(txn, st, META_STORE_ID,
				     &st->store_id)) != 0 ||
	    (rc = store_meta_u64_get(txn, st, "next_instance", &next)) != 0 ||
	    (rc = prune_instances_txn(txn, st, &pruned)) != 0)
		goto fail;
	st->instance = next + 1;
	buf[0] = STORE_REC_VERSION;
	be32_put(buf + 1, (uint32_t)getpid());
	be64_put(buf + 5, proc_start_ticks(getpid()));
	be64_put(buf + 13, store_now_us());
	instance_key(key, sizeof(key), st->instance);
	k.mv_size = strlen(key);
	k.mv_data = key;
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	if ((rc = store_meta_u64_put(txn, st, "next_instance",
				     st->instance)) != 0 ||
	    (rc = mdb_put(txn, st->db_meta, &k, &v, 0)) != 0)
		goto fail;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		return store_fail(st, rc, "register instance", error_r);
	if (pruned > 0)
		log_info("store %s: pruned %u record(s) of instances that are "
			 "gone", st->path, pruned);
	if (upgrade_from != 0)
		log_info("store %s: upgraded from schema version %u to %u",
			 st->path, upgrade_from, STORE_SCHEMA_VERSION);
	return STORE_OK;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return store_fail(st, rc, "open schema", error_r);
}

static int
env_open(struct store *st, const char **error_r)
{
	int rc, dead = 0;

	rc = mdb_env_create(&st->env);
	if (rc != 0)
		return store_fail(st, rc, "create environment", error_r);
	if ((rc = mdb_env_set_maxdbs(st->env, 16)) != 0 ||
	    (rc = mdb_env_set_maxreaders(st->env, 256)) != 0 ||
	    (rc = mdb_env_set_mapsize(st->env, st->set.map_size)) != 0 ||
	    (rc = mdb_env_open(st->env, st->path, MDB_NOTLS |
			       (st->set.mode == STORE_OPEN_READONLY ?
				MDB_RDONLY : 0), 0600)) != 0) {
		mdb_env_close(st->env);
		st->env = NULL;
		snprintf(errbuf, sizeof(errbuf), "cannot open store %s: %s",
			 st->path, mdb_strerror(rc));
		*error_r = errbuf;
		return rc == MDB_MAP_FULL ? STORE_FULL : STORE_ERR;
	}
	/* A map set smaller than the file by an earlier run: adopt the file. */
	mdb_reader_check(st->env, &dead);
	if (dead > 0)
		log_info("store: cleared %d stale reader slot(s)", dead);
	rc = open_schema(st, error_r);
	if (rc != STORE_OK) {
		mdb_env_close(st->env);
		st->env = NULL;
	}
	return rc;
}

/* Make the store's directory entries durable: data.mdb and lock.mdb in
 * the store directory, the store directory in its parent. LMDB syncs the
 * file, never the directory that names it, so a power cut soon after the
 * first start could take the new store, with mail it acknowledged, with
 * it (found by tests/integration/powercut.sh). Once per start: cheap. */
static int
sync_dir_entries(const char *path, const char **error_r)
{
	char parent[PATH_MAX];
	const char *slash;

	if (fileio_fsync_dir(path) < 0) {
		snprintf(errbuf, sizeof(errbuf), "cannot sync the store "
			 "directory %s: %s", path, strerror(errno));
		*error_r = errbuf;
		return STORE_ERR;
	}
	slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == path)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path),
			 path);
	/* The parent may be one the daemon cannot read after dropping root
	 * (the store directory was made and synced as root then). */
	if (fileio_fsync_dir(parent) < 0 && errno != EACCES)
		log_warn("store: cannot sync %s, the directory of the store: "
			 "%s", parent, strerror(errno));
	return STORE_OK;
}

int
store_open(const char *path, const struct store_settings *set,
	   struct store **store_r, const char **error_r)
{
	struct store *st;
	pthread_rwlockattr_t attr;
	int rc;

	*store_r = NULL;
	if (set != NULL && set->mode != STORE_OPEN_DAEMON) {
		struct stat sb;

		snprintf(errbuf, sizeof(errbuf), "%s/data.mdb", path);
		if (stat(errbuf, &sb) < 0) {
			int e = errno;

			snprintf(errbuf, sizeof(errbuf), "no store in %s "
				 "(%s/data.mdb: %s); only posternd creates a "
				 "store: is [store] path right? use -c FILE or "
				 "-s DIR", path, path, strerror(e));
			*error_r = errbuf;
			return STORE_ERR;
		}
	} else if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(errbuf, sizeof(errbuf), "cannot create store "
			 "directory %s: %s", path, strerror(errno));
		*error_r = errbuf;
		return STORE_ERR;
	}
	st = xcalloc(1, sizeof(*st));
	st->path = xstrdup(path);
	if (set != NULL)
		st->set = *set;
	settings_defaults(&st->set);
	atomic_init(&st->resubmit_window_us, st->set.resubmit_window_us);
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->txn_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&st->group_lock, NULL);
	pthread_mutex_init(&st->health_lock, NULL);
	st->group_tail = &st->group_head;
	rc = env_open(st, error_r);
	if (rc == STORE_OK && st->set.mode == STORE_OPEN_DAEMON &&
	    (rc = sync_dir_entries(path, error_r)) != STORE_OK) {
		mdb_env_close(st->env);
		st->env = NULL;
	}
	if (rc != STORE_OK) {
		pthread_mutex_destroy(&st->group_lock);
		pthread_rwlock_destroy(&st->txn_lock);
		free(st->path);
		free(st);
		return rc;
	}
	*store_r = st;
	return STORE_OK;
}

void
store_close(struct store **store)
{
	struct store *st = *store;

	*store = NULL;
	if (st == NULL)
		return;
	if (st->env != NULL)
		mdb_env_close(st->env);
	pthread_mutex_destroy(&st->health_lock);
	pthread_mutex_destroy(&st->group_lock);
	pthread_rwlock_destroy(&st->txn_lock);
	free(st->path);
	free(st);
}

int
store_reopen(struct store *st, const char **error_r)
{
	int rc;

	pthread_rwlock_wrlock(&st->txn_lock);
	if (st->env != NULL)
		mdb_env_close(st->env);
	st->env = NULL;
	rc = env_open(st, error_r);
	if (rc == STORE_OK)
		atomic_store(&st->panicked, false);
	pthread_rwlock_unlock(&st->txn_lock);
	/* not under txn_lock: health_lock is never taken inside it */
	store_health_reopen(st, rc == STORE_OK ? NULL : *error_r);
	if (rc == STORE_OK)
		log_warn("store: %s reopened after a panic", st->path);
	return rc;
}

bool
store_panicked(struct store *st)
{
	return atomic_load(&st->panicked);
}

uint64_t
store_instance(const struct store *st)
{
	return st->instance;
}

uint64_t
store_id(const struct store *st)
{
	return st->store_id;
}

const struct store_settings *
store_settings(const struct store *st)
{
	return &st->set;
}

void
store_map_usage(struct store *st, uint64_t *map_size_r, uint64_t *used_r)
{
	MDB_envinfo info;
	MDB_stat stat;

	pthread_rwlock_rdlock(&st->txn_lock);
	if (st->env == NULL) {	/* a reopen failed */
		pthread_rwlock_unlock(&st->txn_lock);
		*map_size_r = *used_r = 0;
		return;
	}
	mdb_env_info(st->env, &info);
	mdb_env_stat(st->env, &stat);
	pthread_rwlock_unlock(&st->txn_lock);
	*map_size_r = info.me_mapsize;
	*used_r = (uint64_t)(info.me_last_pgno + 1) * stat.ms_psize;
}

int
store_room(struct store *st, struct store_room *r)
{
	uint64_t inuse = 2, last, psize = 4096, file;
	MDB_envinfo info;
	MDB_txn *txn = NULL;
	MDB_stat stat;
	struct statvfs sv;

	memset(r, 0, sizeof(*r));
	r->map_max = st->set.map_max;
	pthread_rwlock_rdlock(&st->txn_lock);
	if (st->env == NULL ||
	    mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn) != MDB_SUCCESS) {
		pthread_rwlock_unlock(&st->txn_lock);
		return -1;
	}
	/* under txn_lock: a reopen sets the handles again */
	MDB_dbi dbis[] = { 0 /* FREE_DBI */, 1 /* MAIN_DBI */, st->db_meta,
			   st->db_messages, st->db_bodies, st->db_rcpts,
			   st->db_notify, st->db_active, st->db_ledger,
			   st->db_ledger_idx, st->db_ledger_mid, st->db_history,
			   st->db_resubmit, st->db_resubmit_seq };
	mdb_env_info(st->env, &info);
	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++)
		if (mdb_stat(txn, dbis[i], &stat) == MDB_SUCCESS) {
			inuse += stat.ms_branch_pages + stat.ms_leaf_pages +
				 stat.ms_overflow_pages;
			psize = stat.ms_psize;
		}
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&st->txn_lock);
	last = (uint64_t)info.me_last_pgno + 1;
	/* pages inside the file that no database uses: free for reuse
	 * (some may still be pinned by an old reader; close enough) */
	r->inside = last > inuse ? (last - inuse) * psize : 0;
	file = last * psize;
	r->map_left = file < st->set.map_max ? st->set.map_max - file : 0;
	r->disk_left = statvfs(st->path, &sv) == 0 ?
		(uint64_t)sv.f_bavail * sv.f_frsize : UINT64_MAX;
	r->room = r->inside + (r->map_left < r->disk_left ? r->map_left :
			       r->disk_left);
	return 0;
}

bool
store_has_room(struct store *st, uint64_t need)
{
	struct store_room r;

	if (store_room(st, &r) < 0)
		return true;	/* the commit will tell */
	/* a fresh look: store_health() need not look again so soon */
	store_health_room(st, &r, store_now_us());
	return r.room >= need;
}

/* store_probe()'s body: the counters record written again as it is (the
 * runner skips an unchanged record; this one is put anyway). */
static int
probe_txn(struct store_wtx *w, void *arg)
{
	(void)arg;
	return counters_save(w->txn, w->st, &w->c);
}

int
store_probe(struct store *st, const char **error_r)
{
	return store_write(st, probe_txn, NULL, error_r);
}

void
store_map_trim(struct store *st)
{
	char path[PATH_MAX], line[512];
	unsigned long a, b, off, ino;
	uint64_t now = store_now_us(), due = atomic_load(&st->trim_at_us);
	struct stat sb;
	FILE *fp;

	if (now < due || !atomic_compare_exchange_strong(&st->trim_at_us,
			&due, now + STORE_TRIM_US))
		return;	/* done recently, or another thread does it */

	/* LMDB does not tell where its map is (me_mapaddr is only set with
	 * MDB_FIXEDMAP): find the mappings of data.mdb in /proc/self/maps.
	 * Under txn_lock, so that no resize moves the map meanwhile. */
	snprintf(path, sizeof(path), "%s/data.mdb", st->path);
	if (stat(path, &sb) < 0 || (fp = fopen("/proc/self/maps", "re")) ==
	    NULL)
		return;
	pthread_rwlock_rdlock(&st->txn_lock);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "%lx-%lx %*s %lx %*s %lu", &a, &b, &off,
			   &ino) == 4 && ino == (unsigned long)sb.st_ino &&
		    madvise((void *)a, b - a, MADV_DONTNEED) < 0)
			log_debug("store: madvise: %s", strerror(errno));
	pthread_rwlock_unlock(&st->txn_lock);
	fclose(fp);
}

int
store_reader_check(struct store *st)
{
	int dead = 0, rc;

	pthread_rwlock_rdlock(&st->txn_lock);
	rc = st->env != NULL ? mdb_reader_check(st->env, &dead) : -1;
	pthread_rwlock_unlock(&st->txn_lock);
	if (rc != 0)
		return -1;
	if (dead > 0)
		log_info("store: cleared %d stale reader slot(s)", dead);
	return dead;
}

/* --- enqueue --------------------------------------------------------------- */

struct enqueue_args {
	const struct store_msg *msgs;
	size_t n;
	uint64_t now_us;
	uint64_t *qids;
	/* Per message, its received digest; with the resubmission index
	 * on, the offset of its first key in keys (nrcpt keys each). */
	unsigned char *keys;
	size_t *key_at;
	unsigned char (*body_sha)[32];
	/* Room for the results of the messages without resub_r. */
	struct store_resubmit *res;
	size_t *res_at;
	bool looked_up;		/* the racy variant's results are in */
};

void
store_received_sha(const struct store_msg *m, unsigned char sha[32])
{
	size_t skip = m->trace_len <= m->body_len ? m->trace_len : 0;
	unsigned int n = 32;

	if (EVP_Digest((const char *)m->body + skip, m->body_len - skip, sha,
		       &n, EVP_sha256(), NULL) != 1)
		panic("SHA-256 failed");
}

static bool
addr_ok(const char *a)
{
	size_t len = strlen(a);

	if (len > STORE_ADDR_MAX)
		return false;
	for (; *a != '\0'; a++)
		if ((unsigned char)*a < 0x20 || *a == '<' || *a == '>')
			return false;
	return true;
}

/* Index of an earlier identical recipient (so duplicates collapse), or
 * i itself. */
static size_t
rcpt_first(const char *const *rcpts, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcasecmp(rcpts[j], rcpts[i]) == 0)
			return j;
	return i;
}

/* Message m: look its recipients up in the resubmission index (keys:
 * theirs, NULL when the index is off), queue those that are new as
 * message ++*qid_io (*qid_r; 0 when there is none), remember them in the
 * index, and account for those that came again. */
static int
enqueue_one(struct store_wtx *w, const struct store_msg *m,
	    const unsigned char *keys, const unsigned char *body_sha,
	    uint64_t now_us, uint64_t *qid_io, uint64_t *qid_r,
	    struct store_resubmit *res, bool looked_up)
{
	struct store *st = w->st;
	unsigned char key[STORE_KEY_RCPT_LEN], nkey[STORE_KEY_NOTIFY_LEN];
	unsigned char qkey[8], buf[RCPT_REC_MAX > MSG_REC_MAX ?
				  RCPT_REC_MAX : MSG_REC_MAX];
	struct store_resubmit none = { 0, 0, 0 };
	uint64_t window = atomic_load(&st->resubmit_window_us);
	uint64_t since = now_us > window ? now_us - window : 0;
	struct msg_rec mr;
	struct rcpt_rec rr;
	MDB_val k, v, empty = { 0, NULL };
	uint32_t idx = 0;
	size_t fresh = 0;
	uint64_t qid;
	int rc;

	*qid_r = 0;
	/* Outputs from scratch: this body may run a second time. */
	for (size_t i = 0; i < m->nrcpt && !looked_up; i++)
		res[i] = none;
	for (size_t i = 0; i < m->nrcpt; i++) {
		struct store_resubmit hit = res[i];

		if (rcpt_first(m->rcpts, i) != i)
			continue;
		if (looked_up)
			rc = hit.qid != 0;
		else
			rc = keys == NULL ? 0 : store_resubmit_get_txn(w,
				keys + i * STORE_RESUBMIT_KEY_LEN, since,
				&hit);
		if (rc < 0 || rc > 1)
			return rc;
		if (rc == 0) {
			fresh++;
			continue;
		}
		res[i] = hit;
		if ((rc = store_resubmit_seen_txn(w,
				keys + i * STORE_RESUBMIT_KEY_LEN, &hit, m,
				m->rcpts[i], body_sha, now_us)) != 0)
			return rc;
	}
	for (size_t i = 0; i < m->nrcpt; i++)
		res[i] = res[rcpt_first(m->rcpts, i)];
	if (fresh == 0)
		return 0;	/* every recipient came again: nothing new */
	*qid_r = qid = ++*qid_io;
	memset(&rr, 0, sizeof(rr));
	rr.state = ST_PENDING;
	rr.next_try_us = now_us;
	for (size_t i = 0; i < m->nrcpt; i++) {
		if (rcpt_first(m->rcpts, i) != i || res[i].qid != 0)
			continue;
		store_rcpt_key(key, qid, idx);
		snprintf(rr.rcpt, sizeof(rr.rcpt), "%s", m->rcpts[i]);
		k.mv_size = sizeof(key);
		k.mv_data = key;
		v.mv_data = buf;
		v.mv_size = store_rcpt_encode(&rr, buf, sizeof(buf));
		if ((rc = mdb_put(w->txn, st->db_rcpts, &k, &v,
				  MDB_NOOVERWRITE)) != 0)
			return rc;
		store_notify_key(nkey, now_us, qid, idx);
		k.mv_size = sizeof(nkey);
		k.mv_data = nkey;
		if ((rc = mdb_put(w->txn, st->db_notify, &k, &empty, 0)) != 0)
			return rc;
		if (keys != NULL &&
		    (rc = store_resubmit_put_txn(w, keys + i *
				STORE_RESUBMIT_KEY_LEN, qid, idx, now_us)) != 0)
			return rc;
		idx++;
	}
	memset(&mr, 0, sizeof(mr));
	mr.accepted_us = now_us;
	mr.nrcpt = idx;
	mr.remaining = idx;
	mr.body_len = (uint32_t)m->body_len;
	memcpy(mr.received_sha, body_sha, 32);
	snprintf(mr.sender, sizeof(mr.sender), "%s", m->sender);
	snprintf(mr.msgid, sizeof(mr.msgid), "%s", m->msgid);
	be64_put(qkey, qid);
	k.mv_size = 8;
	k.mv_data = qkey;
	v.mv_data = buf;
	v.mv_size = store_msg_encode(&mr, buf, sizeof(buf));
	if ((rc = mdb_put(w->txn, st->db_messages, &k, &v,
			  MDB_NOOVERWRITE)) != 0)
		return rc;
	v.mv_size = m->body_len;
	v.mv_data = NULL;
	/* MDB_RESERVE: LMDB gives us the space, we copy the body in once. */
	if ((rc = mdb_put(w->txn, st->db_bodies, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	if (m->body_len > 0)
		memcpy(v.mv_data, m->body, m->body_len);
	if (m->qid_at != 0 && m->qid_at + 16 <= m->body_len) {
		char q[17];

		memcpy((char *)v.mv_data + m->qid_at, store_qid_str(qid, q),
		       16);
	}
	w->c.accepted += idx;
	w->c.pending += idx;
	return 0;
}

static int
enqueue_txn(struct store_wtx *w, void *arg)
{
	struct enqueue_args *a = arg;
	uint64_t qid, last;
	int rc;

	if ((rc = store_meta_u64_get(w->txn, w->st, "next_qid", &qid)) != 0)
		return rc;
	last = qid;
	for (size_t i = 0; i < a->n; i++) {
		const struct store_msg *m = &a->msgs[i];

		rc = enqueue_one(w, m, a->keys == NULL ? NULL :
				 a->keys + a->key_at[i],
				 a->body_sha[i],
				 a->now_us, &qid, &a->qids[i],
				 m->resub_r != NULL ? m->resub_r :
				 a->res + a->res_at[i], a->looked_up);
		if (rc != 0)
			return rc;
	}
	return qid == last ? 0 :
	       store_meta_u64_put(w->txn, w->st, "next_qid", qid);
}

#ifdef POSTERN_RESUBMIT_RACY
/* THE WRONG DESIGN, built only into tests/posternd_racy so that
 * tests/integration/resubmit_race.sh can show that it catches it: the
 * index is looked up in a read transaction of its own, and the write
 * transaction that inserts comes later. Two sessions carrying the same
 * message both find nothing, and both are queued. */
static void
racy_look_up(struct store *st, struct enqueue_args *a)
{
	uint64_t window = atomic_load(&st->resubmit_window_us);
	uint64_t since = a->now_us > window ? a->now_us - window : 0;
	struct store_wtx w = { .st = st };
	const char *err;

	if (store_read_begin(st, &w.txn, &err) != STORE_OK)
		return;
	for (size_t i = 0; i < a->n; i++) {
		const struct store_msg *m = &a->msgs[i];
		struct store_resubmit *res = m->resub_r != NULL ? m->resub_r :
					     a->res + a->res_at[i];

		for (size_t j = 0; j < m->nrcpt; j++)
			if (store_resubmit_get_txn(&w, a->keys + a->key_at[i] +
				j * STORE_RESUBMIT_KEY_LEN, since,
				&res[j]) != 1)
				res[j] = (struct store_resubmit){ 0, 0, 0 };
	}
	store_read_end(st, &w.txn);
	a->looked_up = true;
}
#endif

int
store_enqueue(struct store *st, const struct store_msg *msgs, size_t n,
	      uint64_t now_us, uint64_t *qids_r, const char **error_r)
{
	struct enqueue_args a = { .msgs = msgs, .n = n, .now_us = now_us,
				  .qids = qids_r };
	size_t nkeys = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		const struct store_msg *m = &msgs[i];
		bool ok = m->nrcpt > 0 && addr_ok(m->sender) &&
			  strlen(m->msgid) <= STORE_MSGID_MAX &&
			  m->body_len <= UINT32_MAX;

		for (size_t j = 0; ok && j < m->nrcpt; j++)
			ok = m->rcpts[j][0] != '\0' && addr_ok(m->rcpts[j]);
		if (!ok) {
			snprintf(errbuf, sizeof(errbuf), "enqueue: message %zu "
				 "of the batch has no recipient or a bad "
				 "address", i);
			*error_r = errbuf;
			return STORE_ERR;
		}
		nkeys += m->nrcpt;
	}
	a.res = xcalloc(nkeys, sizeof(*a.res));
	a.res_at = xcalloc(n, sizeof(*a.res_at));
	for (size_t i = 1; i < n; i++)
		a.res_at[i] = a.res_at[i - 1] + msgs[i - 1].nrcpt;
	/* The digests are made here, outside the write transaction: it
	 * only looks them up and inserts them. */
	a.body_sha = xcalloc(n, sizeof(*a.body_sha));
	for (size_t i = 0; i < n; i++)
		store_received_sha(&msgs[i], a.body_sha[i]);
	if (atomic_load(&st->resubmit_window_us) != 0) {
		a.keys = xmalloc(nkeys * STORE_RESUBMIT_KEY_LEN);
		a.key_at = xcalloc(n, sizeof(*a.key_at));
		nkeys = 0;
		for (size_t i = 0; i < n; i++) {
			a.key_at[i] = nkeys * STORE_RESUBMIT_KEY_LEN;
			store_resubmit_keys(&msgs[i], a.body_sha[i],
					    a.keys + a.key_at[i]);
			nkeys += msgs[i].nrcpt;
		}
	}
#ifdef POSTERN_RESUBMIT_RACY
	if (a.keys != NULL)
		racy_look_up(st, &a);
#endif
	rc = store_write(st, enqueue_txn, &a, error_r);
	free(a.keys);
	free(a.key_at);
	free(a.body_sha);
	free(a.res);
	free(a.res_at);
	return rc;
}

int
store_counters_get(struct store *st, struct store_counters *c_r,
		   const char **error_r)
{
	MDB_txn *txn;
	int rc = store_read_begin(st, &txn, error_r);

	if (rc != STORE_OK)
		return rc;
	rc = store_counters_load_txn(txn, st, c_r);
	store_read_end(st, &txn);
	return rc == 0 ? STORE_OK : store_fail(st, rc, "counters", error_r);
}

int
store_body_get(struct store *st, uint64_t qid, void **body_r, size_t *len_r,
	       const char **error_r)
{
	unsigned char qkey[8];
	MDB_val k = { 8, qkey }, v;
	MDB_txn *txn;
	int rc;

	*body_r = NULL;
	*len_r = 0;
	be64_put(qkey, qid);
	if ((rc = store_read_begin(st, &txn, error_r)) != STORE_OK)
		return rc;
	rc = mdb_get(txn, st->db_bodies, &k, &v);
	if (rc == 0) {
		*body_r = xmemdup(v.mv_data, v.mv_size);
		*len_r = v.mv_size;
	}
	store_read_end(st, &txn);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc == 0 ? 1 : store_fail(st, rc, "read body", error_r);
}
