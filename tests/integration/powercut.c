/*
 * powercut.c - an LD_PRELOAD layer that lets a test cut the power
 * (powercut.sh; the model is in tests/integration/POWERCUT.md).
 *
 * Writes go through to the real files at once, so the process (and
 * LMDB's read-only map of data.mdb) sees what it wrote, as it would on a
 * machine whose page cache holds it. Alongside, the layer keeps an undo
 * journal of everything that is not yet durable: for each write to a
 * tracked file, the bytes it replaced (its pre-image) and the file's size
 * before it; each fsync/fdatasync of a file, which makes that file's
 * earlier writes durable; each directory entry made, moved or removed
 * (create, mkdir, link, rename, unlink), with a hard link to what an
 * unlink or a replacing rename removed; each fsync of a directory. A
 * write through an O_DSYNC or O_SYNC descriptor is durable by itself.
 *
 * "Cutting the power" is killing the process with SIGKILL at a chosen
 * sync point (POWERCUT_AT), before that sync runs; powercut_apply.py then
 * turns the files into one state a crash may leave, from the journal.
 *
 * Environment:
 *   POWERCUT_JOURNAL  the journal file (required; truncated at start)
 *   POWERCUT_ROOTS    colon-separated absolute directories; only files
 *                     and directories below them are tracked
 *   POWERCUT_AT       cut at this sync point (1-based); 0 or unset never
 *   POWERCUT_COUNT    a file that holds the number of sync points so far,
 *                     followed by " cut" once the power was cut
 *
 * Sync points: fsync and fdatasync of a tracked descriptor, and each
 * write through a tracked O_DSYNC/O_SYNC descriptor. Files named lock.mdb,
 * posternd.lock and posternd.sock are not tracked: nothing durable lives
 * in them.
 *
 * Threads: one mutex serialises the journal and the tracked operations,
 * so that the journal's order is the order in which they happened. The
 * descriptor table is read without it only to skip untracked ones.
 *
 * Built without the project's flags and never with a sanitizer (a
 * sanitizer's runtime must come first in the preload list).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_ROOTS 8

struct tracked {
	char *path;		/* absolute, as opened */
	int rfd;		/* a read-only twin, for pre-images */
	int dsync;		/* opened O_DSYNC or O_SYNC */
	int isdir;
	dev_t dev;
	ino_t ino;
};

static struct tracked fds[MAX_FD];
static atomic_uchar is_tracked[MAX_FD];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int jfd = -1;
static char *roots[MAX_ROOTS];
static size_t nroots;
static unsigned long cut_at, syncs;
static char count_path[PATH_MAX];
static char shadow_dir[PATH_MAX];
static unsigned long shadows;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);

static void
die(const char *what)
{
	fprintf(stderr, "powercut: %s: %s\n", what, strerror(errno));
	abort();
}

#define RESOLVE(name) do { \
	*(void **)&real_##name = dlsym(RTLD_NEXT, #name); \
	if (real_##name == NULL) { errno = ENOSYS; die("dlsym " #name); } \
} while (0)

__attribute__((constructor)) static void
powercut_init(void)
{
	const char *j, *r, *at, *c;
	char *copy, *tok, *save = NULL;

	RESOLVE(open); RESOLVE(openat); RESOLVE(close); RESOLVE(write);
	RESOLVE(pwrite); RESOLVE(writev); RESOLVE(ftruncate);
	RESOLVE(fsync); RESOLVE(fdatasync); RESOLVE(rename);
	RESOLVE(renameat); RESOLVE(link); RESOLVE(linkat); RESOLVE(unlink);
	RESOLVE(unlinkat); RESOLVE(mkdir); RESOLVE(mkdirat);
	j = getenv("POWERCUT_JOURNAL");
	r = getenv("POWERCUT_ROOTS");
	if (j == NULL || r == NULL)
		return;		/* inert: tracks nothing */
	jfd = real_open(j, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
			0600);
	if (jfd < 0)
		die(j);
	snprintf(shadow_dir, sizeof(shadow_dir), "%s.shadow", j);
	real_mkdir(shadow_dir, 0700);
	copy = strdup(r);
	for (tok = strtok_r(copy, ":", &save); tok != NULL && nroots < MAX_ROOTS;
	     tok = strtok_r(NULL, ":", &save))
		if (tok[0] == '/')
			roots[nroots++] = strdup(tok);
	free(copy);
	at = getenv("POWERCUT_AT");
	cut_at = at != NULL ? strtoul(at, NULL, 10) : 0;
	c = getenv("POWERCUT_COUNT");
	if (c != NULL)
		snprintf(count_path, sizeof(count_path), "%s", c);
}

