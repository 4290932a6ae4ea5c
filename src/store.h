/*
 * store.h - the LMDB store: environment, schema, write runner, enqueue.
 *
 * One struct store per process (LMDB allows one environment per process;
 * never use it in a child after fork()). It is shared by all threads; every
 * public call opens and ends its own transaction, so callers never see a
 * transaction handle. Byte layouts: lmdb-schema/.
 */
#ifndef POSTERN_STORE_H
#define POSTERN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The schema version this build reads and writes (lmdb-schema/VERSIONS.md). */
#define STORE_SCHEMA_VERSION 4u

/* Return codes. Negative is failure; every failure also sets *error_r to a
 * message that stays valid until the next store call on the same thread. */
enum store_rc {
	STORE_OK = 0,
	STORE_ERR = -1,		/* I/O error or corruption: answer 4xx */
	STORE_FULL = -2,	/* map at its cap, or the disk is full: 4xx */
	STORE_PANIC = -3,	/* environment must be reopened: 421 */
};

/* States of one (message, recipient) entry. Stored as one byte. */
enum store_state {
	ST_NONE = 0,
	ST_PENDING = 1,
	ST_ACTIVE = 2,
	ST_DEFERRED = 3,
	ST_HELD = 4,
	ST_INDOUBT = 5,
};

/* Counters kept in the same transactions as the state changes. The unit is
 * one (message, recipient) entry. */
struct store_counters {
	uint64_t accepted;
	uint64_t delivered;
	uint64_t bounced;
	uint64_t pending;
	uint64_t active;
	uint64_t deferred;
	uint64_t held;
	uint64_t indoubt;
	uint64_t deleted;	/* removed by the operator (postern delete) */
	/* Not entries: recipients of messages the home side sent again
	 * that the resubmission index recognised and did not queue (each
	 * has a ledger record of kind "resubmission"). Outside the
	 * conservation sum. */
	uint64_t resubmitted;
};

/* Who opens the store, and so what store_open() may write. */
enum store_open_mode {
	/* posternd (and the tests): create the store if there is none,
	 * upgrade an old schema, register this process as an instance (and
	 * prune the records of instances that are gone). */
	STORE_OPEN_DAEMON = 0,
	/* postern's changing commands: the store must exist; nothing is
	 * registered, so nothing is left behind when the process exits. */
	STORE_OPEN_EXISTING,
	/* postern's reading commands: MDB_RDONLY; not one byte of data.mdb
	 * is written. A store that needs an upgrade is refused. */
	STORE_OPEN_READONLY,
};

struct store_settings {
	enum store_open_mode mode;
	uint64_t map_size;	/* initial map size in bytes (0: 64 MiB) */
	uint64_t map_max;	/* the map never grows past this (0: 16 GiB) */
	unsigned backoff_min;	/* seconds before the first retry (0: 300) */
	unsigned backoff_max;	/* cap on the retry interval (0: 4000) */
	unsigned max_lifetime;	/* seconds a message may stay queued
				   before it bounces (0: 5 days) */
	unsigned max_attempts;	/* failed attempts before an entry is
				   held as a dead letter (0: never) */
	unsigned group_wait_us;	/* group commit: how long a commit may
				   wait for company (0: never waits) */
	/* How long the resubmission index remembers what was queued, in
	 * µs; 0: no index (nothing is looked up or written). */
	uint64_t resubmit_window_us;
};

/* What the resubmission index said of one recipient of a store_msg. */
struct store_resubmit {
	uint64_t qid;		/* 0: new, queued now; else the queue id
				   the same message got before */
	uint32_t idx;		/* that entry's recipient index */
	uint64_t first_us;	/* when it was queued */
};

/* A message to enqueue. Every pointer is borrowed for the call only. */
struct store_msg {
	const char *sender;		/* "" for the null sender */
	const char *const *rcpts;	/* nrcpt addresses, without <> */
	size_t nrcpt;
	const char *msgid;		/* Message-ID, or "" */
	const void *body;
	size_t body_len;
	/* Offset in body of 16 bytes that the enqueue overwrites with the
	 * queue id in hex, in the stored copy (the ingress's Received:
	 * "id" field); 0: none. */
	size_t qid_at;
	/* The first trace_len bytes of body are postern's own (its
	 * Received: field, a Message-ID: it made): they differ at each
	 * submission, so the resubmission digest leaves them out. */
	size_t trace_len;
	/* Out, may be NULL: nrcpt results of the resubmission index, in
	 * the order of rcpts (a repeated address gets the result of its
	 * first occurrence). */
	struct store_resubmit *resub_r;
	/* Who sent it ("[addr]"), for the resubmission's ledger record;
	 * NULL: unknown. */
	const char *client;
};

struct store;

/* Open the store in directory path. STORE_OPEN_DAEMON creates the
 * directory and the store if needed and registers this process as a new
 * instance; the other modes refuse a directory that holds no store
 * (data.mdb) and write nothing at open (set->mode). Refuses a store of
 * another schema version, naming both. Runs mdb_reader_check. On success
 * the caller owns *store_r and frees it with store_close(). */
