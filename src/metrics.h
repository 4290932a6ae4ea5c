/*
 * metrics.h - process-wide counters for the admin endpoint's /metrics.
 *
 * Counters are plain atomics in static storage: any thread bumps them
 * with relaxed ordering, the HTTP handler reads them; nothing is
 * allocated, so there is no owner to track. Gauges that the store knows
 * (entries per state, map use) are read from the store at scrape time.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include "claim_result.h"
#include "lib/buf.h"

#include <stdint.h>

struct store;

/* One delivery outcome as recorded, and its accept-to-outcome latency. */
void
metrics_outcome(enum claim_result recorded, uint64_t latency_us);

/* The ingress sent a final reply with this code (e.g. 250, 451). */
void
metrics_smtp_reply(unsigned code);

/* A driver (re)connected to its foreign peer ("smtp", "lmtp", ...). */
void
metrics_reconnect(const char *driver);

/* Whether the last delivery attempt reached the foreign side; for
 * /healthz. A result of TEMPFAIL counts as unreachable. */
void
metrics_foreign_seen(enum claim_result r, uint64_t now_us);

/* Time of the last attempt that reached the foreign side, and of the
 * last that did not (0: none yet). */
void
metrics_foreign_last(uint64_t *ok_us_r, uint64_t *fail_us_r);

/* Append the Prometheus text format (version 0.0.4) to b: the counters
 * above and the store's gauges. Returns 0, or -1 if the store could not
 * be read (b then holds what could be written). */
int
metrics_render(struct store *st, struct buf *b, uint64_t now_us);

#endif
