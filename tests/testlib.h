/*
 * testlib.h - what every CUnit test program shares.
 *
 * Each tests/test_<module>.c ends with a CU_SuiteInfo table and
 * TEST_MAIN(suites): it runs every suite in basic mode and exits non-zero
 * if any assertion failed, so automake's test driver sees the result.
 */
#ifndef POSTERN_TESTLIB_H
#define POSTERN_TESTLIB_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdlib.h>

/* A fresh directory for one suite (mkdtemp under $TMPDIR or /tmp). The
 * caller owns the string and removes the tree with testlib_rmtree(). */
char *
testlib_tmpdir(const char *tag);

/* rm -rf path; path is not freed. */
void
testlib_rmtree(const char *path);

/* The whole file at path, NUL-terminated (the caller frees it), its
 * length in *len_r; NULL if it cannot be opened. */
char *
testlib_slurp(const char *path, size_t *len_r);

/* xorshift32: a seeded generator whose low bits are usable with "%". */
unsigned
testlib_rnd(unsigned *state);

/* A suite whose tests share one scratch directory `dir`: defines dir,
 * suite_init (makes it) and suite_clean (removes it). */
#define TESTLIB_SUITE_DIR(tag)						\
static char *dir;							\
static int								\
suite_init(void)							\
{									\
	dir = testlib_tmpdir(tag);					\
	return 0;							\
}									\
static int								\
suite_clean(void)							\
{									\
	testlib_rmtree(dir);						\
	free(dir);							\
	return 0;							\
}

#define TEST_MAIN(suites)						\
int									\
main(void)								\
{									\
	unsigned failed;						\
									\
	if (CU_initialize_registry() != CUE_SUCCESS)			\
		return 99;						\
	if (CU_register_suites(suites) != CUE_SUCCESS)			\
		return 99;						\
	CU_basic_set_mode(CU_BRM_VERBOSE);				\
	CU_basic_run_tests();						\
	failed = CU_get_number_of_failures() +				\
		 CU_get_number_of_suites_failed() +			\
		 CU_get_number_of_tests_failed();			\
	CU_cleanup_registry();						\
	return failed == 0 ? 0 : 1;					\
}

#endif
