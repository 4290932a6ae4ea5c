/*
 * driver_ccmail.c - deliver as cc:Mail-style import files.
 *
 * Owns:    struct ccmail (settings, address map, error buffer); the files
 *          it writes until the import file is renamed into place; the
 *          markers in DROP/.postern/.
 * Threads: one object per worker. Names come from (store_id, qid, idx),
 *          and one worker holds a (qid, idx) at a time, so objects never
 *          write the same file.
 *
 * The import program deletes what it imports, so "is the file there?"
 * cannot tell a delivery that never happened from one already imported.
 * A marker can, if it is made at the right moment. A delivery is:
 *   1. each attachment: write .<name>.tmp, fsync, rename to <name>;
 *   2. write .<base>.ccm.tmp, fsync; fsync DROP;
 *   3. create .postern/<base>, fsync .postern/;      <- the commit point
 *   4. rename .<base>.ccm.tmp to <base>.ccm, fsync DROP.
 * Before 3 nothing is visible to the importer (it takes *.ccm only), and
 * a retry starts over. After 3 the complete, synced .tmp is the delivery:
 * a retry or look() only finishes step 4. So a crash anywhere neither
 * loses the message nor hands it over twice.
 */
#include "driver_ccmail.h"
#include "ccmail_convert.h"
#include "ccmail_map.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

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

#define MARK_DIR	".postern"
/* "<16 hex>.<16 hex>.<idx>" */
#define BASE_LEN	48

static _Thread_local char errbuf[512];

struct ccmail {
	struct driver base;		/* first: (struct driver *) casts */
	char *drop;			/* owned */
	char *charset;			/* owned */
	char *fallback;			/* owned */
	char *postoffice;		/* owned */
	struct ccmail_map *map;		/* owned */
	char err[DRIVER_REPLY_LEN];	/* look()'s *error_r */
};

static void
make_base(const struct driver_msg *m, uint32_t idx, char *base)
{
	snprintf(base, BASE_LEN, "%016" PRIx64 ".%016" PRIx64 ".%" PRIu32,
		 m->store_id, m->qid, idx);
}

/* path = drop "/" a [b] [c]; sized by DRIVER_CCMAIL_DIR_MAX. */
static void
join(char *path, const char *drop, const char *a, const char *b,
     const char *c)
{
	int n = snprintf(path, PATH_MAX, "%s/%s%s%s", drop, a,
			 b == NULL ? "" : b, c == NULL ? "" : c);

	if (n < 0 || n >= PATH_MAX)
		panic("ccmail path longer than PATH_MAX");
}

/* Create path afresh with data, fsync and close it. A leftover from an
 * earlier attempt is removed first, so nothing else shares its inode.
 * 0, or -1 with errno set and path removed. */
static int
write_synced(const char *path, const void *data, size_t len)
{
	int fd, err;

	if (unlink(path) < 0 && errno != ENOENT)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0640);
	if (fd < 0)
		return -1;
	if (fileio_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		err = errno;
		close(fd);
		unlink(path);
		errno = err;
		return -1;
	}
	if (close(fd) < 0) {
		err = errno;
		unlink(path);
		errno = err;
		return -1;
	}
	return 0;
}

static void
sha256(const void *p, size_t len, unsigned char out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 32;

	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, p, len) ||
	    !EVP_DigestFinal_ex(ctx, out, &n))
		panic("SHA-256 failed");
	EVP_MD_CTX_free(ctx);
}

/* Is the marker of base there? 1, 0, or -1 with errno set. */
static int
marked(const struct ccmail *cc, const char *base)
{
	char path[PATH_MAX];
	struct stat st;

	join(path, cc->drop, MARK_DIR "/", base, NULL);
	if (lstat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -1;
}

/* Step 4 for a marked delivery: rename a .tmp that is still there, and
 * sync DROP either way (the crash may have come before the sync). 0, or
 * -1 with errno set and *what_r naming the step. */
static int
finish(const struct ccmail *cc, const char *base, const char **what_r)
{
	char tmp[PATH_MAX], final[PATH_MAX];

	join(tmp, cc->drop, ".", base, ".ccm.tmp");
	join(final, cc->drop, base, ".ccm", NULL);
	*what_r = "rename";
	if (rename(tmp, final) < 0 && errno != ENOENT)
		return -1;
	*what_r = "fsync";
	return fileio_fsync_dir(cc->drop);
}

/* Step 3: the marker, in a directory made on first use. */
static int
mark(const struct ccmail *cc, const char *base)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int fd;

	join(dir, cc->drop, MARK_DIR, NULL, NULL);
	if (mkdir(dir, 0750) == 0) {
		if (fileio_fsync_dir(cc->drop) < 0)
			return -1;
	} else if (errno != EEXIST) {
		return -1;
	}
	join(path, cc->drop, MARK_DIR "/", base, NULL);
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	close(fd);
	return fileio_fsync_dir(dir);
}

