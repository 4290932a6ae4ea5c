/*
 * corehelp.h - small helpers shared by the core test programs.
 */
#ifndef POSTERN_COREHELP_H
#define POSTERN_COREHELP_H

#include "claim.h"
#include "ledger.h"
#include "store_private.h"

/* Enqueue nmsg messages of nrcpt recipients each, in batches of batch;
 * recipient j of a message is "rJ@x.example". Returns 0 or -1. */
int
corehelp_fill(struct store *st, size_t nmsg, size_t nrcpt, size_t batch,
	      uint64_t now_us);

/* 1 if every recipient of qid is either still queued or has a terminal
 * ledger record (nothing acknowledged went missing), 0 otherwise. */
int
corehelp_accounted(struct store *st, uint64_t qid, uint32_t nrcpt);

/* Close *st (if open) and open an empty store in dir/name instead, with
 * settings set; aborts if it cannot. For tests that want a fresh store
 * per test. */
void
corehelp_fresh(struct store **st, const char *dir, const char *name,
	       const struct store_settings *set);

/* The store's counters; a failed read fails the test (and gives
 * zeros). */
struct store_counters
corehelp_counters(struct store *st);

/* Run ledger_verify; on problems print them to stderr. Returns its rc. */
int
corehelp_verify(struct store *st);

#endif
