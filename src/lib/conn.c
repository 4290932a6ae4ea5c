/*
 * conn.c - a blocking client connection with poll() deadlines.
 *
 * Owns:    the socket, the SSL objects and the read buffer of one
 *          struct conn (embedded by a protocol client).
 * Threads: one thread at a time per object.
 *
 * The socket is non-blocking; every read or write waits in poll() for at
 * most what is left of the current step's deadline, so no peer can keep
 * a caller longer than the step's timeout.
 */
#include "lib/conn.h"
#include "lib/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void
conn_init(struct conn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->cancel_fd = -1;
	buf_init(&c->in);
}

void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->no_cancel = false;
	buf_reset(&c->in);
}

void
conn_free(struct conn *c)
{
	conn_close(c);
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	buf_free(&c->in);
}

uint64_t
conn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
conn_set_err(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

/* Append " what" to c->err. */
static void
err_what(struct conn *c, const char *what)
{
	size_t l = strlen(c->err);

	snprintf(c->err + l, sizeof(c->err) - l, " %s", what);
}

int
conn_wait(int fd, short events, uint64_t deadline, int cancel_fd)
{
	struct pollfd pfd[2] = { { fd, events, 0 }, { cancel_fd, POLLIN, 0 } };
	uint64_t now;
	int rc;

	for (;;) {
		now = conn_now_ms();
		if (now >= deadline)
			return 0;
		rc = poll(pfd, cancel_fd >= 0 ? 2 : 1, (int)(deadline - now));
		if (rc > 0 && cancel_fd >= 0 && pfd[1].revents != 0)
			return -1;
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return 0;
	}
}

/* conn_wait() on the connection; a timeout or a cancel sets c->err. */
static int
wait_fd(struct conn *c, short events, uint64_t deadline, unsigned ms,
	const char *what)
{
	int rc = conn_wait(c->fd, events, deadline,
			   c->no_cancel ? -1 : c->cancel_fd);

	if (rc == 0) {
		conn_set_err(c, "timeout (%u s) %s", ms / 1000, what);
		c->timed_out = true;
	} else if (rc < 0) {
		conn_set_err(c, "interrupted %s: posternd is stopping", what);
		c->cancelled = true;
	}
	return rc == 1;
}

int
conn_write(struct conn *c, const void *p, size_t len, unsigned ms,
	   const char *what)
{
	uint64_t deadline = conn_now_ms() + ms;
	const char *d = p;
	ssize_t w;
	short ev;

	while (len > 0) {
		ev = POLLOUT;
		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, d, len > INT32_MAX ?
					  INT32_MAX : (int)len);

			if (r > 0) {
				w = r;
			} else {
				int e = SSL_get_error(c->ssl, r);

				if (e != SSL_ERROR_WANT_READ &&
				    e != SSL_ERROR_WANT_WRITE) {
					conn_set_err(c, "TLS write failed "
						     "while sending %s", what);
					return -1;
				}
				w = 0;
				ev = e == SSL_ERROR_WANT_READ ? POLLIN :
				     POLLOUT;
			}
		} else {
			w = send(c->fd, d, len, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				conn_set_err(c, "connection lost while "
					     "sending %s: %s", what,
					     strerror(errno));
				return -1;
			}
			if (w < 0)
				w = 0;
		}
		d += w;
		len -= (size_t)w;
		if (len > 0 && w == 0 && !wait_fd(c, ev, deadline, ms,
						  "while sending")) {
			err_what(c, what);
			return -1;
		}
	}
	return 0;
}

int
conn_fill(struct conn *c, uint64_t deadline, unsigned ms, const char *what)
{
	char tmp[4096];
	ssize_t r;
	short ev = POLLIN;

	for (;;) {
		if (c->ssl != NULL) {
			int n = SSL_read(c->ssl, tmp, sizeof(tmp));

			if (n > 0) {
				buf_append(&c->in, tmp, (size_t)n);
				return 0;
			}
			int e = SSL_get_error(c->ssl, n);

			if (e == SSL_ERROR_ZERO_RETURN ||
			    (e != SSL_ERROR_WANT_READ &&
			     e != SSL_ERROR_WANT_WRITE)) {
				ERR_clear_error();
				conn_set_err(c, "connection lost while "
					     "waiting for the reply to %s",
					     what);
				return -1;
			}
			ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		} else {
			r = recv(c->fd, tmp, sizeof(tmp), 0);
			if (r > 0) {
				buf_append(&c->in, tmp, (size_t)r);
				return 0;
			}
			if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				conn_set_err(c, "connection lost while "
					     "waiting for the reply to %s%s%s",
					     what, r == 0 ? "" : ": ",
					     r == 0 ? "" : strerror(errno));
				return -1;
			}
		}
		if (!wait_fd(c, ev, deadline, ms,
			     "waiting for the reply to")) {
			err_what(c, what);
			return -1;
		}
	}
}