/* Remove what an unfinished attempt left (attachments 1..n). */
static void
remove_files(const struct ccmail *cc, const struct ccmail_doc *doc,
	     size_t n)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < n; i++) {
		join(path, cc->drop, doc->files[i].name, NULL, NULL);
		unlink(path);
	}
}

/* Step 1. 0, or -1 with the reply set and the written files removed. */
static int
write_attachments(const struct ccmail *cc, const struct ccmail_doc *doc,
		  struct driver_rcpt *r)
{
	char tmp[PATH_MAX], final[PATH_MAX];

	for (size_t i = 0; i < doc->nfiles; i++) {
		const struct ccmail_file *f = &doc->files[i];
		const char *what = "write";

		join(tmp, cc->drop, ".", f->name, ".tmp");
		join(final, cc->drop, f->name, NULL, NULL);
		if (write_synced(tmp, f->item->data, f->item->len) == 0) {
			what = "rename";
			if (rename(tmp, final) == 0)
				continue;
			unlink(tmp);
		}
		driver_io_fail(r, "ccmail", what, final, errno);
		remove_files(cc, doc, i);
		return -1;
	}
	return 0;
}

/* Steps 1-4 for one recipient whose marker is not there. */
static void
write_delivery(const struct ccmail *cc, const char *base,
	       const struct ccmail_doc *doc, struct driver_rcpt *r)
{
	char tmp[PATH_MAX];
	const char *what = "write";

	join(tmp, cc->drop, ".", base, ".ccm.tmp");
	if (write_attachments(cc, doc, r) < 0)
		return;
	if (write_synced(tmp, doc->text.data, doc->text.len) < 0)
		goto fail;
	what = "fsync";
	if (fileio_fsync_dir(cc->drop) < 0)
		goto fail_tmp;
	what = "marker";
	if (mark(cc, base) < 0)
		goto fail_tmp;
	/* Committed: from here a failure leaves the .tmp for the retry. */
	if (finish(cc, base, &what) < 0) {
		driver_io_fail(r, "ccmail", what, tmp, errno);
		return;
	}
	r->result = CLAIM_DELIVERED;
	snprintf(r->reply, sizeof(r->reply), "delivered to cc:Mail drop "
		 "directory as %s.ccm", base);
	return;
fail_tmp:
	{
		int err = errno;

		unlink(tmp);
		errno = err;
	}
fail:
	driver_io_fail(r, "ccmail", what, tmp, errno);
	remove_files(cc, doc, doc->nfiles);
}

static void
deliver_one(const struct ccmail *cc, const struct driver_msg *m,
	    const struct ccmail_message *msg, const char *from_name,
	    struct driver_rcpt *r)
{
	char name[CCMAIL_NAME_MAX], base[BASE_LEN], why[CCMAIL_WHY_LEN];
	struct ccmail_render_args a;
	struct ccmail_doc *doc;
	const char *what;
	int ret;

	if (ccmail_address_to_name(cc->map, cc->fallback, cc->postoffice,
				   r->addr, name) != 1) {
		r->result = CLAIM_PERMFAIL;
		snprintf(r->reply, sizeof(r->reply), "5.1.1 <%.150s>: no "
			 "cc:Mail name for this address", r->addr);
		return;
	}
	make_base(m, r->idx, base);
	a = (struct ccmail_render_args){ .from_name = from_name,
		.to_name = name, .base = base, .charset = cc->charset };
	if (ccmail_render(msg, &a, &doc, why, sizeof(why)) < 0) {
		r->result = CLAIM_TEMPFAIL;
		snprintf(r->reply, sizeof(r->reply), "4.3.5 ccmail: %s", why);
		return;
	}
	sha256(doc->text.data, doc->text.len, r->sha);
	ret = marked(cc, base);
	if (ret < 0) {
		driver_io_fail(r, "ccmail", "read", cc->drop, errno);
	} else if (ret == 0) {
		write_delivery(cc, base, doc, r);
	} else if (finish(cc, base, &what) < 0) {
		driver_io_fail(r, "ccmail", what, cc->drop, errno);
	} else {
		r->result = CLAIM_DELIVERED;
		snprintf(r->reply, sizeof(r->reply), "already in cc:Mail drop "
			 "directory as %s.ccm", base);
	}
	ccmail_doc_free(&doc);
}

/* Everyone in r[0..n) bounced with the same 5.6.0 reason; nothing was
 * handed over, so the sha is that of no bytes. */
static void
bounce_all(struct driver_rcpt *r, size_t n, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		r[i].result = CLAIM_PERMFAIL;
		snprintf(r[i].reply, sizeof(r[i].reply), "5.6.0 message "
			 "cannot be converted to cc:Mail: %s", why);
		sha256("", 0, r[i].sha);
	}
}

