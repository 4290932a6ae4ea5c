/*
 * worker.c - delivery workers.
 *
 * Owns:    the worker threads, one struct driver (and bounce driver) per
 *          worker, and each worker's struct delivery.
 * Threads: each worker runs claim -> deliver -> outcome with no
 *          transaction open while it talks to the foreign side
 *          (delivery.c does the last two). The pool lock only guards the
 *          wake counter and the stop flag.
 */
#include "worker.h"
#include "claim.h"
#include "delivery.h"
#include "driver.h"
#include "driver_table.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKER_IDLE_MAX_US	(30ull * 1000000u)	/* re-check anyway */
#define WORKER_HOUSEKEEP_US	(60ull * 1000000u)	/* recover, readers */
#define WORKER_PRUNE_TXN	256u	/* index entries per prune txn */
#define WORKER_ERROR_PAUSE_US	(1000000u)

struct worker {
	struct worker_pool *pool;
	pthread_t thread;
	/* The worker's id (ctx.worker), store, configuration and shared
	 * state are the pool's; ctx.driver and ctx.bounce (NULL: no
	 * [bounce] relay) are owned. */
	struct delivery_ctx ctx;
	struct delivery *batch;		/* owned */
	/* For /healthz, read by the event loop's thread: */
	atomic_bool running;		/* the thread is in its loop */
	atomic_uint_fast64_t busy_since_us;	/* batch started; 0: idle */
};

struct worker_pool {
	struct store *st;		/* borrowed */
	struct config *cfg;		/* shared: one reference */
	size_t count;
	struct worker *w;
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* idle workers wait here */
	pthread_cond_t backoff_cond;	/* workers waiting out a peer outage */
	uint64_t wake_seq;		/* under lock */
	bool stop;			/* under lock */
	bool started;
	struct delivery_shared shared;	/* the workers' view of the peer */
	/* Written once at stop; its read end, readable from then on, cuts
	 * the drivers' network waits short (smtp_client cancel_fd). */
	int stop_pipe[2];
};

