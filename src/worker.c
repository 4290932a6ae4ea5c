/*
 * worker.c - delivery workers.
 *
 * Owns:    the worker threads, one struct driver per worker, and the
 *          claim_items of the batch a worker is working on.
 * Threads: each worker runs claim -> deliver -> outcome with no
 *          transaction open while it talks to the foreign side. The pool
 *          lock only guards the wake counter and the stop flag.
 */
#include "worker.h"
#include "metrics.h"
#include "claim.h"
#include "driver.h"
#include "driver_table.h"
#include "dsn.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKER_IDLE_MAX_US	(30ull * 1000000u)	/* re-check anyway */
#define WORKER_HOUSEKEEP_US	(60ull * 1000000u)	/* recover, readers */
#define WORKER_PRUNE_TXN	256u	/* index entries per prune txn */
#define WORKER_ERROR_PAUSE_US	(1000000u)
#define WORKER_LOOK_DELAY_US	(1000000u)	/* in-doubt: wait to look */

struct worker {
	struct worker_pool *pool;
	uint32_t id;			/* 1..count, recorded as claim owner */
	pthread_t thread;
	struct driver *driver;		/* owned */
	struct claim_item *items;	/* owned, batch entries */
	struct claim_outcome *out;	/* owned, batch entries */
	struct driver_rcpt *rcpts;	/* owned, batch entries */
	/* For /healthz, read by the event loop's thread: */
	atomic_bool running;		/* the thread is in its loop */
	atomic_uint_fast64_t busy_since_us;	/* batch started; 0: idle */
	/* Per batch entry: the header section of its message, kept for a
	 * DSN (owned, NULL if not kept; freed after the batch). */
	struct buf *hdrs;
	struct driver *bounce;		/* owned, NULL: no [bounce] relay */
	/* Reconnect backoff while the foreign side is unavailable: the
	 * current interval (0: peer up) and when to try again. */
	uint64_t reconnect_us;
	uint64_t reconnect_at_us;
	/* The next batch, claimed in the commit of this one's outcomes
	 * (owned, batch entries; swapped with items), and its number of
	 * ready entries. */
	struct claim_item *next;
	size_t ready;
	/* When the batch in items was claimed, and the next one (store
	 * clock, us): the a/b boundary of the delays= of its log lines. */
	uint64_t claimed_us;
	uint64_t next_claimed_us;
	/* Per batch entry: when the driver began and ended its message
	 * (owned, batch entries). */
	struct worker_span *span;
};

struct worker_span {
	uint64_t start_us;
	uint64_t end_us;
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
	atomic_bool indoubt_due;	/* look at in-doubt entries soon */
	/* After a look that could not tell: no in-doubt claims before
	 * indoubt_after_us; the pause doubles up to reconnect_max. */
	atomic_uint_fast64_t indoubt_after_us;
	atomic_uint_fast64_t indoubt_pause_us;
	atomic_bool peer_down;		/* logged as down: log "up" once */
	/* Held across a change of peer_down and its store_nexthop_set(),
	 * so that the store's record ends in the order of the changes; it
	 * also guards the three fields after it. */
	pthread_mutex_t nexthop_lock;
	uint64_t nexthop_at_us;		/* record written (0: not, or failed) */
	char nexthop_reason[256];	/* the reason written */
	atomic_bool nexthop_stale;	/* a clear failed: try again */
	/* Written once at stop; its read end, readable from then on, cuts
	 * the drivers' network waits short (smtp_client cancel_fd). */
	int stop_pipe[2];
};

/* The reconnect backoff's cap of the configured driver, us. */
static uint64_t
reconnect_max_us(const struct config *cfg)
{
	return driver_table_of(cfg)->reconnect_max(cfg) * 1000000ull;
}

