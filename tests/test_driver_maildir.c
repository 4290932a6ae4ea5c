/*
 * test_driver_maildir.c - the Maildir driver: names, bytes, look(),
 * no duplicates on repeat, safe folder names, failures, concurrency.
 *
 * Owns:    a scratch directory per test (made and removed by the test).
 */
#include "driver_maildir.h"
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define BODY "Subject: hi\r\nFrom: <a@b>\r\n\r\nline 1\r\nbare\rcr\r\n"
#define BODY_LF "Subject: hi\nFrom: <a@b>\n\nline 1\nbare\rcr\n"

static struct driver_msg
msg(uint64_t store_id, uint64_t qid)
{
	struct driver_msg m = {
		.store_id = store_id,
		.qid = qid,
		.sender = "s@x.org",
		.msgid = "<1@x.org>",
		.body = BODY,
		.body_len = sizeof(BODY) - 1,
	};

	return m;
}

static char *
path_of(const char *root, const char *folder, const char *sub,
	const char *name)
{
	static char buf[4096];

	int n = snprintf(buf, sizeof(buf), "%s/%s%s%s%s%s", root, folder,
			 *sub == '\0' ? "" : "/", sub,
			 name == NULL ? "" : "/", name == NULL ? "" : name);

	if (n < 0 || (size_t)n >= sizeof(buf))
		abort();
	return buf;
}

