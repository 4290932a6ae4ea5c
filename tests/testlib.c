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

char *
testlib_slurp(const char *path, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long len;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	buf = malloc((size_t)len + 1);
	if (buf == NULL || fread(buf, 1, (size_t)len, fp) != (size_t)len)
		abort();
	buf[len] = '\0';
	fclose(fp);
	*len_r = (size_t)len;
	return buf;
}

unsigned
testlib_rnd(unsigned *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}
