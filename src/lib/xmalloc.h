/*
 * xmalloc.h - allocation that never returns NULL.
 *
 * Every function aborts the process (through panic()) when memory runs out,
 * so callers never check the result. Any thread may call them.
 */
#ifndef POSTERN_XMALLOC_H
#define POSTERN_XMALLOC_H

#include <stddef.h>

/* malloc(size); the caller owns the result and frees it with free(). */
void *
xmalloc(size_t size);

/* calloc(n, size) with overflow check; the caller owns the result. */
void *
xcalloc(size_t n, size_t size);

/* realloc(p, size); p is consumed, the caller owns the result. */
void *
xrealloc(void *p, size_t size);

/* strdup(s); the caller owns the result. s must not be NULL. */
char *
xstrdup(const char *s);

/* A copy of len bytes of s plus a terminating NUL; the caller owns it. */
char *
xstrndup(const char *s, size_t len);

/* A copy of len bytes; the caller owns the result. */
void *
xmemdup(const void *p, size_t len);

#endif
