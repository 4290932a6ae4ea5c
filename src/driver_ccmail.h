/*
 * driver_ccmail.h - write cc:Mail-style import files into a drop
 * directory that the foreign system's import program empties
 * (postern-ccmail(5)).
 *
 * Each (message, recipient) becomes DROP/<base>.ccm plus one
 * DROP/<base>.<n>.att per attachment, where <base> is
 * "<store_id>.<qid>.<idx>" in hex/decimal. A marker DROP/.postern/<base>
 * records that the import file was committed, so look() answers "already
 * there?" even after the import program took the file away.
 *
 * Threads: one driver object per worker; objects share nothing, and the
 * names of two objects' files never collide.
 */
#ifndef POSTERN_DRIVER_CCMAIL_H
#define POSTERN_DRIVER_CCMAIL_H

#include "driver.h"

/* Longest drop directory accepted. */
#define DRIVER_CCMAIL_DIR_MAX	1024

/* The driver's settings ([ccmail] in postern.conf(5)); all borrowed for
 * the call to driver_ccmail_new(), which copies what it keeps. */
struct driver_ccmail_opts {
	const char *drop_dir;	/* must exist when delivering */
	const char *charset;	/* of the import files */
	const char *address_map;	/* map file; NULL or "": none */
	const char *fallback;	/* "none" or a pattern */
	const char *postoffice;	/* for map names without " at " and %p */
};

/*
 * A ccmail driver, owned by the caller (free with driver_free()). Loads
 * the address map and initialises GMime (once per process). Returns NULL
 * with *error_r set (a thread-local buffer, valid until the calling
 * thread's next driver_ccmail_new()) if a setting is unusable or the map
 * file cannot be read; the reason names the map file and line.
 */
struct driver *
driver_ccmail_new(const struct driver_ccmail_opts *o, const char **error_r);

#endif