static int
connect_one(int family, const struct sockaddr *sa, socklen_t salen,
	    unsigned ms, int cancel_fd, int *err_r)
{
	socklen_t el = sizeof(*err_r);
	int fd, rc;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_r = errno;
		return -1;
	}
	if (connect(fd, sa, salen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*err_r = errno;
		close(fd);
		return -1;
	}
	rc = conn_wait(fd, POLLOUT, conn_now_ms() + ms, cancel_fd);
	if (rc == 0) {
		*err_r = ETIMEDOUT;
	} else if (rc < 0) {
		*err_r = ECANCELED;
	} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err_r, &el) < 0) {
		*err_r = errno;
	} else if (*err_r == 0) {
		return fd;
	}
	close(fd);
	return -1;
}

int
conn_open(struct conn *c, const char *host, const char *port, unsigned ms)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int err = 0, rc;

	conn_close(c);
	c->timed_out = c->cancelled = false;
	if (port == NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(host) >= sizeof(sun.sun_path)) {
			conn_set_err(c, "socket path too long: %s", host);
			return -1;
		}
		strcpy(sun.sun_path, host);
		c->fd = connect_one(AF_UNIX, (struct sockaddr *)&sun,
				    sizeof(sun), ms, c->cancel_fd, &err);
		if (c->fd < 0)
			conn_set_err(c, "connect to %s: %s", host,
				     strerror(err));
		return c->fd < 0 ? -1 : 0;
	}
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		conn_set_err(c, "cannot resolve %s: %s", host,
			     gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next)
		c->fd = connect_one(ai->ai_family, ai->ai_addr,
				    ai->ai_addrlen, ms, c->cancel_fd, &err);
	freeaddrinfo(res);
	if (c->fd < 0) {
		conn_set_err(c, "connect to %s:%s: %s", host, port,
			     strerror(err));
		return -1;
	}
	/* Without this, Nagle holds a small last write (SMTP's final dot,
	 * an IMAP literal's closing CRLF) until the peer ACKs what went
	 * before, and a peer waiting for that write delays its ACK: 40 ms
	 * per message on Linux. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
		       sizeof(int)) < 0)
		log_debug("conn: TCP_NODELAY: %s", strerror(errno));
	return 0;
}

/* The client context, made on first use; 0 or -1. */
static int
tls_context(struct conn *c, const struct conn_tls *t)
{
	if (c->ctx != NULL)
		return 0;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL) {
		conn_set_err(c, "TLS: cannot make a context");
		return -1;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (t->verify && (t->ca_file != NULL ?
	    SSL_CTX_load_verify_locations(c->ctx, t->ca_file, NULL) :
	    SSL_CTX_set_default_verify_paths(c->ctx)) != 1) {
		conn_set_err(c, "TLS: cannot load CA file %s",
			     t->ca_file ? t->ca_file : "(system)");
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
		return -1;
	}
	return 0;
}

int
conn_tls_start(struct conn *c, const struct conn_tls *t, unsigned ms)
{
	uint64_t deadline = conn_now_ms() + ms;
	int r, e;

	buf_reset(&c->in);
	if (tls_context(c, t) < 0)
		return -1;
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	if (t->host != NULL)
		SSL_set_tlsext_host_name(c->ssl, t->host);
	if (t->verify) {
		SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
		if (t->host == NULL || SSL_set1_host(c->ssl, t->host) != 1) {
			conn_set_err(c, "TLS: cannot set the peer name");
			return -1;
		}
	}
	while ((r = SSL_connect(c->ssl)) != 1) {
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			long v = SSL_get_verify_result(c->ssl);

			conn_set_err(c, "TLS handshake failed%s%s",
				     v != X509_V_OK ? ": " : "",
				     v != X509_V_OK ?
				     X509_verify_cert_error_string(v) : "");
			ERR_clear_error();
			return -1;
		}
		if (!wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
			     deadline, ms, "in the TLS handshake"))
			return -1;
	}
	return 0;
}