/* Entries in dir other than "." and ".."; -1 if it cannot be opened. */
static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void
test_driver_maildir_delivers_one_file_per_recipient(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(0x1122334455667788ULL, 42);
	struct driver_rcpt r[2] = {
		{ .idx = 0, .addr = "Alice@X.org" },
		{ .idx = 7, .addr = "bob@y.org" },
	};
	const char *name[2] = {
		"1122334455667788.000000000000002a.0.postern",
		"1122334455667788.000000000000002a.7.postern",
	};
	const char *folder[2] = { "alice@x.org", "bob@y.org" };
	unsigned char sha[32];
	unsigned int shalen = 32;

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_STRING_EQUAL(d->ops->name, "maildir");
	CU_ASSERT_TRUE(d->ops->can_look);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 2), 0);
	for (int i = 0; i < 2; i++) {
		char want[512], *got;
		size_t len;
		int n;

		CU_ASSERT_EQUAL(r[i].result, CLAIM_DELIVERED);
		CU_ASSERT_STRING_EQUAL(r[i].reply, "delivered to maildir");
		n = snprintf(want, sizeof(want), "Return-Path: <s@x.org>\n"
			     "Delivered-To: %s\n%s", r[i].addr, BODY_LF);
		got = testlib_slurp(path_of(root, folder[i], "new", name[i]), &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(got);
		CU_ASSERT_EQUAL(len, (size_t)n);
		CU_ASSERT_EQUAL(memcmp(got, want, len), 0);
		EVP_Digest(got, len, sha, &shalen, EVP_sha256(), NULL);
		CU_ASSERT_EQUAL(memcmp(sha, r[i].sha, 32), 0);
		free(got);
		CU_ASSERT_EQUAL(count_entries(path_of(root, folder[i], "new",
						      NULL)), 1);
		CU_ASSERT_EQUAL(count_entries(path_of(root, folder[i], "tmp",
						      NULL)), 0);
		CU_ASSERT_TRUE(is_dir(path_of(root, folder[i], "cur", NULL)));
	}
	driver_free(&d);
	CU_ASSERT_PTR_NULL(d);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_null_sender_and_misuse(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(1, 1);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x" };
	char *got;
	size_t len;

	m.sender = "";
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	got = testlib_slurp(path_of(root, "a@x", "new",
			    "0000000000000001.0000000000000001.0.postern"),
		    &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_EQUAL(strncmp(got, "Return-Path: <>\nDelivered-To: a@x\n",
				34), 0);
	free(got);
	CU_ASSERT_EQUAL(driver_deliver(d, NULL, &r, 1), -1);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, NULL, 1), -1);
	r.addr = NULL;
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), -1);
	CU_ASSERT_PTR_NULL(driver_maildir_new("", MAILDIR_LAYOUT_ADDRESS));
	CU_ASSERT_PTR_NULL(driver_maildir_new(root, 0));
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_look_before_and_after_delivery(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(5, 9);
	struct driver_rcpt r = { .idx = 3, .addr = "a@x.org" };
	struct driver_rcpt other = { .idx = 4, .addr = "a@x.org" };
	const char *name = "0000000000000005.0000000000000009.3.postern";
	const char *err = "x";
	char from[4096];

	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 0);
	CU_ASSERT_PTR_NULL(err);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 1);
	CU_ASSERT_EQUAL(driver_look(d, &m, &other, &err), 0);
	/* A reader moves it to cur/ and marks it seen. */
	snprintf(from, sizeof(from), "%s", path_of(root, "a@x.org", "new",
						   name));
	CU_ASSERT_EQUAL(rename(from, path_of(root, "a@x.org", "cur",
					     "0000000000000005."
					     "0000000000000009.3.postern:2,S")),
			0);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 1);
	CU_ASSERT_EQUAL(driver_look(d, &m, &other, &err), 0);
	/* A name that only starts like ours is not ours. */
	snprintf(from, sizeof(from), "%s", path_of(root, "a@x.org", "cur",
						   "0000000000000005."
						   "0000000000000009.4."
						   "posternX"));
	close(open(from, O_CREAT | O_WRONLY, 0600));
	CU_ASSERT_EQUAL(driver_look(d, &m, &other, &err), 0);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_second_deliver_makes_no_second_file(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(5, 10);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x.org" };
	const char *name = "0000000000000005.000000000000000a.0.postern";
	unsigned char sha[32];
	char from[4096];

	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	memcpy(sha, r.sha, 32);
	memset(r.sha, 0, 32);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_STRING_EQUAL(r.reply, "already in maildir");
	CU_ASSERT_EQUAL(memcmp(sha, r.sha, 32), 0);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "new", NULL)),
			1);
	/* Moved to cur/ (plain, then with flags): still no new copy. */
	snprintf(from, sizeof(from), "%s", path_of(root, "a@x.org", "new",
						   name));
	CU_ASSERT_EQUAL(rename(from, path_of(root, "a@x.org", "cur", name)),
			0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "already in maildir");
	snprintf(from, sizeof(from), "%s", path_of(root, "a@x.org", "cur",
						   name));
	CU_ASSERT_EQUAL(rename(from, path_of(root, "a@x.org", "cur",
					     "0000000000000005."
					     "000000000000000a.0.postern"
					     ":2,RS")), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_STRING_EQUAL(r.reply, "already in maildir");
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "new", NULL)),
			0);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "cur", NULL)),
			1);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_leftover_tmp_is_overwritten(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(5, 11);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x.org" };
	const char *name = "0000000000000005.000000000000000b.0.postern";
	char tmp[4096], *got;
	size_t len;
	FILE *fp;

	CU_ASSERT_EQUAL(mkdir(path_of(root, "a@x.org", "", NULL), 0700), 0);
	CU_ASSERT_EQUAL(mkdir(path_of(root, "a@x.org", "tmp", NULL), 0700),
			0);
	snprintf(tmp, sizeof(tmp), "%s", path_of(root, "a@x.org", "tmp",
						  name));
	fp = fopen(tmp, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	for (int i = 0; i < 1000; i++)
		fputs("half-written junk from a crash\n", fp);
	fclose(fp);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	got = testlib_slurp(path_of(root, "a@x.org", "new", name), &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_EQUAL(len, strlen("Return-Path: <s@x.org>\n"
				    "Delivered-To: a@x.org\n" BODY_LF));
	free(got);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "tmp", NULL)),
			0);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_store_id_changes_the_name(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m1 = msg(1, 77), m2 = msg(2, 77);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x.org" };
	const char *err;

	CU_ASSERT_EQUAL(driver_deliver(d, &m1, &r, 1), 0);
	CU_ASSERT_EQUAL(driver_look(d, &m2, &r, &err), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m2, &r, 1), 0);
	CU_ASSERT_STRING_EQUAL(r.reply, "delivered to maildir");
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "new", NULL)),
			2);
	CU_ASSERT_EQUAL(access(path_of(root, "a@x.org", "new",
				       "0000000000000002.000000000000004d.0."
				       "postern"), F_OK), 0);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_unsafe_addresses_are_encoded(void)
{
	static const struct {
		const char *addr, *folder;
	} cases[] = {
		{ "../../etc@x", "%2E.%2F..%2Fetc@x" },
		{ "a/b@c", "a%2Fb@c" },
		{ ".hidden@x", "%2Ehidden@x" },
		{ "..", "%2E." },
		{ ".", "%2E" },
		{ "a\001b\r\n@x", "a%01b%0D%0A@x" },
		{ "UPPER@X.ORG", "upper@x.org" },
		{ "%41@x", "%2541@x" },
		{ "a..b@x", "a..b@x" },
	};
	size_t n = sizeof(cases) / sizeof(cases[0]);
	char *base = testlib_tmpdir("md"), root[4096], *got;
	const char *want;
	struct driver *d;
	struct driver_msg m = msg(3, 3);
	struct driver_rcpt r;
	size_t len;

	snprintf(root, sizeof(root), "%s/root", base);
	CU_ASSERT_EQUAL_FATAL(mkdir(root, 0700), 0);
	d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	for (size_t i = 0; i < n; i++) {
		memset(&r, 0, sizeof(r));
		r.addr = cases[i].addr;
		CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
		CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
		CU_ASSERT_EQUAL(count_entries(path_of(root, cases[i].folder,
						      "new", NULL)), 1);
	}
	/* Everything landed directly under root, nothing beside it. */
	CU_ASSERT_EQUAL(count_entries(root), (int)n);
	CU_ASSERT_EQUAL(count_entries(base), 1);
	/* The header cannot be split by an envelope CR LF. */
	got = testlib_slurp(path_of(root, "a%01b%0D%0A@x", "new",
			    "0000000000000003.0000000000000003.0.postern"),
		    &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	want = "Return-Path: <s@x.org>\nDelivered-To: a?b??@x\nSubject: hi\n";
	CU_ASSERT_EQUAL(strncmp(got, want, strlen(want)), 0);
	free(got);
	/* Unmappable: a permanent failure, and nothing written. */
	memset(&r, 0, sizeof(r));
	r.addr = "";
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(strncmp(r.reply, "5.1.3 ", 6), 0);
	CU_ASSERT_EQUAL(count_entries(root), (int)n);
	driver_free(&d);
	testlib_rmtree(base);
	free(base);
}

static void
test_driver_maildir_overlong_address_is_permfail(void)
{
	char *root = testlib_tmpdir("md"), addr[400];
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(3, 4);
	struct driver_rcpt r = { .idx = 0, .addr = addr };

	memset(addr, 'a', 300);
	strcpy(addr + 300, "@x.org");
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(strncmp(r.reply, "5.1.3 ", 6), 0);
	CU_ASSERT_EQUAL(count_entries(root), 0);
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_domain_local_layout(void)
{
	char *base = testlib_tmpdir("md"), root[4096];
	struct driver *d;
	struct driver_msg m = msg(6, 6);
	struct driver_rcpt r[4] = {
		{ .idx = 0, .addr = "User@Example.COM" },
		{ .idx = 1, .addr = "../x@.." },
		{ .idx = 2, .addr = "nodomain" },
		{ .idx = 3, .addr = "@x.org" },
	};
	const char *err;

	snprintf(root, sizeof(root), "%s/root", base);
	CU_ASSERT_EQUAL_FATAL(mkdir(root, 0700), 0);
	d = driver_maildir_new(root, MAILDIR_LAYOUT_DOMAIN_LOCAL);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r[0], &err), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 4), 0);
	CU_ASSERT_EQUAL(r[0].result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "example.com/user", "new",
					      NULL)), 1);
	CU_ASSERT_EQUAL(r[1].result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "%2E./%2E.%2Fx", "new",
					      NULL)), 1);
	CU_ASSERT_EQUAL(r[2].result, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(strncmp(r[2].reply, "5.1.3 ", 6), 0);
	CU_ASSERT_EQUAL(r[3].result, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(count_entries(root), 2);
	CU_ASSERT_EQUAL(count_entries(base), 1);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r[0], &err), 1);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r[1], &err), 1);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r[2], &err), 0);
	driver_free(&d);
	testlib_rmtree(base);
	free(base);
}

