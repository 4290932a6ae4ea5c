/*
 * conn.h - one blocking client connection (TCP or Unix socket, plain or
 * TLS) whose every wait is a poll() with a deadline.
 *
 * The protocol clients (smtp_client, imap_client) embed a struct conn and
 * speak their protocol over it; this module knows sockets, OpenSSL and
 * deadlines, nothing about any protocol.
 *
 * Threads: one thread at a time per object. Objects share nothing but the
 * process-wide OpenSSL state.
 */
#ifndef POSTERN_CONN_H
#define POSTERN_CONN_H

#include "lib/buf.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONN_ERR_LEN 640

/* Embedded by its user, which owns everything in it. */
struct conn {
	int fd;			/* -1: closed */
	SSL_CTX *ctx;		/* owned, made on first TLS use */
	SSL *ssl;		/* owned, NULL: plain */
	struct buf in;		/* unread input */
	/* Borrowed; -1: none. Once readable, every wait ends at once with
	 * an error, unless no_cancel is set (a wait that must not be cut
	 * short, such as the reply to SMTP's final dot). */
	int cancel_fd;
	bool no_cancel;
	bool timed_out;		/* the last failure was a timeout */
	bool cancelled;		/* the last failure was cancel_fd */
	char err[CONN_ERR_LEN];	/* the last failure, for *error_r */
};

/* TLS parameters; strings borrowed for the call. */
struct conn_tls {
	const char *host;	/* SNI and, with verify, the peer name;
				 * NULL: neither (Unix socket) */
	const char *ca_file;	/* NULL: the system's CAs */
	bool verify;		/* verify the chain and the peer name */
};

/* A closed connection with no memory held; cancel_fd -1. */
void
conn_init(struct conn *c);

/* Close the socket and TLS session, forget unread input. The TLS context
 * is kept for the next connection. Closed: nothing. */
void
conn_close(struct conn *c);

/* conn_close() and free everything; c may be conn_init()ed again. */
void
conn_free(struct conn *c);

/* Milliseconds of CLOCK_MONOTONIC, for deadlines. */
uint64_t
conn_now_ms(void);

/* printf into c->err. */
void
conn_set_err(struct conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Connect to host:port (port NULL: host is a Unix socket path), trying
 * each address within ms. 0, or -1 with c->err set and c closed. */
int
conn_open(struct conn *c, const char *host, const char *port, unsigned ms);

/* The TLS handshake on the open connection, within ms. 0 or -1
 * (c->err says why; the caller closes). Input read before it is dropped:
 * anything a peer sent ahead of the handshake is an injection. */
int
conn_tls_start(struct conn *c, const struct conn_tls *t, unsigned ms);

/* Write all of p within ms. 0 or -1 (c->err names what). */
int
conn_write(struct conn *c, const void *p, size_t len, unsigned ms,
	   const char *what);

/* Read what is there (at least one byte) into c->in, waiting until
 * deadline (conn_now_ms() based; ms is the step's length, for the
 * message). 0 or -1 (closed by the peer, error, timeout, cancel). */
int
conn_fill(struct conn *c, uint64_t deadline, unsigned ms, const char *what);

/* Wait until fd has events or deadline passes, or cancel_fd (-1: none)
 * becomes readable: 1 ready, 0 timeout, -1 cancelled. */
int
conn_wait(int fd, short events, uint64_t deadline, int cancel_fd);

#endif
