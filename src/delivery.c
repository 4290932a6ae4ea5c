/*
 * delivery.c - one worker's batch: deliver, settle in-doubt entries,
 * back off from a peer that is down, record the outcomes, log them and
 * send the DSNs.
 *
 * Owns:    a struct delivery and its per-entry arrays; the kept header
 *          sections until their DSN is sent.
 * Threads: the worker thread of the context; struct delivery_shared is
 *          the pool's (atomics, nexthop_lock). No transaction is open
 *          while the driver talks to the foreign side.
 */
#include "delivery.h"
#include "driver_table.h"
#include "dsn.h"
#include "metrics.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
delivery_shared_init(struct delivery_shared *sh, uint64_t now_us)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->nexthop_lock, NULL);
	pthread_mutex_init(&sh->notfound_lock, NULL);
	/* In-doubt entries left by a crash: look for them after a moment
	 * too (as for a connection that broke, record_outcomes()), so that
	 * a server still storing a message that the dead process sent in
	 * full has stored it when we look; a look that does not find it
	 * sends it again. */
	atomic_store(&sh->indoubt_due, true);
	atomic_store(&sh->indoubt_after_us, now_us + DELIVERY_LOOK_DELAY_US);
}

void
delivery_shared_destroy(struct delivery_shared *sh)
{
	pthread_mutex_destroy(&sh->nexthop_lock);
	pthread_mutex_destroy(&sh->notfound_lock);
	free(sh->notfound);
	sh->notfound = NULL;
	sh->notfound_n = sh->notfound_cap = 0;
}

/* The notfound slot of (qid, idx), or NULL. Under notfound_lock. */
static struct delivery_notfound *
notfound_find(struct delivery_shared *sh, uint64_t qid, uint32_t idx)
{
	for (size_t i = 0; i < sh->notfound_n; i++)
		if (sh->notfound[i].qid == qid && sh->notfound[i].idx == idx)
			return &sh->notfound[i];
	return NULL;
}

/* Remove slot e. Under notfound_lock. */
static void
notfound_drop(struct delivery_shared *sh, struct delivery_notfound *e)
{
	*e = sh->notfound[--sh->notfound_n];
}

bool
delivery_notfound_settled(struct delivery_shared *sh, uint64_t qid,
			  uint32_t idx, uint64_t now_us, uint64_t wait_us,
			  uint64_t *again_r)
{
	struct delivery_notfound *e;
	bool settled = false;

	*again_r = now_us;
	if (wait_us == 0)
		return true;
	pthread_mutex_lock(&sh->notfound_lock);
	e = notfound_find(sh, qid, idx);
	if (e != NULL && now_us >= e->first_us + wait_us) {
		notfound_drop(sh, e);
		settled = true;
	} else if (e != NULL) {
		*again_r = e->first_us + wait_us;
	} else {
		/* Slots of entries settled some other way (postern
		 * resolve, another instance) are not kept for long. */
		for (size_t i = 0; i < sh->notfound_n; )
			if (sh->notfound[i].first_us + wait_us + 3600000000ull
			    < now_us)
				notfound_drop(sh, &sh->notfound[i]);
			else
				i++;
		if (sh->notfound_n == sh->notfound_cap) {
			sh->notfound_cap = sh->notfound_cap ?
				sh->notfound_cap * 2 : 16;
			sh->notfound = xrealloc(sh->notfound,
				sh->notfound_cap * sizeof(*sh->notfound));
		}
		sh->notfound[sh->notfound_n++] = (struct delivery_notfound){
			.qid = qid, .idx = idx, .first_us = now_us };
		*again_r = now_us + wait_us;
	}
	pthread_mutex_unlock(&sh->notfound_lock);
	return settled;
}

void
delivery_notfound_forget(struct delivery_shared *sh, uint64_t qid,
			 uint32_t idx)
{
	struct delivery_notfound *e;

	pthread_mutex_lock(&sh->notfound_lock);
	e = notfound_find(sh, qid, idx);
	if (e != NULL)
		notfound_drop(sh, e);
	pthread_mutex_unlock(&sh->notfound_lock);
}

struct delivery *
delivery_new(size_t cap)
{
	struct delivery *d = xcalloc(1, sizeof(*d));

	d->cap = cap;
	d->items = xcalloc(cap, sizeof(*d->items));
	d->next = xcalloc(cap, sizeof(*d->next));
	d->out = xcalloc(cap, sizeof(*d->out));
	d->rcpts = xcalloc(cap, sizeof(*d->rcpts));
	d->hdrs = xcalloc(cap, sizeof(*d->hdrs));
	d->span = xcalloc(cap, sizeof(*d->span));
	return d;
}

