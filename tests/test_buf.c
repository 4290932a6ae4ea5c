/*
 * test_buf.c - the growable byte buffer.
 */
#include "lib/buf.h"
#include "testlib.h"

#include <string.h>

static void
test_buf_append_keeps_bytes_and_nul(void)
{
	struct buf b;

	buf_init(&b);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	buf_append(&b, "ab\0c", 4);
	buf_append_str(&b, "de");
	CU_ASSERT_EQUAL(b.len, 6);
	CU_ASSERT(memcmp(b.data, "ab\0cde", 6) == 0);
	CU_ASSERT_EQUAL(b.data[b.len], '\0');
	buf_append(&b, NULL, 0);
	CU_ASSERT_EQUAL(b.len, 6);
	buf_free(&b);
}

static void
test_buf_printf_formats(void)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "%s=%d", "x", 42);
	buf_printf(&b, "%s", "");
	buf_printf(&b, ";%zu", (size_t)7);
	CU_ASSERT_STRING_EQUAL(b.data, "x=42;7");
	CU_ASSERT_EQUAL(b.len, 6);
	buf_free(&b);
}

static void
test_buf_grows_past_many_doublings(void)
{
	struct buf b;
	size_t i;
	char c;
	int ok = 1;

	buf_init(&b);
	for (i = 0; i < 100000; i++) {
		c = (char)('a' + i % 26);
		buf_append(&b, &c, 1);
	}
	buf_printf(&b, "%0*d", 5000, 1);
	CU_ASSERT_EQUAL(b.len, 105000);
	CU_ASSERT(b.cap > b.len);
	for (i = 0; i < 100000; i++)
		if (b.data[i] != (char)('a' + i % 26))
			ok = 0;
	CU_ASSERT(ok);
	CU_ASSERT_EQUAL(b.data[b.len - 1], '1');
	buf_free(&b);
}

static void
test_buf_reset_keeps_memory(void)
{
	struct buf b;
	size_t cap;
	char *data;

	buf_init(&b);
	buf_append_str(&b, "hello");
	cap = b.cap;
	data = b.data;
	buf_reset(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(b.cap, cap);
	CU_ASSERT_PTR_EQUAL(b.data, data);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	buf_free(&b);
}

static void
test_buf_consume_drops_front(void)
{
	struct buf b;

	buf_init(&b);
	buf_append_str(&b, "abcdef");
	buf_consume(&b, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "abcdef");
	buf_consume(&b, 2);
	CU_ASSERT_STRING_EQUAL(b.data, "cdef");
	CU_ASSERT_EQUAL(b.len, 4);
	buf_consume(&b, 4);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_STRING_EQUAL(b.data, "");
	buf_free(&b);
}

static void
test_buf_free_twice_is_harmless(void)
{
	struct buf b;

	buf_init(&b);
	buf_append_str(&b, "x");
	buf_free(&b);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(b.cap, 0);
	buf_free(&b);
	buf_append_str(&b, "again");
	CU_ASSERT_STRING_EQUAL(b.data, "again");
	buf_free(&b);
}

static CU_TestInfo buf_tests[] = {
	{ "append_keeps_bytes_and_nul", test_buf_append_keeps_bytes_and_nul },
	{ "printf_formats", test_buf_printf_formats },
	{ "grows_past_many_doublings", test_buf_grows_past_many_doublings },
	{ "reset_keeps_memory", test_buf_reset_keeps_memory },
	{ "consume_drops_front", test_buf_consume_drops_front },
	{ "free_twice_is_harmless", test_buf_free_twice_is_harmless },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "buf", NULL, NULL, NULL, NULL, buf_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
