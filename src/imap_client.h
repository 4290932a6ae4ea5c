/*
 * imap_client.h - a small blocking IMAP4rev1 client for the imap driver
 * and the smtp/lmtp drivers' probe: log in, APPEND, and find a message
 * again by a header (UID SEARCH HEADER).
 *
 * One struct imap_client is one connection, logged in as one user. Every
 * wait is a poll() with a deadline (lib/conn), so a server that accepts
 * TCP and then says nothing costs one timeout, never a hung thread.
 *
 * Threads: an object is used by one thread at a time (a worker's driver
 * owns it). Objects share nothing but the process-wide OpenSSL state.
 */
#ifndef POSTERN_IMAP_CLIENT_H
#define POSTERN_IMAP_CLIENT_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_TEXT_LEN 256

enum imap_tls {
	IMAP_TLS_NONE,		/* never STARTTLS */
	IMAP_TLS_MAY,		/* STARTTLS when offered, unverified */
	IMAP_TLS_ENCRYPT,	/* STARTTLS or no login */
	IMAP_TLS_IMPLICIT,	/* TLS from the first byte (imaps, 993) */
};

/* Where to connect and how. Strings are borrowed and must outlive the
 * client; NULL means "not set". */
struct imap_client_settings {
	const char *host;
	const char *port;
	enum imap_tls tls;
	const char *tls_ca_file;	/* NULL: the system's CAs */
	bool tls_verify;		/* encrypt/implicit: chain and name */
	bool auth_plaintext;		/* allow a password without TLS */
	int cancel_fd;			/* borrowed; -1: none (conn.h) */
	unsigned connect_ms;		/* connect, greeting, TLS */
	unsigned command_ms;		/* any command's reply */
	unsigned append_ms;		/* a message out, APPEND's reply */
};

enum imap_status {
	IMAP_OK,
	IMAP_NO,
	IMAP_BAD,
	IMAP_BYE,
	IMAP_PREAUTH,
};

/* A status response: "OK [code] text". code is the response code
 * without brackets ("TRYCREATE", "APPENDUID 38505 3955"), "" if none. */
struct imap_resp {
	enum imap_status status;
	char code[IMAP_TEXT_LEN];
	char text[IMAP_TEXT_LEN];
};

/* How far an APPEND got when the connection broke. */
enum imap_stage {
	IMAP_STAGE_NONE,	/* the message was not completely sent */
	IMAP_STAGE_SENT,	/* the whole literal went out: reply pending */
};

struct imap_client;

/* A client for s (borrowed), not connected. Owned by the caller, freed
 * with imap_client_free(). Never NULL. */
struct imap_client *
imap_client_new(const struct imap_client_settings *s);

/* LOGOUT (short wait) if connected, close, free *c, set *c to NULL. */
void
imap_client_free(struct imap_client **c);

/* Connect, greeting, CAPABILITY, STARTTLS as configured, log in as user
 * (AUTHENTICATE PLAIN when offered, else LOGIN). user and password are
 * borrowed for the call. 0 when logged in; -1 with *error_r (owned by c,
 * valid until the next call on c) and the connection closed. *auth_r is
 * set when the server refused the credentials (rather than being
 * unreachable). */
int
imap_client_open(struct imap_client *c, const char *user,
		 const char *password, bool *auth_r, const char **error_r);

/* The user logged in as (owned by c), or NULL when not connected. */
const char *
imap_client_user(const struct imap_client *c);

/* True if the last failure was a timeout / was cut short by cancel_fd. */
bool
imap_client_timed_out(const struct imap_client *c);
bool
imap_client_cancelled(const struct imap_client *c);

/* Close without LOGOUT. */
void
imap_client_close(struct imap_client *c);

/* APPEND hdr + body (CRLF line ends, borrowed) to mailbox as one
 * message; the literal is sent with LITERAL+ when offered, else after the
 * server's "+". Returns
 *   0   *r is the tagged reply; *uid_r its APPENDUID uid (0: none);
 *  -1   the connection broke or timed out; *stage_r says whether the
 *       whole message went out (then the server may have stored it);
 *       closed;
 *  -2   the connection was dead before the server took any part of the
 *       command (an idle connection the server closed); closed.
 * *error_r (owned by c) describes -1 and -2. */
int
imap_client_append(struct imap_client *c, const char *mailbox,
		   const void *hdr, size_t hlen, const void *body,
		   size_t blen, struct imap_resp *r, uint32_t *uid_r,
		   enum imap_stage *stage_r, const char **error_r);

/* CREATE mailbox; 0 with *r the tagged reply, -1 broken (closed). */
int
imap_client_create(struct imap_client *c, const char *mailbox,
		   struct imap_resp *r, const char **error_r);

/* EXAMINE mailbox afresh, then UID SEARCH HEADER field "value". 1 found
 * (*uid_r the first UID), 0 not found (also: no such mailbox), -1 cannot
 * tell (*error_r; a broken connection is closed). */
int
imap_client_search_header(struct imap_client *c, const char *mailbox,
			  const char *field, const char *value,
			  uint32_t *uid_r, const char **error_r);

/* --- pure helpers, for the client and the unit tests ------------------ */

/* Parse "OK [code] text" (also NO, BAD, BYE, PREAUTH) from p[0..len),
 * the part of a response line after the tag or "* ". 0, or -1 if it is
 * not a status response. */
int
imap_parse_status(const char *p, size_t len, struct imap_resp *r);

/* If the line p[0..len) (without CRLF) ends in a literal announcement
 * "{n}" or "{n+}", 1 and *n_r; else 0. */
int
imap_literal_len(const char *p, size_t len, size_t *n_r);

/* Append s to b as an IMAP quoted string. -1 (nothing appended) if s
 * holds a byte a quoted string cannot carry (CR, LF, NUL, 8-bit). */
int
imap_quote(struct buf *b, const char *s);

/* A parsed probe URL imap[s]://USER@HOST[:PORT]/MAILBOX. No %-decoding:
 * USER and MAILBOX are kept as written (they may be templates). Strings
 * owned by the struct. */
struct imap_url {
	char *user;
	char *host;		/* without [] */
	char *port;		/* default 143, or 993 for imaps */
	char *mailbox;
	bool implicit;		/* imaps: TLS from the start */
};

/* Parse url into *u (NULL: only check it). 0, or -1 (nothing to free). */
int
imap_url_parse(const char *url, struct imap_url *u, const char **error_r);

/* Free the strings of u and clear it. */
void
imap_url_free(struct imap_url *u);

/* The UID of "APPENDUID <validity> <uid>" in code, 0 if none. */
uint32_t
imap_appenduid(const char *code);

#endif
