/*
 * driver_imap.h - deliver into mailboxes on an IMAP server with APPEND.
 *
 * One driver object holds one connection, logged in as one user, opened
 * on first use and reused; a recipient whose login user differs (a user
 * template such as "%l*master") logs in anew. Each copy carries a header
 * X-Postern-Delivery with its delivery id, so look() can find it again
 * with UID SEARCH HEADER: after a lost reply or a crash, an in-doubt
 * entry is looked for before it is appended again.
 *
 * The same object serves the smtp and lmtp drivers as their probe: they
 * call its look() only.
 *
 * Threads: one object per worker; objects share nothing.
 */
#ifndef POSTERN_DRIVER_IMAP_H
#define POSTERN_DRIVER_IMAP_H

#include "driver.h"
#include "imap_client.h"

/* Every string is borrowed for the call (driver_imap_new() copies). */
struct driver_imap_opts {
	struct imap_client_settings s;
	/* Templates (driver_expand()): %u the recipient, %l its local
	 * part, %d its domain, %% a '%'. */
	const char *user;
	const char *mailbox;
	const char *password_file;	/* first line: the password */
	bool create_mailbox;		/* CREATE on NO [TRYCREATE] */
};

/* A driver for o. Returns NULL with *error_r (thread-local, valid until
 * the next call on this thread) when the password file cannot be read.
 * The caller owns the result and frees it with driver_free(). */
struct driver *
driver_imap_new(const struct driver_imap_opts *o, const char **error_r);

#endif
