/*
 * ingress_smtp.h - the ESMTP (RFC 5321) / LMTP (RFC 2033) server dialogue
 * as a pure state machine: bytes in, replies out, no I/O.
 *
 * The loop glue reads from the socket, calls smtp_session_feed() and writes
 * whatever landed in the output buffer. A complete, well-formed message
 * pauses the session until the glue has stored it and called
 * smtp_session_stored(). Threads: the event-loop thread that owns the
 * connection; a session is never shared.
 */
#ifndef POSTERN_INGRESS_SMTP_H
#define POSTERN_INGRESS_SMTP_H

#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SMTP_DEFAULT_MAX_MESSAGE_SIZE	10240000
#define SMTP_DEFAULT_MAX_RECIPIENTS	100
#define SMTP_DEFAULT_MAX_ERRORS		20
#define SMTP_MAX_HEADER_BYTES		(100 * 1024)
#define SMTP_MAX_HEADER_LINES		1000

/* Policy for one listener. Borrowed by every session created with it: it
 * must outlive them. Zero fields take the defaults above. */
struct smtp_limits {
	const char *hostname;	/* greeting, Received, Message-ID */
	bool lmtp;		/* LHLO, one reply per recipient after DATA */
	size_t max_message_size;	/* advertised SIZE; bigger -> 552 */
	size_t max_recipients;	/* more -> 452 4.5.3 for the excess */
	unsigned max_errors;	/* then 421 4.7.0 and close */
	/* 1: accept the recipient; 0: 550 5.7.1 relay access denied. addr
	 * is borrowed for the call. NULL accepts every recipient. */
	int (*rcpt_ok)(void *arg, const char *addr);
	void *rcpt_arg;
	/* At MAIL: 1 the queue has room for this message; 0: it has not
	 * (smaller ones may fit): 452 4.3.1 Insufficient system storage;
	 * -1: the store cannot take any mail now (*why_r says why, e.g.
	 * "store full"; borrowed until the next call): "421 4.3.2
	 * <hostname> Service not available (<why>), closing transmission
	 * channel" and the session closes. size is the SIZE= value or 0.
	 * NULL: always room. */
	int (*storage_ok)(void *arg, size_t size, const char **why_r);
	void *storage_arg;
	/* RFC 2920 / Postfix smtpd_forbid_unauth_pipelining: a command
	 * that must be answered before the client goes on (EHLO, HELO,
	 * LHLO, DATA, NOOP, VRFY), or any command before EHLO/LHLO
	 * advertised PIPELINING, that arrives with more input behind it in
	 * the same smtp_session_feed() call gets 554 5.5.0 and the session
	 * closes (RELIABILITY.md H4). Input split differently is judged
	 * differently here, by design: the daemon feeds what one read
	 * brought. false: off (the unit tests' default). */
	bool forbid_unauth_pipelining;
	/* Clock for the Received date; NULL means time(). For tests. */
	time_t (*now)(void);
	/* RFC 3207: offer STARTTLS (the glue can do the handshake). */
	bool starttls;
	/* MAIL before STARTTLS -> 530 5.7.0 (Postfix tls = encrypt). */
	bool tls_required;
	/* RFC 4954 AUTH PLAIN and LOGIN: NULL offers no AUTH. Returns 1
	 * for good credentials, 0 for bad ones (535 5.7.8), -1 if they
	 * cannot be checked now (454 4.7.0). user and password are
	 * borrowed for the call; the session wipes the password after. */
	int (*auth_check)(void *arg, const char *user, const char *password);
	void *auth_arg;
	/* MAIL before AUTH -> 530 5.7.0 Authentication required. */
	bool auth_required;
	/* Offer AUTH without TLS too (else 538 5.7.11 before TLS). */
	bool auth_plaintext;
};

struct smtp_session;

/* A new session for one connection. lim is borrowed (see above);
 * client_addr and client_name are copied (NULL: "unknown"). The caller
 * owns the session and frees it with smtp_session_free(). */
struct smtp_session *
smtp_session_new(const struct smtp_limits *lim, const char *client_addr,
		 const char *client_name);

/* Free the session, including a message still waiting to be stored, and
 * set *s to NULL. A NULL *s does nothing. */
void
smtp_session_free(struct smtp_session **s);

/* Append "220 <hostname> ESMTP postern" (or LMTP) to out. Call once,
 * before the first smtp_session_feed(): input that arrives before the
 * greeting is an early talker (554 5.5.0, close). */
void
smtp_session_greeting(struct smtp_session *s, struct buf *out);

enum smtp_event {
	SMTP_EV_NONE,		/* all input used; wait for more */
	SMTP_EV_MESSAGE,	/* a message waits: smtp_session_message() */
	SMTP_EV_CLOSE,		/* flush out, then close the connection */
	SMTP_EV_STARTTLS,	/* flush out, then the TLS handshake */
};

