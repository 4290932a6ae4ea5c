/*
 * xmalloc.c - allocation wrappers that abort instead of returning NULL.
 *
 * Owns:    nothing; every result belongs to the caller.
 * Threads: any.
 *
 * Why abort: a daemon that runs out of memory cannot be trusted to clean
 * up, and nothing is lost by dying: a reply 250 goes out only after the
 * commit is durable, so a client whose session dies retries (RFC 5321
 * 3.8: a broken connection counts as a 451), and a delivery cut short is
 * re-done from the store after the restart (systemd Restart=on-failure),
 * found again by look() where the driver can look. tests/test_xmalloc.c
 * checks exactly that, with the failure hook below.
 */
#include "lib/xmalloc.h"
#include "lib/log.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The test hook: 0 means disarmed, the normal state. */
static atomic_ulong fail_at;
static atomic_ulong calls;
static atomic_bool fail_always;

void
xmalloc_fail_at(unsigned long n, bool always)
{
	atomic_store(&calls, 0);
	atomic_store(&fail_always, always);
	atomic_store(&fail_at, n);
}

unsigned long
xmalloc_calls(void)
{
	return atomic_load(&calls);
}

/* True if this allocation is to fail. One relaxed load when disarmed. */
static bool
injected(void)
{
	unsigned long at = atomic_load_explicit(&fail_at,
						memory_order_relaxed), c;

	if (at == 0)
		return false;
	c = atomic_fetch_add(&calls, 1) + 1;
	return atomic_load(&fail_always) ? c >= at : c == at;
}

void *
xmalloc(size_t size)
{
	void *p = injected() ? NULL : malloc(size == 0 ? 1 : size);

	if (p == NULL)
		panic("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = injected() ? NULL : calloc(n == 0 ? 1 : n,
					     size == 0 ? 1 : size);

	if (p == NULL)
		panic("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *q = injected() ? NULL : realloc(p, size == 0 ? 1 : size);

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
