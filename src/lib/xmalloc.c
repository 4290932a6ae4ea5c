/*
 * xmalloc.c - allocation wrappers that abort instead of returning NULL.
 *
 * Owns:    nothing; every result belongs to the caller.
 * Threads: any.
 */
#include "lib/xmalloc.h"
#include "lib/log.h"

#include <stdlib.h>
#include <string.h>

void *
xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		panic("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		panic("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size == 0 ? 1 : size);

	if (q == NULL)
		panic("out of memory reallocating %zu bytes", size);
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t len)
{
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void *
xmemdup(const void *p, size_t len)
{
	void *q = xmalloc(len);

	if (len > 0)
		memcpy(q, p, len);
	return q;
}
