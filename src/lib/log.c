/*
 * log.c - bounded, escaped log lines, as text or JSON.
 *
 * Owns:    the process-wide log destination, name and format (set once in
 *          main() before threads start, read-only afterwards).
 * Threads: any, without a lock. Lines are formatted into stack buffers of
 *          fixed size and written with one call, so a long or hostile
 *          value is truncated, never overflows, and never splits a line;
 *          a JSON line that is cut still closes every string and the
 *          object.
 */
#include "lib/log.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX	2048	/* the formatted text */
#define LOG_JSON_MAX	4096	/* a JSON line, fields and text */
#define LOG_NAME_MAX	64
#define LOG_HOST_MAX	64
/* Room kept free while fields are added: the "msg" key, a short text,
 * the closing brace and newline. */
#define LOG_JSON_TAIL	80

static atomic_bool use_syslog;
static atomic_int max_level = LOG_LVL_INFO;
/* Written by log_setup() before threads start, then only read. */
static char prog[LOG_NAME_MAX] = "postern";
static char host[LOG_HOST_MAX] = "localhost";
static enum log_format format = LOG_FMT_TEXT;

static const char *const level_name[] = {
	"error", "warning", "info", "debug"
};

void
log_setup(const char *name, enum log_format fmt)
{
	char *dot;

	snprintf(prog, sizeof(prog), "%s", name);
	format = fmt;
	/* syslogd writes the short name */
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	if ((dot = strchr(host, '.')) != NULL)
		*dot = '\0';
}

