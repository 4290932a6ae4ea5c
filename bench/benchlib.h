/*
 * benchlib.h - what the bench programs share.
 */
#ifndef POSTERN_BENCHLIB_H
#define POSTERN_BENCHLIB_H

#include "store.h"

#include <stdint.h>

/* Claim every due entry of st and record it delivered, 256 at a time,
 * through the calls the workers use; *n_r (added to) counts them.
 * Returns a store_rc. */
int
bench_deliver_all(struct store *st, uint64_t *n_r, const char **error_r);

#endif
