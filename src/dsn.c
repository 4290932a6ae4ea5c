/*
 * dsn.c - RFC 3464 delivery status notifications.
 *
 * Owns:    nothing beyond the call; the caller's buf receives the text.
 * Threads: any.
 *
 * Only "failed" reports are made: postern sends no delay or success
 * notifications. The reply texts come from foreign peers, so they are
 * cut at the first CR or LF before they go into a header field.
 */
#include "dsn.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Length of an enhanced status code "c.sss.ddd" at p, or 0. */
static size_t
esc_len(const char *p)
{
	size_t i = 1, d;

	if (*p != '2' && *p != '4' && *p != '5')
		return 0;
	for (int part = 0; part < 2; part++) {
		if (p[i++] != '.')
			return 0;
		for (d = 0; d < 3 && isdigit((unsigned char)p[i]); d++)
			i++;
		if (d == 0)
			return 0;
	}
	return isdigit((unsigned char)p[i]) || p[i] == '.' ? 0 : i;
}

const char *
dsn_status(const char *reply, char st[16])
{
	const char *p;
	size_t l = 0;

	for (p = reply; *p != '\0'; p++)
		if ((p == reply || (!isdigit((unsigned char)p[-1]) &&
				    p[-1] != '.')) &&
		    (l = esc_len(p)) > 0)
			break;
	if (l > 0 && *p == '5')
		snprintf(st, 16, "%.*s", (int)l, p);
	else if (l > 0 && *p == '4')
		snprintf(st, 16, "5.4.7");	/* gave up on a 4xx: expired */
	else
		snprintf(st, 16, "5.0.0");
	return st;
}

/* Append s up to its first CR or LF. */
static void
put_line(struct buf *out, const char *s)
{
	buf_append(out, s, strcspn(s, "\r\n"));
}

/* "Diagnostic-Code: smtp; 550 ..." when the reply quotes a peer (the
 * drivers write "<peer> said: <reply>"), else an X- type. */
static void
put_diagnostic(struct buf *out, const char *reply)
{
	const char *said = strstr(reply, " said: ");

	if (said != NULL) {
		buf_append_str(out, "Diagnostic-Code: smtp; ");
		put_line(out, said + 7);
	} else {
		buf_append_str(out, "Diagnostic-Code: X-postern; ");
		put_line(out, reply);
	}
	buf_append_str(out, "\r\n");
}

static void
put_headers(struct buf *out, const struct dsn_msg *m, const char *boundary)
{
	char qid[17];

	snprintf(qid, sizeof(qid), "%016" PRIX64, m->qid);
	buf_append_str(out, "From: Mail Delivery System <MAILER-DAEMON@");
	put_line(out, m->reporting_mta);
	buf_append_str(out, ">\r\nTo: <");
	put_line(out, m->sender);
	buf_append_str(out, ">\r\nSubject: Undelivered Mail Returned to "
		       "Sender\r\nDate: ");
	buf_put_date(out, m->now);
	buf_printf(out, "\r\nMessage-ID: <%s.%lld.dsn@", qid,
		   (long long)m->now);
	put_line(out, m->reporting_mta);
	buf_printf(out, ">\r\nAuto-Submitted: auto-replied\r\n"
		   "MIME-Version: 1.0\r\n"
		   "Content-Type: multipart/report; "
		   "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n"
		   "\r\nThis is a MIME-encapsulated message.\r\n\r\n", boundary);
}

static void
put_text(struct buf *out, const struct dsn_msg *m, const struct dsn_rcpt *r,
	 size_t n, const char *boundary)
{
	buf_printf(out, "--%s\r\nContent-Description: Notification\r\n"
		   "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
		   "This is the mail system at host ", boundary);
	put_line(out, m->reporting_mta);
	buf_append_str(out, ".\r\n\r\nYour message could not be delivered to "
		       "the following recipient(s); this is a permanent "
		       "error.\r\n\r\n");
	for (size_t i = 0; i < n; i++) {
		buf_append_str(out, "<");
		put_line(out, r[i].addr);
		buf_append_str(out, ">: ");
		put_line(out, r[i].reply);
		buf_append_str(out, "\r\n");
	}
	buf_append_str(out, "\r\n");
}

static void
put_status(struct buf *out, const struct dsn_msg *m,
	   const struct dsn_rcpt *r, size_t n, const char *boundary)
{
	char st[16];

	buf_printf(out, "--%s\r\nContent-Description: Delivery report\r\n"
		   "Content-Type: message/delivery-status\r\n\r\n"
		   "Reporting-MTA: dns; ", boundary);
	put_line(out, m->reporting_mta);
	buf_printf(out, "\r\nX-Postern-Queue-ID: %016" PRIX64 "\r\n"
		   "Arrival-Date: ", m->qid);
	buf_put_date(out, m->arrival);
	buf_append_str(out, "\r\n");
	for (size_t i = 0; i < n; i++) {
		buf_append_str(out, "\r\nFinal-Recipient: rfc822; ");
		put_line(out, r[i].addr);
		buf_printf(out, "\r\nAction: failed\r\nStatus: %s\r\n",
			   dsn_status(r[i].reply, st));
		put_diagnostic(out, r[i].reply);
	}
	buf_append_str(out, "\r\n");
}

void
dsn_build(struct buf *out, const struct dsn_msg *m,
	  const struct dsn_rcpt *r, size_t n)
{
	char boundary[64];

	snprintf(boundary, sizeof(boundary), "%016" PRIX64 ".%lld/postern",
		 m->qid, (long long)m->now);
	put_headers(out, m, boundary);
	put_text(out, m, r, n, boundary);
	put_status(out, m, r, n, boundary);
	if (m->headers_len > 0) {
		buf_printf(out, "--%s\r\nContent-Description: Undelivered "
			   "Message Headers\r\nContent-Type: "
			   "text/rfc822-headers\r\n\r\n", boundary);
		buf_append(out, m->headers, m->headers_len);
		if (m->headers_len < 2 || memcmp((const char *)m->headers +
		    m->headers_len - 2, "\r\n", 2) != 0)
			buf_append_str(out, "\r\n");
		buf_append_str(out, "\r\n");
	}
	buf_printf(out, "--%s--\r\n", boundary);
}
