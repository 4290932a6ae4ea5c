/*
 * log.h - one line per event, to syslog or to stderr, as text or JSON.
 *
 * Threads: any; each line is written with a single write(2) (or one
 * syslog(3) call) so lines from different threads never interleave. The
 * setup calls (log_setup(), log_use_syslog()) belong to main() before
 * other threads start; log_set_level() may be called at any time.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/* How a line looks. TEXT: "NAME: LEVEL: text" on stderr, the bare text
 * to syslog. JSON: one object per line (ts, level, program, pid, the
 * event's fields, msg). SYSLOG: on stderr, the line syslogd would write
 * to a file: "Mmm dd hh:mm:ss HOST NAME[PID]: text", with "warning: "
 * or "error: " before the text as Postfix has it; to syslog, as TEXT. */
enum log_format {
	LOG_FMT_TEXT,
	LOG_FMT_JSON,
	LOG_FMT_SYSLOG,
};

/* The program name of the lines (copied; cut at 63 bytes) and the
 * format. Call from main() before threads start; until then the lines
 * are TEXT named "postern". */
void
log_setup(const char *name, enum log_format format);

/* Send lines to syslog (facility LOG_MAIL) instead of stderr, under the
 * name given to log_setup(). Call from main() before threads start. */
void
log_use_syslog(void);

/* Lines at levels above this one are dropped. Default LOG_LVL_INFO. */
void
log_set_level(enum log_level level);

/* One named value of an event, for the JSON format (the text format
 * shows only the line). key and value are borrowed for the call; a NULL
 * value leaves the field out. number: value is written unquoted if it
 * is a plain decimal number. */
struct log_field {
	const char *key;
	const char *value;
	bool number;
};

/* Log one line. Control characters in the formatted text are escaped, so a
 * value taken from the network can never forge a second line. */
void
log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Log one line of an event with its fields f[0..n): the text is fmt's,
 * the JSON object holds the fields as well, after the fixed ones. */
void
log_event(enum log_level level, const struct log_field *f, size_t n,
	  const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_err(...)	log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Write the JSON string literal of s (quotes included) into dst (cap
 * bytes, NUL-terminated), cut so that it always ends with the closing
 * quote: control characters become \u00XX, bytes that are not UTF-8
 * become U+FFFD. Returns the length written. For log.c and its test. */
size_t
log_json_string(char *dst, size_t cap, const char *s);

/* A broken invariant: log the reason and abort(). Never returns. */
void
panic(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
