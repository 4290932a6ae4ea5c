/*
 * fuzz_config.c - the configuration parser (src/config.c), through
 * config_load() on a memfd, so nothing is left in the file system.
 *
 * Oracles: no sanitizer report or leak; a refusal comes with a reason of
 * one line (it goes to the log and the terminal).
 */
#include "fuzz.h"
#include "config.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	const char *err = NULL;

	if (fd < 0) {
		if ((fd = memfd_create("postern-fuzz.conf", 0)) < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	if (config_load(path, &cfg, &err) == 0) {
		FUZZ_CHECK(cfg != NULL);
		config_unref(&cfg);
	} else {
		FUZZ_CHECK(err != NULL && err[0] != '\0');
		FUZZ_CHECK(strchr(err, '\n') == NULL &&
			   strchr(err, '\r') == NULL);
	}
	return 0;
}
