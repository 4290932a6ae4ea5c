/*
 * driver.c - what several drivers share (see driver.h).
 * Threads: any; no state.
 */
#include "driver.h"
#include "lib/log.h"

#include <stdio.h>
#include <string.h>

void
driver_io_fail(struct driver_rcpt *r, const char *driver, const char *what,
	       const char *path, int err)
{
	char buf[128];
	/* GNU strerror_r (_GNU_SOURCE): may return a static string. */
	const char *s = strerror_r(err, buf, sizeof(buf));

	r->result = CLAIM_TEMPFAIL;
	snprintf(r->reply, sizeof(r->reply), "4.3.0 %s %s failed: %s",
		 driver, what, s);
	log_warn("%s: %s %s: %s", driver, what, path, s);
}
