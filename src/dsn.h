/*
 * dsn.h - build RFC 3464 delivery status notifications (bounces).
 *
 * Pure text work: no I/O, no store. The worker builds a report for the
 * recipients of one message that bounced and sends it to the message's
 * envelope sender through the [bounce] relay. Any thread.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include "lib/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* What the report is about. Every pointer is borrowed for the call. */
struct dsn_msg {
	const char *reporting_mta;	/* our host name */
	const char *sender;		/* the envelope sender: the To: */
	uint64_t qid;			/* names the report (boundary, id) */
	time_t arrival;
	time_t now;
	const void *headers;		/* the original header section */
	size_t headers_len;		/* 0: no headers part */
};

/* One recipient that failed. */
struct dsn_rcpt {
	const char *addr;
	const char *reply;	/* the foreign reply or our reason */
};

/* Append to out the whole DSN message (header and body, CRLF line
 * ends): multipart/report with a text/plain part, a
 * message/delivery-status part with one block per recipient (Action:
 * failed, Status: the reply's enhanced code if it has a 5.x.x one, 5.4.7
 * for an expired 4.x.x, else 5.0.0; Diagnostic-Code from the reply) and
 * the original headers as text/rfc822-headers. */
void
dsn_build(struct buf *out, const struct dsn_msg *m,
	  const struct dsn_rcpt *r, size_t n);

/* The enhanced status code for a failed recipient with this reply, as
 * used in dsn_build(), into st (room for 16). Returns st. */
const char *
dsn_status(const char *reply, char st[16]);

#endif
