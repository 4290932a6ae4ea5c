/*
 * test_ccmail_convert.c - the cc:Mail converter and address map: a MIME
 * corpus made by tests/ccmail_corpus.py (Python's email package) is
 * converted, every import file is read back, and every attachment is
 * compared byte for byte with the original; the map, the fallback rule,
 * charsets and the strictness of the reader.
 *
 * Owns:    a scratch directory for the suite (TESTLIB_SUITE_DIR).
 */
#include "ccmail_convert.h"
#include "ccmail_map.h"
#include "testlib.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BASE "0000000000000001.0000000000000002.3"

TESTLIB_SUITE_DIR("ccconv")

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	CU_ASSERT_FATAL(fp != NULL);
	fputs(text, fp);
	fclose(fp);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --- the map and the fallback rule -------------------------------------- */

static void
test_ccmail_convert_map_loads_and_maps_both_ways(void)
{
	char path[4096], name[CCMAIL_NAME_MAX];
	struct ccmail_map *map = NULL;
	const char *err = NULL;

	snprintf(path, sizeof(path), "%s/map.ok", dir);
	write_file(path, "# people\n\n  John.Doe@Foreign.Example = Doe, John "
		   "at SALES\njane@foreign.example=Roe, Jane\r\n");
	CU_ASSERT_EQUAL_FATAL(ccmail_map_load(path, "HQ", &map, &err), 0);
	CU_ASSERT_EQUAL(ccmail_map_count(map), 2);
	CU_ASSERT_STRING_EQUAL(ccmail_map_name(map, "john.doe@FOREIGN.example"),
			       "Doe, John at SALES");
	CU_ASSERT_STRING_EQUAL(ccmail_map_name(map, "jane@foreign.example"),
			       "Roe, Jane at HQ");
	CU_ASSERT_PTR_NULL(ccmail_map_name(map, "nobody@foreign.example"));
	CU_ASSERT_STRING_EQUAL(ccmail_map_address(map, "roe, jane at hq"),
			       "jane@foreign.example");
	CU_ASSERT_EQUAL(ccmail_address_to_name(map, "none", "HQ",
				"JANE@foreign.example", name), 1);
	CU_ASSERT_STRING_EQUAL(name, "Roe, Jane at HQ");
	CU_ASSERT_EQUAL(ccmail_address_to_name(map, "none", "HQ",
				"x@foreign.example", name), 0);
	ccmail_map_free(&map);
	CU_ASSERT_PTR_NULL(map);
	ccmail_map_free(&map);
}

static void
expect_map_error(const char *text, const char *want)
{
	char path[4096];
	struct ccmail_map *map = NULL;
	const char *err = NULL;

	snprintf(path, sizeof(path), "%s/map.bad", dir);
	write_file(path, text);
	CU_ASSERT_EQUAL(ccmail_map_load(path, "HQ", &map, &err), -1);
	CU_ASSERT_PTR_NULL(map);
	CU_ASSERT_PTR_NOT_NULL_FATAL(err);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "\nerror \"%s\" lacks \"%s\"\n", err, want);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
}

static void
test_ccmail_convert_map_errors_name_file_and_line(void)
{
	expect_map_error("a@x = A at B\nno equals sign\n", "map.bad:2: ");
	expect_map_error("# c\nnot-an-address = A\n", "map.bad:2: ");
	expect_map_error("a@x =   \n", "map.bad:1: ");
	expect_map_error("a@x = A\nA@X = B\n", "mapped twice");
	expect_map_error("a@x = A at HQ\nb@x = a at hq\n", "two addresses");
	expect_map_error("a@x = A\nb@x = B\x01\n", "map.bad:2: ");
}

static void
test_ccmail_convert_fallback_rules(void)
{
	char name[CCMAIL_NAME_MAX], why[200];

	CU_ASSERT_EQUAL(ccmail_fallback_check("none", why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(ccmail_fallback_check("%L, %F at %p", why,
					      sizeof(why)), 0);
	CU_ASSERT_EQUAL(ccmail_fallback_check("%L, %F", why, sizeof(why)),
			-1);
	CU_ASSERT_EQUAL(ccmail_fallback_check("%x at P", why, sizeof(why)),
			-1);
	CU_ASSERT_EQUAL(ccmail_fallback_check("%u at P%", why, sizeof(why)),
			-1);
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "%L, %F at %p", "SALES",
				"jOHN.doe@foreign.example", name), 1);
	CU_ASSERT_STRING_EQUAL(name, "Doe, John at SALES");
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "%u at %d 100%%", "P",
				"x_y@f.example", name), 1);
	CU_ASSERT_STRING_EQUAL(name, "x_y at f.example 100%");
	/* %f / %l need first.last; "none" never maps */
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "%l, %f at P", "P",
				"single@f.example", name), 0);
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "none", "P",
				"a.b@f.example", name), 0);
	/* no '@', blanks or non-ASCII in the local part: not mapped */
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "%u at P", "P",
				"postmaster", name), 0);
	CU_ASSERT_EQUAL(ccmail_address_to_name(NULL, "%u at P", "P",
				"j\xc3\xb6rg@f.example", name), 0);
}

