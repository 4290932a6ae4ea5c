/*
 * ingress_commit.h - the ingress's committer: one writer thread gathers
 * the messages of many SMTP sessions into one store_enqueue()
 * transaction, so the event loop never waits on fsync and many messages
 * share one fsync (with the workers' writes too: store_write()).
 *
 * Threads: ingress_commit_push from any thread (the event loop); the
 * done callback runs on the committer thread.
 */
#ifndef POSTERN_INGRESS_COMMIT_H
#define POSTERN_INGRESS_COMMIT_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* One message on its way into the store. Every pointer field is owned by
 * the job. It moves: session -> committer (ingress_commit_push) -> done
 * callback, which then owns the whole list. */
struct ingress_commit_job {
	uint64_t session_id;	/* who is waiting for the answer */
	char *sender;
	char **rcpts;
	size_t nrcpt;
	char *msgid;
	char *body;
	size_t body_len;
	size_t qid_at;		/* store_msg.qid_at; 0: none */
	size_t trace_len;	/* store_msg.trace_len */
	char *client;		/* store_msg.client, or NULL */
	/* filled in by the committer: */
	int rc;			/* STORE_OK or a store_rc */
	uint64_t qid;		/* 0: nothing new was queued (every
				   recipient is a resubmission) */
	struct store_resubmit *resub;	/* nrcpt: store_msg.resub_r */
	char error[256];
	struct ingress_commit_job *next;
};

/* A job holding copies of the envelope it is given; the body is handed
 * over: the job owns *body from then on, and *body is NULL. */
struct ingress_commit_job *
ingress_commit_job_new(uint64_t session_id, const char *sender,
		       const char *const *rcpts, size_t nrcpt,
		       const char *msgid, char **body, size_t body_len);

/* Free one job (not the rest of its list) and set *job to NULL. */
void
ingress_commit_job_free(struct ingress_commit_job **job);

/* Called on the committer thread with the jobs of one commit, in push
 * order; it owns the list from then on. */
typedef void ingress_commit_done_fn(struct ingress_commit_job *jobs, void *arg);

struct ingress_commit;

/* Start the writer thread. st is borrowed. It commits whatever is
 * queued as soon as it is free; the wait for company is store_write()'s
 * alone ([store] group_wait). Idle, the thread calls store_recover()
 * once a second, so that a store that cannot take mail is reopened or
 * probed while no mail comes. */
struct ingress_commit *
ingress_commit_new(struct store *st, ingress_commit_done_fn *done,
		   void *arg);

/* Hand a job over; *job is NULL afterwards. */
void
ingress_commit_push(struct ingress_commit *c, struct ingress_commit_job **job);

/* Commit whatever is queued, stop the thread, free, set *c to NULL. */
void
ingress_commit_stop(struct ingress_commit **c);

#endif
