/*
 * ingress_commit.c - the ingress's committer: the writer thread that
 * enqueues the messages of many sessions in one transaction.
 *
 * It does not wait for company itself: the daemon has one group commit,
 * store_write()'s (its wait is [store] group_wait). This thread is the
 * event loop's hand-off to a thread that may block: while one commit of
 * its syncs, the sessions' next messages queue here, and the next commit
 * takes all of them.
 *
 * Owns:    the queue of struct ingress_commit_job between push and
 *          commit; the thread.
 * Threads: one writer thread; pushers hold the lock only to link a job.
 *          Idle, the writer also watches the store's health (store.h).
 * Schema:  writes through store_enqueue() (lmdb-schema/messages.md).
 */
#include "ingress_commit.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMMIT_BATCH_MAX 256
/* While the store cannot take mail the ingress refuses new sessions, so
 * no message comes to show that it can again: the writer, when idle,
 * looks this often and tries to end that state (store_recover(): a
 * reopen after a panic, a probe commit after an I/O error). */
#define COMMIT_HEALTH_MS 1000

struct ingress_commit {
	struct store *st;	/* borrowed */
	ingress_commit_done_fn *done;
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ingress_commit_job *head, **tail;	/* under lock */
	size_t queued;				/* under lock */
	bool stop;				/* under lock */
};

struct ingress_commit_job *
ingress_commit_job_new(uint64_t session_id, const char *sender,
		       const char *const *rcpts, size_t nrcpt,
		       const char *msgid, char **body, size_t body_len)
{
	struct ingress_commit_job *j = xcalloc(1, sizeof(*j));

	j->session_id = session_id;
	j->sender = xstrdup(sender);
	j->rcpts = xcalloc(nrcpt, sizeof(*j->rcpts));
	for (size_t i = 0; i < nrcpt; i++)
		j->rcpts[i] = xstrdup(rcpts[i]);
	j->nrcpt = nrcpt;
	j->msgid = xstrdup(msgid);
	j->body = *body;
	*body = NULL;
	j->body_len = body_len;
	j->resub = xcalloc(nrcpt, sizeof(*j->resub));
	return j;
}

void
ingress_commit_job_free(struct ingress_commit_job **job)
{
	struct ingress_commit_job *j = *job;

	*job = NULL;
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->nrcpt; i++)
		free(j->rcpts[i]);
	free(j->rcpts);
	free(j->sender);
	free(j->msgid);
	free(j->body);
	free(j->client);
	free(j->resub);
	free(j);
}

void
ingress_commit_push(struct ingress_commit *c, struct ingress_commit_job **job)
{
	struct ingress_commit_job *j = *job;

	*job = NULL;
	j->next = NULL;
	pthread_mutex_lock(&c->lock);
	*c->tail = j;
	c->tail = &j->next;
	c->queued++;
	/* Wake the writer for the first job only (a wake-up each would
	 * cost a context switch each): a writer busy committing looks at
	 * the queue again when done. */
	if (c->queued == 1)
		pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Take up to COMMIT_BATCH_MAX jobs off the queue (lock held). */
static struct ingress_commit_job *
take_locked(struct ingress_commit *c, size_t *n_r)
{
	struct ingress_commit_job *head = c->head, **pp = &c->head;
	size_t n = 0;

	while (*pp != NULL && n < COMMIT_BATCH_MAX) {
		pp = &(*pp)->next;
		n++;
	}
	c->head = *pp;
	*pp = NULL;
	if (c->head == NULL)
		c->tail = &c->head;
	c->queued -= n;
	*n_r = n;
	return head;
}

static void
deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (long)ms * 1000000L;
	while (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Enqueue the jobs in one transaction; if a message of the batch is
 * refused for itself (not for the store), retry them one by one so that
 * one bad message cannot fail the others. */
static void
commit_batch(struct ingress_commit *c, struct ingress_commit_job *jobs,
	     size_t n)
{
	struct store_msg *m = xcalloc(n, sizeof(*m));
	uint64_t *qids = xcalloc(n, sizeof(*qids));
	struct ingress_commit_job *j;
	const char *err = NULL;
	size_t i = 0;
	int rc;

	for (j = jobs; j != NULL; j = j->next, i++)
		m[i] = (struct store_msg){
			.sender = j->sender,
			.rcpts = (const char *const *)j->rcpts,
			.nrcpt = j->nrcpt,
			.msgid = j->msgid,
			.body = j->body,
			.body_len = j->body_len,
			.qid_at = j->qid_at,
			.trace_len = j->trace_len,
			.resub_r = j->resub,
			.client = j->client,
		};
	rc = store_enqueue(c->st, m, n, store_now_us(), qids, &err);
	i = 0;
	for (j = jobs; j != NULL; j = j->next, i++) {
		j->rc = rc;
		j->qid = qids[i];
		if (rc == STORE_ERR && n > 1)
			j->rc = store_enqueue(c->st, &m[i], 1, store_now_us(),
					      &j->qid, &err);
		if (j->rc != STORE_OK)
			snprintf(j->error, sizeof(j->error), "%s", err);
	}
	free(qids);
	free(m);
	/* MDB_PANIC: these clients got 421 and keep their messages; reopen
	 * the environment so that the next ones can be taken. */
	if (rc == STORE_PANIC && store_reopen(c->st, &err) != STORE_OK)
		log_err("store: reopen after a panic failed: %s", err);
}

static void *
committer_main(void *arg)
{
	struct ingress_commit *c = arg;
	struct ingress_commit_job *jobs;
	struct timespec ts;
	size_t n;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->head == NULL && !c->stop) {
			deadline_in(&ts, COMMIT_HEALTH_MS);
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) !=
			    ETIMEDOUT || c->head != NULL || c->stop)
				continue;
			pthread_mutex_unlock(&c->lock);
			store_recover(c->st);
			pthread_mutex_lock(&c->lock);
		}
		if (c->head == NULL && c->stop)
			break;
		jobs = take_locked(c, &n);
		pthread_mutex_unlock(&c->lock);
		commit_batch(c, jobs, n);
		c->done(jobs, c->arg);
		store_map_trim(c->st);	/* index pages read */
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct ingress_commit *
ingress_commit_new(struct store *st, ingress_commit_done_fn *done,
		   void *arg)
{
	struct ingress_commit *c = xcalloc(1, sizeof(*c));

	c->st = st;
	c->done = done;
	c->arg = arg;
	c->tail = &c->head;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (pthread_create(&c->thread, NULL, committer_main, c) != 0)
		panic("cannot start the committer thread");
	return c;
}

void
ingress_commit_stop(struct ingress_commit **cp)
{
	struct ingress_commit *c = *cp;

	*cp = NULL;
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