int
store_open(const char *path, const struct store_settings *set,
	   struct store **store_r, const char **error_r);

/* Close the store and set *store to NULL. No other thread may be inside a
 * store call. A second call does nothing. */
void
store_close(struct store **store);

/* Reopen the environment after STORE_PANIC. Waits until no thread is inside
 * a transaction; safe to call from any thread. */
int
store_reopen(struct store *st, const char **error_r);

/* True once a commit returned MDB_PANIC and until store_reopen() succeeds. */
bool
store_panicked(struct store *st);

/* This process's instance id (unique per open of this store). */
uint64_t
store_instance(const struct store *st);

/* A random id made when the store was created; names in foreign systems
 * (e.g. Maildir files) include it so a recreated store never collides. */
uint64_t
store_id(const struct store *st);

/* The settings in force (defaults filled in). Borrowed, lives as the store. */
const struct store_settings *
store_settings(const struct store *st);

/* What a new message may still use: the pages free inside the file,
 * then what the map may still grow (up to map_max) as far as the
 * filesystem has room for it. */
struct store_room {
	uint64_t room;		/* inside + min(map_left, disk_left) */
	uint64_t inside;	/* free pages inside the file, bytes */
	uint64_t map_left;	/* bytes the file may grow before map_max */
	uint64_t disk_left;	/* the filesystem's free bytes (f_bavail) */
	uint64_t map_max;
};

/* Fill *r. Returns 0, or -1 if the store cannot be read now (closed,
 * panicked): then nothing is known. Any thread; one short read
 * transaction and a statvfs. */
int
store_room(struct store *st, struct store_room *r);

/* At MAIL: whether NEED more bytes fit (store_room(): room >= need);
 * true when that cannot be known (the commit will tell). Any thread. */
bool
store_has_room(struct store *st, uint64_t need);

/* Current map size and bytes in use (for metrics and tests). */
void
store_map_usage(struct store *st, uint64_t *map_size_r, uint64_t *used_r);

/* --- can the store take mail? (store_health.c; posternd(8), "WHEN IT
 * CANNOT STORE") -------------------------------------------------------- */

/* At MAIL a message needs room for twice its SIZE= (copy-on-write), or
 * for twice STORE_ROOM_DEFAULT_SIZE without one, plus the reserve that
 * keeps the workers' own writes going. */
#define STORE_ROOM_RESERVE (1u << 20)
#define STORE_ROOM_DEFAULT_SIZE 65536u
/* Less room than a message without SIZE= needs: the store is full; and
 * stays full until it has STORE_ROOM_AGAIN, so that a page more or less
 * does not make it flap. */
#define STORE_ROOM_MIN (2u * STORE_ROOM_DEFAULT_SIZE + STORE_ROOM_RESERVE)
#define STORE_ROOM_AGAIN (STORE_ROOM_MIN + (256u << 10))
/* The room is looked at again at most this often (store_health()). */
#define STORE_ROOM_CHECK_US 200000u

/* Worst first: when several hold, the highest is reported. */
enum store_health {
	STORE_HEALTH_OK = 0,
	STORE_HEALTH_FULL,	/* less than STORE_ROOM_MIN of room (then
				   until STORE_ROOM_AGAIN) */
	STORE_HEALTH_IO_ERROR,	/* the last write commit failed with an
				   I/O error; until one succeeds */
	STORE_HEALTH_PANICKED,	/* MDB_PANIC, until a reopen succeeds */
};

#define STORE_HEALTH_WHY_LEN 600
struct store_health_info {
	enum store_health state;
	uint64_t since_us;	/* in this state since (first seen) */
	/* "ok", or "full: ...", "I/O error on commit: ...", "panicked:
	 * ...", with the details and for how long */
	char why[STORE_HEALTH_WHY_LEN];
};

/* Whether the store can take mail now, and if not why. The first call
 * that sees a change logs it (a warning when the store stops taking
 * mail, info when it takes mail again). Any thread; cheap: two atomics,
 * and store_room() at most every STORE_ROOM_CHECK_US. */
void
store_health(struct store *st, struct store_health_info *h_r);

/* A word for the state ("ok", "full", "I/O error", "panicked"). */
const char *
store_health_name(enum store_health state);

/* Try to end a state in which the store cannot take mail: panicked, a
 * reopen; an I/O error, a probe (store_probe()); full, nothing but a
 * look at the room again. Not on the event loop's thread: it may wait
 * for the disk. Returns the state afterwards. */
enum store_health
store_recover(struct store *st);

/* One write transaction that writes the counters record again as it is:
 * a real commit with its fdatasync and no change to the data. Returns a
 * store_rc; success ends an I/O error state. Any thread. */
int
store_probe(struct store *st, const char **error_r);

/* The schema version of the store in directory path (which must hold
 * one), read without writing anything and without a struct store: for
 * posternd -n, which says whether a start would upgrade it. */
int
store_schema_version(const char *path, uint32_t *ver_r,
		     const char **error_r);

/* The foreign side's next hop as the workers last saw it, kept in the
 * store so that postern queue can say why mail waits (meta "nexthop",
 * lmdb-schema/meta.md): present only while the next hop is down. */
