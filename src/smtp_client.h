/*
 * smtp_client.h - a blocking SMTP/LMTP client for the smtp and lmtp
 * drivers (and, later, the DSN sender).
 *
 * One struct smtp_client is one connection to one next hop. All I/O is
 * blocking from the caller's point of view, but every wait is a poll()
 * with a deadline, so a peer that accepts TCP and then says nothing costs
 * one timeout, never a hung thread.
 *
 * Threads: an object is used by one thread at a time (a worker's driver
 * owns it). Objects share nothing but the process-wide OpenSSL state.
 */
#ifndef POSTERN_SMTP_CLIENT_H
#define POSTERN_SMTP_CLIENT_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_TEXT 512

enum smtp_tls {
	SMTP_TLS_NONE,		/* never STARTTLS */
	SMTP_TLS_MAY,		/* STARTTLS when offered, no verification */
	SMTP_TLS_ENCRYPT,	/* STARTTLS or no delivery */
};

/* Where to connect and how to talk. Every string is borrowed and must
 * outlive the client; NULL means "not set". */
struct smtp_client_settings {
	bool lmtp;		/* LHLO and one reply per recipient */
	const char *host;	/* host name / address, or a socket path */
	const char *port;	/* NULL: host is a Unix socket path */
	const char *helo;	/* our name in EHLO/LHLO */
	enum smtp_tls tls;
	const char *tls_ca_file;	/* NULL: the system's CAs */
	bool tls_verify;	/* encrypt: verify chain and peer name */
	const char *auth_user;	/* NULL: no AUTH */
	const char *auth_password;
	bool auth_plaintext;	/* allow AUTH without TLS */
	/* Borrowed; -1: none. Once readable (posternd is stopping), every
	 * wait ends at once with an error, except the wait for the reply
	 * to the final dot, which RFC 5321 says must not be cut short. */
	int cancel_fd;
	/* RFC 5321 4.5.3.2 timeouts, milliseconds. */
	unsigned connect_ms, greeting_ms, mail_ms, rcpt_ms, data_ms, block_ms,
		 dot_ms;
};

/* One reply: code 0 means "no reply" (never received). text is the reply
 * lines after the code, joined with "; ", starting with the enhanced
 * status code when the peer sent one. */
struct smtp_reply {
	int code;
	char text[SMTP_REPLY_TEXT];
};

/* What the client knows of a transaction that did not complete. */
enum smtp_stage {
	SMTP_STAGE_NONE,	/* nothing of this transaction was sent */
	SMTP_STAGE_ENVELOPE,	/* MAIL/RCPT/DATA/body in progress */
	SMTP_STAGE_DOT,		/* the final dot went out: reply pending */
};

struct smtp_client;

/* A client for s (borrowed, must outlive it), not yet connected. Owned by
 * the caller, freed with smtp_client_free(). Never NULL. */
struct smtp_client *
smtp_client_new(const struct smtp_client_settings *s);

/* Quit politely (QUIT, short wait) if connected, close, free *c, set *c to
 * NULL. NULL or already freed: nothing. */
void
smtp_client_free(struct smtp_client **c);

/* Connect, read the greeting, EHLO/LHLO, STARTTLS and AUTH as configured.
 * Returns 0 when ready for a transaction, -1 if the peer is unavailable
 * (refused, timeout, 4xx/5xx greeting, TLS or AUTH failure): *error_r
 * (owned by c, valid until the next call on c) says why and the
 * connection is closed. */
int
smtp_client_open(struct smtp_client *c, const char **error_r);

/* True while a connection is open. */
bool
smtp_client_connected(const struct smtp_client *c);

/* True if the last failed smtp_client_send() failed by a timeout (a hung
 * peer) rather than a closed or reset connection. */
bool
smtp_client_timed_out(const struct smtp_client *c);

/* True if the last failed call was cut short by cancel_fd. */
bool
smtp_client_cancelled(const struct smtp_client *c);

/* Close the connection without QUIT. */
void
smtp_client_close(struct smtp_client *c);

/* One transaction: sender ("" = null sender) to the n rcpts, body already
 * with CRLF line ends (dot-stuffed here). RSET is sent first when the
 * connection carried an earlier transaction. replies[i] gets recipient i's
 * deciding reply: its RCPT reply if that was not 2xx, else the reply to
 * the final dot (LMTP: its own). A sender or recipient that fails
 * smtp_path_ok() is never sent: that recipient (every one, for the
 * sender) gets a local 553 5.1.3 (5.1.7). Everything is borrowed.
 * Returns
 *   0   every replies[i].code is set;
 *  -1   the connection broke or timed out: *stage_r says how far it got,
 *       replies[i].code is 0 where no deciding reply came; closed;
 *  -2   the connection was dead before anything of this transaction was
 *       accepted (idle peer closed it): nothing handed over; closed.
 * *error_r (owned by c) describes -1 and -2. */
int
smtp_client_send(struct smtp_client *c, const char *sender,
		 const char *const *rcpts, size_t n, const void *body,
		 size_t len, struct smtp_reply *replies,
		 enum smtp_stage *stage_r, const char **error_r);

/* Feed one reply line (without CRLF) into r; r->code 0 starts a reply.
 * Returns 1 if it was the last line of the reply, 0 if more follow, -1 if
 * the line is not "DDD[ -]text" or its code differs from earlier lines.
 * Pure: for the unit tests and the client itself. */
int
smtp_reply_line(struct smtp_reply *r, const char *line, size_t len);

/* Append body to out as DATA content: a '.' that starts a line doubled, a
 * CR or LF that is not part of a CRLF replaced by a space, a CRLF added
 * if body does not end in one, then ".\r\n". Pure. */
void
smtp_dot_stuff(struct buf *out, const void *body, size_t len);

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets. */
#define SMTP_PATH_MAX 256

/* 0 if addr can go between the angle brackets of MAIL FROM or RCPT TO:
 * printable ASCII or space, no '<' or '>', at most SMTP_PATH_MAX - 2
 * octets; else -1 (RELIABILITY.md H8: no CR, LF or NUL ever reaches a
 * command line). Pure. */
int
smtp_path_ok(const char *addr);

/* Append "MAIL FROM:<sender>[ SIZE=size]\r\n" (no SIZE when size is 0),
 * or return -1 and append nothing if smtp_path_ok(sender) fails. Pure. */
int
smtp_mail_line(struct buf *out, const char *sender, size_t size);

/* Append "RCPT TO:<rcpt>\r\n", or return -1 and append nothing. Pure. */
int
smtp_rcpt_line(struct buf *out, const char *rcpt);

#endif