static void
test_ccmail_convert_charsets(void)
{
	char why[200];

	CU_ASSERT_EQUAL(ccmail_charset_check("ISO-8859-1", why, sizeof(why)),
			0);
	CU_ASSERT_EQUAL(ccmail_charset_check("UTF-8", why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(ccmail_charset_check("CP850", why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(ccmail_charset_check("UTF-16", why, sizeof(why)), -1);
	CU_ASSERT_EQUAL(ccmail_charset_check("NO-SUCH-CHARSET", why,
					     sizeof(why)), -1);
}

/* --- the corpus ---------------------------------------------------------- */

/* A title from hostile input: usable as a file name on any system. */
static bool
title_is_safe(const char *t)
{
	if (*t == '\0' || *t == '.' || strlen(t) > CCMAIL_TITLE_MAX)
		return false;
	for (; *t != '\0'; t++)
		if ((unsigned char)*t < 0x20 || *t == 0x7f || *t == '/' ||
		    *t == '\\' || *t == ':')
			return false;
	return true;
}

/* One expected item against the rendered document and the file read
 * back. k counts the FILE items seen so far. */
static void
check_item(const char *line, const struct ccmail_doc *doc,
	   const struct ccmail_import_item *it, size_t *k)
{
	char path[4096], title[1024] = "";
	const struct ccmail_file *f;
	size_t len;
	char *want;

	if (sscanf(line, "%*s %4095s %1023[^\n]", path, title) < 1)
		CU_FAIL_FATAL("bad expect line");
	want = testlib_slurp(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(want);
	if (strncmp(line, "text ", 5) == 0) {
		CU_ASSERT_EQUAL(it->kind, CCMAIL_ITEM_TEXT);
		if (it->kind == CCMAIL_ITEM_TEXT) {
			CU_ASSERT_STRING_EQUAL(it->text, want);
		}
		free(want);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(it->kind, CCMAIL_ITEM_FILE);
	CU_ASSERT_FATAL(*k < doc->nfiles);
	f = &doc->files[(*k)++];
	CU_ASSERT_STRING_EQUAL(it->file, f->name);
	CU_ASSERT_EQUAL(it->size, f->item->len);
	if (strncmp(line, "prefix ", 7) == 0) {
		CU_ASSERT(f->item->len > 0 && f->item->len < len);
		CU_ASSERT(memcmp(f->item->data, want, f->item->len) == 0);
	} else {
		CU_ASSERT_EQUAL(f->item->len, len);
		CU_ASSERT(f->item->len == len &&
			  memcmp(f->item->data, want, len) == 0);
		if (strcmp(title, "*") != 0) {
			CU_ASSERT_STRING_EQUAL(it->title, title);
		}
	}
	CU_ASSERT(title_is_safe(it->title));
	free(want);
}

/* Render m in charset, read it back, and return it (caller frees). */
static struct ccmail_import *
round_trip(const struct ccmail_message *m, const char *charset,
	   struct ccmail_doc **doc_r)
{
	struct ccmail_render_args a = { .from_name = "Doe, Jane at HOME",
		.to_name = "Smith, John at FOREIGN", .base = BASE,
		.charset = charset };
	struct ccmail_import *imp = NULL;
	char why[CCMAIL_WHY_LEN];

	CU_ASSERT_EQUAL_FATAL(ccmail_render(m, &a, doc_r, why, sizeof(why)),
			      0);
	if (ccmail_import_parse((*doc_r)->text.data, (*doc_r)->text.len,
				charset, &imp, why, sizeof(why)) < 0)
		fprintf(stderr, "\nread back (%s): %s\n", charset, why);
	CU_ASSERT_PTR_NOT_NULL_FATAL(imp);
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "From"),
			       "Doe, Jane at HOME");
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "To"),
			       "Smith, John at FOREIGN");
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "X-Postern-Id"),
			       BASE);
	return imp;
}