/* --- the journal -------------------------------------------------------- */

static void
jwrite(const void *p, size_t n)
{
	const char *b = p;

	while (n > 0) {
		ssize_t w = real_write(jfd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("journal write");
		b += w;
		n -= (size_t)w;
	}
}

static void
jprintf(const char *fmt, ...)
{
	char buf[3 * PATH_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		die("journal record");
	}
	jwrite(buf, (size_t)n);
}

/* --- paths ---------------------------------------------------------------- */

/* The absolute form of path (relative to dirfd), in buf; no .. folding. */
static int
absolute(int dirfd, const char *path, char *buf, size_t cap)
{
	char base[PATH_MAX], link[64];
	ssize_t n;

	if (path[0] == '/') {
		snprintf(buf, cap, "%s", path);
		return 0;
	}
	if (dirfd == AT_FDCWD) {
		if (getcwd(base, sizeof(base)) == NULL)
			return -1;
	} else {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
		n = readlink(link, base, sizeof(base) - 1);
		if (n < 0)
			return -1;
		base[n] = '\0';
	}
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	snprintf(buf, cap, "%s/%s", base, path);
	return 0;
}

static int
under_roots(const char *abs)
{
	const char *base = strrchr(abs, '/');

	base = base != NULL ? base + 1 : abs;
	if (strcmp(base, "lock.mdb") == 0 || strcmp(base, "posternd.lock") == 0 ||
	    strcmp(base, "posternd.sock") == 0)
		return 0;
	for (size_t i = 0; i < nroots; i++) {
		size_t n = strlen(roots[i]), m = strlen(abs);

		if (strncmp(abs, roots[i], n) == 0 &&
		    (abs[n] == '/' || abs[n] == '\0'))
			return 1;
		/* a directory above a root: its fsync makes the root's
		 * entry durable */
		if (m < n && strncmp(abs, roots[i], m) == 0 &&
		    (roots[i][m] == '/' || m == 1))
			return 1;
	}
	return 0;
}

/* A hard link to path in the shadow directory, for the undo of an unlink
 * or of a replacing rename; "" if path is not there. */
static void
shadow_of(const char *path, char *out, size_t cap)
{
	struct stat sb;

	out[0] = '\0';
	if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
		return;
	snprintf(out, cap, "%s/%lu", shadow_dir, ++shadows);
	if (real_link(path, out) < 0)
		die("shadow link");
}

/* --- sync points ---------------------------------------------------------- */

/* Count a sync point; at POWERCUT_AT, cut the power before it runs.
 * Called with the lock held. */
static void
sync_point(const char *what, const char *path)
{
	int cut;

	syncs++;
	cut = cut_at != 0 && syncs == cut_at;
	if (count_path[0] != '\0') {
		/* "N" so far, or "N cut" for the harness */
		int fd = real_open(count_path, O_WRONLY | O_CREAT | O_TRUNC |
				   O_CLOEXEC, 0600);
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "%lu%s\n", syncs,
				 cut ? " cut" : "");

		if (fd >= 0) {
			if (real_write(fd, buf, (size_t)n) != n)
				die("count write");
			real_close(fd);
		}
	}
	if (cut) {
		jprintf("X\t%lu\t%s\t%s\n", syncs, what, path);
		kill(getpid(), SIGKILL);
		for (;;)
			pause();
	}
}

