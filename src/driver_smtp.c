/*
 * driver_smtp.c - the smtp and lmtp drivers.
 *
 * Owns:    struct smtp_driver: a private copy of the settings (strings
 *          included), the password, and one struct smtp_client.
 * Threads: one object per worker; nothing is shared between objects.
 *
 * Results per recipient: 2xx delivered, 4xx deferred, 5xx bounced. A
 * connection that breaks or times out after the final dot went out, with
 * no reply for a recipient, makes that recipient CLAIM_UNKNOWN: the peer
 * may have the message (RFC 1047). Broken before the dot: TEMPFAIL,
 * nothing was handed over.
 */
#include "driver_smtp.h"
#include "metrics.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct smtp_driver {
	struct driver base;		/* first: (struct driver *) casts */
	struct smtp_client_settings s;	/* strings owned (copies) */
	char *password;			/* owned, cleansed on free */
	char peer[300];			/* "host:port" or the socket path */
	struct smtp_client *c;		/* owned */
	const char **rcpts;		/* owned array, borrowed strings */
	struct smtp_reply *replies;	/* owned */
	size_t cap;
	struct driver *probe;		/* owned, NULL: none */
	struct buf copy;		/* a recipient's copy (probe) */
};

static char *
dup_opt(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

/* Grow the per-message arrays to n. */
static void
reserve(struct smtp_driver *d, size_t n)
{
	if (n <= d->cap)
		return;
	d->rcpts = xrealloc(d->rcpts, n * sizeof(*d->rcpts));
	d->replies = xrealloc(d->replies, n * sizeof(*d->replies));
	d->cap = n;
}

static void
fill_all(struct driver_rcpt *r, size_t n, enum claim_result res,
	 const char *peer, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		r[i].result = res;
		driver_reply(r[i].reply, "4.4.1 %s: %s", peer, why);
	}
}

static enum claim_result
result_of(int code)
{
	switch (code / 100) {
	case 2:
		return CLAIM_DELIVERED;
	case 5:
		return CLAIM_PERMFAIL;
	default:
		return CLAIM_TEMPFAIL;
	}
}

/* Map the transaction's replies (rc as from smtp_client_send) onto r. */
static void
map_results(struct smtp_driver *d, struct driver_rcpt *r, size_t n, int rc,
	    enum smtp_stage stage, const char *err, const unsigned char *sha)
{
	for (size_t i = 0; i < n; i++) {
		const struct smtp_reply *rep = &d->replies[i];

		if (rep->code != 0) {
			r[i].result = result_of(rep->code);
			driver_reply(r[i].reply, "%s said: %d %s",
				     d->peer, rep->code, rep->text);
		} else if (rc < 0 && stage == SMTP_STAGE_DOT) {
			r[i].result = CLAIM_UNKNOWN;
			driver_reply(r[i].reply, "4.4.2 %s: connection "
				     "lost after end of data, the peer may "
				     "have the message: %s", d->peer, err);
		} else {
			r[i].result = CLAIM_TEMPFAIL;
			driver_reply(r[i].reply, "4.4.2 %s: %s",
				     d->peer, err);
		}
		if (r[i].result == CLAIM_DELIVERED ||
		    r[i].result == CLAIM_UNKNOWN)
			memcpy(r[i].sha, sha, 32);
	}
}

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One transaction of body[0..len) to the n recipients r: 0 (results in
 * r) or DRIVER_UNAVAILABLE. sha is of the queued message. */
static int
send_one(struct smtp_driver *d, const struct driver_msg *m, const void *body,
	 size_t len, struct driver_rcpt *r, size_t n, const unsigned char *sha)
{
	struct driver *base = &d->base;
	enum smtp_stage stage;
	const char *err;
	int rc, tries;

	reserve(d, n);
	for (size_t i = 0; i < n; i++)
		d->rcpts[i] = r[i].addr;
	/* An idle connection the peer has closed shows up as -2: open a new
	 * one once, nothing was handed over yet. A timeout there means a
	 * hung peer: one timeout is enough, report it unavailable. */
	for (tries = 0; tries < 2; tries++) {
		if (!smtp_client_connected(d->c)) {
			uint64_t t0 = mono_us();

			if (smtp_client_open(d->c, &err) < 0) {
				fill_all(r, n, CLAIM_TEMPFAIL, d->peer, err);
				return DRIVER_UNAVAILABLE;
			}
			t0 = mono_us() - t0;
			for (size_t i = 0; i < n; i++)
				r[i].connect_us += t0;
			metrics_reconnect(base->ops->name);
		}
		rc = smtp_client_send(d->c, m->sender, d->rcpts, n, body, len,
				      d->replies, &stage, &err);
		if (rc != -2 || smtp_client_timed_out(d->c))
			break;
		log_debug("%s: connection closed while idle (%s); "
			  "reconnecting", d->peer, err);
	}
	/* Stopping before the dot went out: nothing was handed over, so
	 * it is not an attempt either. */
	if (rc == -2 || (rc == -1 && stage != SMTP_STAGE_DOT &&
			 smtp_client_cancelled(d->c))) {
		fill_all(r, n, CLAIM_TEMPFAIL, d->peer, err);
		return DRIVER_UNAVAILABLE;
	}
	map_results(d, r, n, rc, stage, err, sha);
	return 0;
}

