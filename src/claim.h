/*
 * claim.h - lease pending entries to workers, record their outcomes,
 * recover leases of dead owners.
 *
 * Every call is ONE write transaction: finding an entry and claiming it
 * can never be split (the duplicate-send bug of the old connectors came
 * from finding in one step and claiming in another). Threads: any, and
 * any number of processes sharing the store.
 */
#ifndef POSTERN_CLAIM_H
#define POSTERN_CLAIM_H

#include "claim_result.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A claimed (message, recipient). Owned by the worker that claimed it; all
 * fields are copies, valid after the transaction ended. */
struct claim_item {
	uint64_t qid;
	uint32_t idx;		/* recipient index within the message */
	uint64_t token;		/* proves the lease; outcome checks it */
	uint32_t attempts;	/* earlier delivery attempts */
	uint64_t accepted_us;
	uint64_t lease_until_us;
	bool was_indoubt;	/* claimed by claim_indoubt(): look first */
	char rcpt[321];
	char sender[321];
	char msgid[999];
};

/* Claim up to max entries that are due (pending, or deferred whose retry
 * time has come) for worker, with a lease of lease_secs. items must have
 * room for max; *n_r is how many were claimed. *next_due_r is when the
 * first entry not yet due comes due (0: none), so the caller can sleep. */
int
claim_batch(struct store *st, uint32_t worker, size_t max,
	    unsigned lease_secs, uint64_t now_us, struct claim_item *items,
	    size_t *n_r, uint64_t *next_due_r, const char **error_r);

/* As claim_batch(), and the claimed entries are marked as being sent in
 * the same transaction, as claim_mark_sending() would: for a driver that
 * cannot look, one commit a batch instead of two. With one_message, only
 * the entries of the first due message are claimed (at most max): the
 * "being sent" window of [workers] in_doubt_window = message. */
int
claim_batch_sending(struct store *st, uint32_t worker, size_t max,
		    bool one_message, unsigned lease_secs, uint64_t now_us,
		    struct claim_item *items, size_t *n_r,
		    uint64_t *next_due_r, const char **error_r);

/* Claim up to max in-doubt entries, for a driver that can look at the
 * foreign side and then settle them with claim_outcome(). */
int
claim_indoubt(struct store *st, uint32_t worker, size_t max,
	      unsigned lease_secs, uint64_t now_us, struct claim_item *items,
	      size_t *n_r, const char **error_r);

/* Mark claimed entries as "being sent": from here on, a crash leaves them
 * in-doubt rather than pending. Call before the driver hands them over.
 * Entries whose lease was lost are skipped and counted in *lost_r (may
 * be NULL): the caller must not hand those over. */
int
claim_mark_sending(struct store *st, const struct claim_item *items,
		   size_t n, size_t *lost_r, const char **error_r);

struct claim_outcome {
	uint64_t qid;
	uint32_t idx;
	uint64_t token;
	enum claim_result result;
	const char *reply;		/* borrowed: the foreign reply */
	/* For CLAIM_UNKNOWN: false keeps the entry in-doubt for the
	 * operator ([queue] in_doubt_policy = hold); true defers it for a
	 * new attempt (retry: the peer may get it twice). Only for drivers
	 * that cannot look; the others settle in-doubt entries by looking. */
	bool indoubt_retry;
	unsigned char body_sha[32];	/* of the bytes delivered */
	/* Filled in: 1 applied, 0 ignored because the lease was lost (the
	 * entry went back to the queue or is already terminal). A stale
	 * DELIVERED is still applied if the entry is not yet terminal:
	 * the delivery happened, and the ledger must say so. */
	int applied;
	/* Filled in: the result actually recorded (a TEMPFAIL past the
	 * queue lifetime becomes PERMFAIL). */
	enum claim_result recorded;
	uint64_t next_try_us;		/* filled in for TEMPFAIL */
	/* Filled in: 1 if this TEMPFAIL was the max_attempts-th failure and
	 * the entry is now held as a dead letter (state held, flag dead,
	 * reply "dead letter after N attempts: <last reply>"). */
	int dead;
	/* Filled in when applied: the entry's attempts, this one included,
	 * as stored (what postern queue lists). */
	uint32_t attempts;
	/* Filled in: 1 if this outcome ended the message's last entry and
	 * the message is gone from the queue. */
	int removed;
};

/* Record n outcomes in ONE transaction: ledger records for terminal
 * results, state moves and counters. */
int
claim_outcome(struct store *st, struct claim_outcome *o, size_t n,
	      uint64_t now_us, const char **error_r);

/* The next batch that claim_outcome_and_claim() claims: what to claim,
 * and (filled in) what was. */
struct claim_next {
	uint32_t worker;		/* the lease's owner */
	size_t max;			/* at most; room in items */
	unsigned lease_secs;
	bool mark;			/* as claim_batch_sending() */
	bool one_message;		/* its one_message */
	struct claim_item *items;	/* borrowed for the call */
	size_t n;			/* filled in: entries claimed */
	/* Filled in: when the first entry not yet due comes due (0:
	 * none), as claim_batch()'s *next_due_r. */
	uint64_t next_due_us;
};

/* claim_outcome(), and in the same transaction the next batch, as
 * claim_batch() (or claim_batch_sending() with next->mark) would claim
 * it into next->items: one commit a batch instead of two. On an error
 * nothing of either is done (next->n is 0); the caller may then record
 * the outcomes alone. */
int
claim_outcome_and_claim(struct store *st, struct claim_outcome *o,
			size_t n, uint64_t now_us, struct claim_next *next,
			const char **error_r);

/* How claim_outcome_next() claims: flags. */
#define CLAIM_MARK		0x1u	/* next->mark */
#define CLAIM_ONE_MESSAGE	0x2u	/* next->one_message */

/* claim_outcome_and_claim() with the next claim spelled out as
 * parameters, for callers written before it (tests/test_claim.c); new
 * code fills in a struct claim_next. */
int
claim_outcome_next(struct store *st, struct claim_outcome *o, size_t n,
		   uint64_t now_us, uint32_t worker, size_t max,
		   unsigned lease_secs, unsigned how,
		   struct claim_item *items, size_t *n_r,
		   uint64_t *next_due_r, const char **error_r);

/* Put claims back that were never handed over because the foreign side
 * was unavailable: pending, due at due_us, the "being sent" flag cleared,
 * and NOT counted as an attempt, so an outage does not use up the
 * entries' retry schedule. Stale tokens are skipped. ONE write txn. */
int
claim_requeue(struct store *st, const struct claim_item *items, size_t n,
	      uint64_t due_us, const char **error_r);

/* Give claims back (shutdown): pending again, or in-doubt if they were
 * marked as being sent. Stale tokens are skipped. */
int
claim_release(struct store *st, const struct claim_item *items, size_t n,
	      const char **error_r);

struct claim_recover_stats {
	size_t to_pending;
	size_t to_indoubt;
};

/* Recover claims whose owner process is gone or whose lease expired: back
 * to pending, or to in-doubt if they were being sent. */
int
claim_recover(struct store *st, uint64_t now_us,
	      struct claim_recover_stats *r, const char **error_r);

/* The retry interval after attempts failures: exponential from
 * backoff_min, capped at backoff_max, with +-25% jitter derived from
 * (qid, idx, attempts) so that retries of many entries spread out. */
uint64_t
claim_backoff_us(const struct store_settings *set, uint64_t qid,
		 uint32_t idx, uint32_t attempts);

#endif
