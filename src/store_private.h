/*
 * store_private.h - what store.c shares with claim.c, ledger.c and tests.
 *
 * Not for other stages: they go through store.h, claim.h and ledger.h.
 * Everything here runs inside a transaction owned by the caller; the
 * encoders write the bytes documented in lmdb-schema/.
 */
#ifndef POSTERN_STORE_PRIVATE_H
#define POSTERN_STORE_PRIVATE_H

#include "store.h"
#include "ledger.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#define STORE_REC_VERSION 1
#define STORE_KEY_RCPT_LEN 12	/* qid (8) + recipient index (4) */
#define STORE_KEY_NOTIFY_LEN 20	/* due (8) + qid (8) + index (4) */
#define STORE_SHA_LEN 32
#define STORE_ADDR_MAX 320	/* longest address we store */
#define STORE_MSGID_MAX 998	/* longest Message-ID we store */
#define STORE_REPLY_MAX 512	/* longest foreign reply we store */
#define STORE_MID_KEY_MAX 400	/* Message-ID index key prefix */
#define STORE_ERRBUF_LEN 512	/* store_errbuf() */

#define RCPT_FLAG_SENDING 0x01	/* the driver may have handed it over */
#define RCPT_FLAG_DEAD 0x02	/* held as dead letter: gave up retrying */

struct store {
	MDB_env *env;
	char *path;
	struct store_settings set;
	uint64_t instance;
	uint64_t store_id;
	atomic_bool panicked;
	/* settings.resubmit_window_us, as a reload may change it. */
	atomic_uint_fast64_t resubmit_window_us;
	atomic_uint_fast64_t trim_at_us;	/* next store_map_trim() */
	/* Write commits (mdb_txn_commit, its fdatasync included): count
	 * per bucket of STORE_COMMIT_BOUNDS_US (last: above them all) and
	 * the sum; relaxed atomics, read by store_commit_latency(). */
	atomic_uint_fast64_t commit_count[STORE_COMMIT_NBOUNDS + 1];
	atomic_uint_fast64_t commit_sum_us;
	/* Every transaction holds this for reading; map resize and reopen
	 * hold it for writing, so that mdb_env_set_mapsize() and
	 * mdb_env_close() run with no transaction active in this process. */
	pthread_rwlock_t txn_lock;
	/* Group commit of store_write(): the bodies of callers waiting for
	 * a commit, in arrival order, and whether one caller is leading a
	 * commit now. Under group_lock. The requests live on their
	 * callers' stacks, each with its own cond. */
	pthread_mutex_t group_lock;
	struct store_group_req *group_head, **group_tail;
	size_t group_n;		/* requests queued */
	size_t group_last;	/* requests in the last commit */
	size_t group_want;	/* a leader waits for this many, or 0 */
	pthread_cond_t *group_wake;	/* that leader's cond */
	bool group_busy;
	/* Whether the store can take mail (store_health.c). io_failed:
	 * the last write commit failed with an I/O error (set and cleared
	 * by write_alone()). The rest under health_lock, which is never
	 * held while txn_lock is taken or held. */
	atomic_bool io_failed;
	pthread_mutex_t health_lock;
	char io_why[STORE_ERRBUF_LEN];	/* io_failed's error */
	char reopen_why[STORE_ERRBUF_LEN];	/* the last reopen's error,
						   "" after one worked */
	uint64_t room_at_us;		/* the last look at the room */
	bool room_full;			/* what it found */
	char room_why[256];
	enum store_health seen;		/* the state last reported */
	uint64_t seen_since_us;
	MDB_dbi db_meta, db_messages, db_bodies, db_rcpts, db_notify,
		db_active, db_ledger, db_ledger_idx, db_ledger_mid,
		db_history, db_resubmit, db_resubmit_seq;
};

/* A write transaction in progress, as the runner hands it to a body. */
struct store_wtx {
	struct store *st;
	MDB_txn *txn;
	struct store_counters c;	/* loaded at begin, stored at commit */
	const char *fail;		/* body's own failure reason */
	/* Why the body moves entries (an operator's note); NULL: the
	 * entry's last reply. Goes into the history records. */
	const char *note;
};

/* The body of a write transaction. Returns 0, an MDB/errno code, or -1
 * with w->fail set. It may run more than once (after the map grows, or
 * alone after a shared transaction failed), so it must start from scratch
 * each time: reset its outputs first, rely on nothing another body left
 * in w (note, fail) or in the txn, and do nothing outside the txn that
 * must not happen twice. */
typedef int store_txn_fn(struct store_wtx *w, void *arg);

/* Run fn in one write transaction with the counters loaded and saved,
 * growing the map and retrying on MDB_MAP_FULL. Returns a store_rc. The
 * transaction may be shared with the bodies of other threads' calls
 * (group commit); a body runs once more, alone, when the shared
 * transaction fails. */
