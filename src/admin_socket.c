/*
 * admin_socket.c - the daemon's local control socket (see admin_socket.h).
 *
 * Owns:    the listening socket and its file; each connection's
 *          bufferevent belongs to the event loop until it is answered.
 * Threads: the event loop's thread only (server); any (client).
 */
#include "admin_socket.h"
#include "worker.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct admin_socket {
	struct evconnlistener *lev;
	struct worker_pool *pool;	/* borrowed */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;			/* the socket file this daemon made: */
	ino_t ino;			/* only that one is removed at exit */
};

static int
socket_path(const char *dir, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s", dir, ADMIN_SOCKET_NAME);

	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev);
}

static void
conn_written(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_free(bev);
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct admin_socket *as = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > 256)
			bufferevent_free(bev);
		return;
	}
	if (strcmp(line, "wake") == 0) {
		worker_pool_wake(as->pool);
		log_debug("admin: woken by postern");
		bufferevent_write(bev, "ok\n", 3);
	} else if (strcmp(line, "ping") == 0) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "ok %ld\n", (long)getpid());

		bufferevent_write(bev, buf, (size_t)n);
	} else {
		bufferevent_write(bev, "error unknown command\n", 22);
	}
	free(line);
	/* Answered: close once the reply is out. */
	bufferevent_setcb(bev, NULL, conn_written, conn_event, as);
	bufferevent_disable(bev, EV_READ);
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd,
	  struct sockaddr *sa, int socklen, void *arg)
{
	struct admin_socket *as = arg;
	struct bufferevent *bev;
	struct timeval tv = { 5, 0 };

	(void)sa;
	(void)socklen;
	bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd,
				     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	bufferevent_setcb(bev, conn_read, NULL, conn_event, as);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ);
}

struct admin_socket *
admin_socket_new(struct event_base *base, const char *store_dir,
		 struct worker_pool *pool, const char **error_r)
{
	static _Thread_local char err[512];
	struct admin_socket *as = xcalloc(1, sizeof(*as));
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat sb;
	mode_t old;

	as->pool = pool;
	if (socket_path(store_dir, as->path, sizeof(as->path)) < 0) {
		snprintf(err, sizeof(err), "admin socket in %s: path too long",
			 store_dir);
		goto fail;
	}
	/* A socket left by a daemon that died: ours now. */
	if (lstat(as->path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(as->path);
	memcpy(sun.sun_path, as->path, strlen(as->path) + 1);
	old = umask(0077);
	as->lev = evconnlistener_new_bind(base, on_accept, as,
					  LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_CLOSE_ON_EXEC, 16,
					  (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (as->lev == NULL) {
		snprintf(err, sizeof(err), "admin socket %s: %s", as->path,
			 strerror(errno));
		goto fail;
	}
	if (lstat(as->path, &sb) == 0) {
		as->dev = sb.st_dev;
		as->ino = sb.st_ino;
	}
	return as;
fail:
	*error_r = err;
	free(as);
	return NULL;
}

void
admin_socket_free(struct admin_socket **as)
{
	struct stat sb;

	if (as == NULL || *as == NULL)
		return;
	evconnlistener_free((*as)->lev);
	/* Never remove a socket this daemon did not make. */
	if (lstat((*as)->path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
	    sb.st_dev == (*as)->dev && sb.st_ino == (*as)->ino)
		unlink((*as)->path);
	free(*as);
	*as = NULL;
}

static int
wait_fd(int fd, short events, const struct timespec *deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	struct timespec now;
	long ms;
	int rc;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (deadline->tv_sec - now.tv_sec) * 1000 +
		     (deadline->tv_nsec - now.tv_nsec) / 1000000;
		if (ms <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		rc = poll(&p, 1, (int)ms);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

int
admin_socket_request(const char *store_dir, const char *request,
		     char *reply, size_t cap, int timeout_ms)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timespec deadline;
	char line[256];
	size_t got = 0;
	ssize_t n;
	int fd, len, saved;

	if (cap == 0 || socket_path(store_dir, sun.sun_path,
				    sizeof(sun.sun_path)) < 0)
		return -1;
	len = snprintf(line, sizeof(line), "%s\n", request);
	if (len < 0 || (size_t)len >= sizeof(line)) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    send(fd, line, (size_t)len, MSG_NOSIGNAL) != len)
		goto fail;
	while (got + 1 < cap) {
		if (wait_fd(fd, POLLIN, &deadline) < 0)
			goto fail;
		n = read(fd, reply + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		got += (size_t)n;
		if (memchr(reply, '\n', got) != NULL)
			break;
	}
	close(fd);
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}
