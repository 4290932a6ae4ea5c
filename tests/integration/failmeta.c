/*
 * failmeta.c - an LD_PRELOAD library for health.sh: a real MDB_PANIC.
 *
 * While the file named by $FAILMETA_FLAG exists:
 * - a pwrite() to a file opened with O_DSYNC fails with EIO. LMDB writes
 *   its meta page, the last write of a commit, through such a descriptor
 *   (the data pages and their fdatasync go through another), so the
 *   commit fails after its pages are on disk and the environment is
 *   fatal: every later transaction gets MDB_PANIC;
 * - opening a file whose name ends in "data.mdb" fails with EMFILE, so
 *   that a reopen fails too and the panic lasts.
 * Without the file it changes nothing. Not for sanitizer builds (their
 * runtime must come first).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int
armed(void)
{
	const char *flag = getenv("FAILMETA_FLAG");
	int e = errno, rc;

	rc = flag != NULL && access(flag, F_OK) == 0;
	errno = e;
	return rc;
}

static int
is_store(const char *path)
{
	size_t n = strlen(path);

	return n >= 8 && strcmp(path + n - 8, "data.mdb") == 0;
}

static ssize_t
meta_pwrite(int fd, const void *buf, size_t len, off_t off, const char *sym)
{
	ssize_t (*real)(int, const void *, size_t, off_t) =
		(ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT,
								     sym);
	int fl;

	if (armed() && (fl = fcntl(fd, F_GETFL)) != -1 &&
	    (fl & O_DSYNC) == O_DSYNC) {
		errno = EIO;
		return -1;
	}
	return real(fd, buf, len, off);
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return meta_pwrite(fd, buf, len, off, "pwrite");
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	return meta_pwrite(fd, buf, len, off, "pwrite64");
}

static int
store_open(const char *path, int flags, va_list ap, const char *sym)
{
	int (*real)(const char *, int, ...) =
		(int (*)(const char *, int, ...))dlsym(RTLD_NEXT, sym);
	mode_t mode = 0;

	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		mode = (mode_t)va_arg(ap, int);
	if (armed() && is_store(path)) {
		errno = EMFILE;
		return -1;
	}
	return real(path, flags, mode);
}

int
open(const char *path, int flags, ...)
{
	va_list ap;
	int rc;

	va_start(ap, flags);
	rc = store_open(path, flags, ap, "open");
	va_end(ap);
	return rc;
}

int
open64(const char *path, int flags, ...)
{
	va_list ap;
	int rc;

	va_start(ap, flags);
	rc = store_open(path, flags, ap, "open64");
	va_end(ap);
	return rc;
}