static int
smtp_deliver(struct driver *base, const struct driver_msg *m,
	     struct driver_rcpt *r, size_t n)
{
	struct smtp_driver *d = (struct smtp_driver *)base;
	unsigned char sha[32];

	if (base == NULL || m == NULL || r == NULL || n == 0)
		return -1;
	SHA256(m->body, m->body_len, sha);
	if (d->probe == NULL)
		return send_one(d, m, m->body, m->body_len, r, n, sha);
	/* With a probe: each recipient's copy names its delivery, so the
	 * probe can tell later which of them arrived. */
	for (size_t i = 0; i < n; i++) {
		buf_reset(&d->copy);
		driver_delivery_header(&d->copy, m, &r[i]);
		buf_append(&d->copy, m->body, m->body_len);
		if (send_one(d, m, d->copy.data, d->copy.len, &r[i], 1, sha) ==
		    DRIVER_UNAVAILABLE)
			return driver_down_at(r, i, n);
	}
	return 0;
}

static int
smtp_look(struct driver *base, const struct driver_msg *m,
	  const struct driver_rcpt *r, const char **error_r)
{
	struct smtp_driver *d = (struct smtp_driver *)base;

	return driver_look(d->probe, m, r, error_r);
}

static void
smtp_free(struct driver **dp)
{
	struct smtp_driver *d = (struct smtp_driver *)*dp;

	*dp = NULL;
	if (d == NULL)
		return;
	smtp_client_free(&d->c);
	driver_free(&d->probe);
	buf_free(&d->copy);
	free((char *)d->s.host);
	free((char *)d->s.port);
	free((char *)d->s.helo);
	free((char *)d->s.tls_ca_file);
	free((char *)d->s.auth_user);
	driver_password_free(&d->password);
	free(d->rcpts);
	free(d->replies);
	free(d);
}

static const struct driver_ops smtp_ops = {
	.name = "smtp",
	.can_look = false,
	.deliver = smtp_deliver,
	.look = NULL,
	.free = smtp_free,
};

static const struct driver_ops lmtp_ops = {
	.name = "lmtp",
	.can_look = false,
	.deliver = smtp_deliver,
	.look = NULL,
	.free = smtp_free,
};

/* With a probe: they look when asked, so entries are marked as being
 * sent and in-doubt ones are looked for first (driver.h). */
static const struct driver_ops smtp_probe_ops = {
	.name = "smtp",
	.can_look = true,
	.deliver_looks = false,
	.deliver = smtp_deliver,
	.look = smtp_look,
	.free = smtp_free,
};

static const struct driver_ops lmtp_probe_ops = {
	.name = "lmtp",
	.can_look = true,
	.deliver_looks = false,
	.deliver = smtp_deliver,
	.look = smtp_look,
	.free = smtp_free,
};

struct driver *
driver_smtp_new(const struct smtp_client_settings *s,
		const char *auth_password_file, struct driver **probe,
		const char **error_r)
{
	struct smtp_driver *d = xcalloc(1, sizeof(*d));

	if (probe != NULL && *probe != NULL) {
		d->probe = *probe;
		*probe = NULL;
		d->base.ops = s->lmtp ? &lmtp_probe_ops : &smtp_probe_ops;
	} else {
		d->base.ops = s->lmtp ? &lmtp_ops : &smtp_ops;
	}
	buf_init(&d->copy);
	d->s = *s;
	d->s.host = dup_opt(s->host);
	d->s.port = dup_opt(s->port);
	d->s.helo = dup_opt(s->helo);
	d->s.tls_ca_file = dup_opt(s->tls_ca_file);
	d->s.auth_user = dup_opt(s->auth_user);
	d->s.auth_password = NULL;
	if (s->port != NULL)
		snprintf(d->peer, sizeof(d->peer), "%s:%s", s->host, s->port);
	else
		snprintf(d->peer, sizeof(d->peer), "%s", s->host);
	d->c = smtp_client_new(&d->s);
	if (auth_password_file != NULL) {
		d->password = driver_read_password("auth_password_file",
						   auth_password_file, error_r);
		if (d->password == NULL) {
			struct driver *b = &d->base;

			smtp_free(&b);
			return NULL;
		}
		d->s.auth_password = d->password;
	}
	return &d->base;
}