void
delivery_free(struct delivery **dp)
{
	struct delivery *d = *dp;

	*dp = NULL;
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->cap; i++)
		buf_free(&d->hdrs[i]);
	free(d->hdrs);
	free(d->span);
	free(d->items);
	free(d->next);
	free(d->out);
	free(d->rcpts);
	free(d);
}

/* The reconnect backoff's cap of the configured driver, us. */
static uint64_t
reconnect_max_us(const struct config *cfg)
{
	return driver_table_of(cfg)->reconnect_max(cfg) * 1000000ull;
}

static bool
stopping(const struct delivery_ctx *c)
{
	return c->stopping(c->arg);
}

bool
delivery_per_message(const struct delivery_ctx *c)
{
	/* Only for a driver that does not find its earlier deliveries
	 * while it delivers. */
	return !c->driver->ops->deliver_looks &&
	       c->cfg->workers_in_doubt_window == CONFIG_WINDOW_MESSAGE;
}

bool
delivery_takes_indoubt(const struct delivery_ctx *c)
{
	/* With a driver that can look, to settle them; under [queue]
	 * in_doubt_policy = retry, with any driver, which simply sends them
	 * again. Otherwise they wait for the operator, and indoubt_due
	 * means nothing to this worker. */
	return c->driver->ops->can_look ||
	       c->cfg->queue_in_doubt_policy == CONFIG_IN_DOUBT_RETRY;
}

