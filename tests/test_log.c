/*
 * test_log.c - the "log" suite: the three line formats, JSON escaping
 * and cutting, and that a JSON line always parses.
 *
 * Owns:    nothing across tests; each test that writes lines points
 *          stderr at a scratch file for the call and restores it.
 */
#include "lib/log.h"
#include "testlib.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

TESTLIB_SUITE_DIR("log")

/* Run fn with stderr going to a fresh file; return what it wrote
 * (owned by the caller). */
static char *
capture(void (*fn)(void))
{
	char path[4096];
	int fd, saved;
	char *text;
	size_t len;

	snprintf(path, sizeof(path), "%s/stderr", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	text = testlib_slurp(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	return text;
}

static void
test_log_json_string_escapes(void)
{
	char out[128];

	log_json_string(out, sizeof(out), "a\"b\\c\n\x01\x7f");
	CU_ASSERT_STRING_EQUAL(out, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\"");
	/* valid UTF-8 stays; a lone byte, an overlong and a surrogate
	 * become U+FFFD */
	log_json_string(out, sizeof(out), "\xc3\xa9|\xff|\xc0\xaf|\xed\xa0\x80");
	CU_ASSERT_STRING_EQUAL(out, "\"\xc3\xa9|\xef\xbf\xbd|\xef\xbf\xbd"
			       "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd"
			       "\xef\xbf\xbd\"");
}

static void
test_log_json_string_cut_still_closes(void)
{
	char out[8];

	CU_ASSERT_EQUAL(log_json_string(out, sizeof(out), "abcdefghij"), 7);
	CU_ASSERT_STRING_EQUAL(out, "\"abcde\"");
	/* never half an escape */
	log_json_string(out, sizeof(out), "abcd\n");
	CU_ASSERT_STRING_EQUAL(out, "\"abcd\"");
}

static void
log_delivery(void)
{
	struct log_field f[] = {
		{ "queue_id", "00000000000000A1", false },
		{ "event", "delivery", false },
		{ "status", "sent", false },
		{ "to", "bob\"@foreign.example", false },
		{ "delay", "1.25", true },
		{ "attempts", "1; DROP", true },
		{ "relay", NULL, false },
	};

	log_event(LOG_LVL_INFO, f, sizeof(f) / sizeof(f[0]),
		  "%s: to=<%s>, status=sent (250 ok)\nforged", "00000000000000A1",
		  "bob\"@foreign.example");
}

static void
test_log_json_line_parses_with_fields(void)
{
	json_error_t jerr;
	json_t *o;
	char *text;

	log_setup("postfix/postern", LOG_FMT_JSON);
	text = capture(log_delivery);
	log_setup("postern", LOG_FMT_TEXT);
	/* one line: the text's newline is escaped */
	CU_ASSERT_PTR_NOT_NULL_FATAL(strchr(text, '\n'));
	CU_ASSERT_EQUAL(strchr(text, '\n')[1], '\0');
	o = json_loads(text, 0, &jerr);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "level")),
			       "info");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o,
			       "program")), "postfix/postern");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "pid")),
			getpid());
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o,
			       "queue_id")), "00000000000000A1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "to")),
			       "bob\"@foreign.example");
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(o, "delay")),
			       1.25, 1e-9);
	/* not a number: quoted, not spliced in */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o,
			       "attempts")), "1; DROP");
	CU_ASSERT_PTR_NULL(json_object_get(o, "relay"));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "msg")),
			       "00000000000000A1: to=<bob\"@foreign.example>, "
			       "status=sent (250 ok)\nforged");
	CU_ASSERT_EQUAL(strlen(json_string_value(json_object_get(o, "ts"))),
			strlen("2026-12-04T05:40:01.123Z"));
	json_decref(o);
	free(text);
}

static void
log_long(void)
{
	static char big[6000];
	struct log_field f[] = { { "to", big, false } };

	memset(big, 'x', sizeof(big) - 1);
	big[100] = '\x01';
	log_event(LOG_LVL_WARN, f, 1, "%s", big);
}

static void
test_log_json_long_line_is_cut_and_parses(void)
{
	json_error_t jerr;
	json_t *o;
	char *text;

	log_setup("postern", LOG_FMT_JSON);
	text = capture(log_long);
	log_setup("postern", LOG_FMT_TEXT);
	CU_ASSERT(strlen(text) <= 4096);
	o = json_loads(text, 0, &jerr);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "level")),
			       "warning");
	CU_ASSERT_PTR_NOT_NULL(json_object_get(o, "msg"));
	json_decref(o);
	free(text);
}

static void
log_two(void)
{
	log_info("%s: removed", "00000000000000A1");
	log_warn("next hop unavailable\r\nforged");
}

static void
test_log_text_and_syslog_shapes(void)
{
	char *text, want[256], host[64];
	const char *p;

	log_setup("postern", LOG_FMT_TEXT);
	text = capture(log_two);
	CU_ASSERT_STRING_EQUAL(text, "postern: info: 00000000000000A1: "
			       "removed\npostern: warning: next hop "
			       "unavailable\\x0d\\x0aforged\n");
	free(text);
	log_setup("postfix/postern", LOG_FMT_SYSLOG);
	text = capture(log_two);
	log_setup("postern", LOG_FMT_TEXT);
	/* "Mmm dd hh:mm:ss HOST NAME[PID]: " as syslogd writes it */
	CU_ASSERT(strlen(text) > 16 && text[3] == ' ' && text[6] == ' ' &&
		  text[9] == ':' && text[12] == ':' && text[15] == ' ');
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	host[strcspn(host, ".")] = '\0';
	snprintf(want, sizeof(want), " %s postfix/postern[%ld]: "
		 "00000000000000A1: removed\n", host, (long)getpid());
	p = strstr(text, want);
	CU_ASSERT(p == text + 15);
	snprintf(want, sizeof(want), " %s postfix/postern[%ld]: warning: "
		 "next hop unavailable\\x0d\\x0aforged\n", host,
		 (long)getpid());
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	free(text);
}

static CU_TestInfo log_tests[] = {
	{ "json_string_escapes", test_log_json_string_escapes },
	{ "json_string_cut_still_closes",
	  test_log_json_string_cut_still_closes },
	{ "json_line_parses_with_fields",
	  test_log_json_line_parses_with_fields },
	{ "json_long_line_is_cut_and_parses",
	  test_log_json_long_line_is_cut_and_parses },
	{ "text_and_syslog_shapes", test_log_text_and_syslog_shapes },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "log", suite_init, suite_clean, NULL, NULL, log_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
