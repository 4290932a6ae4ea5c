/*
 * test_ingress_auth.c - the AUTH users file and crypt(3) checks.
 */
#include "ingress_auth.h"
#include "testlib.h"

#include <stdio.h>
#include <string.h>

TESTLIB_SUITE_DIR("ingress_auth")

/* openssl passwd -6 -salt abcdefgh 's3cret pw' */
#define JOE_HASH "$6$abcdefgh$Q79od5S64H3HA7HmwZZM7W.valdH4oN4pIpIosa/h." \
		 "m73WJc1tuhEJP0/CJLNyKJsvaNSuTjzB8NCG8AEGe6k0"

static char path[4096];

static void
write_users(const char *text)
{
	FILE *fp;

	snprintf(path, sizeof(path), "%s/users", dir);
	fp = fopen(path, "w");
	CU_ASSERT_FATAL(fp != NULL);
	fputs(text, fp);
	fclose(fp);
}

/* text must be refused with a reason that ends in tail. */
static void
expect_refused(const char *text, const char *tail)
{
	struct ingress_auth *a = NULL;
	char why[1024] = "", want[5000];

	write_users(text);
	snprintf(want, sizeof(want), "%s", tail);
	CU_ASSERT_EQUAL(ingress_auth_load(path, &a, why, sizeof(why)), -1);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT(strstr(why, want) != NULL);
	if (strstr(why, want) == NULL)
		fprintf(stderr, "\n  got \"%s\"\n  want \"%s\"\n", why, want);
}

static void
test_ingress_auth_checks_passwords(void)
{
	struct ingress_auth *a = NULL;
	char why[1024];

	write_users("# users\n\njoe:" JOE_HASH "\r\nann:" JOE_HASH "\n");
	CU_ASSERT_EQUAL_FATAL(ingress_auth_load(path, &a, why, sizeof(why)),
			      0);
	CU_ASSERT_EQUAL(ingress_auth_check(a, "joe", "s3cret pw"), 1);
	CU_ASSERT_EQUAL(ingress_auth_check(a, "ann", "s3cret pw"), 1);
	CU_ASSERT_EQUAL(ingress_auth_check(a, "joe", "s3cret"), 0);
	CU_ASSERT_EQUAL(ingress_auth_check(a, "joe", ""), 0);
	CU_ASSERT_EQUAL(ingress_auth_check(a, "Joe", "s3cret pw"), 0);
	/* an unknown user with the right password of someone else */
	CU_ASSERT_EQUAL(ingress_auth_check(a, "bob", "s3cret pw"), 0);
	ingress_auth_free(&a);
	CU_ASSERT_PTR_NULL(a);
	ingress_auth_free(&a);
}

static void
test_ingress_auth_bad_files_refused(void)
{
	struct ingress_auth *a = NULL;
	char why[1024];

	expect_refused("joe " JOE_HASH "\n", "users:1: not \"user:HASH\"");
	expect_refused(":" JOE_HASH "\n", "users:1: not \"user:HASH\"");
	expect_refused("\njoe:secret\n", "users:2: user \"joe\": the hash is "
		       "not a crypt(3) hash");
	expect_refused("joe:$9$abc$def\n", "the hash is not a crypt(3) hash");
	/* md5-crypt */
	expect_refused("joe:$1$abcdefgh$znAnv9M.XU2pRYfmSs46h/\n",
		       "users:1: user \"joe\": the hash method is too weak");
	expect_refused("joe:" JOE_HASH "\njoe:" JOE_HASH "\n",
		       "users:2: user \"joe\" is named twice");
	expect_refused("j oe:" JOE_HASH "\n", "users:1: the user name "
		       "contains a blank");
	expect_refused("# nobody\n", "names no users");
	snprintf(path, sizeof(path), "%s/missing", dir);
	CU_ASSERT_EQUAL(ingress_auth_load(path, &a, why, sizeof(why)), -1);
	CU_ASSERT(strstr(why, "No such file or directory") != NULL);
}

static CU_TestInfo ingress_auth_tests[] = {
	{ "checks_passwords", test_ingress_auth_checks_passwords },
	{ "bad_files_refused", test_ingress_auth_bad_files_refused },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "ingress_auth", suite_init, suite_clean, NULL, NULL,
	  ingress_auth_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
