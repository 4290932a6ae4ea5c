/*
 * replay.c - run a fuzz target's harness over files, without libFuzzer.
 *
 * "replay_<name> [FILE|DIR]...": each file is one input. Without
 * arguments it reads FUZZ_CORPUS (the committed seeds and every crash
 * input found so far, fuzz/corpus/<name>), which is how make check runs
 * it. An oracle failure aborts, as under libFuzzer.
 */
#include "fuzz.h"

#include <dirent.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

static unsigned long nrun;

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL) {
		perror(path);
		return -1;
	}
	do {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			if ((data = realloc(data, cap)) == NULL)
				abort();
		}
		n = fread(data + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	nrun++;
	return 0;
}

static int
run_path(const char *path)
{
	struct dirent **names;
	struct stat sb;
	char sub[4096];
	int n, i, rc = 0;

	if (stat(path, &sb) < 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(sb.st_mode))
		return run_file(path);
	if ((n = scandir(path, &names, NULL, alphasort)) < 0) {
		perror(path);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path,
				 names[i]->d_name);
			if (run_path(sub) < 0)
				rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	int i, rc = 0;

	if (argc < 2)
		rc = run_path(FUZZ_CORPUS);
	for (i = 1; i < argc; i++)
		if (run_path(argv[i]) < 0)
			rc = -1;
	printf("%s: %lu inputs, no oracle failed\n", argv[0], nrun);
	return rc == 0 && nrun > 0 ? 0 : 1;
}
