/*
 * test_smtp_client.c - the pure parts of the SMTP/LMTP client: reply
 * lines and dot-stuffing. The I/O is exercised against real peers in
 * tests/integration/smtp_sink.sh and lmtp_dovecot.sh.
 */
#include "smtp_client.h"
#include "testlib.h"

#include <string.h>

static int
feed(struct smtp_reply *r, const char *line)
{
	return smtp_reply_line(r, line, strlen(line));
}

static void
test_smtp_client_reply_single_line(void)
{
	struct smtp_reply r = { 0 };

	CU_ASSERT_EQUAL(feed(&r, "250 2.1.5 Ok"), 1);
	CU_ASSERT_EQUAL(r.code, 250);
	CU_ASSERT_STRING_EQUAL(r.text, "2.1.5 Ok");
	r.code = 0;
	CU_ASSERT_EQUAL(feed(&r, "354"), 1);	/* bare code */
	CU_ASSERT_EQUAL(r.code, 354);
	CU_ASSERT_STRING_EQUAL(r.text, "");
}

static void
test_smtp_client_reply_multi_line_joined(void)
{
	struct smtp_reply r = { 0 };

	CU_ASSERT_EQUAL(feed(&r, "550-5.1.1 first"), 0);
	CU_ASSERT_EQUAL(feed(&r, "550-second"), 0);
	CU_ASSERT_EQUAL(feed(&r, "550 5.1.1 last"), 1);
	CU_ASSERT_EQUAL(r.code, 550);
	CU_ASSERT_STRING_EQUAL(r.text, "5.1.1 first; second; 5.1.1 last");
}

static void
test_smtp_client_reply_rejects_malformed(void)
{
	struct smtp_reply r = { 0 };

	CU_ASSERT_EQUAL(feed(&r, "25"), -1);
	CU_ASSERT_EQUAL(feed(&r, "abc def"), -1);
	CU_ASSERT_EQUAL(feed(&r, "250x"), -1);
	CU_ASSERT_EQUAL(feed(&r, "650 no such class"), -1);
	r.code = 0;
	CU_ASSERT_EQUAL(feed(&r, "250-a"), 0);
	CU_ASSERT_EQUAL(feed(&r, "251 b"), -1);	/* code changed */
}

static void
test_smtp_client_reply_long_text_is_cut(void)
{
	struct smtp_reply r = { 0 };
	char line[2000];

	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "421-", 4);
	CU_ASSERT_EQUAL(feed(&r, line), 0);
	line[3] = ' ';
	CU_ASSERT_EQUAL(feed(&r, line), 1);
	CU_ASSERT_EQUAL(strlen(r.text), SMTP_REPLY_TEXT - 1);
}

static void
stuffed(const char *in, size_t len, const char *want)
{
	struct buf b;

	buf_init(&b);
	smtp_dot_stuff(&b, in, len);
	CU_ASSERT_EQUAL(b.len, strlen(want));
	CU_ASSERT(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0);
	buf_free(&b);
}

static void
test_smtp_client_dot_stuffing(void)
{
	stuffed("a\r\n.b\r\n..\r\n.\r\n", 14,
		"a\r\n..b\r\n...\r\n..\r\n.\r\n");
	stuffed(".first\r\n", 8, "..first\r\n.\r\n");
	stuffed("no end", 6, "no end\r\n.\r\n");	/* CRLF added */
	stuffed("", 0, ".\r\n");
	stuffed("x.y\r\n", 5, "x.y\r\n.\r\n");		/* mid-line dot */
}

/* Outbound smuggling (RELIABILITY.md H7): no CR or LF leaves unpaired. */
static void
test_smtp_client_dot_stuffing_replaces_stray_cr_lf(void)
{
	stuffed("a\n.\nb\r\n", 7, "a . b\r\n.\r\n");
	stuffed("a\r\n.\r.\r\n", 8, "a\r\n.. .\r\n.\r\n");
	stuffed("x\r", 2, "x \r\n.\r\n");
	stuffed("\n", 1, " \r\n.\r\n");
	stuffed("\r\r\n", 3, " \r\n.\r\n");
}

/* H8: a value that could end the command line is never sent. */
static void
test_smtp_client_command_refuses_bad_path(void)
{
	char long_addr[300];
	struct buf b;

	buf_init(&b);
	CU_ASSERT_EQUAL(smtp_mail_line(&b, "a@b\r\nRCPT TO:<x@y>", 0), -1);
	CU_ASSERT_EQUAL(smtp_rcpt_line(&b, "a@b\nDATA"), -1);
	CU_ASSERT_EQUAL(smtp_rcpt_line(&b, "a>@b"), -1);
	CU_ASSERT_EQUAL(smtp_rcpt_line(&b, "a@b\x80"), -1);
	CU_ASSERT_EQUAL(b.len, 0);
	memset(long_addr, 'a', sizeof(long_addr) - 1);
	long_addr[sizeof(long_addr) - 1] = '\0';
	CU_ASSERT_EQUAL(smtp_path_ok(long_addr), -1);
	long_addr[SMTP_PATH_MAX - 2] = '\0';
	CU_ASSERT_EQUAL(smtp_path_ok(long_addr), 0);
	CU_ASSERT_EQUAL(smtp_mail_line(&b, "", 12), 0);
	CU_ASSERT_EQUAL(smtp_rcpt_line(&b, "\"a b\"@c"), 0);
	CU_ASSERT(b.len == 41 && memcmp(b.data, "MAIL FROM:<> SIZE=12\r\n"
					"RCPT TO:<\"a b\"@c>\r\n", 41) == 0);
	buf_free(&b);
}

static CU_TestInfo smtp_client_tests[] = {
	{ "reply_single_line", test_smtp_client_reply_single_line },
	{ "reply_multi_line_joined", test_smtp_client_reply_multi_line_joined },
	{ "reply_rejects_malformed", test_smtp_client_reply_rejects_malformed },
	{ "reply_long_text_is_cut", test_smtp_client_reply_long_text_is_cut },
	{ "dot_stuffing", test_smtp_client_dot_stuffing },
	{ "dot_stuffing_replaces_stray_cr_lf",
	  test_smtp_client_dot_stuffing_replaces_stray_cr_lf },
	{ "command_refuses_bad_path", test_smtp_client_command_refuses_bad_path },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "smtp_client", NULL, NULL, NULL, NULL, smtp_client_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