void
log_use_syslog(void)
{
	openlog(prog, LOG_PID | LOG_NDELAY, LOG_MAIL);
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

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0. */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;		/* overlong */
	else if (c == 0xed)
		hi = 0x9f;		/* surrogates */
	else if (c == 0xf0)
		lo = 0x90;		/* overlong */
	else if (c == 0xf4)
		hi = 0x8f;		/* above U+10FFFF */
	for (i = 1; i < n; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

size_t
log_json_string(char *dst, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	char esc[8];
	size_t o = 0, n, k;

	if (cap < 3) {
		if (cap > 0)
			dst[0] = '\0';
		return 0;
	}
	dst[o++] = '"';
	while (*p != '\0') {
		const char *add = esc;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
			k = 1;
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u00%c%c", hex[*p >> 4],
				 hex[*p & 15]);
			n = 6;
			k = 1;
		} else if ((k = utf8_len(p)) == 0) {
			add = "\xef\xbf\xbd";	/* U+FFFD */
			n = 3;
			k = 1;
		} else {
			add = (const char *)p;
			n = k;
		}
		if (o + n + 2 > cap)	/* the closing quote and NUL */
			break;
		memcpy(dst + o, add, n);
		o += n;
		p += k;
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return o;
}

/* Is s a plain decimal number (digits, at most one dot inside)? */
static bool
is_number(const char *s)
{
	bool dot = false;
	size_t i;

	if (s[0] < '0' || s[0] > '9')
		return false;
	for (i = 1; s[i] != '\0'; i++) {
		if (s[i] == '.' && !dot && s[i + 1] >= '0' && s[i + 1] <= '9')
			dot = true;
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/* Append ,"key":value to the JSON line j (length *o, size cap), leaving
 * LOG_JSON_TAIL bytes free; a field that does not fit is cut (a string)
 * or left out (a number). */
static void
json_field(char *j, size_t *o, size_t cap, const char *key,
	   const char *value, bool number)
{
	size_t room = cap - *o;
	int n;

	if (room <= LOG_JSON_TAIL + strlen(key) + 8)
		return;
	room -= LOG_JSON_TAIL;
	if (number && is_number(value)) {
		n = snprintf(j + *o, room, ",\"%s\":%s", key, value);
		if (n > 0 && (size_t)n < room)
			*o += (size_t)n;
		else
			j[*o] = '\0';
		return;
	}
	n = snprintf(j + *o, room, ",\"%s\":", key);
	if (n <= 0 || (size_t)n >= room) {
		j[*o] = '\0';
		return;
	}
	*o += (size_t)n;
	*o += log_json_string(j + *o, room - (size_t)n, value);
}

/* The JSON object of one line, with its newline, into j (cap bytes).
 * Returns its length. */
static size_t
json_line(char *j, size_t cap, enum log_level level,
	  const struct log_field *f, size_t nf, const char *text)
{
	struct timespec ts;
	struct tm tm;
	char t[32], pid[24];
	size_t o;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(t + strlen(t), sizeof(t) - strlen(t), ".%03ldZ",
		 ts.tv_nsec / 1000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	o = (size_t)snprintf(j, cap, "{\"ts\":\"%s\"", t);
	json_field(j, &o, cap, "level", level_name[level], false);
	json_field(j, &o, cap, "program", prog, false);
	json_field(j, &o, cap, "pid", pid, true);
	for (size_t i = 0; i < nf; i++)
		if (f[i].value != NULL)
			json_field(j, &o, cap, f[i].key, f[i].value,
				   f[i].number);
	/* the text takes what is left */
	memcpy(j + o, ",\"msg\":", 7);
	o += 7;
	o += log_json_string(j + o, cap - o - 2, text);
	j[o++] = '}';
	j[o++] = '\n';
	return o;
}

/* The stderr line of the text formats into out (cap bytes), with its
 * newline. Returns its length. */
static size_t
text_line(char *out, size_t cap, enum log_level level, const char *line)
{
	struct timespec ts;
	struct tm tm;
	char t[32];
	int n;

	if (format == LOG_FMT_SYSLOG) {
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(t, sizeof(t), "%b %e %H:%M:%S", &tm);
		n = snprintf(out, cap, "%s %s %s[%ld]: %s%s%s\n", t, host,
			     prog, (long)getpid(),
			     level == LOG_LVL_INFO ? "" : level_name[level],
			     level == LOG_LVL_INFO ? "" : ": ", line);
	} else {
		n = snprintf(out, cap, "%s: %s: %s\n", prog, level_name[level],
			     line);
	}
	if (n < 0)
		return 0;
	if ((size_t)n >= cap) {
		n = (int)cap - 1;
		out[n - 1] = '\n';
	}
	return (size_t)n;
}

static void
log_vevent(enum log_level level, const struct log_field *f, size_t nf,
	   const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char raw[LOG_LINE_MAX], line[LOG_LINE_MAX], out[LOG_JSON_MAX];
	size_t n;

	vsnprintf(raw, sizeof(raw), fmt, ap);
	if (format == LOG_FMT_JSON) {
		n = json_line(out, sizeof(out), level, f, nf, raw);
	} else {
		escape_line(line, sizeof(line) - 1, raw);
		if (atomic_load(&use_syslog)) {
			syslog(prio[level], "%s%s%s",
			       level == LOG_LVL_INFO ? "" : level_name[level],
			       level == LOG_LVL_INFO ? "" : ": ", line);
			return;
		}
		n = text_line(out, sizeof(out), level, line);
	}
	if (atomic_load(&use_syslog)) {
		out[n - 1] = '\0';	/* syslog adds its own end */
		syslog(prio[level], "%s", out);
		return;
	}
	if (n > 0 && write(STDERR_FILENO, out, n) < 0) {
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
	log_vevent(level, NULL, 0, fmt, ap);
	va_end(ap);
}

void
log_event(enum log_level level, const struct log_field *f, size_t n,
	  const char *fmt, ...)
{
	va_list ap;

	if ((int)level > atomic_load(&max_level))
		return;
	va_start(ap, fmt);
	log_vevent(level, f, n, fmt, ap);
	va_end(ap);
}

void
panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vevent(LOG_LVL_ERR, NULL, 0, fmt, ap);
	va_end(ap);
	abort();
}