bool
delivery_claim_marks(const struct delivery_ctx *c)
{
	/* The claim is the "being sent" window, one message or one batch.
	 * (An in-doubt entry is claimed marked whatever the driver:
	 * claim_indoubt().) */
	return !c->driver->ops->deliver_looks;
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

/* --- delivering --------------------------------------------------------- */

/* Keep the header section of a message that may bounce (a failure, and
 * a sender to tell), for its DSN after the outcome. */
static void
keep_headers(const struct delivery_ctx *c, struct delivery *d, size_t from,
	     size_t n, const void *body, size_t len)
{
	const char *b = body, *end;
	bool failed = false;

	if (c->bounce == NULL || d->items[from].sender[0] == '\0' ||
	    body == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		failed |= d->rcpts[from + i].result != CLAIM_DELIVERED;
	if (!failed)
		return;
	end = memmem(b, len, "\r\n\r\n", 4);
	buf_reset(&d->hdrs[from]);
	buf_append(&d->hdrs[from], b, end != NULL ? (size_t)(end - b) + 2 :
		   len);
}

/* No in-doubt claims before at_us (a later pause stays). */
static void
indoubt_not_before(struct delivery_shared *sh, uint64_t at_us)
{
	if (atomic_load(&sh->indoubt_after_us) < at_us)
		atomic_store(&sh->indoubt_after_us, at_us);
}

/* A look could not tell (could == false) or could: pause the claims of
 * in-doubt entries, from 1 s doubling up to reconnect_max, or end the
 * pause. */
static void
indoubt_looked(const struct delivery_ctx *c, bool could)
{
	struct delivery_shared *sh = c->shared;
	uint64_t pause, max = reconnect_max_us(c->cfg);

	if (could) {
		atomic_store(&sh->indoubt_pause_us, 0);
		return;
	}
	pause = atomic_load(&sh->indoubt_pause_us);
	pause = pause == 0 ? 1000000u : pause * 2 > max ? max : pause * 2;
	atomic_store(&sh->indoubt_pause_us, pause);
	atomic_store(&sh->indoubt_after_us, store_now_us() + pause);
}

/* In-doubt entries of a driver that looks only when asked: look first.
 * Found: delivered, the lost reply's delivery is recorded. Not found:
 * delivered now if looks have not found it for [queue] look_again,
 * else it stays in-doubt and is looked for again then. Cannot tell: it
 * stays in-doubt, and in-doubt claims pause. Returns DRIVER_UNAVAILABLE
 * when a delivery found the foreign side down (the caller gives the
 * entries back as in-doubt), else 0. */
static int
settle_indoubt(const struct delivery_ctx *c, const struct driver_msg *m,
	       struct driver_rcpt *r, size_t n)
{
	struct delivery_shared *sh = c->shared;
	uint64_t now, again;
	const char *err;
	int rc;

	for (size_t i = 0; i < n; i++) {
		rc = driver_look(c->driver, m, &r[i], &err);
		indoubt_looked(c, rc >= 0);
		now = store_now_us();
		if (rc == 0 && !delivery_notfound_settled(sh, m->qid, r[i].idx,
				now, c->cfg->queue_look_again * 1000000ull,
				&again)) {
			/* Not there yet: a server may still be storing
			 * what the dead connection sent. Look again. */
			r[i].result = CLAIM_UNKNOWN;
			snprintf(r[i].reply, DRIVER_REPLY_LEN, "4.4.2 not found "
				 "at the foreign side yet: looked for again "
				 "before it is sent again");
			indoubt_not_before(sh, again);
			continue;
		}
		if (rc == 0) {
			if (driver_deliver(c->driver, m, &r[i], 1) ==
			    DRIVER_UNAVAILABLE) {
				memcpy(r[0].reply, r[i].reply,
				       DRIVER_REPLY_LEN);
				return DRIVER_UNAVAILABLE;
			}
			continue;
		}
		if (rc == 1) {
			delivery_notfound_forget(sh, m->qid, r[i].idx);
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
 * foreign side is down (d->out is then not filled in), else 0. */
static int
deliver_message(const struct delivery_ctx *c, struct delivery *d,
		size_t from, size_t to)
{
	struct claim_item *it = &d->items[from];
	/* Each message of the batch has its own slice of rcpts: the
	 * outcomes borrow the reply texts until claim_outcome(). */
	struct driver_rcpt *r = &d->rcpts[from];
	struct driver_msg m = { .store_id = store_id(c->st), .qid = it->qid,
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
	rc = store_body_get(c->st, it->qid, &body, &len, &err);
	d->span[from].start_us = store_now_us();
	if (rc == 1) {
		m.body = body;
		m.body_len = len;
		if (it->was_indoubt && c->driver->ops->can_look &&
		    !c->driver->ops->deliver_looks)
			drc = settle_indoubt(c, &m, r, n);
		else
			drc = driver_deliver(c->driver, &m, r, n);
	} else {
		for (size_t i = 0; i < n; i++) {
			r[i].result = CLAIM_TEMPFAIL;
			snprintf(r[i].reply, DRIVER_REPLY_LEN,
				 "4.3.0 cannot read the queued message: %s",
				 rc == 0 ? "missing" : err);
		}
	}
	d->span[from].end_us = store_now_us();
	for (size_t i = 1; i < n; i++)
		d->span[from + i] = d->span[from];
	if (drc != DRIVER_UNAVAILABLE)
		keep_headers(c, d, from, n, body, len);
	free(body);
	if (drc == DRIVER_UNAVAILABLE)
		return drc;
	for (size_t i = 0; i < n; i++) {
		struct claim_outcome *o = &d->out[from + i];

		memset(o, 0, sizeof(*o));
		o->qid = it[i].qid;
		o->idx = it[i].idx;
		o->token = it[i].token;
		o->result = r[i].result;
		o->reply = r[i].reply;
		o->indoubt_retry = !c->driver->ops->can_look &&
			c->cfg->queue_in_doubt_policy == CONFIG_IN_DOUBT_RETRY;
		memcpy(o->body_sha, r[i].sha, 32);
	}
	return 0;
}

/* --- the peer's backoff ------------------------------------------------- */

/* Record that the next hop is down, for postern queue: why the mail
 * waits, since when. The reason the workers saw last, written when it
 * changes and at most once a minute otherwise (again after a failed
 * write). Under nexthop_lock. */
static void
nexthop_down(const struct delivery_ctx *c, const char *reason, uint64_t now,
	     uint64_t max)
{
	struct delivery_shared *sh = c->shared;
	const char *err;

	if (!atomic_exchange(&sh->peer_down, true)) {
		log_warn("%s: next hop unavailable: %s; mail stays queued, "
			 "reconnecting with backoff (at most %" PRIu64 " s)",
			 c->driver->ops->name, reason, max / 1000000u);
		sh->nexthop_at_us = 0;
	}
	if (sh->nexthop_at_us == 0 || now >= sh->nexthop_at_us + 60000000u ||
	    strncmp(reason, sh->nexthop_reason,
		    sizeof(sh->nexthop_reason) - 1) != 0) {
		snprintf(sh->nexthop_reason, sizeof(sh->nexthop_reason), "%s",
			 reason);
		sh->nexthop_at_us = now;
		atomic_store(&sh->nexthop_stale, false);
		if (store_nexthop_set(c->st, reason, now, &err) != STORE_OK) {
			sh->nexthop_at_us = 0;
			log_warn("cannot record the next hop's state: %s", err);
		}
	}
}

/* The foreign side could not be reached: give items [from, n) back
 * without counting an attempt and wait before the next connection, from
 * about 1 s doubling up to reconnect_max, +-25% jitter so that workers
 * do not knock in step. reason is the driver's (borrowed). */
static void
peer_unavailable(struct delivery_ctx *c, struct delivery *d, size_t from,
		 size_t n, const char *reason)
{
	uint64_t max = reconnect_max_us(c->cfg);
	uint64_t now = store_now_us(), h;
	const char *err;
	int rc;

	/* In-doubt entries go back in-doubt (they were marked as being
	 * sent): only a look may settle them. */
	if (d->items[from].was_indoubt) {
		indoubt_looked(c, false);
		rc = claim_release(c->st, d->items + from, n - from, &err);
	} else {
		rc = claim_requeue(c->st, d->items + from, n - from, now,
				   &err);
	}
	if (rc != STORE_OK)
		log_err("worker %u: cannot put %zu entries back: %s; they are "
			"retried when their lease ends", c->worker, n - from,
			err);
	c->reconnect_us = c->reconnect_us == 0 ? 1000000u :
			  c->reconnect_us * 2;
	if (c->reconnect_us > max)
		c->reconnect_us = max;
	h = (now ^ ((uint64_t)c->worker << 40)) * 0x9E3779B97F4A7C15ull;
	h ^= h >> 29;
	c->reconnect_at_us = now + c->reconnect_us * 3 / 4 +
			     h % (c->reconnect_us / 2 + 1);
	if (stopping(c)) {
		log_info("worker %u: stopping: %zu entries put back",
			 c->worker, n - from);
	} else {
		pthread_mutex_lock(&c->shared->nexthop_lock);
		nexthop_down(c, reason, now, max);
		pthread_mutex_unlock(&c->shared->nexthop_lock);
	}
	log_debug("worker %u: %zu entries put back, next connection in %"
		  PRIu64 " ms", c->worker, n - from,
		  (c->reconnect_at_us - now) / 1000u);
}

static void
peer_available(struct delivery_ctx *c)
{
	struct delivery_shared *sh = c->shared;
	const char *err;
	bool was_down;

	c->reconnect_us = 0;
	c->reconnect_at_us = 0;
	if (!atomic_load(&sh->peer_down) && !atomic_load(&sh->nexthop_stale))
		return;		/* the common case: no lock */
	pthread_mutex_lock(&sh->nexthop_lock);
	was_down = atomic_exchange(&sh->peer_down, false);
	if (was_down)
		log_info("%s: next hop is back, delivering",
			 c->driver->ops->name);
	if (was_down || atomic_load(&sh->nexthop_stale)) {
		sh->nexthop_at_us = 0;
		if (store_nexthop_set(c->st, NULL, 0, &err) != STORE_OK) {
			atomic_store(&sh->nexthop_stale, true);
			log_warn("cannot clear the next hop's state: %s", err);
		} else {
			atomic_store(&sh->nexthop_stale, false);
		}
	}
	/* the others are waiting out their own backoff: end it */
	if (was_down)
		c->wake(c->arg);
	pthread_mutex_unlock(&sh->nexthop_lock);
}

/* --- the log lines ------------------------------------------------------ */

/* Why an in-doubt reply ended where it did, for the log line. */
static const char *
indoubt_note(const struct delivery_ctx *c, const struct claim_outcome *o)
{
	if (o->result != CLAIM_UNKNOWN)
		return "";
	if (o->recorded == CLAIM_UNKNOWN && c->driver->ops->can_look)
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
entry_delays(const struct delivery *d, size_t i, char *buf, size_t len)
{
	const struct delivery_span *sp = &d->span[i];
	uint64_t acc = d->items[i].accepted_us, c = d->rcpts[i].connect_us;
	uint64_t us[4];
	char part[4][24];

	us[0] = d->claimed_us > acc ? d->claimed_us - acc : 0;
	us[1] = d->claimed_us != 0 && sp->start_us > d->claimed_us ?
		sp->start_us - d->claimed_us : 0;
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
log_delivery(const struct delivery_ctx *c, const struct delivery *d,
	     size_t i, uint64_t now_us)
{
	const struct claim_outcome *o = &d->out[i];
	const struct claim_item *it = &d->items[i];
	uint64_t dl = now_us - it->accepted_us + 5000u;	/* rounded */
	const char *status = o->dead ? "held" : status_name(o->recorded);
	char qid[STORE_QID_STRLEN], delay[32], delays[100], dsn[16], att[16];
	struct log_field f[] = {
		{ "queue_id", store_qid_str(o->qid, qid), false },
		{ "event", "delivery", false },
		{ "status", status, false },
		{ "to", it->rcpt, false },
		{ "relay", c->driver->ops->name, false },
		{ "delay", delay, true },
		{ "delays", delays, false },
		{ "dsn", dsn, false },
		{ "attempts", att, true },
		{ "reply", o->reply, false },
	};

	snprintf(delay, sizeof(delay), "%" PRIu64 ".%02" PRIu64,
		 dl / 1000000u, dl % 1000000u / 10000u);
	entry_delays(d, i, delays, sizeof(delays));
	reply_dsn(dsn, sizeof(dsn), o->reply, status);
	snprintf(att, sizeof(att), "%" PRIu32, o->attempts);
	log_event(LOG_LVL_INFO, f, sizeof(f) / sizeof(f[0]),
		  "%s: to=<%s>, relay=%s, delay=%s, delays=%s, dsn=%s, "
		  "status=%s (%s)%s%s, attempts=%s", qid, it->rcpt,
		  c->driver->ops->name, delay, delays, dsn, status, o->reply,
		  indoubt_note(c, o), o->dead ? "; dead letter after [queue] "
		  "max_attempts, held for the operator" : "", att);
}

static void
log_outcomes(const struct delivery_ctx *c, const struct delivery *d,
	     size_t n, uint64_t now_us)
{
	char qid[STORE_QID_STRLEN];

	for (size_t i = 0; i < n; i++) {
		const struct claim_outcome *o = &d->out[i];

		if (!o->applied)
			continue;
		metrics_outcome(o->recorded, now_us - d->items[i].accepted_us);
		metrics_foreign_seen(o->result, now_us);
		log_delivery(c, d, i, now_us);
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

/* --- DSNs --------------------------------------------------------------- */

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
send_dsn(const struct delivery_ctx *c, const struct delivery *d,
	 size_t from, size_t to, uint64_t now_us)
{
	const struct claim_item *it = &d->items[from];
	struct dsn_rcpt *dr = xcalloc(to - from, sizeof(*dr));
	struct driver_rcpt rc = { .addr = it->sender };
	struct driver_msg m = { .store_id = store_id(c->st), .qid = it->qid,
				.sender = "", .msgid = "" };
	struct dsn_msg dm = { .reporting_mta = c->cfg->ingress_hostname,
			      .sender = it->sender, .qid = it->qid,
			      .arrival = (time_t)(it->accepted_us / 1000000u),
			      .now = (time_t)(now_us / 1000000u),
			      .headers = d->hdrs[from].data,
			      .headers_len = d->hdrs[from].len };
	struct buf text;
	size_t n = 0;
	int drc;

	for (size_t i = from; i < to; i++)
		if (d->out[i].applied && d->out[i].recorded == CLAIM_PERMFAIL) {
			dr[n].addr = d->items[i].rcpt;
			dr[n++].reply = d->out[i].reply;
		}
	if (n == 0) {
		free(dr);
		return;
	}
	buf_init(&text);
	dsn_build(&text, &dm, dr, n);
	m.body = text.data;
	m.body_len = text.len;
	drc = driver_deliver(c->bounce, &m, &rc, 1);
	log_dsn(it, n, drc == 0 && rc.result == CLAIM_DELIVERED, rc.reply);
	buf_free(&text);
	free(dr);
}

/* The end of the message that starts at entry from of the batch: the
 * entries of one message are next to each other. */
static size_t
message_end(const struct delivery *d, size_t from, size_t n)
{
	size_t i = from + 1;

	while (i < n && d->items[i].qid == d->items[from].qid)
		i++;
	return i;
}

/* DSNs for the bounces of the batch's entries [0, n), one per message
 * with a sender; then drop the kept headers. */
static void
send_dsns(const struct delivery_ctx *c, struct delivery *d, size_t n,
	  uint64_t now_us)
{
	size_t end;

	for (size_t from = 0; from < n; from = end) {
		end = message_end(d, from, n);
		if (d->hdrs[from].data != NULL)
			send_dsn(c, d, from, end, now_us);
		buf_free(&d->hdrs[from]);
	}
}

/* --- the batch ---------------------------------------------------------- */

/* Record the outcomes of the batch's entries [0, n) in ONE commit,
 * together with - when the worker goes on normally (not stopping, the
 * peer up, no in-doubt entries waiting) - the claim of the next batch
 * into d->next (d->ready entries; marked as being sent when the claim
 * marks). The commit is shared with the other workers' and the
 * ingress's (store_write()). Then log them, have new in-doubt entries
 * looked for (a driver that can look) and send the DSNs. Returns 0, or
 * -1 when nothing was recorded (the leases run out and recovery
 * retries). */
static int
record_outcomes(struct delivery_ctx *c, struct delivery *d, size_t n)
{
	struct delivery_shared *sh = c->shared;
	struct claim_next next = {
		.worker = c->worker,
		.max = c->cfg->workers_batch,
		.lease_secs = c->cfg->workers_lease,
		.mark = delivery_claim_marks(c),
		.one_message = delivery_per_message(c),
		.items = d->next,
	};
	uint64_t now = store_now_us();
	const char *err;
	int rc;

	d->ready = 0;
	if (!stopping(c) && c->reconnect_us == 0 &&
	    !(delivery_takes_indoubt(c) && atomic_load(&sh->indoubt_due))) {
		rc = claim_outcome_and_claim(c->st, d->out, n, now, &next,
					     &err);
		d->ready = next.n;
		d->next_claimed_us = now;
		if (rc != STORE_OK) {
			d->ready = 0;
			log_debug("worker %u: outcomes with the next claim: "
				  "%s; recording them alone", c->worker, err);
			rc = claim_outcome(c->st, d->out, n, now, &err);
		}
	} else {
		rc = claim_outcome(c->st, d->out, n, now, &err);
	}
	if (rc != STORE_OK) {
		log_err("worker %u: cannot record %zu outcome(s): %s; the "
			"entries are retried when their lease ends", c->worker,
			n, err);
		return -1;
	}
	log_outcomes(c, d, n, now);
	/* A driver that can look settles the new in-doubt entries soon:
	 * after a moment, so that a server still storing the message when
	 * the connection broke has finished when we look. */
	for (size_t i = 0; i < n && c->driver->ops->can_look; i++)
		if (d->out[i].applied && d->out[i].recorded == CLAIM_UNKNOWN) {
			indoubt_not_before(sh, now + DELIVERY_LOOK_DELAY_US);
			atomic_store(&sh->indoubt_due, true);
			break;
		}
	if (c->bounce != NULL)
		send_dsns(c, d, n, now);
	return 0;
}

/*
 * A driver that finds its own earlier deliveries while it delivers
 * (maildir, ccmail) needs no "being sent" mark. The others (smtp, lmtp,
 * imap) need the mark that turns a crash into in-doubt, and their claim
 * makes it. Under in_doubt_window = message (the default) a claim takes
 * one message, so a crash leaves at most the one message in flight
 * in-doubt, at one commit a message per worker: the commits of all the
 * workers and of the ingress are shared (group commit), so it is not
 * one fdatasync a message. Under batch, a claim takes a whole batch:
 * fewer commits, but a crash leaves the whole batch in-doubt.
 */
void
delivery_run(struct delivery_ctx *c, struct delivery *d, size_t n)
{
	size_t from = 0, end;

	for (size_t i = 0; i < n; i++)
		buf_free(&d->hdrs[i]);
	while (from < n) {
		end = message_end(d, from, n);
		if (deliver_message(c, d, from, end) == DRIVER_UNAVAILABLE) {
			metrics_foreign_seen(CLAIM_TEMPFAIL, store_now_us());
			peer_unavailable(c, d, from, n, d->rcpts[from].reply);
			n = from;
			break;
		}
		peer_available(c);
		from = end;
	}
	if (n > 0 && record_outcomes(c, d, n) < 0)
		return;
	if (d->ready > 0) {
		struct claim_item *t = d->items;

		d->items = d->next;
		d->next = t;
	}
}

size_t
delivery_take_ready(struct delivery *d)
{
	size_t n = d->ready;

	d->ready = 0;
	if (n > 0)
		d->claimed_us = d->next_claimed_us;
	return n;
}

void
delivery_put_back(struct delivery_ctx *c, struct delivery *d)
{
	const char *err;

	if (d->ready == 0)
		return;
	/* claimed with the last outcomes, never handed over */
	if (claim_requeue(c->st, d->items, d->ready, store_now_us(), &err) !=
	    STORE_OK)
		log_err("worker %u: cannot put %zu entries back: %s; they are "
			"retried when their lease ends", c->worker, d->ready,
			err);
	d->ready = 0;
}