static bool
pool_stopping(struct worker_pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->stop;
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* The delivery context's view of the pool. */
static bool
ctx_stopping(void *arg)
{
	return pool_stopping(arg);
}

static void
ctx_wake(void *arg)
{
	worker_pool_wake(arg);
}

/* Worker i's context, batch and drivers. */
static int
worker_init(struct worker_pool *p, size_t i, const char **error_r)
{
	struct worker *w = &p->w[i];
	const struct config *cfg = p->cfg;

	w->pool = p;
	w->ctx = (struct delivery_ctx){
		.st = p->st,
		.cfg = cfg,
		.worker = (uint32_t)i + 1,
		.shared = &p->shared,
		.stopping = ctx_stopping,
		.wake = ctx_wake,
		.arg = p,
	};
	w->batch = delivery_new(cfg->workers_batch);
	w->ctx.driver = driver_table_of(cfg)->new_from_config(cfg,
		p->stop_pipe[0], error_r);
	if (w->ctx.driver == NULL)
		return -1;
	w->ctx.bounce = driver_table_bounce_new(cfg, p->stop_pipe[0],
						error_r);
	if (w->ctx.bounce == NULL && *error_r != NULL)
		return -1;
	return 0;
}

struct worker_pool *
worker_pool_new(struct store *st, struct config *cfg, const char **error_r)
{
	struct worker_pool *p = xcalloc(1, sizeof(*p));

	p->st = st;
	p->cfg = config_ref(cfg);
	p->count = cfg->workers_count;
	p->w = xcalloc(p->count, sizeof(*p->w));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->backoff_cond, NULL);
	delivery_shared_init(&p->shared, store_now_us());
	if (pipe2(p->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		panic("worker: pipe2: %s", strerror(errno));
	for (size_t i = 0; i < p->count; i++) {
		if (worker_init(p, i, error_r) < 0) {
			worker_pool_stop(&p);
			return NULL;
		}
	}
	return p;
}

void
worker_pool_wake(struct worker_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->wake_seq++;
	pthread_cond_broadcast(&p->cond);
	pthread_cond_broadcast(&p->backoff_cond);
	pthread_mutex_unlock(&p->lock);
}

void
worker_pool_wake_some(struct worker_pool *p, size_t n)
{
	pthread_mutex_lock(&p->lock);
	p->wake_seq++;
	/* Only idle workers wait on cond (not those waiting out a peer
	 * outage, which could not take the work). A worker busy now sees
	 * wake_seq moved when it next waits. */
	for (size_t i = 0; i < n && i < p->count; i++)
		pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Sleep on cond until woken, until_us (wall clock), or stop. Returns
 * false on stop. seen is the wake counter the caller last acted on. */
static bool
pool_wait(struct worker_pool *p, pthread_cond_t *cond, uint64_t *seen,
	  uint64_t until_us)
{
	struct timespec ts = { (time_t)(until_us / 1000000u),
			       (long)(until_us % 1000000u) * 1000 };
	bool go;

	pthread_mutex_lock(&p->lock);
	while (!p->stop && p->wake_seq == *seen &&
	       store_now_us() < until_us)
		if (pthread_cond_timedwait(cond, &p->lock, &ts) != 0)
			break;
	*seen = p->wake_seq;
	go = !p->stop;
	pthread_mutex_unlock(&p->lock);
	return go;
}

/* Forget what the resubmission index holds beyond its window: small
 * transactions (the other writers go between them) until none is left. */
static void
prune_resubmit(struct store *st, uint64_t now)
{
	unsigned n, total = 0;
	const char *err;

	do {
		if (store_resubmit_prune(st, now, WORKER_PRUNE_TXN, &n,
					 &err) != STORE_OK) {
			log_err("resubmission index: prune: %s", err);
			break;
		}
		total += n;
	} while (n == WORKER_PRUNE_TXN);
	if (total > 0)
		log_debug("resubmission index: %u entr%s past the window "
			  "forgotten", total, total == 1 ? "y" : "ies");
}

/* Worker 1 also does the housekeeping that must not run on the event
 * loop: recovery of expired leases and stale reader slots, and the
 * pruning of the resubmission index. */
static void
housekeep(struct worker *w, uint64_t *last_us)
{
	struct worker_pool *p = w->pool;
	struct claim_recover_stats rs;
	uint64_t now = store_now_us();
	const char *err;

	if (w->ctx.worker != 1 || now - *last_us < WORKER_HOUSEKEEP_US)
		return;
	*last_us = now;
	store_reader_check(p->st);
	if (claim_recover(p->st, now, &rs, &err) != STORE_OK)
		log_err("recover: %s", err);
	else if (rs.to_indoubt > 0)
		atomic_store(&p->shared.indoubt_due, true);
	prune_resubmit(p->st, now);
}

/* Claim a batch into the worker's delivery: in-doubt entries first when
 * they are due. Returns how many; *next_due is when to look again when
 * none were (0: when woken). */
static size_t
claim_some(struct worker *w, uint64_t *next_due)
{
	struct worker_pool *p = w->pool;
	const struct delivery_ctx *c = &w->ctx;
	struct delivery_shared *sh = &p->shared;
	struct claim_item *items = w->batch->items;
	size_t n = 0;
	const char *err = NULL;
	int rc;

	*next_due = 0;
	if (delivery_takes_indoubt(c) &&
	    store_now_us() >= atomic_load(&sh->indoubt_after_us) &&
	    atomic_exchange(&sh->indoubt_due, false)) {
		rc = claim_indoubt(p->st, c->worker, p->cfg->workers_batch,
				   p->cfg->workers_lease, store_now_us(),
				   items, &n, &err);
		if (rc == STORE_OK && n > 0) {
			atomic_store(&sh->indoubt_due, true);
			/* If new mail woke this worker, another must take
			 * it: pass the wake-up on. */
			worker_pool_wake_some(p, 1);
			return n;
		}
		if (rc != STORE_OK) {
			/* Nothing claimed: the in-doubt entries are still
			 * due, or nothing would look for them again; after
			 * the pause of a failed claim. */
			atomic_store(&sh->indoubt_after_us,
				     store_now_us() + WORKER_ERROR_PAUSE_US);
			atomic_store(&sh->indoubt_due, true);
			log_err("worker %u: claiming in-doubt entries failed: "
				"%s", c->worker, err);
		}
	}
	if (delivery_claim_marks(c))
		rc = claim_batch_sending(p->st, c->worker,
					 p->cfg->workers_batch,
					 delivery_per_message(c),
					 p->cfg->workers_lease, store_now_us(),
					 items, &n, next_due, &err);
	else
		rc = claim_batch(p->st, c->worker, p->cfg->workers_batch,
				 p->cfg->workers_lease, store_now_us(),
				 items, &n, next_due, &err);
	if (rc != STORE_OK) {
		log_err("worker %u: claim failed: %s", c->worker, err);
		*next_due = store_now_us() + WORKER_ERROR_PAUSE_US;
		return 0;
	}
	/* In-doubt claims paused: come back when the pause ends. */
	if (n == 0 && delivery_takes_indoubt(c) &&
	    atomic_load(&sh->indoubt_due)) {
		uint64_t after = atomic_load(&sh->indoubt_after_us);

		if (after > store_now_us() &&
		    (*next_due == 0 || after < *next_due))
			*next_due = after;
	}
	return n;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct worker_pool *p = w->pool;
	struct delivery_ctx *c = &w->ctx;
	uint64_t seen = 0, next_due, until, last_hk = store_now_us();
	size_t n;

	atomic_store(&w->running, true);
	while (!pool_stopping(p)) {
		housekeep(w, &last_hk);
		if (c->reconnect_at_us > store_now_us() &&
		    !atomic_load(&p->shared.peer_down))
			c->reconnect_at_us = 0;	/* another worker got through */
		if (c->reconnect_at_us > store_now_us()) {
			/* Peer down: claim nothing until the next try. */
			if (!pool_wait(p, &p->backoff_cond, &seen,
				       c->reconnect_at_us))
				break;
			continue;
		}
		next_due = 0;
		n = delivery_take_ready(w->batch);
		if (n == 0) {
			n = claim_some(w, &next_due);
			w->batch->claimed_us = store_now_us();
		}
		if (n > 0) {
			atomic_store(&w->busy_since_us, store_now_us());
			delivery_run(c, w->batch, n);
			atomic_store(&w->busy_since_us, 0);
			store_map_trim(p->st);	/* bodies read */
			continue;
		}
		until = store_now_us() + WORKER_IDLE_MAX_US;
		if (next_due != 0 && next_due < until)
			until = next_due;
		if (!pool_wait(p, &p->cond, &seen, until))
			break;
	}
	delivery_put_back(c, w->batch);
	atomic_store(&w->running, false);
	return NULL;
}

void
worker_pool_alive(struct worker_pool *p, uint64_t now_us, unsigned *alive_r,
		  unsigned *total_r)
{
	uint64_t limit = (uint64_t)p->cfg->workers_lease * 1000000u;

	*alive_r = 0;
	*total_r = (unsigned)p->count;
	for (size_t i = 0; i < p->count; i++) {
		uint64_t busy = atomic_load(&p->w[i].busy_since_us);

		if (atomic_load(&p->w[i].running) &&
		    (busy == 0 || now_us < busy + limit))
			(*alive_r)++;
	}
}

int
worker_pool_start(struct worker_pool *p, const char **error_r)
{
	const char *err;

	/* A next hop that was down when the last run ended is not known to
	 * be down now: the first failure says so again. */
	if (store_nexthop_set(p->st, NULL, 0, &err) != STORE_OK)
		log_warn("cannot clear the next hop's state: %s", err);
	for (size_t i = 0; i < p->count; i++) {
		if (pthread_create(&p->w[i].thread, NULL, worker_main,
				   &p->w[i]) != 0) {
			*error_r = "cannot start a worker thread";
			p->count = i;
			return -1;
		}
	}
	p->started = true;
	return 0;
}

void
worker_pool_stop(struct worker_pool **pp)
{
	struct worker_pool *p = *pp;

	*pp = NULL;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_cond_broadcast(&p->backoff_cond);
	pthread_mutex_unlock(&p->lock);
	if (write(p->stop_pipe[1], "x", 1) < 0)
		log_err("worker: cannot interrupt the drivers: %s",
			strerror(errno));
	for (size_t i = 0; i < p->count; i++) {
		if (p->started)
			pthread_join(p->w[i].thread, NULL);
		driver_free(&p->w[i].ctx.driver);
		driver_free(&p->w[i].ctx.bounce);
		delivery_free(&p->w[i].batch);
	}
	close(p->stop_pipe[0]);
	close(p->stop_pipe[1]);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->backoff_cond);
	delivery_shared_destroy(&p->shared);
	pthread_mutex_destroy(&p->lock);
	config_unref(&p->cfg);
	free(p->w);
	free(p);
}