int
store_write(struct store *st, store_txn_fn *fn, void *arg,
	    const char **error_r);

/* Run fn like store_write() but in a read transaction that is thrown
 * away: for a body that, told so by its arg, only reads (a dry run). */
int
store_read_only_run(struct store *st, store_txn_fn *fn, void *arg,
		    const char **error_r);

/* Begin / end a read transaction (holds txn_lock for reading). */
int
store_read_begin(struct store *st, MDB_txn **txn_r, const char **error_r);
void
store_read_end(struct store *st, MDB_txn **txn);

/* Translate an LMDB/errno code into a store_rc and a message. */
int
store_fail(struct store *st, int rc, const char *what, const char **error_r);

/* store_health.c: a write commit's outcome (write_alone()): rc 0 and
 * wrote (the commit reached the disk), or the LMDB/errno code it
 * failed with. Neither: a commit that wrote nothing says nothing. */
void
store_health_commit(struct store *st, int rc, bool wrote);
/* What store_room() found at now (NULL: nothing could be read): the
 * full state follows it, so that a MAIL check that finds no room and
 * the next greeting agree. */
void
store_health_room(struct store *st, const struct store_room *r,
		  uint64_t now);
/* A reopen failed with err, or worked (err NULL). */
void
store_health_reopen(struct store *st, const char *err);

/* Thread-local buffer for error messages. */
char *
store_errbuf(void);

