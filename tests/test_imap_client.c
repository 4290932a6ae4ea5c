/*
 * test_imap_client.c - the pure parts of the IMAP client: status
 * responses, literal announcements, quoting, APPENDUID, probe URLs, and
 * the imap driver's templates. The I/O is exercised against a real
 * Dovecot in tests/integration/imap_dovecot.sh.
 */
#include "driver_imap.h"
#include "imap_client.h"
#include "testlib.h"

#include <string.h>

static int
status(const char *s, struct imap_resp *r)
{
	return imap_parse_status(s, strlen(s), r);
}

static void
test_imap_client_status_with_code(void)
{
	struct imap_resp r;

	CU_ASSERT_EQUAL(status("NO [OVERQUOTA] Quota exceeded", &r), 0);
	CU_ASSERT_EQUAL(r.status, IMAP_NO);
	CU_ASSERT_STRING_EQUAL(r.code, "OVERQUOTA");
	CU_ASSERT_STRING_EQUAL(r.text, "Quota exceeded");
	CU_ASSERT_EQUAL(status("OK [APPENDUID 38505 3955] APPEND completed",
			       &r), 0);
	CU_ASSERT_EQUAL(r.status, IMAP_OK);
	CU_ASSERT_EQUAL(imap_appenduid(r.code), 3955);
	CU_ASSERT_EQUAL(status("ok done", &r), 0);	/* any case */
	CU_ASSERT_EQUAL(r.status, IMAP_OK);
	CU_ASSERT_STRING_EQUAL(r.code, "");
	CU_ASSERT_STRING_EQUAL(r.text, "done");
	CU_ASSERT_EQUAL(status("BYE", &r), 0);		/* no text */
	CU_ASSERT_EQUAL(r.status, IMAP_BYE);
	CU_ASSERT_STRING_EQUAL(r.text, "");
}

static void
test_imap_client_status_rejects_other_lines(void)
{
	struct imap_resp r;

	CU_ASSERT_EQUAL(status("SEARCH 1 2 3", &r), -1);
	CU_ASSERT_EQUAL(status("5 EXISTS", &r), -1);
	CU_ASSERT_EQUAL(status("OKAY fine", &r), -1);
	CU_ASSERT_EQUAL(status("NO [TRYCREATE unclosed", &r), -1);
	CU_ASSERT_EQUAL(imap_appenduid("APPENDUID 1"), 0);
	CU_ASSERT_EQUAL(imap_appenduid("COPYUID 1 2 3"), 0);
}

static void
test_imap_client_literal_announcements(void)
{
	size_t n = 0;

	CU_ASSERT_EQUAL(imap_literal_len("* 1 FETCH (BODY[] {310}", 23, &n), 1);
	CU_ASSERT_EQUAL(n, 310);
	CU_ASSERT_EQUAL(imap_literal_len("a APPEND \"x\" {12+}", 18, &n), 1);
	CU_ASSERT_EQUAL(n, 12);
	CU_ASSERT_EQUAL(imap_literal_len("{0}", 3, &n), 1);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(imap_literal_len("p1 OK done", 10, &n), 0);
	CU_ASSERT_EQUAL(imap_literal_len("text {}", 7, &n), 0);
	CU_ASSERT_EQUAL(imap_literal_len("text {1x}", 9, &n), 0);
	CU_ASSERT_EQUAL(imap_literal_len("}", 1, &n), 0);
}

static void
test_imap_client_quote(void)
{
	struct buf b;

	buf_init(&b);
	CU_ASSERT_EQUAL(imap_quote(&b, "a \"b\" \\c"), 0);
	CU_ASSERT_STRING_EQUAL(b.data, "\"a \\\"b\\\" \\\\c\"");
	buf_reset(&b);
	CU_ASSERT_EQUAL(imap_quote(&b, "line\r\nA1 LOGOUT"), -1);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(imap_quote(&b, "caf\xc3\xa9"), -1);
	buf_free(&b);
}

static void
test_imap_client_url(void)
{
	struct imap_url u;

	CU_ASSERT_EQUAL(imap_url_parse("imap://%l*postern@127.0.0.1:1143/INBOX",
				       &u, NULL), 0);
	CU_ASSERT_STRING_EQUAL(u.user, "%l*postern");
	CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(u.port, "1143");
	CU_ASSERT_STRING_EQUAL(u.mailbox, "INBOX");
	CU_ASSERT_FALSE(u.implicit);
	imap_url_free(&u);
	CU_ASSERT_EQUAL(imap_url_parse("imaps://arch@ive@[::1]/Lists/a", &u,
				       NULL), 0);
	CU_ASSERT_STRING_EQUAL(u.user, "arch@ive");
	CU_ASSERT_STRING_EQUAL(u.host, "::1");
	CU_ASSERT_STRING_EQUAL(u.port, "993");
	CU_ASSERT_STRING_EQUAL(u.mailbox, "Lists/a");
	CU_ASSERT_TRUE(u.implicit);
	imap_url_free(&u);
	CU_ASSERT_EQUAL(imap_url_parse("imap://host/INBOX", NULL, NULL), -1);
	CU_ASSERT_EQUAL(imap_url_parse("imap://u@host:0/INBOX", NULL, NULL),
			-1);
	CU_ASSERT_EQUAL(imap_url_parse("imap://u@host/", NULL, NULL), -1);
	CU_ASSERT_EQUAL(imap_url_parse("http://u@host/INBOX", NULL, NULL), -1);
}

static void
test_imap_client_templates(void)
{
	char out[32];

	CU_ASSERT_EQUAL(driver_expand("%l*master", "alice@example.org",
					   out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "alice*master");
	CU_ASSERT_EQUAL(driver_expand("Users/%d/%u 100%%", "b@x.y", out,
					   sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "Users/x.y/b@x.y 100%");
	CU_ASSERT_EQUAL(driver_expand("%d", "postmaster", out,
					   sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(driver_expand("%u%u%u", "0123456789@abc", out,
					   sizeof(out)), -1);
}

static CU_TestInfo imap_client_tests[] = {
	{ "status_with_code", test_imap_client_status_with_code },
	{ "status_rejects_other_lines",
	  test_imap_client_status_rejects_other_lines },
	{ "literal_announcements", test_imap_client_literal_announcements },
	{ "quote", test_imap_client_quote },
	{ "url", test_imap_client_url },
	{ "templates", test_imap_client_templates },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "imap_client", NULL, NULL, NULL, NULL, imap_client_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
