/*
 * buf.h - a growable byte buffer.
 *
 * A struct buf is owned by whoever embeds it; buf_free() releases its
 * memory. Not locked: one thread at a time.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stddef.h>
#include <time.h>

/* data is owned by the buffer. Once anything was appended, data[len] is
 * always a NUL (not counted in len), so text can be used as a C string. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* An empty buffer that owns no memory yet. */
void
buf_init(struct buf *b);

/* Append n bytes from p (which may not point into b). */
void
buf_append(struct buf *b, const void *p, size_t n);

/* Append the string s without its NUL. */
void
buf_append_str(struct buf *b, const char *s);

/* Append printf-style formatted text. */
void
buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Forget the contents (len = 0) but keep the memory for reuse. */
void
buf_reset(struct buf *b);

/* Drop n bytes from the front; n > len is a broken invariant (panic). */
void
buf_consume(struct buf *b, size_t n);

/* Append t as an RFC 5322 date in UTC, e.g. "Sun, 22 Nov 2026 07:28:59
 * +0000 (UTC)", with English names whatever the locale. */
void
buf_put_date(struct buf *b, time_t t);

/* Free the memory and leave b empty, as after buf_init(). A second call
 * does nothing. */
void
buf_free(struct buf *b);

#endif
