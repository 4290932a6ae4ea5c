/*
 * driver_imap.c - the imap driver, and the probe of the smtp/lmtp drivers.
 *
 * Owns:    struct imap_driver: a private copy of the settings (strings
 *          included), the password, one struct imap_client and the
 *          header buffer.
 * Threads: one object per worker; nothing is shared between objects.
 *
 * One APPEND per recipient: each copy has its own X-Postern-Delivery
 * header. Results: OK delivered; NO [OVERQUOTA] and other NOs deferred;
 * NO [TRYCREATE]/[NONEXISTENT] bounced unless create_mailbox, NO
 * [TOOBIG]/[LIMIT] bounced; a connection lost after the whole message
 * went out is in-doubt (the server may have it), and look() settles it.
 */
#include "driver_imap.h"
#include "metrics.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_MAX_LEN 512

struct imap_driver {
	struct driver base;		/* first: (struct driver *) casts */
	struct imap_client_settings s;	/* strings owned (copies) */
	char *user;			/* owned template */
	char *mailbox;			/* owned template */
	char *password;			/* owned, cleansed on free */
	bool create;
	bool per_rcpt;			/* user has a %: a login each */
	char peer[300];			/* "host:port" */
	struct imap_client *c;		/* owned */
	struct buf hdr;			/* the header line of a copy */
	char err[DRIVER_REPLY_LEN];	/* look()'s *error_r */
};

/* Logged in as user on a connection? Else (re)connect. 0; -1 with
 * *error_r when the server cannot be reached or refused the login
 * (*auth_r). */
static int
login_as(struct imap_driver *d, const char *user, bool *auth_r,
	 const char **error_r)
{
	const char *cur = imap_client_user(d->c);

	*auth_r = false;
	if (cur != NULL && strcmp(cur, user) == 0)
		return 0;
	if (imap_client_open(d->c, user, d->password ? d->password : "",
			     auth_r, error_r) < 0)
		return -1;
	metrics_reconnect(d->base.ops->name);
	return 0;
}

/* The login user and mailbox of recipient addr; -1 if too long. */
static int
target(struct imap_driver *d, const char *addr, char *user, char *mbox)
{
	return driver_expand(d->user, addr, user, NAME_MAX_LEN) < 0 ||
	       driver_expand(d->mailbox, addr, mbox, NAME_MAX_LEN) < 0 ?
	       -1 : 0;
}

/* Map a tagged reply to APPEND onto r. 1: the mailbox is missing and
 * may be created (try again after CREATE), else 0. */
static int
map_reply(struct imap_driver *d, struct driver_rcpt *r, const char *mbox,
	  const struct imap_resp *x, uint32_t uid, bool may_create)
{
	const char *code = x->code;

	if (x->status == IMAP_OK) {
		r->result = CLAIM_DELIVERED;
		if (uid != 0)
			driver_reply(r->reply,
				     "%s: appended to %s (uid %u): %s",
				     d->peer, mbox, uid, x->text);
		else
			driver_reply(r->reply,
				     "%s: appended to %s: %s", d->peer,
				     mbox, x->text);
		return 0;
	}
	if (strcasecmp(code, "TRYCREATE") == 0 ||
	    strcasecmp(code, "NONEXISTENT") == 0) {
		if (may_create && d->create)
			return 1;
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.1.1 %s: no mailbox %s: %s", d->peer,
			     mbox, x->text);
	} else if (strcasecmp(code, "TOOBIG") == 0 ||
		   strcasecmp(code, "LIMIT") == 0) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.3.4 %s: message too big for %s: %s",
			     d->peer, mbox, x->text);
	} else if (strcasecmp(code, "OVERQUOTA") == 0) {
		r->result = CLAIM_TEMPFAIL;
		driver_reply(r->reply, "4.2.2 %s: %s over quota: %s", d->peer,
			     mbox, x->text);
	} else {
		r->result = CLAIM_TEMPFAIL;
		driver_reply(r->reply,
			     "4.3.0 %s: APPEND to %s refused: %s%s%s%s",
			     d->peer, mbox, code[0] ? "[" : "", code,
			     code[0] ? "] " : "", x->text);
	}
	return 0;
}

/* One APPEND, reconnecting once if the kept connection had died while
 * idle. Returns what imap_client_append() did, or DRIVER_UNAVAILABLE
 * (r->reply says why) when no connection could be had. */
static int
append(struct imap_driver *d, const struct driver_msg *m,
       struct driver_rcpt *r, const char *user, const char *mbox,
       struct imap_resp *x, uint32_t *uid, enum imap_stage *stage,
       const char **err)
{
	bool auth;
	int rc = -2;

	for (int tries = 0; tries < 2 && rc == -2; tries++) {
		if (login_as(d, user, &auth, err) < 0) {
			driver_reply(r->reply, "4.4.1 %s: %s", d->peer, *err);
			/* One recipient's login refused: defer it. The one
			 * login of a fixed user refused: the server is
			 * unusable for everyone, as when it is down. */
			return auth && d->per_rcpt ? -3 : DRIVER_UNAVAILABLE;
		}
		rc = imap_client_append(d->c, mbox, d->hdr.data, d->hdr.len,
					m->body, m->body_len, x, uid, stage,
					err);
		if (rc == -2)
			log_debug("%s: %s; reconnecting", d->peer, *err);
	}
	return rc;
}

