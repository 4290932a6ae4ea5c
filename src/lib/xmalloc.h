/*
 * xmalloc.h - allocation that never returns NULL.
 *
 * Every function aborts the process (through panic()) when memory runs out,
 * so callers never check the result. Any thread may call them.
 */
#ifndef POSTERN_XMALLOC_H
#define POSTERN_XMALLOC_H

#include <stdbool.h>
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

/* Test hook, inert unless a test arms it: from now on, count the calls
 * of xmalloc, xcalloc and xrealloc (the others go through xmalloc), and
 * make call n fail (once, or n and every later one if always), which
 * aborts as a real failure would. n = 0 disarms. Any thread. */
void
xmalloc_fail_at(unsigned long n, bool always);

/* Calls counted since the hook was last armed. */
unsigned long
xmalloc_calls(void);

#endif
