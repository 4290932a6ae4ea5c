/*
 * test_driver_ccmail.c - the ccmail driver: files and bytes, mapping,
 * refusals, look(), no duplicate after the importer took a file or after
 * a crash at any step, concurrency.
 *
 * Owns:    a scratch drop directory per test (made and removed by it).
 */
#include "ccmail_convert.h"
#include "driver_ccmail.h"
#include "testlib.h"

#include <dirent.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MSG "From: Ann <ann@home.example>\r\nTo: bob@foreign.example\r\n" \
	"Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\nMIME-Version: 1.0\r\n" \
	"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n" \
	"Content-Type: text/plain; charset=utf-8\r\n\r\nHi Bob,\r\n" \
	"From: me\r\n--XX\r\nContent-Type: application/octet-stream\r\n" \
	"Content-Disposition: attachment; filename=\"../a.bin\"\r\n" \
	"Content-Transfer-Encoding: base64\r\n\r\nAAECA/8=\r\n--XX--\r\n"
#define BASE0 "00000000000000aa.0000000000000007.0"
#define BASE1 "00000000000000aa.0000000000000007.1"

static struct driver_msg
msg(uint64_t qid, const char *body)
{
	struct driver_msg m = {
		.store_id = 0xaa, .qid = qid, .sender = "ann@home.example",
		.msgid = "<1@home.example>", .body = body,
		.body_len = strlen(body),
	};

	return m;
}

/* A driver for dir with a map for bob@ and carl@. Caller frees. */
static struct driver *
new_driver(const char *dir, const char *fallback)
{
	char map[4096];
	struct driver_ccmail_opts o = { .drop_dir = dir,
		.charset = "ISO-8859-1", .address_map = map,
		.fallback = fallback, .postoffice = "FOREIGN" };
	const char *err = NULL;
	struct driver *d;
	FILE *fp;

	snprintf(map, sizeof(map), "%s.map", dir);
	fp = fopen(map, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	fputs("bob@foreign.example = Smith, Bob\n"
	      "carl@foreign.example = Carlsen, Carl at OTHER\n", fp);
	fclose(fp);
	d = driver_ccmail_new(&o, &err);
	if (d == NULL)
		fprintf(stderr, "\n%s\n", err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	return d;
}

/* A fresh TMP/drop; the caller removes the parent. */
static char *
new_drop(char **parent_r)
{
	char *parent = testlib_tmpdir("cc"), *drop = malloc(4096);

	snprintf(drop, 4096, "%s/drop", parent);
	CU_ASSERT_FATAL(mkdir(drop, 0700) == 0);
	*parent_r = parent;
	return drop;
}

static bool
exists(const char *dir, const char *name)
{
	char path[8192];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

/* Entries in dir whose name ends in suffix ("" all but . and ..). */
static int
count(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t sl = strlen(suffix);
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0 && l >= sl &&
		    strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void
unlink_in(const char *dir, const char *name)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CU_ASSERT_EQUAL(unlink(path), 0);
}

static void
test_driver_ccmail_delivers_import_file_and_attachment(void)
{
	char *parent, *drop = new_drop(&parent), path[8192], why[200];
	struct driver *d = new_driver(drop, "none");
	struct driver_msg m = msg(7, MSG);
	struct driver_rcpt r[2] = { { .idx = 0, .addr = "Bob@foreign.example" },
				    { .idx = 1, .addr = "zed@foreign.example" } };
	struct ccmail_import *imp = NULL;
	unsigned char sha[32];
	unsigned int shalen;
	size_t len;
	char *text;

	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 2), 0);
	CU_ASSERT_EQUAL(r[0].result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(r[1].result, CLAIM_PERMFAIL);
	CU_ASSERT_NSTRING_EQUAL(r[1].reply, "5.1.1 <zed@foreign.example>", 27);
	snprintf(path, sizeof(path), "%s/" BASE0 ".ccm", drop);
	text = testlib_slurp(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	EVP_Digest(text, len, sha, &shalen, EVP_sha256(), NULL);
	CU_ASSERT(memcmp(sha, r[0].sha, 32) == 0);
	CU_ASSERT_EQUAL_FATAL(ccmail_import_parse(text, len, "ISO-8859-1",
						  &imp, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "To"),
			       "Smith, Bob at FOREIGN");
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "From"),
			       "ann@home.example");
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "Subject"),
			       "Gr\xc3\xbc\xc3\x9f" "e");
	CU_ASSERT_EQUAL_FATAL(imp->nitems, 2);
	CU_ASSERT_STRING_EQUAL(imp->items[0].text, "Hi Bob,\nFrom: me\n");
	CU_ASSERT_STRING_EQUAL(imp->items[1].file, BASE0 ".1.att");
	CU_ASSERT_STRING_EQUAL(imp->items[1].title, "a.bin");
	free(text);
	snprintf(path, sizeof(path), "%s/" BASE0 ".1.att", drop);
	text = testlib_slurp(path, &len);
	CU_ASSERT(text != NULL && len == 5 &&
		  memcmp(text, "\x00\x01\x02\x03\xff", 5) == 0);
	free(text);
	/* nothing for the refused one, no temporary file left */
	CU_ASSERT_EQUAL(count(drop, ""), 3);
	CU_ASSERT(exists(drop, ".postern/" BASE0));
	CU_ASSERT(!exists(drop, ".postern/" BASE1));
	ccmail_import_free(&imp);
	driver_free(&d);
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

