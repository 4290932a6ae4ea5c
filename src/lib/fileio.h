/*
 * fileio.h - the two durable-file steps every file-writing driver needs.
 * Threads: any; no state.
 */
#ifndef POSTERN_LIB_FILEIO_H
#define POSTERN_LIB_FILEIO_H

#include <stddef.h>

/* Write all len bytes of p to fd, retrying short writes and EINTR.
 * Returns 0, or -1 with errno set. */
int
fileio_write_all(int fd, const void *p, size_t len);

/* fsync the directory at path, so that entries created or renamed in it
 * are durable. Returns 0, or -1 with errno set. */
int
fileio_fsync_dir(const char *path);

#endif
