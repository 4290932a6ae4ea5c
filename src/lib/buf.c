/*
 * buf.c - a growable byte buffer.
 *
 * Owns:    the data array of each struct buf.
 * Threads: any, one thread per buffer.
 */
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Room for n more bytes plus the trailing NUL. */
static void
reserve(struct buf *b, size_t n)
{
	size_t cap;

	if (n > SIZE_MAX / 2 - b->len)
		panic("buf: size overflow (%zu + %zu)", b->len, n);
	if (b->len + n + 1 <= b->cap)
		return;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < b->len + n + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("buf: bad format \"%s\"", fmt);
	reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n > b->len)
		panic("buf: consume %zu of %zu bytes", n, b->len);
	if (n == 0)
		return;
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void
buf_free(struct buf *b)
{
	char *data = b->data;

	buf_init(b);
	free(data);
}

/* RFC 5322 date in UTC, without the locale's day and month names. */
void
buf_put_date(struct buf *b, time_t t)
{
	static const char *const days[] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
	};
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
	};
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	buf_printf(b, "%s, %d %s %04d %02d:%02d:%02d +0000 (UTC)",
		   days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
		   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