static void
test_driver_ccmail_look_survives_the_importer(void)
{
	char *parent, *drop = new_drop(&parent);
	struct driver *d = new_driver(drop, "none");
	struct driver_msg m = msg(7, MSG);
	struct driver_rcpt r = { .idx = 0, .addr = "bob@foreign.example" };
	const char *err;

	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 1);
	/* the import program takes the files away */
	unlink_in(drop, BASE0 ".ccm");
	unlink_in(drop, BASE0 ".1.att");
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 1);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_NSTRING_EQUAL(r.reply, "already", 7);
	CU_ASSERT_EQUAL(count(drop, ".ccm"), 0);
	CU_ASSERT_EQUAL(count(drop, ".att"), 0);
	driver_free(&d);
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

/* A crash after the marker, before the rename: look() finishes it. */
static void
test_driver_ccmail_crash_after_commit_is_finished(void)
{
	char *parent, *drop = new_drop(&parent), a[8192], b[8192];
	struct driver *d = new_driver(drop, "none");
	struct driver_msg m = msg(7, MSG);
	struct driver_rcpt r = { .idx = 0, .addr = "bob@foreign.example" };
	const char *err;

	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	snprintf(a, sizeof(a), "%s/" BASE0 ".ccm", drop);
	snprintf(b, sizeof(b), "%s/." BASE0 ".ccm.tmp", drop);
	CU_ASSERT_EQUAL_FATAL(rename(a, b), 0);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 1);
	CU_ASSERT(exists(drop, BASE0 ".ccm"));
	CU_ASSERT(!exists(drop, "." BASE0 ".ccm.tmp"));
	/* and the same through deliver() */
	CU_ASSERT_EQUAL_FATAL(rename(a, b), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT(exists(drop, BASE0 ".ccm"));
	CU_ASSERT_EQUAL(count(drop, ".ccm"), 1);
	CU_ASSERT_EQUAL(count(drop, ".tmp"), 0);
	driver_free(&d);
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

/* A crash before the marker: leftovers are replaced, one delivery. */
static void
test_driver_ccmail_crash_before_commit_starts_over(void)
{
	char *parent, *drop = new_drop(&parent), path[8192];
	struct driver *d = new_driver(drop, "none");
	struct driver_msg m = msg(7, MSG);
	struct driver_rcpt r = { .idx = 0, .addr = "bob@foreign.example" };
	const char *err;
	size_t len;
	char *text;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/." BASE0 ".ccm.tmp", drop);
	fp = fopen(path, "w");
	fputs("half a file", fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/" BASE0 ".1.att", drop);
	fp = fopen(path, "w");
	fputs("stale attachment", fp);
	fclose(fp);
	CU_ASSERT_EQUAL(driver_look(d, &m, &r, &err), 0);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, &r, 1), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	text = testlib_slurp(path, &len);
	CU_ASSERT(text != NULL && len == 5);
	free(text);
	CU_ASSERT_EQUAL(count(drop, ".ccm"), 1);
	CU_ASSERT_EQUAL(count(drop, ".tmp"), 0);
	driver_free(&d);
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

static void
test_driver_ccmail_refusals_and_failures(void)
{
	char *parent, *drop = new_drop(&parent), missing[8192];
	struct driver *d = new_driver(drop, "%L, %F at %p");
	struct driver_msg m = msg(8, "From: a@b\r\nMIME-Version: 1.0\r\n"
				  "Content-Type: multipart/mixed\r\n\r\n"
				  "--x\r\n\r\nlost\r\n--x--\r\n");
	struct driver_rcpt r[2] = { { .idx = 0, .addr = "bob@foreign.example" },
				    { .idx = 1, .addr = "x.y@foreign.example" } };
	struct driver_ccmail_opts o = { .drop_dir = drop, .charset = "UTF-8",
		.address_map = missing, .fallback = "none",
		.postoffice = "P" };
	const char *err = NULL;

	/* unconvertible: 5.6.0 for everyone, nothing written */
	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 2), 0);
	CU_ASSERT_EQUAL(r[0].result, CLAIM_PERMFAIL);
	CU_ASSERT_EQUAL(r[1].result, CLAIM_PERMFAIL);
	CU_ASSERT_NSTRING_EQUAL(r[0].reply, "5.6.0 ", 6);
	CU_ASSERT_EQUAL(count(drop, ""), 0);
	/* the fallback maps x.y@ */
	m = msg(9, MSG);
	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 2), 0);
	CU_ASSERT_EQUAL(r[1].result, CLAIM_DELIVERED);
	CU_ASSERT_EQUAL(count(drop, ".ccm"), 2);
	driver_free(&d);
	/* a missing drop directory is temporary */
	snprintf(missing, sizeof(missing), "%s/nodir", parent);
	d = new_driver(missing, "none");
	CU_ASSERT_EQUAL(driver_deliver(d, &m, r, 1), 0);
	CU_ASSERT_EQUAL(r[0].result, CLAIM_TEMPFAIL);
	CU_ASSERT_NSTRING_EQUAL(r[0].reply, "4.3.0 ", 6);
	driver_free(&d);
	/* a bad map or setting is refused at creation */
	snprintf(missing, sizeof(missing), "%s/nomap", parent);
	CU_ASSERT_PTR_NULL(driver_ccmail_new(&o, &err));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nomap"));
	o.address_map = NULL;
	o.charset = "UTF-16";
	CU_ASSERT_PTR_NULL(driver_ccmail_new(&o, &err));
	o.charset = "UTF-8";
	o.drop_dir = "relative";
	CU_ASSERT_PTR_NULL(driver_ccmail_new(&o, &err));
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