/* --- descriptors ---------------------------------------------------------- */

static void
track(int fd, const char *abs, int flags)
{
	struct stat sb;
	char twin[64];

	if (fd < 0 || fd >= MAX_FD || fstat(fd, &sb) < 0)
		return;
	if (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
		return;
	free(fds[fd].path);
	fds[fd].path = strdup(abs);
	fds[fd].dsync = (flags & (O_DSYNC | O_SYNC)) != 0;
	fds[fd].isdir = S_ISDIR(sb.st_mode);
	fds[fd].dev = sb.st_dev;
	fds[fd].ino = sb.st_ino;
	fds[fd].rfd = -1;
	if (!fds[fd].isdir) {
		snprintf(twin, sizeof(twin), "/proc/self/fd/%d", fd);
		fds[fd].rfd = real_open(twin, O_RDONLY | O_CLOEXEC);
		if (fds[fd].rfd < 0)
			die("read twin");
	}
	atomic_store(&is_tracked[fd], 1);
}

static void
untrack(int fd)
{
	if (fd < 0 || fd >= MAX_FD || !atomic_load(&is_tracked[fd]))
		return;
	atomic_store(&is_tracked[fd], 0);
	free(fds[fd].path);
	fds[fd].path = NULL;
	if (fds[fd].rfd >= 0)
		real_close(fds[fd].rfd);
	fds[fd].rfd = -1;
}

static int
tracked(int fd)
{
	return jfd >= 0 && fd >= 0 && fd < MAX_FD && atomic_load(&is_tracked[fd]);
}

/* Journal the pre-image of [off, off+len) of fd's file. Lock held. */
static void
pre_image(int fd, const char *type, off_t off, size_t len, size_t newlen)
{
	struct tracked *t = &fds[fd];
	struct stat sb;
	size_t have = 0;
	char *buf = NULL;

	if (fstat(fd, &sb) < 0)
		die("fstat");
	if (off < sb.st_size) {
		size_t avail = (size_t)(sb.st_size - off);

		have = len < avail ? len : avail;
	}
	if (have > 0) {
		buf = malloc(have);
		if (buf == NULL)
			die("malloc");
		for (size_t got = 0; got < have;) {
			ssize_t r = pread(t->rfd, buf + got, have - got,
					  off + (off_t)got);

			if (r <= 0)
				die("pre-image read");
			got += (size_t)r;
		}
	}
	jprintf("%s\t%lu\t%lu\t%lld\t%zu\t%lld\t%d\t%zu\n", type,
		(unsigned long)t->dev, (unsigned long)t->ino, (long long)off,
		newlen, (long long)sb.st_size, t->dsync, have);
	if (have > 0)
		jwrite(buf, have);
	free(buf);
}

static int
open_common(int dirfd, const char *path, int flags, mode_t mode, int at)
{
	char abs[PATH_MAX];
	struct stat sb;
	int fd, existed = 1, truncating = 0;

	if (jfd < 0 || path == NULL ||
	    absolute(dirfd, path, abs, sizeof(abs)) < 0 || !under_roots(abs))
		return at ? real_openat(dirfd, path, flags, mode) :
			    real_open(path, flags, mode);
	pthread_mutex_lock(&lock);
	if (lstat(abs, &sb) < 0)
		existed = 0;
	else if ((flags & O_TRUNC) && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
		 (flags & O_ACCMODE) != O_RDONLY)
		truncating = 1;
	if (truncating) {
		/* the content O_TRUNC drops, as a truncate record */
		int rfd = real_open(abs, O_RDONLY | O_CLOEXEC);

		if (rfd >= 0) {
			char *buf = malloc((size_t)sb.st_size);
			ssize_t r = buf ? pread(rfd, buf, (size_t)sb.st_size, 0)
					: -1;

			if (r == sb.st_size) {
				jprintf("T\t%lu\t%lu\t0\t%lld\t%lld\t0"
					"\t%lld\n", (unsigned long)sb.st_dev,
					(unsigned long)sb.st_ino,
					(long long)sb.st_size,
					(long long)sb.st_size,
					(long long)sb.st_size);
				jwrite(buf, (size_t)r);
			}
			free(buf);
			real_close(rfd);
		}
	}
	fd = at ? real_openat(dirfd, path, flags, mode) :
		  real_open(path, flags, mode);
	if (fd >= 0) {
		if (!existed && (flags & O_CREAT)) {
			struct stat nb;

			if (fstat(fd, &nb) == 0)
				jprintf("C\t%s\t%lu\t%lu\n", abs,
					(unsigned long)nb.st_dev,
					(unsigned long)nb.st_ino);
		}
		track(fd, abs, flags);
	}
	pthread_mutex_unlock(&lock);
	return fd;
}

static mode_t
mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int
open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(AT_FDCWD, path, flags, mode, 0);
}

