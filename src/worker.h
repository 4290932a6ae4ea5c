/*
 * worker.h - the delivery worker pool: threads that claim a batch and
 * hand it to delivery.c, which delivers it through the configured driver
 * and records the outcomes.
 *
 * Threads: worker_pool_new/start/stop from the main thread only;
 * worker_pool_wake and worker_pool_wake_some from any thread (the
 * ingress's loop thread calls wake_some after each commit of messages).
 * Each worker owns its claimed items and its driver; nothing a worker
 * holds is visible to another thread.
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include "config.h"
#include "store.h"

struct worker_pool;

/* Create the pool and one driver per worker from cfg (a reference is
 * taken). The store is borrowed and must outlive the pool. Returns NULL
 * with *error_r set if a driver cannot be made. */
struct worker_pool *
worker_pool_new(struct store *st, struct config *cfg, const char **error_r);

/* Start the threads. Returns 0 or -1. */
int
worker_pool_start(struct worker_pool *p, const char **error_r);

/* Work may be waiting: wake sleeping workers. Any thread. */
void
worker_pool_wake(struct worker_pool *p);

/* n messages were queued: wake up to n sleeping workers (one message
 * keeps one worker busy), not all of them. Any thread. */
void
worker_pool_wake_some(struct worker_pool *p, size_t n);

/* How many of the *total_r workers are alive: in their loop, and not
 * stuck in one batch for longer than the lease. Any thread. */
void
worker_pool_alive(struct worker_pool *p, uint64_t now_us, unsigned *alive_r,
		  unsigned *total_r);

/* Ask the workers to stop after their current batch, join them, free the
 * pool and set *p to NULL. */
void
worker_pool_stop(struct worker_pool **p);

#endif