#define THREADS		4
#define PER_THREAD	50

struct worker_arg {
	const char *drop;
	int id;
	int delivered;
};

/* One worker with its own driver, as in posternd. */
static void *
worker(void *p)
{
	struct worker_arg *a = p;
	struct driver_ccmail_opts o = { .drop_dir = a->drop,
		.charset = "ISO-8859-1", .fallback = "%u at %p",
		.postoffice = "P" };
	const char *err;
	struct driver *d = driver_ccmail_new(&o, &err);

	for (int i = 0; d != NULL && i < PER_THREAD; i++) {
		struct driver_msg m = msg((uint64_t)(a->id * 1000 + i), MSG);
		struct driver_rcpt r = { .idx = 0, .addr = "u@f.example" };

		if (driver_deliver(d, &m, &r, 1) == 0 &&
		    r.result == CLAIM_DELIVERED)
			a->delivered++;
	}
	driver_free(&d);
	return NULL;
}

static void
test_driver_ccmail_concurrent_workers_share_drop_dir(void)
{
	char *parent, *drop = new_drop(&parent);
	struct worker_arg args[THREADS];
	pthread_t t[THREADS];

	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct worker_arg){ .drop = drop, .id = i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, worker,
						     &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT_EQUAL(args[i].delivered, PER_THREAD);
	}
	CU_ASSERT_EQUAL(count(drop, ".ccm"), THREADS * PER_THREAD);
	CU_ASSERT_EQUAL(count(drop, ".att"), THREADS * PER_THREAD);
	testlib_rmtree(parent);
	free(parent);
	free(drop);
}

static CU_TestInfo driver_ccmail_tests[] = {
	{ "delivers_import_file_and_attachment",
	  test_driver_ccmail_delivers_import_file_and_attachment },
	{ "look_survives_the_importer",
	  test_driver_ccmail_look_survives_the_importer },
	{ "crash_after_commit_is_finished",
	  test_driver_ccmail_crash_after_commit_is_finished },
	{ "crash_before_commit_starts_over",
	  test_driver_ccmail_crash_before_commit_starts_over },
	{ "refusals_and_failures", test_driver_ccmail_refusals_and_failures },
	{ "concurrent_workers_share_drop_dir",
	  test_driver_ccmail_concurrent_workers_share_drop_dir },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "driver_ccmail", NULL, NULL, NULL, NULL, driver_ccmail_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