int open64(const char *path, int flags, ...)
	__attribute__((alias("open")));

int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return open_common(dirfd, path, flags, mode, 1);
}

int openat64(int dirfd, const char *path, int flags, ...)
	__attribute__((alias("openat")));

int
creat(const char *path, mode_t mode)
{
	return open_common(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode,
			   0);
}

int
close(int fd)
{
	if (tracked(fd)) {
		pthread_mutex_lock(&lock);
		untrack(fd);
		pthread_mutex_unlock(&lock);
	}
	return real_close(fd);
}

/* --- writes ----------------------------------------------------------------- */

static ssize_t
tracked_write(int fd, const struct iovec *iov, int iovcnt, off_t off,
	      int positioned)
{
	size_t len = 0;
	ssize_t r;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	pthread_mutex_lock(&lock);
	if (!positioned) {
		int fl = fcntl(fd, F_GETFL);
		struct stat sb;

		if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &sb) == 0)
			off = sb.st_size;
		else
			off = lseek(fd, 0, SEEK_CUR);
	}
	if (fds[fd].dsync)
		sync_point("dsync-write", fds[fd].path);
	pre_image(fd, "W", off, len, len);
	if (positioned)
		r = pwritev(fd, iov, iovcnt, off);
	else
		r = real_writev(fd, iov, iovcnt);
	pthread_mutex_unlock(&lock);
	return r;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	struct iovec v = { (void *)buf, n };

	if (!tracked(fd))
		return real_write(fd, buf, n);
	return tracked_write(fd, &v, 1, 0, 0);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct iovec v = { (void *)buf, n };

	if (!tracked(fd))
		return real_pwrite(fd, buf, n, off);
	return tracked_write(fd, &v, 1, off, 1);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
	__attribute__((alias("pwrite")));

ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
	if (!tracked(fd))
		return real_writev(fd, iov, iovcnt);
	return tracked_write(fd, iov, iovcnt, 0, 0);
}

int
ftruncate(int fd, off_t len)
{
	struct stat sb;
	int r;

	if (!tracked(fd))
		return real_ftruncate(fd, len);
	pthread_mutex_lock(&lock);
	if (fstat(fd, &sb) == 0 && len < sb.st_size)
		pre_image(fd, "T", len, (size_t)(sb.st_size - len),
			  (size_t)(sb.st_size - len));
	else if (fstat(fd, &sb) == 0)
		jprintf("T\t%lu\t%lu\t%lld\t0\t%lld\t0\t0\n",
			(unsigned long)fds[fd].dev, (unsigned long)fds[fd].ino,
			(long long)len, (long long)sb.st_size);
	r = real_ftruncate(fd, len);
	pthread_mutex_unlock(&lock);
	return r;
}

int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

/* --- syncs ------------------------------------------------------------------ */

