/*
 * testlib.c - scratch directories for test suites.
 *
 * Owns:    nothing past the call; callers own the returned paths.
 */
#include "testlib.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

char *
testlib_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;
	size_t len;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	len = strlen(base) + strlen(tag) + 32;
	path = malloc(len);
	if (path == NULL)
		abort();
	snprintf(path, len, "%s/postern-%s-XXXXXX", base, tag);
	if (mkdtemp(path) == NULL)
		abort();
	return path;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
testlib_rmtree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

unsigned
testlib_rnd(unsigned *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}
