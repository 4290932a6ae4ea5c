/*
 * fuzz.h - what every fuzz target in fuzz/ shares.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput(). With clang and
 * --enable-fuzzing it links against libFuzzer (fuzz/fuzz_<name>); with any
 * compiler it links against fuzz/replay.c (fuzz/replay_<name>), which
 * feeds the committed corpus and crash files through the same function in
 * make check (the SQLite fuzzcheck pattern).
 */
#ifndef POSTERN_FUZZ_H
#define POSTERN_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle failed: say which and abort, so that libFuzzer keeps the
 * input as a crash and the replay test fails. */
#define FUZZ_CHECK(cond)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: oracle failed: %s\n",	\
				__FILE__, __LINE__, #cond);		\
			abort();					\
		}							\
	} while (0)

#endif