static int
tracked_sync(int fd, int data_only)
{
	struct stat sb;
	int r;

	if (!tracked(fd))
		return data_only ? real_fdatasync(fd) : real_fsync(fd);
	pthread_mutex_lock(&lock);
	sync_point(data_only ? "fdatasync" : "fsync", fds[fd].path);
	r = data_only ? real_fdatasync(fd) : real_fsync(fd);
	if (r == 0) {
		if (fds[fd].isdir)
			jprintf("D\t%s\n", fds[fd].path);
		else if (fstat(fd, &sb) == 0)
			jprintf("S\t%lu\t%lu\t%lld\n",
				(unsigned long)fds[fd].dev,
				(unsigned long)fds[fd].ino,
				(long long)sb.st_size);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

int
fsync(int fd)
{
	return tracked_sync(fd, 0);
}

int
fdatasync(int fd)
{
	return tracked_sync(fd, 1);
}

/* --- directory entries ------------------------------------------------------ */

static int
entry_op(char type, int olddirfd, const char *old, int newdirfd,
	 const char *new, int flags, mode_t mode)
{
	char a[PATH_MAX], b[PATH_MAX] = "", shadow[PATH_MAX] = "";
	int r, track_it;

	track_it = jfd >= 0 && absolute(olddirfd, old, a, sizeof(a)) == 0 &&
		   (new == NULL || absolute(newdirfd, new, b, sizeof(b)) == 0) &&
		   (under_roots(a) || (new != NULL && under_roots(b)));
	if (track_it)
		pthread_mutex_lock(&lock);
	switch (type) {
	case 'R':
		if (track_it)
			shadow_of(b, shadow, sizeof(shadow));
		r = real_renameat(olddirfd, old, newdirfd, new);
		break;
	case 'L':
		r = real_linkat(olddirfd, old, newdirfd, new, flags);
		break;
	case 'U':
		if (track_it && !(flags & AT_REMOVEDIR))
			shadow_of(a, shadow, sizeof(shadow));
		r = real_unlinkat(olddirfd, old, flags);
		break;
	default:	/* 'M' */
		r = real_mkdirat(olddirfd, old, mode);
		break;
	}
	if (track_it) {
		if (r == 0) {
			if (type == 'R' || type == 'L')
				jprintf("%c\t%s\t%s\t%s\n", type, a, b, shadow);
			else if (type == 'U' && !(flags & AT_REMOVEDIR))
				jprintf("U\t%s\t%s\n", a, shadow);
			else if (type == 'M')
				jprintf("M\t%s\n", a);
		} else if (shadow[0] != '\0') {
			real_unlink(shadow);
		}
		pthread_mutex_unlock(&lock);
	}
	return r;
}

int
rename(const char *old, const char *new)
{
	return entry_op('R', AT_FDCWD, old, AT_FDCWD, new, 0, 0);
}

int
renameat(int od, const char *old, int nd, const char *new)
{
	return entry_op('R', od, old, nd, new, 0, 0);
}

int
link(const char *old, const char *new)
{
	return entry_op('L', AT_FDCWD, old, AT_FDCWD, new, 0, 0);
}

int
linkat(int od, const char *old, int nd, const char *new, int flags)
{
	return entry_op('L', od, old, nd, new, flags, 0);
}

int
unlink(const char *path)
{
	return entry_op('U', AT_FDCWD, path, AT_FDCWD, NULL, 0, 0);
}

int
unlinkat(int dirfd, const char *path, int flags)
{
	return entry_op('U', dirfd, path, AT_FDCWD, NULL, flags, 0);
}

int
mkdir(const char *path, mode_t mode)
{
	return entry_op('M', AT_FDCWD, path, AT_FDCWD, NULL, 0, mode);
}

int
mkdirat(int dirfd, const char *path, mode_t mode)
{
	return entry_op('M', dirfd, path, AT_FDCWD, NULL, 0, mode);
}
