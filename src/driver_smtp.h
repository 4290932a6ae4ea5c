/*
 * driver_smtp.h - deliver to a next hop over SMTP or LMTP.
 *
 * One driver object holds one connection, opened on first use, reused
 * (RSET) for later messages and closed with QUIT when the object is
 * freed. All recipients of a message go in one transaction. Such a peer
 * cannot be asked whether it already has a message, so ops->can_look is
 * false: a reply lost after the final dot is CLAIM_UNKNOWN (in-doubt) --
 * unless a probe is given (see driver_smtp_new()).
 *
 * Threads: one object per worker; objects share nothing.
 */
#ifndef POSTERN_DRIVER_SMTP_H
#define POSTERN_DRIVER_SMTP_H

#include "driver.h"
#include "smtp_client.h"

/* A driver for s. Every string in s is copied, so s may go away after the
 * call. auth_password_file (NULL: none) is read here, its first line is
 * the password. *probe (probe or *probe NULL: none) is a driver that can
 * look (the imap driver against the mailboxes the peer delivers into);
 * the new driver takes it over and *probe becomes NULL, also on failure.
 * With a probe, each recipient gets its own transaction and a copy with
 * an X-Postern-Delivery header, and the driver can look: in-doubt entries
 * are settled by the probe's look(). Returns NULL with *error_r (a
 * thread-local buffer, valid until the next call on this thread) when the
 * file cannot be read. The caller owns the result and frees it with
 * driver_free(). */
struct driver *
driver_smtp_new(const struct smtp_client_settings *s,
		const char *auth_password_file, struct driver **probe,
		const char **error_r);

#endif