static void
check_converted(const struct ccmail_message *m, char **lines, size_t n)
{
	struct ccmail_import *imp;
	struct ccmail_doc *doc;
	size_t items = 0, k = 0;

	imp = round_trip(m, "UTF-8", &doc);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(lines[i], "subject ", 8) == 0) {
			CU_ASSERT_STRING_EQUAL(m->subject, lines[i] + 8);
			CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp,
					       "Subject"), lines[i] + 8);
		} else if (strncmp(lines[i], "from ", 5) == 0) {
			CU_ASSERT_STRING_EQUAL(m->from, lines[i] + 5);
		} else if (strncmp(lines[i], "subject_latin1 ", 15) != 0) {
			CU_ASSERT_FATAL(items < imp->nitems);
			check_item(lines[i], doc, &imp->items[items++], &k);
		}
	}
	CU_ASSERT_EQUAL(items, imp->nitems);
	CU_ASSERT_EQUAL(k, doc->nfiles);
	ccmail_import_free(&imp);
	ccmail_doc_free(&doc);
	imp = round_trip(m, "ISO-8859-1", &doc);
	for (size_t i = 0; i < n; i++)
		if (strncmp(lines[i], "subject_latin1 ", 15) == 0) {
			CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp,
				"Subject"), lines[i] + 15);
		}
	CU_ASSERT_EQUAL(imp->nitems, m->nitems);
	ccmail_import_free(&imp);
	ccmail_doc_free(&doc);
}

/* Split text into lines in place; returns the count. */
static size_t
split_lines(char *text, char **lines, size_t max)
{
	size_t n = 0;

	for (char *save = NULL, *l = strtok_r(text, "\n", &save);
	     l != NULL && n < max; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	return n;
}

/* Convert case name of the corpus in cdir; 1 if it had a 20 MiB file. */
static void
run_case(const char *cdir, const char *name)
{
	char path[8192], why[CCMAIL_WHY_LEN], *lines[64], *expect, *raw;
	struct ccmail_message *m = NULL;
	size_t elen, rlen, n;
	double t0;
	int rc;

	snprintf(path, sizeof(path), "%s/%s.expect", cdir, name);
	expect = testlib_slurp(path, &elen);
	snprintf(path, sizeof(path), "%s/%s.eml", cdir, name);
	raw = testlib_slurp(path, &rlen);
	CU_ASSERT_FATAL(expect != NULL && raw != NULL);
	n = split_lines(expect, lines, 64);
	t0 = now_ms();
	rc = ccmail_message_parse(raw, rlen, &m, why, sizeof(why));
	if (n == 1 && strcmp(lines[0], "permfail") == 0) {
		CU_ASSERT_EQUAL(rc, -1);
		CU_ASSERT_PTR_NULL(m);
		CU_ASSERT(why[0] != '\0');
	} else {
		if (rc < 0)
			fprintf(stderr, "\n%s: %s\n", name, why);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		check_converted(m, lines, n);
	}
	if (rlen > 20 * 1024 * 1024)
		printf("\nRESULT ccmail_convert %s: %zu bytes parsed, rendered "
		       "twice and read back in %.0f ms\n", name, rlen,
		       now_ms() - t0);
	ccmail_message_free(&m);
	free(expect);
	free(raw);
}

static void
test_ccmail_convert_corpus_round_trips(void)
{
	const char *src = getenv("srcdir");
	char cdir[4096], cmd[8192];
	const char *names[] = { "simple", "koi8", "jis", "nested", "nobody",
				"noblank", "big", "hostile", "truncated",
				"noboundary" };

	snprintf(cdir, sizeof(cdir), "%s/corpus", dir);
	snprintf(cmd, sizeof(cmd), "python3 %s/tests/ccmail_corpus.py %s",
		 src == NULL ? "." : src, cdir);
	if (system(cmd) != 0) {
		fprintf(stderr, "\nskipped: \"%s\" failed\n", cmd);
		return;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		run_case(cdir, names[i]);
	printf("\nRESULT ccmail_convert corpus: %zu messages\n",
	       sizeof(names) / sizeof(names[0]));
}

static void
test_ccmail_convert_unparseable_is_refused(void)
{
	static const char deep_head[] = "Content-Type: multipart/mixed; "
		"boundary=b\r\n\r\n--b\r\n";
	struct ccmail_message *m = NULL;
	char why[CCMAIL_WHY_LEN];
	struct buf b;

	buf_init(&b);
	buf_append_str(&b, "From: a@b\r\nMIME-Version: 1.0\r\n");
	for (int i = 0; i < 2000; i++)
		buf_append_str(&b, deep_head);
	CU_ASSERT_EQUAL(ccmail_message_parse(b.data, b.len, &m, why,
					     sizeof(why)), -1);
	CU_ASSERT_PTR_NULL(m);
	buf_free(&b);
	/* Garbage is text without headers, not a crash. */
	if (ccmail_message_parse("\x01\x02\x03\xff", 4, &m, why,
				 sizeof(why)) == 0) {
		CU_ASSERT_PTR_NOT_NULL(m);
	}
	ccmail_message_free(&m);
}

/* --- the reader is strict ----------------------------------------------- */

static void
expect_refused(const char *text, const char *want)
{
	struct ccmail_import *imp = NULL;
	char why[CCMAIL_WHY_LEN];

	CU_ASSERT_EQUAL(ccmail_import_parse(text, strlen(text), "ISO-8859-1",
					    &imp, why, sizeof(why)), -1);
	CU_ASSERT_PTR_NULL(imp);
	if (strstr(why, want) == NULL)
		fprintf(stderr, "\nreason \"%s\" lacks \"%s\"\n", why, want);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, want));
}