/* --- fixed-width big-endian helpers ------------------------------------ */
static inline void
be64_put(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint64_t
be64_get(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void
be32_put(unsigned char *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static inline uint32_t
be32_get(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline void
be16_put(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static inline uint16_t
be16_get(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Strings in records: a u16 big-endian length, then the bytes, no NUL.
 * put writes at most max bytes of s and returns the bytes used; get
 * reads one into dst (room for max + 1) and advances *p, or returns -1
 * if the record is malformed. */
size_t
store_str_put(unsigned char *p, const char *s, size_t max);
int
store_str_get(const unsigned char **p, const unsigned char *end, char *dst,
	      size_t max);

/* --- recipients record (lmdb-schema/recipients.md) --------------------- */
struct rcpt_rec {
	uint8_t state;
	uint8_t flags;
	uint32_t attempts;
	uint64_t next_try_us;
	uint64_t token;		/* claim token, 0 when not active */
	uint64_t owner_instance;
	uint32_t owner_worker;
	uint64_t lease_until_us;
	char rcpt[STORE_ADDR_MAX + 1];
	char reply[STORE_REPLY_MAX + 1];
};

void
store_rcpt_key(unsigned char key[STORE_KEY_RCPT_LEN], uint64_t qid,
	       uint32_t idx);
/* Encode into buf (cap bytes); returns the length. */
size_t
store_rcpt_encode(const struct rcpt_rec *r, unsigned char *buf, size_t cap);
/* Decode; returns 0 or -1 if the bytes are malformed. */
int
store_rcpt_decode(const MDB_val *v, struct rcpt_rec *r);
#define RCPT_REC_MAX (1 + 1 + 1 + 1 + 4 + 8 + 8 + 8 + 4 + 8 + 2 + \
		      STORE_ADDR_MAX + 2 + STORE_REPLY_MAX)

/* --- messages record (lmdb-schema/messages.md) ------------------------- */
struct msg_rec {
	uint64_t accepted_us;
	uint32_t nrcpt;
	uint32_t remaining;	/* entries not yet terminal */
	uint32_t body_len;
	char sender[STORE_ADDR_MAX + 1];
	char msgid[STORE_MSGID_MAX + 1];
	/* SHA-256 of the message as received, without postern's trace
	 * fields (record version 2, since schema 4; zeros in version 1) */
	unsigned char received_sha[32];
};
size_t
store_msg_encode(const struct msg_rec *m, unsigned char *buf, size_t cap);
int
store_msg_decode(const MDB_val *v, struct msg_rec *m);
#define MSG_REC_MAX (1 + 8 + 4 + 4 + 4 + 2 + STORE_ADDR_MAX + 2 + \
		     STORE_MSGID_MAX + 32)
/* Record version 2 (messages and ledger, written since schema 4):
 * version 1's fields, then the 32-byte received digest. */
#define STORE_REC_VERSION_2 2

/* The received digest of message m: SHA-256 of the body after
 * m->trace_len (store.c; without postern's own trace fields). */
void
store_received_sha(const struct store_msg *m, unsigned char sha[32]);

/* --- notify and active (lmdb-schema/notify.md, active.md) -------------- */
void
store_notify_key(unsigned char key[STORE_KEY_NOTIFY_LEN], uint64_t due_us,
		 uint64_t qid, uint32_t idx);
#define ACTIVE_REC_LEN (1 + 8 + 4 + 8 + 8)
void
store_active_encode(unsigned char buf[ACTIVE_REC_LEN], uint64_t instance,
		    uint32_t worker, uint64_t lease_until_us, uint64_t token);

/* --- history (lmdb-schema/history.md) ---------------------------------- */
/* Record that entry (qid, idx) moved from state `from` to `to` at at_us,
 * and why (note, may be NULL). Inside w's txn. */
int
store_history_put_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		      uint64_t at_us, uint8_t from, uint8_t to,
		      const char *note);
/* Drop the history of message qid (when its last entry is terminal). */
int
store_history_drop_txn(struct store_wtx *w, uint64_t qid);
#define STORE_KEY_HISTORY_LEN (8 + 4 + 8)

/* --- the resubmission index (lmdb-schema/resubmit.md), store_resubmit.c */
#define STORE_RESUBMIT_KEY_LEN 32	/* SHA-256 */

/* The index keys of message m's recipients (nrcpt × 32 bytes into keys):
 * SHA-256 of the sender, the recipient (both lower-cased) and m's
 * received digest body_sha. Outside any transaction (it only hashes). */
void
store_resubmit_keys(const struct store_msg *m,
		    const unsigned char body_sha[32], unsigned char *keys);

/* Look key up: 1 and *hit_r if it names an entry queued at or after
 * since_us, 0 if not (absent or older), or an LMDB code. Inside w's
 * transaction, so it sees what this transaction put. */
int
store_resubmit_get_txn(struct store_wtx *w, const unsigned char *key,
		       uint64_t since_us, struct store_resubmit *hit_r);

/* Remember key as entry (qid, idx), queued at now_us. */
int
store_resubmit_put_txn(struct store_wtx *w, const unsigned char *key,
		       uint64_t qid, uint32_t idx, uint64_t now_us);

/* The entry hit was sent again (recipient rcpt of message m, whose body
 * hashes to body_sha): count it in the index record (postern show reads
 * it there, also once the message is gone) and the counters, and append
 * its ledger record. */
int
store_resubmit_seen_txn(struct store_wtx *w, const unsigned char *key,
			const struct store_resubmit *hit,
			const struct store_msg *m, const char *rcpt,
			const unsigned char body_sha[32], uint64_t now_us);

/* --- ledger records (lmdb-schema/ledger.md), ledger.c ---------------- */
#define LEDGER_FIXED (1 + 1 + 8 + 4 + 8 + 8 + 32 + 32)
#define LEDGER_REC_MAX (LEDGER_FIXED + 2 + STORE_ADDR_MAX + 2 + \
			STORE_MSGID_MAX + 2 + STORE_REPLY_MAX + 32)
/* Encode r into buf (LEDGER_REC_MAX bytes); returns the length. */
size_t
ledger_rec_encode(const struct ledger_rec *r, unsigned char *buf);
/* Decode all but seq; 0, or -1 if the bytes are malformed. */
int
ledger_rec_decode(const MDB_val *v, struct ledger_rec *r);

/* A history value: the from and to states and the note (room for
 * STORE_REPLY_MAX + 1). 0, or -1 if the bytes are malformed. */
int
store_history_decode(const MDB_val *v, uint8_t *from_r, uint8_t *to_r,
		     char *note);

/* --- claim.c's state moves, for the operator's changes (queue.c) ------- */

/* Move a queued entry to state `to`, keeping indexes, counters and history
 * in step; next_try_us (when not 0) becomes its due time. */
int
claim_move_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
	       struct rcpt_rec *rr, enum store_state to, uint64_t next_try_us);
/* Make a queued entry terminal: ledger record of kind, out of the queue,
 * the message gone with its last entry. */
int
claim_finalize_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		   const struct rcpt_rec *rr, enum ledger_kind kind,
		   const char *reply, uint64_t now_us);
/* Read entry (qid, idx): 0, MDB_NOTFOUND, or another LMDB code. */
int
claim_rcpt_get_txn(struct store_wtx *w, uint64_t qid, uint32_t idx,
		   struct rcpt_rec *rr);

/* Counter for a queue state, for moving an entry between states. */
uint64_t *
store_counter_for(struct store_counters *c, enum store_state state);

/* Load the counters record inside txn (zeros when absent). */
int
store_counters_load_txn(MDB_txn *txn, struct store *st,
			struct store_counters *c);

/* Read a u64 from meta (0 when absent) / write it. Inside w's txn. */
int
store_meta_u64_get(MDB_txn *txn, struct store *st, const char *key,
		   uint64_t *v_r);
int
store_meta_u64_put(MDB_txn *txn, struct store *st, const char *key,
		   uint64_t v);

/* Whether the process that registered instance id is still running. */
bool
store_instance_alive_txn(MDB_txn *txn, struct store *st, uint64_t instance);

#endif
