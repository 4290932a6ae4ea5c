/*
 * driver.c - what several drivers share (see driver.h).
 * Threads: any; no state.
 */
#include "driver.h"
#include "lib/buf.h"
#include "lib/log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
driver_io_fail(struct driver_rcpt *r, const char *driver, const char *what,
	       const char *path, int err)
{
	char buf[128];
	/* GNU strerror_r (_GNU_SOURCE): may return a static string. */
	const char *s = strerror_r(err, buf, sizeof(buf));

	/* RFC 3463: a full file system is "mail system full", a user's
	 * quota "mailbox full"; both are temporary. */
	const char *code = err == ENOSPC ? "4.3.1" : err == EDQUOT ? "4.2.2" :
			   "4.3.0";

	r->result = CLAIM_TEMPFAIL;
	snprintf(r->reply, sizeof(r->reply), "%s %s %s failed: %s", code,
		 driver, what, s);
	log_warn("%s: %s %s: %s", driver, what, path, s);
}

int
driver_expand(const char *t, const char *addr, char *out, size_t len)
{
	const char *at = strrchr(addr, '@');
	size_t ll = at != NULL ? (size_t)(at - addr) : strlen(addr), o = 0;
	const char *add;
	size_t al;

	for (; *t != '\0'; t++) {
		add = t;
		al = 1;
		if (*t == '%' && t[1] != '\0') {
			switch (*++t) {
			case 'u':
				add = addr;
				al = strlen(addr);
				break;
			case 'l':
				add = addr;
				al = ll;
				break;
			case 'd':
				add = at != NULL ? at + 1 : "";
				al = strlen(add);
				break;
			default:	/* %% and unknown: the character */
				add = t;
				break;
			}
		}
		if (o + al >= len)
			return -1;
		memcpy(out + o, add, al);
		o += al;
	}
	out[o] = '\0';
	return 0;
}

void
driver_delivery_id(const struct driver_msg *m, const struct driver_rcpt *r,
		   char id[DRIVER_DELIVERY_ID_LEN])
{
	snprintf(id, DRIVER_DELIVERY_ID_LEN, "<%016" PRIX64 ".%016" PRIX64
		 ".%" PRIu32 ">", m->store_id, m->qid, r->idx);
}

void
driver_delivery_header(struct buf *b, const struct driver_msg *m,
		       const struct driver_rcpt *r)
{
	char id[DRIVER_DELIVERY_ID_LEN];

	driver_delivery_id(m, r, id);
	buf_printf(b, "%s: %s\r\n", DRIVER_DELIVERY_HEADER, id);
}

int
driver_deliver_each(struct driver *d, const struct driver_msg *m,
		    struct driver_rcpt *r, size_t n,
		    int (*one)(struct driver *d, const struct driver_msg *m,
			       struct driver_rcpt *r))
{
	unsigned char sha[32];

	if (d == NULL || m == NULL || r == NULL || n == 0)
		return -1;
	SHA256(m->body, m->body_len, sha);
	for (size_t i = 0; i < n; i++) {
		if (one(d, m, &r[i]) == DRIVER_UNAVAILABLE)
			return driver_down_at(r, i, n);
		if (r[i].result == CLAIM_DELIVERED ||
		    r[i].result == CLAIM_UNKNOWN)
			memcpy(r[i].sha, sha, 32);
	}
	return 0;
}

void
driver_password_free(char **pw)
{
	char *p = *pw;

	*pw = NULL;
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, strlen(p));
	free(p);
}

char *
driver_read_password(const char *key, const char *path, const char **error_r)
{
	static _Thread_local char err[512];
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *fp = fopen(path, "re");

	if (fp == NULL) {
		snprintf(err, sizeof(err), "%s %s: %s", key, path,
			 strerror(errno));
		*error_r = err;
		return NULL;
	}
	len = getline(&line, &cap, fp);
	fclose(fp);
	if (len < 0) {
		free(line);
		snprintf(err, sizeof(err), "%s %s: empty", key, path);
		*error_r = err;
		return NULL;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		line[--len] = '\0';
	return line;
}

int
driver_down_at(struct driver_rcpt *r, size_t i, size_t n)
{
	for (size_t j = i + 1; j < n; j++) {
		r[j].result = CLAIM_TEMPFAIL;
		memcpy(r[j].reply, r[i].reply, DRIVER_REPLY_LEN);
	}
	if (i == 0)
		return DRIVER_UNAVAILABLE;
	r[i].result = CLAIM_TEMPFAIL;
	return 0;
}

void
driver_reply(char *dst, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, DRIVER_REPLY_LEN, fmt, ap);
	va_end(ap);
}