static void
test_driver_maildir_unwritable_folder_is_tempfail(void)
{
	char *root = testlib_tmpdir("md"), missing[4096];
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(7, 7);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x.org" };
	const char *err = NULL;
	int fd;

	/* Tests run as root, so permissions do not stop us: a regular file
	 * where the folder should be does. */
	fd = open(path_of(root, "a@x.org", "", NULL), O_CREAT | O_WRONLY,
		  0600);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_EQUAL(strncmp(r.reply, "4.3.0 maildir ", 14), 0);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), -1);
	CU_ASSERT_PTR_NOT_NULL(err);
	/* Folder exists, but tmp/ is a file: mkdir fails. */
	r.addr = "b@x.org";
	CU_ASSERT_EQUAL(mkdir(path_of(root, "b@x.org", "", NULL), 0700), 0);
	fd = open(path_of(root, "b@x.org", "tmp", NULL), O_CREAT | O_WRONLY,
		  0600);
	close(fd);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_EQUAL(strncmp(r.reply, "4.3.0 maildir ", 14), 0);
	CU_ASSERT_TRUE(count_entries(path_of(root, "b@x.org", "new", NULL))
		       <= 0);
	/* A missing root is never created (it may be an unmounted fs). */
	snprintf(missing, sizeof(missing), "%s/nonexistent", root);
	driver_free(&d);
	d = driver_maildir_new(missing, MAILDIR_LAYOUT_ADDRESS);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_FALSE(is_dir(missing));
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

