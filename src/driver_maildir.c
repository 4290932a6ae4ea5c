/*
 * driver_maildir.c - deliver into local Maildirs.
 *
 * Owns:    struct maildir (root path, layout, error buffer); the files it
 *          writes in tmp/ until they are linked into new/.
 * Threads: one object per worker. Objects share nothing, and their files
 *          never collide because names come from (store_id, qid, idx).
 *
 * A delivery is: look for the name in new/ and cur/ (present: done), write
 * tmp/<name>, fsync, link to new/<name>, unlink tmp/<name>, fsync new/.
 * Only then is it DELIVERED. Any failure before the link leaves nothing in
 * new/; a failed fsync is never retried on the same fd (the kernel may
 * have dropped the dirty pages), the tmp file is removed instead.
 */
#include "driver_maildir.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "<16 hex>.<16 hex>.<idx>.postern" */
#define NAME_LEN 64

struct maildir {
	struct driver base;		/* first: (struct driver *) casts */
	char *root;			/* owned */
	enum maildir_layout layout;
	char err[DRIVER_REPLY_LEN];	/* look()'s *error_r */
};

/* Where one recipient's Maildir is: path, and the offsets just past each
 * component below the root (for creating them one by one). */
struct folder {
	char path[PATH_MAX];
	size_t ends[2];
	int ncomp;
};

/* Append s[0..len) to out as one safe path component: ASCII lowercased,
 * '/', '%', control bytes and a leading '.' as %XX, so "..", "." and
 * "a/b" can never name anything but a child of the parent. Returns the
 * new length of out, or 0 if the component is empty or too long. */
static size_t
put_component(char *out, size_t at, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t start = at;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (at - start + 3 > NAME_MAX)
			return 0;
		if (c < 0x20 || c == 0x7f || c == '/' || c == '%' ||
		    (i == 0 && c == '.')) {
			out[at++] = '%';
			out[at++] = hex[c >> 4];
			out[at++] = hex[c & 15];
		} else {
			out[at++] = (char)c;
		}
	}
	return at == start ? 0 : at;
}

/* Map addr to its folder. 0, or -1 with a 5.1.3 reply in reply. */
static int
map_folder(const struct maildir *md, const char *addr, struct folder *f,
	   char *reply)
{
	size_t at = strlen(md->root), alen = strlen(addr);
	const char *at_sign = strrchr(addr, '@');

	memcpy(f->path, md->root, at);
	f->path[at++] = '/';
	f->ncomp = 0;
	if (md->layout == MAILDIR_LAYOUT_ADDRESS) {
		at = put_component(f->path, at, addr, alen);
		f->ends[f->ncomp++] = at;
	} else if (at_sign == NULL) {
		at = 0;
	} else {
		at = put_component(f->path, at, at_sign + 1,
				   strlen(at_sign + 1));
		f->ends[f->ncomp++] = at;
		if (at != 0) {
			f->path[at++] = '/';
			at = put_component(f->path, at, addr,
					   (size_t)(at_sign - addr));
			f->ends[f->ncomp++] = at;
		}
	}
	if (at == 0) {
		snprintf(reply, DRIVER_REPLY_LEN, "5.1.3 address cannot be "
			 "mapped to a maildir folder");
		return -1;
	}
	f->path[at] = '\0';
	return 0;
}

static void
delivery_name(const struct driver_msg *m, uint32_t idx, char *name)
{
	snprintf(name, NAME_LEN, "%016" PRIx64 ".%016" PRIx64 ".%" PRIu32
		 ".postern", m->store_id, m->qid, idx);
}

/* path = dir "/" sub ["/" name]; the folder was sized to leave room. */
static void
join(char *path, const char *dir, const char *sub, const char *name)
{
	int n;

	if (name == NULL)
		n = snprintf(path, PATH_MAX, "%s/%s", dir, sub);
	else
		n = snprintf(path, PATH_MAX, "%s/%s/%s", dir, sub, name);
	if (n < 0 || n >= PATH_MAX)
		panic("maildir path longer than PATH_MAX");
}

/* mkdir path (existing is fine), then fsync its parent so the entry is
 * durable. The parent is synced even when another worker made the
 * directory: we must not rely on that worker having synced it yet. */
static int
mkdir_durable(char *path)
{
	char *slash = strrchr(path, '/');
	int ret;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -1;
	*slash = '\0';
	ret = fileio_fsync_dir(path);
	*slash = '/';
	return ret;
}

/* mkdir -p the folder below the root, and its tmp/ new/ cur/. The root
 * itself must exist. 0, or -1 with errno set. */
static int
make_folder(struct folder *f)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];

	for (int i = 0; i < f->ncomp; i++) {
		char save = f->path[f->ends[i]];
		int ret;

		f->path[f->ends[i]] = '\0';
		ret = mkdir_durable(f->path);
		f->path[f->ends[i]] = save;
		if (ret < 0)
			return -1;
	}
	for (int i = 0; i < 3; i++) {
		join(path, f->path, subs[i], NULL);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -1;
	}
	return fileio_fsync_dir(f->path);
}