/* Deliver to one recipient: 0 (r filled in) or DRIVER_UNAVAILABLE. */
static int
deliver_one(struct driver *base, const struct driver_msg *m,
	    struct driver_rcpt *r)
{
	struct imap_driver *d = (struct imap_driver *)base;
	char user[NAME_MAX_LEN], mbox[NAME_MAX_LEN];
	struct imap_resp x;
	enum imap_stage stage;
	const char *err;
	uint32_t uid;
	int rc;

	if (target(d, r->addr, user, mbox) < 0) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply,
			     "5.1.3 %s: mailbox or user name too long",
			     d->peer);
		return 0;
	}
	buf_reset(&d->hdr);
	driver_delivery_header(&d->hdr, m, r);
	for (int created = 0;; created++) {
		rc = append(d, m, r, user, mbox, &x, &uid, &stage, &err);
		if (rc != 0 ||
		    map_reply(d, r, mbox, &x, uid, created == 0) == 0)
			break;
		if (imap_client_create(d->c, mbox, &x, &err) < 0) {
			r->result = CLAIM_TEMPFAIL;	/* closed */
			driver_reply(r->reply, "4.4.2 %s: CREATE %s: %s",
				     d->peer, mbox, err);
			break;
		}
		log_info("%s: created mailbox %s (%s)", d->peer, mbox, x.text);
	}
	if (rc == DRIVER_UNAVAILABLE)
		return rc;
	if (rc == -3) {		/* login refused: per recipient */
		r->result = CLAIM_TEMPFAIL;
	} else if (rc == -2 || (rc == -1 && stage == IMAP_STAGE_NONE &&
				imap_client_cancelled(d->c))) {
		driver_reply(r->reply, "4.4.2 %s: %s", d->peer, err);
		return DRIVER_UNAVAILABLE;
	} else if (rc == -1 && stage == IMAP_STAGE_SENT) {
		r->result = CLAIM_UNKNOWN;
		driver_reply(r->reply, "4.4.2 %s: connection lost after the "
			     "message went out, the server may have it: %s",
			     d->peer, err);
	} else if (rc == -1) {
		r->result = CLAIM_TEMPFAIL;
		driver_reply(r->reply, "4.4.2 %s: %s", d->peer, err);
	}
	return 0;
}

static int
imap_deliver(struct driver *base, const struct driver_msg *m,
	     struct driver_rcpt *r, size_t n)
{
	return driver_deliver_each(base, m, r, n, deliver_one);
}

static int
imap_look(struct driver *base, const struct driver_msg *m,
	  const struct driver_rcpt *r, const char **error_r)
{
	struct imap_driver *d = (struct imap_driver *)base;
	char user[NAME_MAX_LEN], mbox[NAME_MAX_LEN], id[DRIVER_DELIVERY_ID_LEN];
	const char *err;
	uint32_t uid;
	bool auth, reused;
	int rc = -1;

	*error_r = d->err;
	if (target(d, r->addr, user, mbox) < 0) {
		driver_reply(d->err, "%s: mailbox or user name too long",
			     d->peer);
		return -1;
	}
	driver_delivery_id(m, r, id);
	for (int tries = 0; tries < 2; tries++) {
		reused = imap_client_user(d->c) != NULL;
		if (login_as(d, user, &auth, &err) < 0)
			break;
		rc = imap_client_search_header(d->c, mbox,
					       DRIVER_DELIVERY_HEADER, id,
					       &uid, &err);
		/* A kept connection may have died while idle: once more. */
		if (rc >= 0 || !reused || imap_client_timed_out(d->c) ||
		    imap_client_user(d->c) != NULL)
			break;
	}
	if (rc < 0)
		driver_reply(d->err, "%s: %s", d->peer, err);
	else if (rc == 1)
		log_debug("%s: %s found in %s (uid %u)", d->peer, id, mbox,
			  uid);
	return rc;
}

static void
imap_free(struct driver **dp)
{
	struct imap_driver *d = (struct imap_driver *)*dp;

	*dp = NULL;
	if (d == NULL)
		return;
	imap_client_free(&d->c);
	free((char *)d->s.host);
	free((char *)d->s.port);
	free((char *)d->s.tls_ca_file);
	free(d->user);
	free(d->mailbox);
	driver_password_free(&d->password);
	buf_free(&d->hdr);
	free(d);
}

static const struct driver_ops imap_ops = {
	.name = "imap",
	.can_look = true,
	.deliver_looks = false,
	.deliver = imap_deliver,
	.look = imap_look,
	.free = imap_free,
};

struct driver *
driver_imap_new(const struct driver_imap_opts *o, const char **error_r)
{
	struct imap_driver *d = xcalloc(1, sizeof(*d));

	d->base.ops = &imap_ops;
	d->s = o->s;
	d->s.host = xstrdup(o->s.host);
	d->s.port = xstrdup(o->s.port);
	d->s.tls_ca_file = o->s.tls_ca_file ? xstrdup(o->s.tls_ca_file) :
			   NULL;
	d->user = xstrdup(o->user);
	d->per_rcpt = strchr(o->user, '%') != NULL;
	d->mailbox = xstrdup(o->mailbox);
	d->create = o->create_mailbox;
	buf_init(&d->hdr);
	snprintf(d->peer, sizeof(d->peer), "%s:%s", d->s.host, d->s.port);
	d->c = imap_client_new(&d->s);
	if (o->password_file != NULL) {
		d->password = driver_read_password("password_file",
						   o->password_file, error_r);
		if (d->password == NULL) {
			struct driver *b = &d->base;

			imap_free(&b);
			return NULL;
		}
	}
	return &d->base;
}