static void
test_driver_maildir_write_failure_leaves_nothing(void)
{
	char *root = testlib_tmpdir("md");
	struct driver *d = driver_maildir_new(root, MAILDIR_LAYOUT_ADDRESS);
	struct driver_msg m = msg(8, 8);
	struct driver_rcpt r = { .idx = 0, .addr = "a@x.org" }, r2 = { 0 };
	struct rlimit old, lim;
	void (*old_handler)(int);

	/* Make the folder first, so only the file write can fail. */
	CU_ASSERT_EQUAL(driver_deliver(d, &(struct driver_msg){ .qid = 1,
		.sender = "", .body = "", .body_len = 0 }, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	/* A file-size limit makes write() fail with EFBIG: a stand-in for
	 * ENOSPC/EDQUOT/EIO, which take the same path. */
	old_handler = signal(SIGXFSZ, SIG_IGN);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 20;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, old_handler);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(r.reply,
			       "4.3.0 maildir write failed: File too large");
	/* A full file system and a quota have codes of their own. */
	driver_io_fail(&r2, "maildir", "write", "/x", ENOSPC);
	CU_ASSERT_EQUAL(r2.result, CLAIM_TEMPFAIL);
	CU_ASSERT_EQUAL(strncmp(r2.reply, "4.3.1 maildir write failed: ", 28),
			0);
	driver_io_fail(&r2, "maildir", "fsync", "/x", EDQUOT);
	CU_ASSERT_EQUAL(r2.result, CLAIM_TEMPFAIL);
	CU_ASSERT_EQUAL(strncmp(r2.reply, "4.2.2 maildir fsync failed: ", 28),
			0);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "new", NULL)),
			1);
	CU_ASSERT_EQUAL(count_entries(path_of(root, "a@x.org", "tmp", NULL)),
			0);
	/* The retry succeeds. */
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_STRING_EQUAL(r.reply, "delivered to maildir");
	driver_free(&d);
	testlib_rmtree(root);
	free(root);
}

