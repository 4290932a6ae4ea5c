/*
 * driver_maildir.h - deliver into local Maildirs (the embedded default
 * foreign system).
 *
 * Each (message, recipient) becomes one file with a name derived from
 * (store_id, qid, recipient index), so a delivery that is repeated after a
 * crash finds the first copy instead of making a second: the driver can
 * look (ops->can_look is true).
 *
 * Threads: one driver object per worker; any number of objects may deliver
 * into the same Maildirs at once.
 */
#ifndef POSTERN_DRIVER_MAILDIR_H
#define POSTERN_DRIVER_MAILDIR_H

#include "driver.h"

/* Longest root path accepted by driver_maildir_new(). */
#define DRIVER_MAILDIR_ROOT_MAX 1024

/* How a recipient address maps to a Maildir under the root. Addresses are
 * lowercased (ASCII) and each path component is made safe: '/', '%',
 * control bytes and a leading '.' are written as %XX. */
enum maildir_layout {
	MAILDIR_LAYOUT_ADDRESS = 1,	/* ROOT/<address>/ */
	MAILDIR_LAYOUT_DOMAIN_LOCAL,	/* ROOT/<domain>/<localpart>/ (split
					 * at the last '@') */
};

/* A Maildir driver for the Maildirs under root, which must exist when
 * delivering (a missing root is a temporary failure, so an unmounted
 * filesystem is never written under its mount point). Folders below root
 * and their tmp/ new/ cur/ are created on demand with mode 0700.
 * root is copied. Returns NULL if root is empty or not shorter than
 * DRIVER_MAILDIR_ROOT_MAX, or layout is unknown. The caller owns the
 * result and frees it with driver_free(). */
struct driver *
driver_maildir_new(const char *root, enum maildir_layout layout);

#endif
