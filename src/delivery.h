/*
 * delivery.h - deliver one claimed batch through a driver and record its
 * outcomes: in-doubt settling, the peer's reconnect backoff, the outcome
 * commit (with the claim of the next batch), the log lines and the DSNs.
 *
 * The worker pool (worker.c) owns the threads and decides when to claim;
 * this module does the work of one batch for one worker. It sees the pool
 * only through a struct delivery_ctx, so a test can drive it with a fake
 * driver on a real store and no threads.
 *
 * Threads: a struct delivery and its struct delivery_ctx belong to one
 * worker thread. The struct delivery_shared of a pool is shared by all its
 * workers: atomics, and nexthop_lock for the next hop's record.
 */
#ifndef POSTERN_DELIVERY_H
#define POSTERN_DELIVERY_H

#include "claim.h"
#include "config.h"
#include "driver.h"
#include "store.h"
#include "lib/buf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* In-doubt entries, after a connection broke or a crash: look for them
 * after this long, so that a server still storing the message has
 * stored it when we look. */
#define DELIVERY_LOOK_DELAY_US	(1000000u)

/* An in-doubt entry that a look did not find, and since when. */
struct delivery_notfound {
	uint64_t qid;
	uint32_t idx;
	uint64_t first_us;	/* the first look that did not find it */
};

/* What the workers of one pool share about the foreign side. */
struct delivery_shared {
	atomic_bool indoubt_due;	/* look at in-doubt entries soon */
	/* After a look that could not tell: no in-doubt claims before
	 * indoubt_after_us; the pause doubles up to reconnect_max. */
	atomic_uint_fast64_t indoubt_after_us;
	atomic_uint_fast64_t indoubt_pause_us;
	atomic_bool peer_down;		/* logged as down: log "up" once */
	/* Held across a change of peer_down and its store_nexthop_set(),
	 * so that the store's record ends in the order of the changes; it
	 * also guards the three fields after it. */
	pthread_mutex_t nexthop_lock;
	uint64_t nexthop_at_us;		/* record written (0: not, or failed) */
	char nexthop_reason[256];	/* the reason written */
	atomic_bool nexthop_stale;	/* a clear failed: try again */
	/* In-doubt entries that looks have not found yet: one is sent
	 * again only once looks have not found it for [queue] look_again
	 * (a server may still be storing what a dead connection sent).
	 * Owned by the pool, guarded by notfound_lock; in memory only, so
	 * a restart begins the wait anew (later, never sooner). */
	pthread_mutex_t notfound_lock;
	struct delivery_notfound *notfound;	/* owned */
	size_t notfound_n, notfound_cap;
};

/* Ready for a new pool at now_us: in-doubt entries that a crash left
 * are looked for DELIVERY_LOOK_DELAY_US later. */
void
delivery_shared_init(struct delivery_shared *sh, uint64_t now_us);

void
delivery_shared_destroy(struct delivery_shared *sh);

/* A look did not find the in-doubt entry (qid, idx) at now_us: true
 * when looks have not found it for wait_us or longer (send it again;
 * its slot is dropped), else false, with *again_r when to look again.
 * wait_us 0: true at once. Any thread of the pool. */
bool
delivery_notfound_settled(struct delivery_shared *sh, uint64_t qid,
			  uint32_t idx, uint64_t now_us, uint64_t wait_us,
			  uint64_t *again_r);

/* (qid, idx) was found, or settled: drop its slot, if any. */
void
delivery_notfound_forget(struct delivery_shared *sh, uint64_t qid,
			 uint32_t idx);

/* What one worker delivers with. The pointers are borrowed and outlive
 * the context; the backoff fields are the worker's own. */
struct delivery_ctx {
	struct store *st;
	const struct config *cfg;
	struct driver *driver;
	struct driver *bounce;		/* [bounce] relay; NULL: no DSNs */
	uint32_t worker;		/* 1..count: the claim owner */
	struct delivery_shared *shared;	/* the pool's */
	/* The pool's: is it stopping? And: the next hop is back, wake the
	 * workers waiting out their backoff (called under nexthop_lock).
	 * Both with arg, from this worker's thread. */
	bool (*stopping)(void *arg);
	void (*wake)(void *arg);
	void *arg;
	/* Reconnect backoff while the foreign side is unavailable: the
	 * current interval (0: peer up) and when to try again. */
	uint64_t reconnect_us;
	uint64_t reconnect_at_us;
};

/* When the driver began and ended an entry's message (store clock). */
struct delivery_span {
	uint64_t start_us;
	uint64_t end_us;
};

/* One worker's batch: what was claimed, and per entry what the driver
 * said and what was recorded. Every array has cap entries, is owned and
 * is indexed alike; they stay separate arrays because claim_batch(),
 * driver_deliver() and claim_outcome() each take an array of their own
 * type. */
struct delivery {
	size_t cap;			/* [workers] batch */
	struct claim_item *items;	/* the batch worked on */
	struct claim_outcome *out;	/* reply borrowed from rcpts */
	struct driver_rcpt *rcpts;	/* one slice per message */
	/* The header section of a message that may bounce, at its first
	 * entry, for its DSN (empty: not kept); emptied after the batch. */
	struct buf *hdrs;
	struct delivery_span *span;
	/* The next batch, claimed in the commit of this one's outcomes
	 * (swapped with items), and its number of entries. */
	struct claim_item *next;
	size_t ready;
	/* When the batch in items was claimed, and the next one (store
	 * clock): the a/b boundary of the delays= of its log lines. */
	uint64_t claimed_us;
	uint64_t next_claimed_us;
};

/* A batch of cap entries, owned by the caller. */
struct delivery *
delivery_new(size_t cap);

/* Free *dp (NULL: nothing) and set it to NULL. */
void
delivery_free(struct delivery **dp);

/* Does the worker of c claim message by message, each in its own "being
 * sent" window ([workers] in_doubt_window = message)? */
bool
delivery_per_message(const struct delivery_ctx *c);

/* Does the worker of c claim in-doubt entries (a driver that can look,
 * or in_doubt_policy = retry)? */
bool
delivery_takes_indoubt(const struct delivery_ctx *c);

/* Does the claim itself mark what it claims as being sent (a driver that
 * does not find its earlier deliveries while it delivers)? */
bool
delivery_claim_marks(const struct delivery_ctx *c);

/* Deliver the n entries claimed into d->items at d->claimed_us, message
 * by message, and record every outcome in one commit with the claim of
 * the next batch. If the foreign side is down, the rest goes back
 * without an attempt counted and c's backoff starts. Afterwards
 * d->ready entries of the next batch wait in d->items
 * (delivery_take_ready()). Errors are logged here. */
void
delivery_run(struct delivery_ctx *c, struct delivery *d, size_t n);

/* The entries claimed with the last outcomes, for the next
 * delivery_run(): how many (0: none; claim anew), with d->claimed_us
 * set to when they were claimed. */
size_t
delivery_take_ready(struct delivery *d);

/* Stopping: give the entries claimed with the last outcomes, never
 * worked on, back to the queue. */
void
delivery_put_back(struct delivery_ctx *c, struct delivery *d);

#endif