#define HEAD "Message:\r\nFrom: A at B\r\nTo: C at D\r\n"

static void
test_ccmail_convert_reader_refuses_ambiguity(void)
{
	struct ccmail_import *imp = NULL;
	char why[CCMAIL_WHY_LEN];
	const char *good = HEAD "Subject:\r\nContents: 2\r\nText item: 2\r\n"
		"\\From: x\r\nplain\r\nFile item: a.1.att 3 t i t\r\n";

	CU_ASSERT_EQUAL_FATAL(ccmail_import_parse(good, strlen(good),
			"ISO-8859-1", &imp, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(imp->items[0].text, "From: x\nplain\n");
	CU_ASSERT_STRING_EQUAL(imp->items[1].title, "t i t");
	CU_ASSERT_STRING_EQUAL(ccmail_import_field(imp, "Subject"), "");
	ccmail_import_free(&imp);
	expect_refused(HEAD "Contents: 1\r\nText item: 1\r\nFrom: x\r\n",
		       "line 6: unescaped");
	expect_refused(HEAD "Contents: 1\r\nText item: 2\r\nx\r\n",
		       "text ends early");
	expect_refused(HEAD "Contents: 2\r\nText item: 0\r\n", "fewer items");
	expect_refused(HEAD "Contents: 0\r\nextra\r\n", "bytes after");
	expect_refused(HEAD "Contents: 0\n", "CRLF");
	expect_refused("Message:\r\nTo: C\r\nContents: 0\r\n", "no \"From:\"");
	expect_refused(HEAD "Bogus: 1\r\nContents: 0\r\n", "unknown field");
	expect_refused(HEAD "Contents: 1\r\nFile item: ../x 1 t\r\n",
		       "file name");
	expect_refused(HEAD "Contents: 1\r\nFile item: a.att 1\r\n",
		       "needs file, size, title");
	expect_refused("", "no \"Message:\"");
}

static CU_TestInfo ccmail_convert_tests[] = {
	{ "map_loads_and_maps_both_ways",
	  test_ccmail_convert_map_loads_and_maps_both_ways },
	{ "map_errors_name_file_and_line",
	  test_ccmail_convert_map_errors_name_file_and_line },
	{ "fallback_rules", test_ccmail_convert_fallback_rules },
	{ "charsets", test_ccmail_convert_charsets },
	{ "corpus_round_trips", test_ccmail_convert_corpus_round_trips },
	{ "unparseable_is_refused",
	  test_ccmail_convert_unparseable_is_refused },
	{ "reader_refuses_ambiguity",
	  test_ccmail_convert_reader_refuses_ambiguity },
	CU_TEST_INFO_NULL,
};

static int
suite_init_gmime(void)
{
	ccmail_convert_init();
	return suite_init();
}

static CU_SuiteInfo suites[] = {
	{ "ccmail_convert", suite_init_gmime, suite_clean, NULL, NULL,
	  ccmail_convert_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
