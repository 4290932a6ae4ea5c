/*
 * driver_table.h - the list of drivers: one row per driver, and the one
 * place that makes a driver from the configuration.
 *
 * [foreign] driver names a row; config_load() reads the names, checks
 * what the chosen driver needs, and stores the row's index (enum
 * config_driver); the workers make their drivers with the row's
 * new_from_config(); the metrics label reconnects by row name; posternd
 * describes the driver on its start line. Adding a driver is its own
 * driver_<name>.c, one row in driver_table.c, and its keys in config.
 *
 * Threads: any; the table is constant.
 */
#ifndef POSTERN_DRIVER_TABLE_H
#define POSTERN_DRIVER_TABLE_H

#include "config.h"
#include "driver.h"

#include <stddef.h>

struct driver_table_row {
	/* [foreign] driver = name; also the driver's ops->name, the
	 * relay= of the delivery log lines and the driver="" label of
	 * postern_driver_reconnects_total. */
	const char *name;
	/* The postern.conf section that holds the driver's keys; NULL:
	 * none. */
	const char *section;
	/* A new driver for the snapshot cfg, owned by the caller (free it
	 * with driver_free()). Strings are borrowed from cfg for the call.
	 * cancel_fd, once readable, cuts the driver's network waits short.
	 * NULL with *error_r set: a thread-local buffer, valid until the
	 * next call on the thread. */
	struct driver *(*new_from_config)(const struct config *cfg,
					  int cancel_fd, const char **error_r);
	/* The cap of the workers' reconnect backoff while the foreign side
	 * is unavailable, and of the pause of in-doubt claims after a look
	 * that could not tell, in seconds. */
	unsigned (*reconnect_max)(const struct config *cfg);
	/* The start line's "NAME WHERE" ("smtp relay:25") into buf. */
	void (*describe)(const struct config *cfg, char *buf, size_t len);
	/* The keys of section that cfg lacks for this driver ("relay"),
	 * for config_load()'s "[foreign] driver = NAME needs [SECTION]
	 * ..."; NULL: it lacks nothing. *key_r is the key whose line the
	 * error names (if it was set later than [foreign] driver). NULL
	 * function: the defaults always do. */
	const char *(*lacks)(const struct config *cfg, const char **key_r);
};

/* Row i (an enum config_driver), or NULL past the last row. */
const struct driver_table_row *
driver_table_get(size_t i);

/* The index of the row named name (an enum config_driver), or -1. */
int
driver_table_find(const char *name);

/* The row of cfg's [foreign] driver. */
const struct driver_table_row *
driver_table_of(const struct config *cfg);

/* The bounce driver of [bounce] (an smtp driver), owned by the caller,
 * or NULL: with *error_r set (as new_from_config()) when it cannot be
 * made, else (*error_r NULL) when [bounce] relay is not set. */
struct driver *
driver_table_bounce_new(const struct config *cfg, int cancel_fd,
			const char **error_r);

#endif