static int
ccmail_deliver(struct driver *d, const struct driver_msg *m,
	       struct driver_rcpt *r, size_t n)
{
	struct ccmail *cc = (struct ccmail *)d;
	struct ccmail_message *msg;
	char why[CCMAIL_WHY_LEN], from[CCMAIL_NAME_MAX];
	const char *faddr;

	if (d == NULL || m == NULL || (r == NULL && n > 0) ||
	    m->sender == NULL || (m->body == NULL && m->body_len > 0))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (r[i].addr == NULL)
			return -1;
		r[i].result = CLAIM_TEMPFAIL;
		r[i].reply[0] = '\0';
	}
	if (ccmail_message_parse(m->body == NULL ? "" : m->body, m->body_len,
				 &msg, why, sizeof(why)) < 0) {
		log_info("ccmail: queue id %" PRIu64 " cannot be converted: "
			 "%s", m->qid, why);
		bounce_all(r, n, why);
		return 0;
	}
	faddr = *msg->from != '\0' ? msg->from :
		*m->sender != '\0' ? m->sender : "MAILER-DAEMON";
	if (ccmail_address_to_name(cc->map, "none", cc->postoffice, faddr,
				   from) != 1)
		snprintf(from, sizeof(from), "%.*s", CCMAIL_NAME_MAX - 1,
			 faddr);
	for (size_t i = 0; i < n; i++)
		deliver_one(cc, m, msg, from, &r[i]);
	ccmail_message_free(&msg);
	return 0;
}

static int
ccmail_look(struct driver *d, const struct driver_msg *m,
	    const struct driver_rcpt *r, const char **error_r)
{
	struct ccmail *cc = (struct ccmail *)d;
	char base[BASE_LEN], buf[128];
	const char *what = "read";
	int ret;

	*error_r = NULL;
	if (d == NULL || m == NULL || r == NULL) {
		*error_r = "ccmail look: invalid arguments";
		return -1;
	}
	make_base(m, r->idx, base);
	ret = marked(cc, base);
	/* Marked: committed, so make it visible before saying yes. */
	if (ret == 1 && finish(cc, base, &what) < 0)
		ret = -1;
	if (ret < 0) {
		snprintf(cc->err, sizeof(cc->err), "4.3.0 ccmail %s failed: "
			 "%s", what, strerror_r(errno, buf, sizeof(buf)));
		*error_r = cc->err;
	}
	return ret;
}

static void
ccmail_free(struct driver **dp)
{
	struct ccmail *cc = (struct ccmail *)*dp;

	*dp = NULL;
	if (cc == NULL)
		return;
	ccmail_map_free(&cc->map);
	free(cc->drop);
	free(cc->charset);
	free(cc->fallback);
	free(cc->postoffice);
	free(cc);
}

static const struct driver_ops ccmail_ops = {
	.name = "ccmail",
	.can_look = true,
	.deliver_looks = true,
	.deliver = ccmail_deliver,
	.look = ccmail_look,
	.free = ccmail_free,
};

struct driver *
driver_ccmail_new(const struct driver_ccmail_opts *o, const char **error_r)
{
	struct ccmail *cc;
	struct ccmail_map *map;
	char why[256];
	const char *err;

	if (o == NULL || o->drop_dir == NULL || o->drop_dir[0] != '/' ||
	    strlen(o->drop_dir) >= DRIVER_CCMAIL_DIR_MAX ||
	    o->charset == NULL || o->fallback == NULL ||
	    o->postoffice == NULL || o->postoffice[0] == '\0') {
		snprintf(errbuf, sizeof(errbuf), "[ccmail] drop_dir, charset, "
			 "fallback and postoffice must be set");
		*error_r = errbuf;
		return NULL;
	}
	ccmail_convert_init();
	if (ccmail_charset_check(o->charset, why, sizeof(why)) < 0 ||
	    ccmail_fallback_check(o->fallback, why, sizeof(why)) < 0) {
		snprintf(errbuf, sizeof(errbuf), "[ccmail] %s", why);
		*error_r = errbuf;
		return NULL;
	}
	if (ccmail_map_load(o->address_map, o->postoffice, &map, &err) < 0) {
		snprintf(errbuf, sizeof(errbuf), "[ccmail] address_map: %s",
			 err);
		*error_r = errbuf;
		return NULL;
	}
	cc = xcalloc(1, sizeof(*cc));
	cc->base.ops = &ccmail_ops;
	cc->drop = xstrdup(o->drop_dir);
	cc->charset = xstrdup(o->charset);
	cc->fallback = xstrdup(o->fallback);
	cc->postoffice = xstrdup(o->postoffice);
	cc->map = map;
	map = NULL;
	return &cc->base;
}