/* Is name in new/ or cur/ (plain or with ":<info>")? new/ is checked
 * first: a reader moves new -> cur, so checking in this order never
 * misses a file that is being moved. 1 (and *sub_r), 0, or -1 with errno
 * set. */
static int
find_delivery(const struct folder *f, const char *name, const char **sub_r)
{
	char path[PATH_MAX];
	struct stat st;
	struct dirent *de;
	size_t len = strlen(name);
	DIR *dir;
	int found = 0, err;

	join(path, f->path, "new", name);
	if (lstat(path, &st) == 0) {
		*sub_r = "new";
		return 1;
	}
	if (errno != ENOENT)
		return -1;
	join(path, f->path, "cur", NULL);
	dir = opendir(path);
	if (dir == NULL)
		return errno == ENOENT ? 0 : -1;
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL)
			break;
		if (strncmp(de->d_name, name, len) == 0 &&
		    (de->d_name[len] == '\0' || de->d_name[len] == ':')) {
			found = 1;
			break;
		}
	}
	err = errno;
	closedir(dir);
	if (de == NULL && err != 0) {
		errno = err;
		return -1;
	}
	*sub_r = "cur";
	return found;
}

/* Append s with control bytes as '?', so an envelope value can never
 * start a header line of its own. */
static size_t
put_header_value(char *out, size_t at, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		out[at++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	return at;
}

/* "Return-Path: <sender>\nDelivered-To: addr\n". Caller frees. */
static char *
make_header(const char *sender, const char *addr, size_t *len_r)
{
	static const char rp[] = "Return-Path: <", dt[] = ">\nDelivered-To: ";
	char *hdr = xmalloc(strlen(sender) + strlen(addr) + sizeof(rp) +
			    sizeof(dt) + 1);
	size_t at;

	memcpy(hdr, rp, sizeof(rp) - 1);
	at = put_header_value(hdr, sizeof(rp) - 1, sender);
	memcpy(hdr + at, dt, sizeof(dt) - 1);
	at = put_header_value(hdr, at + sizeof(dt) - 1, addr);
	hdr[at++] = '\n';
	*len_r = at;
	return hdr;
}

static void
sha256_two(const void *a, size_t alen, const void *b, size_t blen,
	   unsigned char out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 32;

	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, a, alen) ||
	    !EVP_DigestUpdate(ctx, b, blen) ||
	    !EVP_DigestFinal_ex(ctx, out, &n))
		panic("SHA-256 failed");
	EVP_MD_CTX_free(ctx);
}

/* Every CRLF becomes LF (Maildir files use local line ends); bare CR and
 * LF stay. Caller frees. */
static char *
crlf_to_lf(const char *in, size_t len, size_t *len_r)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		out[o++] = in[i];
	}
	*len_r = o;
	return out;
}

/* What one delivery writes: headers + converted body, and where. */
struct job {
	struct folder f;
	char name[NAME_LEN];
	const char *hdr;
	size_t hdr_len;
	const char *body;
	size_t body_len;
};

/* Write and fsync tmp/<name>. 0, or -1 with the reply set and the tmp
 * file removed. */
static int
write_tmp(struct job *j, const char *tmp, struct driver_rcpt *r)
{
	const char *what = "write";
	int fd, err;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0 && errno == ENOENT) {
		if (make_folder(&j->f) < 0) {
			driver_io_fail(r, "maildir", "mkdir", j->f.path, errno);
			return -1;
		}
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
			  O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		driver_io_fail(r, "maildir", "write", tmp, errno);
		return -1;
	}
	if (fileio_write_all(fd, j->hdr, j->hdr_len) < 0 ||
	    fileio_write_all(fd, j->body, j->body_len) < 0)
		goto fail;
	what = "fsync";
	if (fsync(fd) < 0)
		goto fail;
	what = "close";
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	driver_io_fail(r, "maildir", what, tmp, err);
	return -1;
}

/* tmp/<name> -> new/<name>. link() refuses to replace an existing file;
 * filesystems without hard links fall back to rename(). 0 moved, 1 it was
 * already there, -1 failed (reply set, tmp removed). */
static int
move_to_new(struct job *j, const char *tmp, const char *new,
	    struct driver_rcpt *r)
{
	int ret = link(tmp, new);

	if (ret < 0 && errno == ENOENT && make_folder(&j->f) == 0)
		ret = link(tmp, new);
	if (ret < 0 && (errno == EPERM || errno == ENOSYS ||
			errno == EOPNOTSUPP)) {
		/* Nothing was in new/ when we looked, and names are ours. */
		if (rename(tmp, new) == 0)
			return 0;
		driver_io_fail(r, "maildir", "rename", new, errno);
		unlink(tmp);
		return -1;
	}
	if (ret < 0 && errno != EEXIST) {
		driver_io_fail(r, "maildir", "link", new, errno);
		unlink(tmp);
		return -1;
	}
	if (unlink(tmp) < 0) {
		char buf[128];

		log_warn("maildir: unlink %s: %s (harmless leftover)", tmp,
			 strerror_r(errno, buf, sizeof(buf)));
	}
	return ret < 0 ? 1 : 0;
}