struct store_nexthop {
	bool down;
	uint64_t since_us;		/* down since (the first failure) */
	uint64_t last_us;		/* the last failure */
	char reason[512 + 1];		/* what the driver said, last */
};

/* Down (again): keeps since_us of an earlier record, sets reason and
 * last_us (the workers write it when the next hop goes down, when the
 * reason changes, and at most once a minute while it stays down); or up
 * (reason NULL): removes the record. One write transaction; any thread;
 * reason is borrowed for the call. */
int
store_nexthop_set(struct store *st, const char *reason, uint64_t now_us,
		  const char **error_r);

/* The record, or nh_r->down = false if there is none (or it cannot be
 * read). */
int
store_nexthop_get(struct store *st, struct store_nexthop *nh_r,
		  const char **error_r);

/* How long write commits took (mdb_txn_commit with its fdatasync; one per
 * group commit): upper bounds of the buckets in microseconds, and the
 * count per bucket (counts_r[STORE_COMMIT_NBOUNDS]: above the last
 * bound; not cumulative) and the sum since the store was opened. Any
 * thread. */
#define STORE_COMMIT_NBOUNDS 12
extern const uint64_t store_commit_bounds_us[STORE_COMMIT_NBOUNDS];
void
store_commit_latency(struct store *st,
		     uint64_t counts_r[STORE_COMMIT_NBOUNDS + 1],
		     uint64_t *sum_us_r);

/* Drop the pages of the memory map from this process's page tables, at
 * most every STORE_TRIM_US (other calls return at once). The map is
 * read-only and shared with the file, so the pages stay in the page
 * cache and a later access maps them again; but reading bodies and
 * indexes (and the kernel's fault-around) no longer keeps every page of
 * the queue in our RSS. Any thread; readers may run meanwhile. */
#define STORE_TRIM_US 100000u
void
store_map_trim(struct store *st);

/* Clear reader slots left by dead processes; returns how many, or -1. */
int
store_reader_check(struct store *st);

/* Enqueue n messages in ONE write transaction (group commit): body,
 * envelope, one entry per distinct recipient, and their notifications. On
 * success qids_r[i] holds the queue id of msgs[i]; on failure nothing of
 * the batch is stored. A message with no recipient is refused.
 *
 * With the resubmission index on (resubmit_window_us), each recipient's
 * digest of (sender, recipient, body after trace_len) is looked up and
 * inserted in that same transaction: a recipient whose digest was queued
 * within the window is not queued again (resub_r says as what it was
 * queued; it gets a ledger record of kind "resubmission"). A message
 * all of whose recipients were recognised stores nothing: qids_r[i] is 0.
 * Two identical messages in one batch, or in two racing batches, make
 * one entry: the lookup and the insert are one transaction. */
int
store_enqueue(struct store *st, const struct store_msg *msgs, size_t n,
	      uint64_t now_us, uint64_t *qids_r, const char **error_r);

/* Forget the resubmission index's entries older than the window, at
 * most max (0: 1000) in one write transaction; *pruned_r says how many
 * (fewer than max: nothing older is left). Any thread. */
int
store_resubmit_prune(struct store *st, uint64_t now_us, unsigned max,
		     unsigned *pruned_r, const char **error_r);

/* A new window (a reload): from the next enqueue on. Any thread. */
void
store_resubmit_window_set(struct store *st, uint64_t window_us);

/* The index's size: entries, and bytes of its pages (both databases). */
int
store_resubmit_stat(struct store *st, uint64_t *entries_r,
		    uint64_t *bytes_r, const char **error_r);

/* The resubmissions of message qid's entries that the index still
 * remembers: fn gets each entry that was sent again (count > 0), in
 * recipient order. Returns a store_rc. */
struct store_resubmit_info {
	uint32_t idx;
	uint64_t first_us;	/* when the entry was queued */
	uint32_t count;		/* how many times it came again */
	uint64_t last_us;	/* the last time */
};
int
store_resubmit_foreach_qid(struct store *st, uint64_t qid,
			   int (*fn)(const struct store_resubmit_info *ri,
				     void *arg),
			   void *arg, const char **error_r);

/* Read the counters as of the last commit. */
int
store_counters_get(struct store *st, struct store_counters *c_r,
		   const char **error_r);

/* Copy out the body of message qid. Returns 1 and sets *body_r (owned by
 * the caller, free()) and *len_r, 0 if there is no such message, or < 0. */
int
store_body_get(struct store *st, uint64_t qid, void **body_r, size_t *len_r,
	       const char **error_r);

/* Format a queue id the way logs and tools show it (16 hex digits). buf
 * must hold STORE_QID_STRLEN bytes. Returns buf. */
#define STORE_QID_STRLEN 17
char *
store_qid_str(uint64_t qid, char *buf);

/* Parse a queue id as printed by store_qid_str(). Returns 0 or -1. */
int
store_qid_parse(const char *s, uint64_t *qid_r);

/* Name of a state ("pending", ...). */
const char *
store_state_name(enum store_state state);

/* Wall clock in microseconds since the epoch. */
uint64_t
store_now_us(void);

#endif
