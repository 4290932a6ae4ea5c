/*
 * driver.h - the interface every foreign-system driver implements.
 *
 * A driver hands one message to a list of recipients and reports a result
 * per recipient. A driver that can look at the foreign side (can_look) also
 * answers "is this (message, recipient) already there?", which is how an
 * in-doubt entry is settled after a crash without sending it twice.
 *
 * Threads: one driver object per worker thread; an object is never shared
 * between threads. Different objects may run concurrently, also against
 * the same foreign system.
 */
#ifndef POSTERN_DRIVER_H
#define POSTERN_DRIVER_H

#include "claim_result.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRIVER_REPLY_LEN 256

/* deliver(): the foreign side is down, nothing was handed over. */
#define DRIVER_UNAVAILABLE 1

/* One message, borrowed for the duration of a deliver() or look() call. */
struct driver_msg {
	uint64_t store_id;	/* random id of the store: part of delivery
				 * names, so a recreated store never
				 * collides with an old one */
	uint64_t qid;		/* queue id */
	const char *sender;	/* "" = null sender */
	const char *msgid;
	const void *body;	/* RFC 5322 message, CRLF line ends */
	size_t body_len;
};

/* One recipient of a driver_msg. The caller owns the array; addr is
 * borrowed for the call. deliver() fills in result, reply and sha. */
struct driver_rcpt {
	uint32_t idx;		/* recipient index within the message */
	const char *addr;
	enum claim_result result;
	/* Human-readable foreign reply or error, NUL-terminated, e.g.
	 * "delivered to maildir" or "4.3.0 maildir write failed: ..." */
	char reply[DRIVER_REPLY_LEN];
	unsigned char sha[32];	/* SHA-256 of the bytes handed over */
	/* Microseconds deliver() spent opening a connection for this
	 * recipient (connect, greeting, EHLO, TLS), 0 if it reused one or
	 * has none: the c of the log line's delays=a/b/c/d. The caller
	 * zeroes it. */
	uint64_t connect_us;
};

struct buf;
struct driver;

struct driver_ops {
	const char *name;
	bool can_look;
	/* deliver() itself finds an earlier copy of its own and does not
	 * hand the message over again (maildir, ccmail), so after a crash
	 * an entry is simply delivered again. Without it, a driver that
	 * can look is asked look() for each in-doubt entry first, and
	 * entries are marked "being sent" before deliver() so that a crash
	 * leaves them in-doubt. */
	bool deliver_looks;
	/* Deliver m to the n recipients in r and fill in each r[i].result,
	 * reply and sha. Returns 0 (the results are in r), -1 only for
	 * misuse (NULL arguments; then r is not touched), or
	 * DRIVER_UNAVAILABLE: the foreign side cannot be reached at all
	 * (connection refused, timeout, 421 greeting) and nothing was
	 * handed over; r[i].reply says why, and the caller puts the entries
	 * back without counting an attempt and waits before trying again. */
	int (*deliver)(struct driver *d, const struct driver_msg *m,
		       struct driver_rcpt *r, size_t n);
	/* Is (m, r) already at the foreign side? 1 yes, 0 no, -1 cannot
	 * tell: *error_r says why; it is owned by d and valid until the next
	 * call on d. NULL when !can_look. */
	int (*look)(struct driver *d, const struct driver_msg *m,
		    const struct driver_rcpt *r, const char **error_r);
	/* Free *d and set *d to NULL. */
	void (*free)(struct driver **d);
};

/* Every driver embeds this as its first member. ops is borrowed (static). */
struct driver {
	const struct driver_ops *ops;
};

/* Format a reply text into dst (DRIVER_REPLY_LEN bytes; a long one is
 * cut, which is fine for a log and the ledger). */
void
driver_reply(char *dst, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* For drivers that write files: r is deferred with the reply
 * "4.3.0 <driver> <what> failed: <strerror(err)>" (4.3.1 for ENOSPC,
 * 4.2.2 for EDQUOT), and a warning names the path. */
void
driver_io_fail(struct driver_rcpt *r, const char *driver, const char *what,
	       const char *path, int err);

/* For drivers that hand over one recipient at a time: recipient i of n
 * found the foreign side down (r[i].reply says why). The rest get that
 * reply and CLAIM_TEMPFAIL. Returns DRIVER_UNAVAILABLE if nothing was
 * handed over yet (i == 0); else r[i] is CLAIM_TEMPFAIL too, an ordinary
 * attempt, and 0 (deliver()'s return values). */
int
driver_down_at(struct driver_rcpt *r, size_t i, size_t n);

/* The header that names one delivered copy, and the length of its
 * value "<STOREID.QID.IDX>" (with the angle brackets, so that a search
 * for one id never matches a longer one) plus its NUL. */
#define DRIVER_DELIVERY_HEADER	"X-Postern-Delivery"
#define DRIVER_DELIVERY_ID_LEN	48

/* The delivery id of (m, r) into id: unique per store, message and
 * recipient. */
void
driver_delivery_id(const struct driver_msg *m, const struct driver_rcpt *r,
		   char id[DRIVER_DELIVERY_ID_LEN]);

/* Append the header line "X-Postern-Delivery: <id>" CRLF that starts the
 * copy of (m, r) to b. */
void
driver_delivery_header(struct buf *b, const struct driver_msg *m,
		       const struct driver_rcpt *r);

/* For drivers that hand over one recipient at a time: one(d, m, &r[i])
 * for each recipient in turn, until one returns DRIVER_UNAVAILABLE:
 * then driver_down_at(). one returns 0 (result and reply of r[i]
 * filled in) or DRIVER_UNAVAILABLE. A recipient delivered or in-doubt
 * gets the SHA-256 of m's body (the queued message) as its sha.
 * deliver()'s return values. */
int
driver_deliver_each(struct driver *d, const struct driver_msg *m,
		    struct driver_rcpt *r, size_t n,
		    int (*one)(struct driver *d, const struct driver_msg *m,
			       struct driver_rcpt *r));

/* Expand the recipient template t for the address addr into out (size
 * len): %u is addr, %l its local part (before the last '@'), %d its
 * domain ("" without an '@'), %% a '%'; any other %x is x. -1 if the
 * result does not fit. Pure; any thread. */
int
driver_expand(const char *t, const char *addr, char *out, size_t len);

/* The first line of the file at path (CR/LF cut), owned by the caller
 * (free it with driver_password_free()). NULL on error, with *error_r in a
 * thread-local buffer of this module, valid until the next call on the
 * thread; key names the setting in the message. */
char *
driver_read_password(const char *key, const char *path, const char **error_r);

/* Overwrite the password *pw with zeroes, free it and set *pw to NULL
 * (NULL: nothing). */
void
driver_password_free(char **pw);

/* Shorthands for d->ops->deliver / look. */
static inline int
driver_deliver(struct driver *d, const struct driver_msg *m,
	       struct driver_rcpt *r, size_t n)
{
	return d->ops->deliver(d, m, r, n);
}

static inline int
driver_look(struct driver *d, const struct driver_msg *m,
	    const struct driver_rcpt *r, const char **error_r)
{
	return d->ops->look(d, m, r, error_r);
}

/* Free *d (NULL or already freed: nothing) and set *d to NULL. */
static inline void
driver_free(struct driver **d)
{
	if (d != NULL && *d != NULL)
		(*d)->ops->free(d);
}

#endif
