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
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smtp_driver {
	struct driver base;		/* first: (struct driver *) casts */
	struct smtp_client_settings s;	/* strings owned (copies) */
	char *password;			/* owned, cleansed on free */
	char peer[300];			/* "host:port" or the socket path */
	struct smtp_client *c;		/* owned */
	const char **rcpts;		/* owned array, borrowed strings */
	struct smtp_reply *replies;	/* owned */
	size_t cap;
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

/* A reply text; a long one is cut, which is fine for a log and ledger. */
static void
reply_set(char *dst, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
reply_set(char *dst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, DRIVER_REPLY_LEN, fmt, ap);
	va_end(ap);
}

static void
fill_all(struct driver_rcpt *r, size_t n, enum claim_result res,
	 const char *peer, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		r[i].result = res;
		reply_set(r[i].reply, "4.4.1 %s: %s", peer, why);
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
			reply_set(r[i].reply, "%s said: %d %s",
				 d->peer, rep->code, rep->text);
		} else if (rc < 0 && stage == SMTP_STAGE_DOT) {
			r[i].result = CLAIM_UNKNOWN;
			reply_set(r[i].reply, "4.4.2 %s: "
				 "connection lost after end of data, the peer "
				 "may have the message: %s", d->peer, err);
		} else {
			r[i].result = CLAIM_TEMPFAIL;
			reply_set(r[i].reply, "4.4.2 %s: %s",
				 d->peer, err);
		}
		if (r[i].result == CLAIM_DELIVERED ||
		    r[i].result == CLAIM_UNKNOWN)
			memcpy(r[i].sha, sha, 32);
	}
}

static int
smtp_deliver(struct driver *base, const struct driver_msg *m,
	     struct driver_rcpt *r, size_t n)
{
	struct smtp_driver *d = (struct smtp_driver *)base;
	unsigned char sha[32];
	enum smtp_stage stage;
	const char *err;
	int rc, tries;

	if (base == NULL || m == NULL || r == NULL || n == 0)
		return -1;
	reserve(d, n);
	for (size_t i = 0; i < n; i++)
		d->rcpts[i] = r[i].addr;
	SHA256(m->body, m->body_len, sha);
	/* An idle connection the peer has closed shows up as -2: open a new
	 * one once, nothing was handed over yet. A timeout there means a
	 * hung peer: one timeout is enough, report it unavailable. */
	for (tries = 0; tries < 2; tries++) {
		if (!smtp_client_connected(d->c)) {
			if (smtp_client_open(d->c, &err) < 0) {
				fill_all(r, n, CLAIM_TEMPFAIL, d->peer, err);
				return DRIVER_UNAVAILABLE;
			}
			metrics_reconnect(base->ops->name);
		}
		rc = smtp_client_send(d->c, m->sender, d->rcpts, n, m->body,
				      m->body_len, d->replies, &stage, &err);
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

static void
smtp_free(struct driver **dp)
{
	struct smtp_driver *d = (struct smtp_driver *)*dp;

	*dp = NULL;
	if (d == NULL)
		return;
	smtp_client_free(&d->c);
	free((char *)d->s.host);
	free((char *)d->s.port);
	free((char *)d->s.helo);
	free((char *)d->s.tls_ca_file);
	free((char *)d->s.auth_user);
	if (d->password != NULL) {
		OPENSSL_cleanse(d->password, strlen(d->password));
		free(d->password);
	}
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

/* The first line of path, owned by the caller; NULL on error. */
static char *
read_password(const char *path, const char **error_r)
{
	static _Thread_local char err[512];
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *fp = fopen(path, "re");

	if (fp == NULL) {
		snprintf(err, sizeof(err), "auth_password_file %s: %s", path,
			 strerror(errno));
		*error_r = err;
		return NULL;
	}
	len = getline(&line, &cap, fp);
	fclose(fp);
	if (len < 0) {
		free(line);
		snprintf(err, sizeof(err), "auth_password_file %s: empty",
			 path);
		*error_r = err;
		return NULL;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	return line;
}

struct driver *
driver_smtp_new(const struct smtp_client_settings *s,
		const char *auth_password_file, const char **error_r)
{
	struct smtp_driver *d = xcalloc(1, sizeof(*d));

	d->base.ops = s->lmtp ? &lmtp_ops : &smtp_ops;
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
		d->password = read_password(auth_password_file, error_r);
		if (d->password == NULL) {
			struct driver *b = &d->base;

			smtp_free(&b);
			return NULL;
		}
		d->s.auth_password = d->password;
	}
	return &d->base;
}