#define THREADS 8
#define PER_THREAD 500

struct worker_arg {
	const char *root;
	int id;
	int delivered;
};

/* One driver per thread, as in posternd: 250 messages x 2 recipients,
 * one recipient in each of two shared Maildirs. */
static void *
worker(void *p)
{
	struct worker_arg *a = p;
	struct driver *d = driver_maildir_new(a->root, MAILDIR_LAYOUT_ADDRESS);

	for (int i = 0; i < PER_THREAD / 2; i++) {
		struct driver_msg m = msg(9, (uint64_t)a->id * 100000 + i);
		struct driver_rcpt r[2] = {
			{ .idx = 0, .addr = "one@x.org" },
			{ .idx = 1, .addr = "two@x.org" },
		};

		if (driver_deliver(d, &m, r, 2) != 0)
			continue;
		for (int k = 0; k < 2; k++)
			a->delivered += r[k].result == CLAIM_DELIVERED;
	}
	driver_free(&d);
	return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_driver_maildir_concurrent_workers_share_maildirs(void)
{
	char *root = testlib_tmpdir("md");
	pthread_t th[THREADS];
	struct worker_arg args[THREADS];
	char **names = calloc(THREADS * PER_THREAD + 1, sizeof(*names));
	const char *folders[2] = { "one@x.org", "two@x.org" };
	int total = 0, n = 0, dups = 0;

	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct worker_arg){ .root = root, .id = i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, worker,
						     &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		total += args[i].delivered;
	}
	CU_ASSERT_EQUAL(total, THREADS * PER_THREAD);
	for (int f = 0; f < 2; f++) {
		DIR *dir = opendir(path_of(root, folders[f], "new", NULL));
		struct dirent *de;

		CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.' || n >= THREADS * PER_THREAD)
				continue;
			names[n++] = strdup(de->d_name);
		}
		closedir(dir);
		CU_ASSERT_EQUAL(count_entries(path_of(root, folders[f], "tmp",
						      NULL)), 0);
	}
	CU_ASSERT_EQUAL(n, THREADS * PER_THREAD);
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	for (int i = 1; i < n; i++)
		dups += strcmp(names[i - 1], names[i]) == 0;
	CU_ASSERT_EQUAL(dups, 0);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	testlib_rmtree(root);
	free(root);
}

static CU_TestInfo driver_maildir_tests[] = {
	{ "delivers_one_file_per_recipient",
	  test_driver_maildir_delivers_one_file_per_recipient },
	{ "null_sender_and_misuse",
	  test_driver_maildir_null_sender_and_misuse },
	{ "look_before_and_after_delivery",
	  test_driver_maildir_look_before_and_after_delivery },
	{ "second_deliver_makes_no_second_file",
	  test_driver_maildir_second_deliver_makes_no_second_file },
	{ "leftover_tmp_is_overwritten",
	  test_driver_maildir_leftover_tmp_is_overwritten },
	{ "store_id_changes_the_name",
	  test_driver_maildir_store_id_changes_the_name },
	{ "unsafe_addresses_are_encoded",
	  test_driver_maildir_unsafe_addresses_are_encoded },
	{ "overlong_address_is_permfail",
	  test_driver_maildir_overlong_address_is_permfail },
	{ "domain_local_layout",
	  test_driver_maildir_domain_local_layout },
	{ "unwritable_folder_is_tempfail",
	  test_driver_maildir_unwritable_folder_is_tempfail },
	{ "write_failure_leaves_nothing",
	  test_driver_maildir_write_failure_leaves_nothing },
	{ "concurrent_workers_share_maildirs",
	  test_driver_maildir_concurrent_workers_share_maildirs },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "driver_maildir", NULL, NULL, NULL, NULL, driver_maildir_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
