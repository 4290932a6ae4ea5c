/*
 * test_dsn.c - the RFC 3464 report builder.
 */
#include "dsn.h"
#include "testlib.h"

#include <string.h>

static void
test_dsn_status_from_reply(void)
{
	char st[16];

	CU_ASSERT_STRING_EQUAL(dsn_status("mx:25 said: 550 5.1.1 <x>: no",
					  st), "5.1.1");
	CU_ASSERT_STRING_EQUAL(dsn_status("mx:25 said: 552 5.3.4 size", st),
			       "5.3.4");
	/* gave up on a temporary failure: expired */
	CU_ASSERT_STRING_EQUAL(dsn_status("4.4.1 mx:25: connect refused",
					  st), "5.4.7");
	CU_ASSERT_STRING_EQUAL(dsn_status("no code at all", st), "5.0.0");
	/* an address like 10.5.1.1 is not a status code */
	CU_ASSERT_STRING_EQUAL(dsn_status("host 10.5.1.12 said: 554", st),
			       "5.0.0");
}

static void
test_dsn_build_is_a_delivery_report(void)
{
	struct dsn_msg m = { .reporting_mta = "mx.home.example",
			     .sender = "alice@home.example", .qid = 0x2A,
			     .arrival = 1700000000, .now = 1700000100,
			     .headers = "Subject: hi\r\nFrom: alice\r\n",
			     .headers_len = 26 };
	struct dsn_rcpt r[2] = {
		{ "x@foreign.example", "mx:25 said: 550 5.1.1 unknown" },
		{ "y@foreign.example", "4.4.2 timeout\r\nBcc: evil@x" },
	};
	struct buf b;
	char *p;

	buf_init(&b);
	dsn_build(&b, &m, r, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "\r\nTo: <alice@home.example>"
				      "\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "Content-Type: multipart/report;"
				      " report-type=delivery-status;"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "Reporting-MTA: dns; "
				      "mx.home.example\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "Final-Recipient: rfc822; "
				      "x@foreign.example\r\nAction: failed\r\n"
				      "Status: 5.1.1\r\nDiagnostic-Code: smtp; "
				      "550 5.1.1 unknown\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "Status: 5.4.7\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "text/rfc822-headers\r\n\r\n"
				      "Subject: hi\r\nFrom: alice\r\n"));
	/* a foreign reply cannot add a header field */
	CU_ASSERT_PTR_NULL(strstr(b.data, "\nBcc:"));
	/* CRLF only, and the closing boundary last */
	for (p = b.data; (p = strchr(p, '\n')) != NULL; p++)
		CU_ASSERT_EQUAL(p[-1], '\r');
	CU_ASSERT_PTR_NOT_NULL(strstr(b.data, "/postern--\r\n"));
	CU_ASSERT_EQUAL(b.data[b.len - 1], '\n');
	buf_free(&b);
}

static CU_TestInfo dsn_tests[] = {
	{ "status_from_reply", test_dsn_status_from_reply },
	{ "build_is_a_delivery_report", test_dsn_build_is_a_delivery_report },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "dsn", NULL, NULL, NULL, NULL, dsn_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