static void
deliver_job(struct job *j, struct driver_rcpt *r)
{
	char tmp[PATH_MAX], new[PATH_MAX], dir[PATH_MAX];
	const char *sub;
	int ret;

	ret = find_delivery(&j->f, j->name, &sub);
	if (ret < 0) {
		driver_io_fail(r, "maildir", "read", j->f.path, errno);
		return;
	}
	if (ret == 0) {
		join(tmp, j->f.path, "tmp", j->name);
		join(new, j->f.path, "new", j->name);
		if (write_tmp(j, tmp, r) < 0)
			return;
		ret = move_to_new(j, tmp, new, r);
		if (ret < 0)
			return;
		sub = "new";
	}
	/* Also when it was already there: the crash that left it there may
	 * have come before its directory entry was synced. */
	join(dir, j->f.path, sub, NULL);
#ifdef POSTERN_TEST_NO_DIRSYNC
	/* tests/posternd_nodirsync only: the wrong design that powercut.sh
	 * must catch (the entry in new/ is never made durable). */
	if (0) {
#else
	if (fileio_fsync_dir(dir) < 0) {
#endif
		/* Left in place: the file is complete, and the retry will
		 * find it and sync again. */
		driver_io_fail(r, "maildir", "fsync", dir, errno);
		return;
	}
	r->result = CLAIM_DELIVERED;
	snprintf(r->reply, sizeof(r->reply), "%s",
		 ret == 0 ? "delivered to maildir" : "already in maildir");
}

static int
maildir_deliver(struct driver *d, const struct driver_msg *m,
		struct driver_rcpt *r, size_t n)
{
	struct maildir *md = (struct maildir *)d;
	struct job *j;
	char *body, *hdr;

	if (d == NULL || m == NULL || (r == NULL && n > 0) ||
	    m->sender == NULL || (m->body == NULL && m->body_len > 0))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (r[i].addr == NULL)
			return -1;
	}
	j = xcalloc(1, sizeof(*j));
	body = crlf_to_lf(m->body == NULL ? "" : m->body, m->body_len,
			  &j->body_len);
	j->body = body;
	for (size_t i = 0; i < n; i++) {
		r[i].result = CLAIM_TEMPFAIL;
		r[i].reply[0] = '\0';
		hdr = make_header(m->sender, r[i].addr, &j->hdr_len);
		j->hdr = hdr;
		sha256_two(hdr, j->hdr_len, body, j->body_len, r[i].sha);
		delivery_name(m, r[i].idx, j->name);
		if (map_folder(md, r[i].addr, &j->f, r[i].reply) < 0)
			r[i].result = CLAIM_PERMFAIL;
		else
			deliver_job(j, &r[i]);
		free(hdr);
	}
	free(body);
	free(j);
	return 0;
}

static int
maildir_look(struct driver *d, const struct driver_msg *m,
	     const struct driver_rcpt *r, const char **error_r)
{
	struct maildir *md = (struct maildir *)d;
	char name[NAME_LEN], buf[128];
	struct folder *f;
	const char *sub;
	int ret;

	*error_r = NULL;
	if (d == NULL || m == NULL || r == NULL || r->addr == NULL) {
		*error_r = "maildir look: invalid arguments";
		return -1;
	}
	f = xmalloc(sizeof(*f));
	delivery_name(m, r->idx, name);
	if (map_folder(md, r->addr, f, md->err) < 0) {
		/* Nothing can ever have been delivered there. */
		free(f);
		return 0;
	}
	ret = find_delivery(f, name, &sub);
	if (ret < 0) {
		snprintf(md->err, sizeof(md->err), "4.3.0 maildir read "
			 "failed: %s", strerror_r(errno, buf, sizeof(buf)));
		*error_r = md->err;
	}
	free(f);
	return ret;
}

static void
maildir_free(struct driver **dp)
{
	struct maildir *md = (struct maildir *)*dp;

	*dp = NULL;
	if (md == NULL)
		return;
	free(md->root);
	free(md);
}

static const struct driver_ops maildir_ops = {
	.name = "maildir",
	.can_look = true,
	.deliver_looks = true,
	.deliver = maildir_deliver,
	.look = maildir_look,
	.free = maildir_free,
};

struct driver *
driver_maildir_new(const char *root, enum maildir_layout layout)
{
	struct maildir *md;

	if (root == NULL || *root == '\0' ||
	    strlen(root) >= DRIVER_MAILDIR_ROOT_MAX)
		return NULL;
	if (layout != MAILDIR_LAYOUT_ADDRESS &&
	    layout != MAILDIR_LAYOUT_DOMAIN_LOCAL)
		return NULL;
	md = xcalloc(1, sizeof(*md));
	md->base.ops = &maildir_ops;
	md->root = xstrdup(root);
	md->layout = layout;
	return &md->base;
}
