/*
 * queue.h - the operator's view of the queue, and the changes an operator
 * makes to it (postern queue / show / replay / hold / release / delete /
 * resolve / stats).
 *
 * Works on the same store as a running posternd: reads are one read
 * transaction, and every change re-checks each entry's state inside the
 * write transaction that changes it, so an entry a worker claimed in the
 * meantime is skipped, never changed under the worker.
 * Threads: any; nothing here keeps state between calls.
 */
#ifndef POSTERN_QUEUE_H
#define POSTERN_QUEUE_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A queued message, copied out of the store. */
struct queue_msg {
	uint64_t qid;
	uint64_t accepted_us;
	uint32_t nrcpt;		/* distinct recipients at acceptance */
	uint32_t remaining;	/* entries not yet terminal */
	uint32_t body_len;
	char sender[321];	/* "" = null sender */
	char msgid[999];
};

/* One queued (message, recipient), copied out of the store. */
struct queue_entry {
	uint64_t qid;
	uint32_t idx;
	enum store_state state;
	bool sending;		/* may have been handed over */
	bool dead;		/* held as a dead letter */
	bool owner_alive;	/* active: the owner lives and its lease runs */
	uint32_t attempts;
	uint64_t next_try_us;	/* pending, deferred: when it is due */
	uint64_t lease_until_us;	/* active */
	uint64_t owner_instance;	/* active */
	uint32_t owner_worker;		/* active */
	char rcpt[321];
	char reply[513];	/* last foreign reply */
};

/* Which entries a listing or a change applies to. Zero = everything. */
struct queue_filter {
	unsigned states;	/* bits (1u << enum store_state); 0 = any */
	bool dead;		/* only dead letters */
	bool expired;		/* active entries only if their owner is
				 * gone or their lease ran out */
	const char *rcpt;	/* recipient contains this (any case) */
	const char *rcpt_domain;	/* recipient's domain is this */
	const char *sender_domain;	/* sender's domain is this */
	uint64_t older_than_us;	/* accepted at least this long ago */
	const uint64_t *qids;	/* only these messages (nqids > 0) */
	size_t nqids;
};

#define QUEUE_STATE_BIT(s) (1u << (unsigned)(s))

/* Called once per message with at least one matching entry; e holds the
 * n matching entries. Everything is a copy; return non-zero to stop. */
typedef int queue_fn(const struct queue_msg *m, const struct queue_entry *e,
		     size_t n, void *arg);

/* Walk the queue in queue id order inside one read transaction. */
int
queue_foreach(struct store *st, const struct queue_filter *f,
	      uint64_t now_us, queue_fn *fn, void *arg, const char **error_r);

/* One move of an entry between states (lmdb-schema/history.md). */
struct queue_event {
	uint32_t idx;
	uint64_t at_us;
	enum store_state from, to;
	char note[513];
};

/* The history of message qid: *ev_r (caller frees) holds *n_r events in
 * recipient and time order. */
int
queue_history(struct store *st, uint64_t qid, struct queue_event **ev_r,
	      size_t *n_r, const char **error_r);

enum queue_op {
	QUEUE_REPLAY = 1,	/* back to pending, due now */
	QUEUE_HOLD,
	QUEUE_RELEASE,
	QUEUE_DELETE,
	QUEUE_RESOLVE_DELIVERED,	/* in-doubt: it did arrive */
	QUEUE_RESOLVE_REDELIVER,	/* in-doubt: send it again */
};

/* What one change did, or would do, to one entry. */
struct queue_change {
	uint64_t qid;
	uint32_t idx;		/* UINT32_MAX: the message as a whole */
	enum store_state from;
	bool applied;		/* changed (or, in a dry run, would be) */
	uint64_t ledger_seq;	/* the record written, or the terminal
				 * record that made it skip; 0: none */
	char rcpt[321];
	char why[600];		/* what was done, or why it was skipped */
};

typedef void queue_report_fn(const struct queue_change *c, void *arg);

struct queue_op_args {
	enum queue_op op;
	const char *who;	/* the operator, for the ledger and history */
	const char *reason;	/* the operator's words, or NULL */
	bool dry_run;		/* say what would happen, change nothing */
};

/* Apply op to every entry f selects, in write transactions of a few
 * hundred entries each. report is called once per entry, and for each
 * named queue id also once per recipient of it that is terminal (its
 * ledger record), once per queued recipient the other filters leave out
 * (skipped, "not selected"), or once with idx UINT32_MAX and "no such
 * message" when it is neither queued nor in the ledger. *applied_r and
 * *skipped_r count the calls.
 * Returns STORE_OK or a store_rc; entries reported before a failure
 * stay changed. */
int
queue_change(struct store *st, const struct queue_op_args *a,
	     const struct queue_filter *f, queue_report_fn *report, void *arg,
	     size_t *applied_r, size_t *skipped_r, const char **error_r);

/* Name of an operation ("replay", "hold", ...). */
const char *
queue_op_name(enum queue_op op);

/* The oldest queued message (queue ids grow with time, so the first):
 * *qid_r and *accepted_us_r, both 0 when the queue is empty. */
int
queue_oldest(struct store *st, uint64_t *qid_r, uint64_t *accepted_us_r,
	     const char **error_r);

/* Figures for postern stats. */
struct queue_stats {
	struct store_counters c;
	uint64_t messages;		/* queued messages */
	uint64_t bytes;			/* their bodies */
	uint64_t oldest_us;		/* oldest queued message; 0: none */
	uint64_t oldest_qid;
	uint64_t accepted_hour[24];	/* queued entries by age in hours */
	uint64_t done_hour[24];		/* terminal records by age in hours */
	uint64_t done_minute;		/* terminal records in the last 60 s */
	uint64_t map_size, map_used;
	uint64_t ledger_records;
};

int
queue_stats(struct store *st, uint64_t now_us, struct queue_stats *s,
	    const char **error_r);

#endif
