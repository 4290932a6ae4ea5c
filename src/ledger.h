/*
 * ledger.h - the append-only, hash-chained ledger of terminal outcomes,
 * and verify(), the audit of the whole store.
 *
 * Threads: any. Functions named *_txn run inside a write transaction that
 * the caller owns (claim.c's outcome transaction); they never end it.
 */
#ifndef POSTERN_LEDGER_H
#define POSTERN_LEDGER_H

#include "store.h"

#include <stdint.h>
#include <stdio.h>

/* Kinds 1-3 are terminal: at most one per (message, recipient), indexed
 * in ledger_idx. A note records an operator's decision that is not an
 * outcome (an in-doubt entry sent again); it is chained like the others. */
enum ledger_kind {
	LEDGER_DELIVERED = 1,
	LEDGER_BOUNCED = 2,
	LEDGER_DELETED = 3,	/* removed by the operator */
	LEDGER_NOTE = 4,
	/* A message the home side sent again, recognised by the
	 * resubmission index and not queued again: qid and idx name the
	 * entry it was queued as, accepted_us when; body_sha is the digest
	 * of the body as received (without postern's trace fields). Not
	 * terminal; counted in store_counters.resubmitted. */
	LEDGER_RESUBMISSION = 5,
};

/* "delivered", "bounced", "deleted", "note", "resubmission". */
const char *
ledger_kind_name(enum ledger_kind kind);

/* One ledger record, decoded. Strings are owned by the struct (fixed
 * arrays), so a copy outlives the transaction it came from. */
struct ledger_rec {
	uint64_t seq;
	uint8_t kind;
	uint64_t qid;
	uint32_t idx;
	uint64_t accepted_us;
	uint64_t done_us;
	unsigned char body_sha[32];	/* SHA-256 of the delivered bytes */
	unsigned char prev_hash[32];	/* SHA-256 of the previous record */
	char rcpt[321];
	char msgid[999];
	char reply[513];
	/* SHA-256 of the message as received, without postern's trace
	 * fields: the same at every instance that queued the same message
	 * (record version 2, since schema 4; zeros in version 1). */
	unsigned char received_sha[32];
};

struct store_wtx;

/* Append rec (seq and prev_hash are filled in) in w's transaction, and the
 * index entries. Refuses, with -1 and w->fail set, a second terminal record
 * for the same (qid, idx): the check and the append are one transaction.
 * Returns 0, an LMDB code, or -1. */
int
ledger_append_txn(struct store_wtx *w, struct ledger_rec *rec);

/* Whether (qid, idx) has a terminal record: 1 yes, 0 no, or an LMDB code
 * (negative). Inside w's transaction. */
int
ledger_has_txn(struct store_wtx *w, uint64_t qid, uint32_t idx);

/* Call fn for every ledger record with seq >= from, in order, inside one
 * read transaction; fn gets a copy it may keep. Stops when fn returns
 * non-zero. Returns 0 or a store_rc. */
int
ledger_foreach(struct store *st, uint64_t from,
	       int (*fn)(const struct ledger_rec *rec, void *arg), void *arg,
	       const char **error_r);

/* As ledger_foreach(), and fn also gets the record's stored bytes
 * (borrowed for the call): what its hash is made of. */
int
ledger_foreach_raw(struct store *st, uint64_t from,
		   int (*fn)(const struct ledger_rec *rec,
			     const unsigned char *raw, size_t len, void *arg),
		   void *arg, const char **error_r);

/* The ledger's head: the last record's sequence number and the SHA-256
 * of its value (0 and zeros for an empty ledger). */
int
ledger_head(struct store *st, uint64_t *seq_r, unsigned char hash[32],
	    const char **error_r);

/* SHA-256 of len bytes at data into out. */
void
ledger_sha256(const void *data, size_t len, unsigned char out[32]);

/* Read ledger record seq into *rec: 1 found, 0 no such record, or a
 * store_rc (< 0). */
int
ledger_get(struct store *st, uint64_t seq, struct ledger_rec *rec,
	   const char **error_r);

/* Call fn for each terminal record of message qid (in recipient order),
 * inside one read transaction. Returns 0 or a store_rc. */
int
ledger_foreach_qid(struct store *st, uint64_t qid,
		   int (*fn)(const struct ledger_rec *rec, void *arg),
		   void *arg, const char **error_r);

/* What verify found. */
struct verify_report {
	uint64_t records;		/* ledger records read */
	uint64_t problems;		/* everything listed on out */
	struct store_counters counted;	/* what a full scan found */
	struct store_counters stored;	/* what the counters say */
	/* Filled in from ledger_verify_progress()'s arguments. */
	void (*progress)(uint64_t done, uint64_t total, void *arg);
	void *progress_arg;
	void (*on_problem)(const char *kind, uint64_t record,
			   const char *text, void *arg);
	void *problem_arg;
};

/* What ledger_verify_hooks() calls as it goes; each may be NULL, both get
 * arg. on_problem gets each problem's kind (a stable name for JSON:
 * "chain_mismatch", "second_terminal", ... ledger.c problem()), the
 * ledger record it is about (0: not one record) and the line written to
 * out. */
struct verify_hooks {
	void (*progress)(uint64_t done, uint64_t total, void *arg);
	void (*on_problem)(const char *kind, uint64_t record,
			   const char *text, void *arg);
	void *arg;
};

/* Check the whole store in one read transaction: the hash chain and its
 * head, no (qid, idx) terminal twice, the counters against a full scan,
 * and that every queued entry sits in the index its state needs. Each
 * problem is written to out (may be NULL) as one line naming the record.
 * Returns 0 if the store is sound, 1 if problems were found, or a
 * store_rc (< 0) if it could not be read. */
int
ledger_verify(struct store *st, FILE *out, struct verify_report *r,
	      const char **error_r);

/* The same, calling progress now and then with the ledger records
 * checked so far and their total. */
int
ledger_verify_progress(struct store *st, FILE *out, struct verify_report *r,
		       void (*progress)(uint64_t done, uint64_t total,
					void *arg),
		       void *arg, const char **error_r);

/* The same, with both hooks. */
int
ledger_verify_hooks(struct store *st, FILE *out, struct verify_report *r,
		    const struct verify_hooks *h, const char **error_r);

/* Hex of a 32-byte hash into buf (65 bytes). */
char *
ledger_hex(const unsigned char hash[32], char *buf);

#endif