/* Consume up to len bytes of client input and append the replies to out.
 * *consumed_r says how many bytes were used:
 * - SMTP_EV_NONE: all of them.
 * - SMTP_EV_STARTTLS: all of them. "220 2.0.0 Ready to start TLS" is in
 *   out; whatever the client sent after the STARTTLS line was plaintext
 *   and has been thrown away (RFC 3207 5, RELIABILITY.md row 18). The
 *   glue writes out, then does the handshake and calls
 *   smtp_session_tls_started(); until then feeding uses nothing.
 * - SMTP_EV_MESSAGE: up to the end of the message (CRLF.CRLF). The session
 *   is paused: the caller keeps the rest and feeds it again after
 *   smtp_session_stored(). Feeding while paused uses nothing (NONE, 0).
 * - SMTP_EV_CLOSE: all of them; whatever follows the closing reply is
 *   ignored, as is anything fed afterwards (CLOSE again, no output). */
enum smtp_event
smtp_session_feed(struct smtp_session *s, const char *data, size_t len,
		  size_t *consumed_r, struct buf *out);

/* The message waiting to be stored. Every pointer is borrowed from the
 * session and valid until smtp_session_stored() or smtp_session_free().
 * body is the final message with CRLF line ends: our Received: header,
 * a generated Message-ID: if it had none, then the client's bytes after
 * dot-unstuffing. msgid is the Message-ID with its angle brackets. */
struct smtp_message {
	const char *sender;		/* "" for the null sender <> */
	const char *const *rcpts;	/* accepted, without duplicates */
	size_t nrcpt;
	const char *msgid;
	const char *body;
	size_t body_len;
	size_t qid_at;		/* body offset of the queue id in our
				   Received: field (STORE_QID_LEN bytes) */
	size_t trace_len;	/* body's first trace_len bytes are ours
				   (Received:, a Message-ID: we made) */
};

/* Fill *m_r with the waiting message. Calling it when no message waits
 * (feed did not return SMTP_EV_MESSAGE) is a broken invariant: panic. */
void
smtp_session_message(struct smtp_session *s, struct smtp_message *m_r);

/* Hand the waiting message's body over without a copy: *body_r, owned
 * by the caller from then on (free()), and its length in *len_r. The
 * session keeps none (a later smtp_session_message() has body NULL).
 * Calling it when no message waits is a broken invariant: panic. */
void
smtp_session_take_body(struct smtp_session *s, char **body_r,
		       size_t *len_r);

/* What storing the message did. */
enum smtp_store_result {
	SMTP_STORE_OK = 0,	/* durable: 250 ... queued as QID */
	SMTP_STORE_TEMPFAIL,	/* write failed: 451 4.3.0 */
	SMTP_STORE_FULL,	/* no space: 452 4.3.1 */
	SMTP_STORE_REOPEN,	/* store must be reopened: 421 4.3.0, close */
};

/* Report the outcome for the waiting message and append the reply (LMTP:
 * one per accepted RCPT command) to out. qid (borrowed, may be NULL on
 * failure) is the queue id quoted in the 250 reply. Ends the transaction
 * and un-pauses the session. Returns SMTP_EV_CLOSE if the connection must
 * close (REOPEN, or the session timed out meanwhile), else SMTP_EV_NONE.
 * Calling it when no message waits is a broken invariant: panic. */
enum smtp_event
smtp_session_stored(struct smtp_session *s, enum smtp_store_result result,
		    const char *qid, struct buf *out);

/* The same, when the resubmission index recognised some recipients:
 * orig_qids has one entry per smtp_message.rcpts, the queue id that
 * recipient was queued as before (not queued again), or NULL for one
 * queued now as qid (which may then be NULL if every entry is non-NULL).
 * A 250 names both: "Ok: already queued as QID (resubmission, not queued
 * again)"; LMTP says it per recipient. */
enum smtp_event
smtp_session_stored_resub(struct smtp_session *s,
			  enum smtp_store_result result, const char *qid,
			  const char *const *orig_qids, struct buf *out);

/* The TLS handshake after SMTP_EV_STARTTLS is done. desc (copied,
 * cleaned) describes it for the Received: header, e.g. "TLSv1.3 with
 * cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". The session forgets
 * what it learned before TLS (RFC 3207 4.2): the client must EHLO again,
 * and an earlier AUTH is void. Panics if no handshake was pending. */
void
smtp_session_tls_started(struct smtp_session *s, const char *desc);

/* The user the client authenticated as, or NULL; borrowed from the
 * session, valid until the next feed. */
const char *
smtp_session_auth_user(const struct smtp_session *s);

/* true between the 354 reply to DATA and the end of the message
 * (CRLF.CRLF), while the session is still open; false while it waits to
 * be stored. The glue times the DATA phase as a whole by this
 * (RELIABILITY.md row 19). */
bool
smtp_session_in_data(const struct smtp_session *s);

/* The client was idle too long: append "421 4.4.2 <hostname> Error:
 * timeout exceeded" and mark the session closed. A message waiting to be
 * stored still waits; report it with smtp_session_stored(). */
void
smtp_session_timeout(struct smtp_session *s, struct buf *out);

/* posternd is stopping: append "421 4.3.2 <hostname> Service shutting
 * down" (RFC 5321 4.2.2: the server must close) and mark the session
 * closed; a transaction in progress is dropped, nothing of it stored. */
void
smtp_session_shutdown(struct smtp_session *s, struct buf *out);

#endif
