/*
 * fileio.c - see fileio.h.
 */
#include "lib/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int
fileio_write_all(int fd, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

int
fileio_fsync_dir(const char *path)
{
	int fd, ret, err;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	err = errno;
	close(fd);
	errno = err;
	return ret;
}