struct worker_pool *
worker_pool_new(struct store *st, struct config *cfg, const char **error_r)
{
	struct worker_pool *p = xcalloc(1, sizeof(*p));
	size_t batch = cfg->workers_batch;

	p->st = st;
	p->cfg = config_ref(cfg);
	p->count = cfg->workers_count;
	p->w = xcalloc(p->count, sizeof(*p->w));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_cond_init(&p->backoff_cond, NULL);
	pthread_mutex_init(&p->nexthop_lock, NULL);
	/* In-doubt entries left by a crash: look for them after a moment
	 * too (as for a connection that broke, record_outcomes()), so that
	 * a server still storing a message that the dead process sent in
	 * full has stored it when we look; a look that does not find it
	 * sends it again. */
	atomic_store(&p->indoubt_due, true);
	atomic_store(&p->indoubt_after_us, store_now_us() +
		     WORKER_LOOK_DELAY_US);
	if (pipe2(p->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		panic("worker: pipe2: %s", strerror(errno));
	for (size_t i = 0; i < p->count; i++) {
		struct worker *w = &p->w[i];

		w->pool = p;
		w->id = (uint32_t)i + 1;
		w->items = xcalloc(batch, sizeof(*w->items));
		w->next = xcalloc(batch, sizeof(*w->next));
		w->out = xcalloc(batch, sizeof(*w->out));
		w->rcpts = xcalloc(batch, sizeof(*w->rcpts));
		w->hdrs = xcalloc(batch, sizeof(*w->hdrs));
		w->span = xcalloc(batch, sizeof(*w->span));
		w->driver = driver_table_of(cfg)->new_from_config(cfg,
			p->stop_pipe[0], error_r);
		if (w->driver == NULL) {
			worker_pool_stop(&p);
			return NULL;
		}
		w->bounce = driver_table_bounce_new(cfg, p->stop_pipe[0],
						    error_r);
		if (w->bounce == NULL && *error_r != NULL) {
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

static bool
pool_stopping(struct worker_pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->stop;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static const char *
status_name(enum claim_result r)
{
	switch (r) {
	case CLAIM_DELIVERED:	return "sent";
	case CLAIM_TEMPFAIL:	return "deferred";
	case CLAIM_PERMFAIL:	return "bounced";
	case CLAIM_UNKNOWN:	return "in-doubt";
	}
	return "?";
}

/* Keep the header section of a message that may bounce (a failure, and
 * a sender to tell), for its DSN after the outcome. */
static void
keep_headers(struct worker *w, size_t from, size_t n, const void *body,
	     size_t len)
{
	const char *b = body, *end;
	bool failed = false;

	if (w->bounce == NULL || w->items[from].sender[0] == '\0' ||
	    body == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		failed |= w->rcpts[from + i].result != CLAIM_DELIVERED;
	if (!failed)
		return;
	end = memmem(b, len, "\r\n\r\n", 4);
	buf_reset(&w->hdrs[from]);
	buf_append(&w->hdrs[from], b, end != NULL ? (size_t)(end - b) + 2 :
		   len);
}

/* A look could not tell (could == false) or could: pause the claims of
 * in-doubt entries, from 1 s doubling up to reconnect_max, or end the
 * pause. */
static void
indoubt_looked(struct worker_pool *p, bool could)
{
	uint64_t pause, max = reconnect_max_us(p->cfg);

	if (could) {
		atomic_store(&p->indoubt_pause_us, 0);
		return;
	}
	pause = atomic_load(&p->indoubt_pause_us);
	pause = pause == 0 ? 1000000u : pause * 2 > max ? max : pause * 2;
	atomic_store(&p->indoubt_pause_us, pause);
	atomic_store(&p->indoubt_after_us, store_now_us() + pause);
}

/* In-doubt entries of a driver that looks only when asked: look first.
 * Found: delivered, the lost reply's delivery is recorded. Not found:
 * delivered now. Cannot tell: it stays in-doubt, and in-doubt claims
 * pause. Returns DRIVER_UNAVAILABLE when a delivery found the foreign
 * side down (the caller gives the entries back as in-doubt), else 0. */
static int
settle_indoubt(struct worker *w, const struct driver_msg *m,
	       struct driver_rcpt *r, size_t n)
{
	const char *err;
	int rc;

	for (size_t i = 0; i < n; i++) {
		rc = driver_look(w->driver, m, &r[i], &err);
		indoubt_looked(w->pool, rc >= 0);
		if (rc == 0) {
			if (driver_deliver(w->driver, m, &r[i], 1) ==
			    DRIVER_UNAVAILABLE) {
				memcpy(r[0].reply, r[i].reply,
				       DRIVER_REPLY_LEN);
				return DRIVER_UNAVAILABLE;
			}
			continue;
		}
		if (rc == 1) {
			r[i].result = CLAIM_DELIVERED;
			snprintf(r[i].reply, DRIVER_REPLY_LEN, "found by look "
				 "at the foreign side: delivered before, the "
				 "reply was lost");
			SHA256(m->body, m->body_len, r[i].sha);
		} else {
			r[i].result = CLAIM_UNKNOWN;
			snprintf(r[i].reply, DRIVER_REPLY_LEN, "4.4.2 cannot "
				 "look at the foreign side: %s", err);
		}
	}
	return 0;
}

/* Deliver items [from, to), which all belong to one message. Returns
 * DRIVER_UNAVAILABLE when nothing could be handed over because the
 * foreign side is down (w->out is then not filled in), else 0. */
static int
deliver_message(struct worker *w, size_t from, size_t to)
{
	struct worker_pool *p = w->pool;
	struct claim_item *it = &w->items[from];
	/* Each message of the batch has its own slice of rcpts: the
	 * outcomes borrow the reply texts until claim_outcome(). */
	struct driver_rcpt *r = &w->rcpts[from];
	struct driver_msg m = { .store_id = store_id(p->st), .qid = it->qid,
				.sender = it->sender, .msgid = it->msgid };
	const char *err;
	void *body = NULL;
	size_t len = 0, n = to - from;
	int rc, drc = 0;

	for (size_t i = 0; i < n; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].idx = it[i].idx;
		r[i].addr = it[i].rcpt;
	}
	rc = store_body_get(p->st, it->qid, &body, &len, &err);
	w->span[from].start_us = store_now_us();
	if (rc == 1) {
		m.body = body;
		m.body_len = len;
		if (it->was_indoubt && w->driver->ops->can_look &&
		    !w->driver->ops->deliver_looks)
			drc = settle_indoubt(w, &m, r, n);
		else
			drc = driver_deliver(w->driver, &m, r, n);
	} else {
		for (size_t i = 0; i < n; i++) {
			r[i].result = CLAIM_TEMPFAIL;
			snprintf(r[i].reply, DRIVER_REPLY_LEN,
				 "4.3.0 cannot read the queued message: %s",
				 rc == 0 ? "missing" : err);
		}
	}
	w->span[from].end_us = store_now_us();
	for (size_t i = 1; i < n; i++)
		w->span[from + i] = w->span[from];
	if (drc != DRIVER_UNAVAILABLE)
		keep_headers(w, from, n, body, len);
	free(body);
	if (drc == DRIVER_UNAVAILABLE)
		return drc;
	for (size_t i = 0; i < n; i++) {
		struct claim_outcome *o = &w->out[from + i];

		memset(o, 0, sizeof(*o));
		o->qid = it[i].qid;
		o->idx = it[i].idx;
		o->token = it[i].token;
		o->result = r[i].result;
		o->reply = r[i].reply;
		o->indoubt_retry = !w->driver->ops->can_look &&
			p->cfg->queue_in_doubt_policy == CONFIG_IN_DOUBT_RETRY;
		memcpy(o->body_sha, r[i].sha, 32);
	}
	return 0;
}

/* The foreign side could not be reached: give items [from, n) back
 * without counting an attempt and wait before the next connection, from
 * about 1 s doubling up to reconnect_max, +-25% jitter so that workers
 * do not knock in step. reason is the driver's (borrowed). */
static void
peer_unavailable(struct worker *w, size_t from, size_t n, const char *reason)
{
	struct worker_pool *p = w->pool;
	uint64_t max = reconnect_max_us(p->cfg);
	uint64_t now = store_now_us(), h;
	const char *err;
	int rc;

	/* In-doubt entries go back in-doubt (they were marked as being
	 * sent): only a look may settle them. */
	if (w->items[from].was_indoubt) {
		indoubt_looked(p, false);
		rc = claim_release(p->st, w->items + from, n - from, &err);
	} else {
		rc = claim_requeue(p->st, w->items + from, n - from, now,
				   &err);
	}
	if (rc != STORE_OK)
		log_err("worker %u: cannot put %zu entries back: %s; they are "
			"retried when their lease ends", w->id, n - from, err);
	w->reconnect_us = w->reconnect_us == 0 ? 1000000u :
			  w->reconnect_us * 2;
	if (w->reconnect_us > max)
		w->reconnect_us = max;
	h = (now ^ ((uint64_t)w->id << 40)) * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	w->reconnect_at_us = now + w->reconnect_us * 3 / 4 +
			     h % (w->reconnect_us / 2 + 1);
	if (pool_stopping(p)) {
		log_info("worker %u: stopping: %zu entries put back", w->id,
			 n - from);
	} else {
		pthread_mutex_lock(&p->nexthop_lock);
		if (!atomic_exchange(&p->peer_down, true)) {
			log_warn("%s: next hop unavailable: %s; mail stays "
				 "queued, reconnecting with backoff (at most %"
				 PRIu64 " s)", w->driver->ops->name, reason,
				 max / 1000000u);
			p->nexthop_at_us = 0;
		}
		/* For postern queue: why the mail waits, since when. The
		 * reason the workers saw last, written when it changes and
		 * at most once a minute otherwise (again after a failed
		 * write). */
		if (p->nexthop_at_us == 0 || now >= p->nexthop_at_us +
		    60000000u || strncmp(reason, p->nexthop_reason,
					 sizeof(p->nexthop_reason) - 1) != 0) {
			snprintf(p->nexthop_reason, sizeof(p->nexthop_reason),
				 "%s", reason);
			p->nexthop_at_us = now;
			atomic_store(&p->nexthop_stale, false);
			if (store_nexthop_set(p->st, reason, now, &err) !=
			    STORE_OK) {
				p->nexthop_at_us = 0;
				log_warn("cannot record the next hop's "
					 "state: %s", err);
			}
		}
		pthread_mutex_unlock(&p->nexthop_lock);
	}
	log_debug("worker %u: %zu entries put back, next connection in %"
		  PRIu64 " ms", w->id, n - from,
		  (w->reconnect_at_us - now) / 1000u);
}

static void
peer_available(struct worker *w)
{
	w->reconnect_us = 0;
	w->reconnect_at_us = 0;
	struct worker_pool *p = w->pool;
	const char *err;
	bool was_down;

	if (!atomic_load(&p->peer_down) && !atomic_load(&p->nexthop_stale))
		return;		/* the common case: no lock */
	pthread_mutex_lock(&p->nexthop_lock);
	was_down = atomic_exchange(&p->peer_down, false);
	if (was_down)
		log_info("%s: next hop is back, delivering",
			 w->driver->ops->name);
	if (was_down || atomic_load(&p->nexthop_stale)) {
		p->nexthop_at_us = 0;
		if (store_nexthop_set(p->st, NULL, 0, &err) != STORE_OK) {
			atomic_store(&p->nexthop_stale, true);
			log_warn("cannot clear the next hop's state: %s", err);
		} else {
			atomic_store(&p->nexthop_stale, false);
		}
	}
	/* the others are waiting out their own backoff: end it */
	if (was_down)
		worker_pool_wake(p);
	pthread_mutex_unlock(&p->nexthop_lock);
}

/* Why an in-doubt reply ended where it did, for the log line. */
static const char *
indoubt_note(const struct worker *w, const struct claim_outcome *o)
{
	if (o->result != CLAIM_UNKNOWN)
		return "";
	if (o->recorded == CLAIM_UNKNOWN && w->driver->ops->can_look)
		return "; to be looked for at the foreign side";
	if (o->recorded == CLAIM_UNKNOWN)
		return "; held for the operator (in_doubt_policy = hold)";
	if (o->recorded == CLAIM_TEMPFAIL)
		return "; retried (in_doubt_policy = retry), the peer may "
		       "get it twice";
	return "";
}

/* Seconds as Postfix writes its delays: at most two decimals, no
 * trailing zeros ("0", "0.01", "1.5", "12"). */
static void
fmt_secs(char *buf, size_t len, uint64_t us)
{
	uint64_t cs = (us + 5000u) / 10000u;	/* rounded to 0.01 s */
	size_t n;

	if (cs % 100u == 0) {
		snprintf(buf, len, "%" PRIu64, cs / 100u);
		return;
	}
	snprintf(buf, len, "%" PRIu64 ".%02" PRIu64, cs / 100u, cs % 100u);
	n = strlen(buf);
	if (buf[n - 1] == '0')
		buf[n - 1] = '\0';
}

/* The enhanced status code (RFC 3463) in a reply text, or a default
 * for the result, into dsn (at least 12 bytes). */
static void
reply_dsn(char *dsn, size_t len, const char *reply, const char *status)
{
	for (const char *p = reply; p != NULL && *p != '\0'; p++) {
		size_t a, b, c;

		if ((p != reply && p[-1] != ' ' && p[-1] != '(') ||
		    (*p != '2' && *p != '4' && *p != '5') || p[1] != '.')
			continue;
		a = strspn(p + 2, "0123456789");
		if (a < 1 || a > 3 || p[2 + a] != '.')
			continue;
		b = strspn(p + 3 + a, "0123456789");
		c = 3 + a + b;
		if (b < 1 || b > 3 || (p[c] != '\0' && p[c] != ' ' &&
				       p[c] != ',' && p[c] != ';' &&
				       p[c] != ')'))
			continue;
		snprintf(dsn, len, "%.*s", (int)c, p);
		return;
	}
	snprintf(dsn, len, "%s", strcmp(status, "sent") == 0 ? "2.0.0" :
		 strcmp(status, "bounced") == 0 ? "5.0.0" :
		 strcmp(status, "in-doubt") == 0 ? "4.4.2" : "4.0.0");
}

/* delays=a/b/c/d of batch entry i (postern.conf(5), LOG LINES). */
static void
entry_delays(const struct worker *w, size_t i, char *buf, size_t len)
{
	const struct worker_span *sp = &w->span[i];
	uint64_t acc = w->items[i].accepted_us, c = w->rcpts[i].connect_us;
	uint64_t us[4];
	char part[4][24];

	us[0] = w->claimed_us > acc ? w->claimed_us - acc : 0;
	us[1] = w->claimed_us != 0 && sp->start_us > w->claimed_us ?
		sp->start_us - w->claimed_us : 0;
	us[2] = c;
	us[3] = sp->end_us > sp->start_us + c ? sp->end_us - sp->start_us - c
		: 0;
	for (size_t k = 0; k < 4; k++)
		fmt_secs(part[k], sizeof(part[k]), us[k]);
	snprintf(buf, len, "%s/%s/%s/%s", part[0], part[1], part[2], part[3]);
}

/* One delivery line: Postfix's smtp line, with postern's notes and the
 * attempt count after the reply. */
static void
log_delivery(const struct worker *w, size_t i, uint64_t now_us)
{
	const struct claim_outcome *o = &w->out[i];
	const struct claim_item *it = &w->items[i];
	uint64_t dl = now_us - it->accepted_us + 5000u;	/* rounded */
	const char *status = o->dead ? "held" : status_name(o->recorded);
	char qid[STORE_QID_STRLEN], delay[32], delays[100], dsn[16], att[16];
	struct log_field f[] = {
		{ "queue_id", store_qid_str(o->qid, qid), false },
		{ "event", "delivery", false },
		{ "status", status, false },
		{ "to", it->rcpt, false },
		{ "relay", w->driver->ops->name, false },
		{ "delay", delay, true },
		{ "delays", delays, false },
		{ "dsn", dsn, false },
		{ "attempts", att, true },
		{ "reply", o->reply, false },
	};

	snprintf(delay, sizeof(delay), "%" PRIu64 ".%02" PRIu64,
		 dl / 1000000u, dl % 1000000u / 10000u);
	entry_delays(w, i, delays, sizeof(delays));
	reply_dsn(dsn, sizeof(dsn), o->reply, status);
	snprintf(att, sizeof(att), "%" PRIu32, o->attempts);
	log_event(LOG_LVL_INFO, f, sizeof(f) / sizeof(f[0]),
		  "%s: to=<%s>, relay=%s, delay=%s, delays=%s, dsn=%s, "
		  "status=%s (%s)%s%s, attempts=%s", qid, it->rcpt,
		  w->driver->ops->name, delay, delays, dsn, status, o->reply,
		  indoubt_note(w, o), o->dead ? "; dead letter after [queue] "
		  "max_attempts, held for the operator" : "", att);
}

static void
log_outcomes(struct worker *w, size_t from, size_t to, uint64_t now_us)
{
	char qid[STORE_QID_STRLEN];

	for (size_t i = from; i < to; i++) {
		const struct claim_outcome *o = &w->out[i];

		if (!o->applied)
			continue;
		metrics_outcome(o->recorded, now_us - w->items[i].accepted_us);
		metrics_foreign_seen(o->result, now_us);
		log_delivery(w, i, now_us);
		if (o->removed) {
			struct log_field f[] = {
				{ "queue_id", store_qid_str(o->qid, qid),
				  false },
				{ "event", "removed", false },
			};

			log_event(LOG_LVL_INFO, f, 2, "%s: removed", qid);
		}
	}
}

/* The line of a DSN for n recipients of it's message, sent or not
 * (reply: the bounce relay's). */
static void
log_dsn(const struct claim_item *it, size_t n, bool sent, const char *reply)
{
	char qid[STORE_QID_STRLEN];
	struct log_field f[] = {
		{ "queue_id", store_qid_str(it->qid, qid), false },
		{ "event", "dsn", false },
		{ "status", sent ? "sent" : "failed", false },
		{ "to", it->sender, false },
		{ "reply", reply, false },
	};

	if (sent)
		log_event(LOG_LVL_INFO, f, 5, "%s: sender non-delivery "
			  "notification to <%s> for %zu recipient(s): sent "
			  "(%s)", qid, it->sender, n, reply);
	else
		log_event(LOG_LVL_ERR, f, 5, "%s: sender non-delivery "
			  "notification to <%s> NOT sent: %s", qid,
			  it->sender, reply);
}

/* Send one DSN for the entries [from, to) of one message that bounced
 * in this batch, to its envelope sender through the [bounce] relay. The
 * bounce is already recorded; a DSN that cannot be sent is logged, not
 * retried. */
static void
send_dsn(struct worker *w, size_t from, size_t to, uint64_t now_us)
{
	struct worker_pool *p = w->pool;
	const struct claim_item *it = &w->items[from];
	struct dsn_rcpt *dr = xcalloc(to - from, sizeof(*dr));
	struct driver_rcpt rc = { .addr = it->sender };
	struct driver_msg m = { .store_id = store_id(p->st), .qid = it->qid,
				.sender = "", .msgid = "" };
	struct dsn_msg dm = { .reporting_mta = p->cfg->ingress_hostname,
			      .sender = it->sender, .qid = it->qid,
			      .arrival = (time_t)(it->accepted_us / 1000000u),
			      .now = (time_t)(now_us / 1000000u),
			      .headers = w->hdrs[from].data,
			      .headers_len = w->hdrs[from].len };
	struct buf text;
	size_t n = 0;
	int drc;

	for (size_t i = from; i < to; i++)
		if (w->out[i].applied && w->out[i].recorded == CLAIM_PERMFAIL) {
			dr[n].addr = w->items[i].rcpt;
			dr[n++].reply = w->out[i].reply;
		}
	if (n == 0) {
		free(dr);
		return;
	}
	buf_init(&text);
	dsn_build(&text, &dm, dr, n);
	m.body = text.data;
	m.body_len = text.len;
	drc = driver_deliver(w->bounce, &m, &rc, 1);
	log_dsn(it, n, drc == 0 && rc.result == CLAIM_DELIVERED, rc.reply);
	buf_free(&text);
	free(dr);
}

/* DSNs for the bounces of the batch's entries [first, n), one per
 * message with a sender; then drop the kept headers. */
static void
send_dsns(struct worker *w, size_t first, size_t n, uint64_t now_us)
{
	size_t from = first;

	for (size_t i = first + 1; i <= n; i++)
		if (i == n || w->items[i].qid != w->items[from].qid) {
			if (w->hdrs[from].data != NULL)
				send_dsn(w, from, i, now_us);
			buf_free(&w->hdrs[from]);
			from = i;
		}
}

/* Does this worker claim message by message, each in its own "being
 * sent" window ([workers] in_doubt_window = message)? Only for a driver
 * that does not find its earlier deliveries while it delivers. */
static bool
per_message(const struct worker *w)
{
	return !w->driver->ops->deliver_looks &&
	       w->pool->cfg->workers_in_doubt_window == CONFIG_WINDOW_MESSAGE;
}

/* Does this worker claim in-doubt entries (left by a crash while being
 * sent)? With a driver that can look, to settle them; under
 * [queue] in_doubt_policy = retry, with any driver, which simply sends
 * them again. Otherwise they wait for the operator, and indoubt_due
 * means nothing to this worker. */
static bool
takes_indoubt(const struct worker *w)
{
	return w->driver->ops->can_look ||
	       w->pool->cfg->queue_in_doubt_policy == CONFIG_IN_DOUBT_RETRY;
}

/* Does the claim itself mark what it claims as being sent? For every
 * driver that does not find its earlier deliveries while it delivers:
 * the claim is the "being sent" window, one message or one batch. (An
 * in-doubt entry is claimed marked whatever the driver:
 * claim_indoubt().) */
static bool
claim_marks(const struct worker *w)
{
	return !w->driver->ops->deliver_looks;
}

/* The end of the message that starts at entry from of the batch: the
 * entries of one message are next to each other. */
static size_t
message_end(const struct worker *w, size_t from, size_t n)
{
	size_t i = from + 1;

	while (i < n && w->items[i].qid == w->items[from].qid)
		i++;
	return i;
}

/* Record the outcomes of the batch's entries [0, n) in ONE commit,
 * together with - when the worker goes on normally (not stopping, the
 * peer up, no in-doubt entries waiting) - the claim of the next batch
 * into w->next (w->ready entries; marked as being sent when the claim
 * marks). The commit is shared with the other workers' and the
 * ingress's (store_write()). Then log them, have new in-doubt entries
 * looked for (a driver that can look) and send the DSNs. Returns 0, or
 * -1 when nothing was recorded (the leases run out and recovery
 * retries). */
static int
record_outcomes(struct worker *w, size_t n)
{
	struct worker_pool *p = w->pool;
	unsigned how = (claim_marks(w) ? CLAIM_MARK : 0) |
		(per_message(w) ? CLAIM_ONE_MESSAGE : 0);
	uint64_t now = store_now_us(), due;
	const char *err;
	int rc;

	w->ready = 0;
	if (!pool_stopping(p) && w->reconnect_us == 0 &&
	    !(takes_indoubt(w) && atomic_load(&p->indoubt_due))) {
		rc = claim_outcome_next(p->st, w->out, n, now, w->id,
					p->cfg->workers_batch,
					p->cfg->workers_lease, how, w->next,
					&w->ready, &due, &err);
		w->next_claimed_us = now;
		if (rc != STORE_OK) {
			w->ready = 0;
			log_debug("worker %u: outcomes with the next claim: "
				  "%s; recording them alone", w->id, err);
			rc = claim_outcome(p->st, w->out, n, now, &err);
		}
	} else {
		rc = claim_outcome(p->st, w->out, n, now, &err);
	}
	if (rc != STORE_OK) {
		log_err("worker %u: cannot record %zu outcome(s): %s; the "
			"entries are retried when their lease ends", w->id,
			n, err);
		return -1;
	}
	log_outcomes(w, 0, n, now);
	/* A driver that can look settles the new in-doubt entries soon:
	 * after a moment, so that a server still storing the message when
	 * the connection broke has finished when we look. */
	for (size_t i = 0; i < n && w->driver->ops->can_look; i++)
		if (w->out[i].applied && w->out[i].recorded == CLAIM_UNKNOWN) {
			if (atomic_load(&p->indoubt_after_us) <
			    now + WORKER_LOOK_DELAY_US)
				atomic_store(&p->indoubt_after_us,
					     now + WORKER_LOOK_DELAY_US);
			atomic_store(&p->indoubt_due, true);
			break;
		}
	if (w->bounce != NULL)
		send_dsns(w, 0, n, now);
	return 0;
}

/* Deliver a claimed batch, message by message, then record every outcome
 * in one commit with the claim of the next batch.
 *
 * A driver that finds its own earlier deliveries while it delivers
 * (maildir, ccmail) needs no "being sent" mark. The others (smtp, lmtp,
 * imap) need the mark that turns a crash into in-doubt, and their claim
 * makes it. Under in_doubt_window = message (the default) a claim takes
 * one message, so a crash leaves at most the one message in flight
 * in-doubt, at one commit a message per worker: the commits of all the
 * workers and of the ingress are shared (group commit), so it is not
 * one fdatasync a message. Under batch, a claim takes a whole batch:
 * fewer commits, but a crash leaves the whole batch in-doubt. */
static void
work_batch(struct worker *w, size_t n)
{
	size_t from = 0, end;

	for (size_t i = 0; i < n; i++)
		buf_free(&w->hdrs[i]);
	while (from < n) {
		end = message_end(w, from, n);
		if (deliver_message(w, from, end) == DRIVER_UNAVAILABLE) {
			metrics_foreign_seen(CLAIM_TEMPFAIL, store_now_us());
			peer_unavailable(w, from, n, w->rcpts[from].reply);
			n = from;
			break;
		}
		peer_available(w);
		from = end;
	}
	if (n > 0 && record_outcomes(w, n) < 0)
		return;
	if (w->ready > 0) {
		struct claim_item *t = w->items;

		w->items = w->next;
		w->next = t;
	}
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

	if (w->id != 1 || now - *last_us < WORKER_HOUSEKEEP_US)
		return;
	*last_us = now;
	store_reader_check(p->st);
	if (claim_recover(p->st, now, &rs, &err) != STORE_OK)
		log_err("recover: %s", err);
	else if (rs.to_indoubt > 0)
		atomic_store(&p->indoubt_due, true);
	prune_resubmit(p->st, now);
}

static size_t
claim_some(struct worker *w, uint64_t *next_due)
{
	struct worker_pool *p = w->pool;
	size_t n = 0;
	const char *err = NULL;
	int rc;

	*next_due = 0;
	if (takes_indoubt(w) &&
	    store_now_us() >= atomic_load(&p->indoubt_after_us) &&
	    atomic_exchange(&p->indoubt_due, false)) {
		rc = claim_indoubt(p->st, w->id, p->cfg->workers_batch,
				   p->cfg->workers_lease, store_now_us(),
				   w->items, &n, &err);
		if (rc == STORE_OK && n > 0) {
			atomic_store(&p->indoubt_due, true);
			/* If new mail woke this worker, another must take
			 * it: pass the wake-up on. */
			worker_pool_wake_some(p, 1);
			return n;
		}
	}
	if (claim_marks(w))
		rc = claim_batch_sending(p->st, w->id, p->cfg->workers_batch,
					 per_message(w), p->cfg->workers_lease,
					 store_now_us(), w->items, &n,
					 next_due, &err);
	else
		rc = claim_batch(p->st, w->id, p->cfg->workers_batch,
				 p->cfg->workers_lease, store_now_us(),
				 w->items, &n, next_due, &err);
	if (rc != STORE_OK) {
		log_err("worker %u: claim failed: %s", w->id, err);
		*next_due = store_now_us() + WORKER_ERROR_PAUSE_US;
		return 0;
	}
	/* In-doubt claims paused: come back when the pause ends. */
	if (n == 0 && takes_indoubt(w) && atomic_load(&p->indoubt_due)) {
		uint64_t after = atomic_load(&p->indoubt_after_us);

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
	uint64_t seen = 0, next_due, until, last_hk = store_now_us();
	size_t n;

	atomic_store(&w->running, true);
	while (!pool_stopping(p)) {
		housekeep(w, &last_hk);
		if (w->reconnect_at_us > store_now_us() &&
		    !atomic_load(&p->peer_down))
			w->reconnect_at_us = 0;	/* another worker got through */
		if (w->reconnect_at_us > store_now_us()) {
			/* Peer down: claim nothing until the next try. */
			if (!pool_wait(p, &p->backoff_cond, &seen,
				       w->reconnect_at_us))
				break;
			continue;
		}
		if (w->ready > 0) {
			n = w->ready;
			w->ready = 0;
			next_due = 0;
			w->claimed_us = w->next_claimed_us;
		} else {
			n = claim_some(w, &next_due);
			w->claimed_us = store_now_us();
		}
		if (n > 0) {
			atomic_store(&w->busy_since_us, store_now_us());
			work_batch(w, n);
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
	if (w->ready > 0) {
		/* claimed with the last outcomes, never handed over */
		const char *err;

		if (claim_requeue(p->st, w->items, w->ready, store_now_us(),
				  &err) != STORE_OK)
			log_err("worker %u: cannot put %zu entries back: %s; "
				"they are retried when their lease ends", w->id,
				w->ready, err);
		w->ready = 0;
	}
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
		driver_free(&p->w[i].driver);
		driver_free(&p->w[i].bounce);
		for (size_t j = 0; p->w[i].hdrs != NULL &&
		     j < p->cfg->workers_batch; j++)
			buf_free(&p->w[i].hdrs[j]);
		free(p->w[i].hdrs);
		free(p->w[i].span);
		free(p->w[i].items);
		free(p->w[i].next);
		free(p->w[i].out);
		free(p->w[i].rcpts);
	}
	close(p->stop_pipe[0]);
	close(p->stop_pipe[1]);
	pthread_cond_destroy(&p->cond);
	pthread_cond_destroy(&p->backoff_cond);
	pthread_mutex_destroy(&p->nexthop_lock);
	pthread_mutex_destroy(&p->lock);
	config_unref(&p->cfg);
	free(p->w);
	free(p);
}
