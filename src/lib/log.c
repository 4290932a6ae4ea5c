/*
 * log.c - bounded, escaped log lines.
 *
 * Owns:    the process-wide log destination (set once in main()).
 * Threads: any. Lines are formatted into a stack buffer of fixed size and
 *          written with one call, so a long or hostile value is truncated,
 *          never overflows, and never splits a line.
 */
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static atomic_bool use_syslog;
static atomic_int max_level = LOG_LVL_INFO;

void
log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	atomic_store(&use_syslog, true);
}

void
log_set_level(enum log_level level)
{
	atomic_store(&max_level, (int)level);
}

/* Copy src into dst (size cap), escaping control bytes as \xNN. */
static void
escape_line(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (; *src != '\0' && o + 5 < cap; src++) {
		unsigned char c = (unsigned char)*src;

		if (c < 0x20 || c == 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		} else {
			dst[o++] = (char)c;
		}
	}
	dst[o] = '\0';
}

static void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const name[] = { "error", "warning", "info", "debug" };
	char raw[LOG_LINE_MAX], line[LOG_LINE_MAX];
	int n;

	vsnprintf(raw, sizeof(raw), fmt, ap);
	escape_line(line, sizeof(line) - 1, raw);
	if (atomic_load(&use_syslog)) {
		syslog(prio[level], "%s", line);
		return;
	}
	n = snprintf(raw, sizeof(raw), "postern: %s: %s\n", name[level], line);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(raw)) {
		n = sizeof(raw) - 1;
		raw[n - 1] = '\n';
	}
	if (write(STDERR_FILENO, raw, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if ((int)level > atomic_load(&max_level))
		return;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, fmt, ap);
	va_end(ap);
	abort();
}
