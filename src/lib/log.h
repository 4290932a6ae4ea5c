/*
 * log.h - one line per event, to syslog or to stderr.
 *
 * Threads: any; each line is written with a single write(2) so lines from
 * different threads never interleave.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LVL_ERR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* Send lines to syslog (ident, LOG_MAIL) instead of stderr. Call from
 * main() before threads start. */
void
log_use_syslog(const char *ident);

/* Lines at levels above this one are dropped. Default LOG_LVL_INFO. */
void
log_set_level(enum log_level level);

/* Log one line. Control characters in the formatted text are escaped, so a
 * value taken from the network can never forge a second line. */
void
log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)	log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* A broken invariant: log the reason and abort(). Never returns. */
void
panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
