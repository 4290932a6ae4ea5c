/*
 * smtp_client.c - blocking SMTP/LMTP client with poll() deadlines.
 *
 * Owns:    the socket, the SSL objects and the read buffer of one
 *          connection; the error text handed out through *error_r.
 * Threads: one thread at a time per object.
 *
 * The socket is non-blocking; every read or write waits in poll() for at
 * most what is left of the current step's deadline, so no peer can keep
 * a worker longer than the configured RFC 5321 timeouts.
 */
#include "smtp_client.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN	2048		/* longer reply lines: protocol error */
#define BLOCK_LEN	(64 * 1024)	/* one "data block" of RFC 5321 */
#define QUIT_MS		2000

struct smtp_client {
	const struct smtp_client_settings *s;	/* borrowed */
	int fd;					/* -1: closed */
	SSL_CTX *ctx;				/* owned, made on first use */
	SSL *ssl;				/* owned, NULL: plain */
	struct buf in;				/* unread input */
	bool pipelining, starttls, auth_plain, esc;
	uint64_t size_max;			/* 0: no SIZE limit known */
	unsigned transactions;			/* on this connection */
	bool timed_out;				/* the last failure */
	bool after_dot;				/* not cancellable now */
	bool cancelled;				/* the last failure */
	char err[SMTP_REPLY_TEXT + 128];
};

static void
set_err(struct smtp_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_err(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- pure helpers ---------------------------------------------------- */

int
smtp_reply_line(struct smtp_reply *r, const char *line, size_t len)
{
	int code;
	size_t have, add;

	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (len > 3 && line[3] != ' ' && line[3] != '-'))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	if (r->code != 0 && r->code != code)
		return -1;
	have = r->code == 0 ? 0 : strlen(r->text);
	if (r->code == 0)
		r->text[0] = '\0';
	r->code = code;
	if (len > 4) {
		if (have > 0 && have + 2 < sizeof(r->text)) {
			memcpy(r->text + have, "; ", 2);
			have += 2;
		}
		add = len - 4;
		if (add > sizeof(r->text) - 1 - have)
			add = sizeof(r->text) - 1 - have;
		memcpy(r->text + have, line + 4, add);
		r->text[have + add] = '\0';
	}
	return len == 3 || line[3] == ' ' ? 1 : 0;
}

void
smtp_dot_stuff(struct buf *out, const void *body, size_t len)
{
	const char *p = body, *end = p + len, *nl;

	while (p < end) {
		if (*p == '.')
			buf_append(out, ".", 1);
		nl = memchr(p, '\n', (size_t)(end - p));
		nl = nl == NULL ? end : nl + 1;
		buf_append(out, p, (size_t)(nl - p));
		p = nl;
	}
	if (len > 0 && (len < 2 || memcmp(end - 2, "\r\n", 2) != 0))
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
}

/* --- I/O with deadlines ------------------------------------------------ */

/* Wait for events on fd until deadline, or until cancel_fd (-1: none)
 * is readable; 1 ready, 0 timeout, -1 cancelled. */
static int
wait_one(int fd, short events, uint64_t deadline, int cancel_fd)
{
	struct pollfd pfd[2] = { { fd, events, 0 }, { cancel_fd, POLLIN, 0 } };
	uint64_t now;
	int rc;

	for (;;) {
		now = now_ms();
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

/* wait_one() on the connection; a timeout or a cancel sets c->err. */
static int
wait_fd(struct smtp_client *c, short events, uint64_t deadline,
	unsigned ms, const char *what)
{
	int rc = wait_one(c->fd, events, deadline,
			  c->after_dot ? -1 : c->s->cancel_fd);

	if (rc == 0) {
		set_err(c, "timeout (%u s) %s", ms / 1000, what);
		c->timed_out = true;
	} else if (rc < 0) {
		set_err(c, "interrupted %s: posternd is stopping", what);
		c->cancelled = true;
	}
	return rc == 1;
}

/* Write all of p; 0 or -1 (error in c->err). */
static int
io_write(struct smtp_client *c, const void *p, size_t len, unsigned ms,
	 const char *what)
{
	uint64_t deadline = now_ms() + ms;
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
					set_err(c, "TLS write failed while "
						"sending %s", what);
					return -1;
				}
				w = 0;
				ev = e == SSL_ERROR_WANT_READ ? POLLIN :
				     POLLOUT;
			}
		} else {
			w = send(c->fd, d, len, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EINTR) {
				set_err(c, "connection lost while sending %s: "
					"%s", what, strerror(errno));
				return -1;
			}
			if (w < 0)
				w = 0;
		}
		d += w;
		len -= (size_t)w;
		if (len > 0 && w == 0 && !wait_fd(c, ev, deadline, ms,
						  "while sending")) {
			snprintf(c->err + strlen(c->err),
				 sizeof(c->err) - strlen(c->err), " %s", what);
			return -1;
		}
	}
	return 0;
}

/* Read more input into c->in; 0 or -1. */
static int
io_fill(struct smtp_client *c, uint64_t deadline, const char *what,
	unsigned ms)
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
				set_err(c, "connection lost while waiting for "
					"the reply to %s", what);
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
				set_err(c, "connection lost while waiting for "
					"the reply to %s%s%s", what,
					r == 0 ? "" : ": ",
					r == 0 ? "" : strerror(errno));
				return -1;
			}
		}
		if (!wait_fd(c, ev, deadline, ms,
			     "waiting for the reply to")) {
			snprintf(c->err + strlen(c->err),
				 sizeof(c->err) - strlen(c->err), " %s", what);
			return -1;
		}
	}
}

/* Read one complete reply within ms; 0 or -1. */
static int
read_reply(struct smtp_client *c, struct smtp_reply *r, unsigned ms,
	   const char *what)
{
	uint64_t deadline = now_ms() + ms;
	char *nl;
	size_t len;
	int rc;

	r->code = 0;
	r->text[0] = '\0';
	for (;;) {
		nl = c->in.len > 0 ? memchr(c->in.data, '\n', c->in.len) :
		     NULL;
		if (nl == NULL) {
			if (c->in.len > LINE_MAX_LEN) {
				set_err(c, "reply line too long after %s",
					what);
				return -1;
			}
			if (io_fill(c, deadline, what, ms) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - c->in.data);
		if (len > 0 && c->in.data[len - 1] == '\r')
			len--;
		rc = smtp_reply_line(r, c->in.data, len);
		buf_consume(&c->in, (size_t)(nl - c->in.data) + 1);
		if (rc < 0) {
			set_err(c, "malformed reply to %s", what);
			return -1;
		}
		if (rc == 1)
			return 0;
	}
}

/* Send a command line and read its reply. */
static int
command(struct smtp_client *c, const char *line, struct smtp_reply *r,
	unsigned ms, const char *what)
{
	if (io_write(c, line, strlen(line), ms, what) < 0)
		return -1;
	return read_reply(c, r, ms, what);
}

/* --- connect, greeting, EHLO, STARTTLS, AUTH --------------------------- */

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
	rc = wait_one(fd, POLLOUT, now_ms() + ms, cancel_fd);
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

static int
open_socket(struct smtp_client *c)
{
	const struct smtp_client_settings *s = c->s;
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int err = 0, rc;

	if (s->port == NULL) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(s->host) >= sizeof(sun.sun_path)) {
			set_err(c, "socket path too long: %s", s->host);
			return -1;
		}
		strcpy(sun.sun_path, s->host);
		c->fd = connect_one(AF_UNIX, (struct sockaddr *)&sun,
				    sizeof(sun), s->connect_ms, s->cancel_fd,
				    &err);
		if (c->fd < 0)
			set_err(c, "connect to %s: %s", s->host,
				strerror(err));
		return c->fd < 0 ? -1 : 0;
	}
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(s->host, s->port, &hints, &res)) != 0) {
		set_err(c, "cannot resolve %s: %s", s->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next)
		c->fd = connect_one(ai->ai_family, ai->ai_addr,
				    ai->ai_addrlen, s->connect_ms,
				    s->cancel_fd, &err);
	freeaddrinfo(res);
	if (c->fd < 0) {
		set_err(c, "connect to %s:%s: %s", s->host, s->port,
			strerror(err));
		return -1;
	}
	/* Without this, Nagle holds the final dot (its own small write)
	 * until the peer ACKs the body, and a peer that is waiting for
	 * the dot delays that ACK: 40 ms per message on Linux. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
		       sizeof(int)) < 0)
		log_debug("smtp client: TCP_NODELAY: %s", strerror(errno));
	return 0;
}

/* Parse one EHLO/LHLO keyword line (without the code). */
static void
ehlo_keyword(struct smtp_client *c, const char *kw)
{
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = true;
	else if (strcasecmp(kw, "ENHANCEDSTATUSCODES") == 0)
		c->esc = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 &&
		 (kw[4] == '\0' || kw[4] == ' '))
		c->size_max = strtoull(kw + 4, NULL, 10);
	else if (strncasecmp(kw, "AUTH", 4) == 0 &&
		 (kw[4] == ' ' || kw[4] == '=')) {
		for (const char *p = kw + 5; *p != '\0';) {
			size_t l = strcspn(p, " ");

			if (l == 5 && strncasecmp(p, "PLAIN", 5) == 0)
				c->auth_plain = true;
			p += l;
			p += strspn(p, " ");
		}
	}
}

/* EHLO or LHLO; the capability lines are read here rather than through
 * read_reply() so each keyword is seen on its own. */
static int
hello(struct smtp_client *c)
{
	uint64_t deadline = now_ms() + c->s->mail_ms;
	char line[600];
	struct smtp_reply r = { 0 };
	char *nl;
	size_t len;
	int rc, first = 1;

	c->pipelining = c->starttls = c->auth_plain = c->esc = false;
	c->size_max = 0;
	snprintf(line, sizeof(line), "%s %s\r\n", c->s->lmtp ? "LHLO" : "EHLO",
		 c->s->helo);
	if (io_write(c, line, strlen(line), c->s->mail_ms, "EHLO") < 0)
		return -1;
	for (;;) {
		nl = c->in.len > 0 ? memchr(c->in.data, '\n', c->in.len) :
		     NULL;
		if (nl == NULL) {
			if (c->in.len > LINE_MAX_LEN ||
			    io_fill(c, deadline, "EHLO", c->s->mail_ms) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - c->in.data);
		if (len > 0 && c->in.data[len - 1] == '\r')
			len--;
		rc = smtp_reply_line(&r, c->in.data, len);
		if (rc >= 0 && !first && len > 4 && len - 4 < 512) {
			memcpy(line, c->in.data + 4, len - 4);
			line[len - 4] = '\0';
			ehlo_keyword(c, line);
		}
		first = 0;
		buf_consume(&c->in, (size_t)(nl - c->in.data) + 1);
		if (rc < 0) {
			set_err(c, "malformed reply to EHLO");
			return -1;
		}
		if (rc == 1)
			break;
	}
	if (r.code / 100 != 2) {
		set_err(c, "EHLO refused: %d %s", r.code, r.text);
		return -1;
	}
	return 0;
}

static int
tls_start(struct smtp_client *c)
{
	const struct smtp_client_settings *s = c->s;
	uint64_t deadline = now_ms() + s->greeting_ms;
	bool verify = s->tls == SMTP_TLS_ENCRYPT && s->tls_verify;
	int r, e;

	if (c->ctx == NULL) {
		c->ctx = SSL_CTX_new(TLS_client_method());
		if (c->ctx == NULL) {
			set_err(c, "TLS: cannot make a context");
			return -1;
		}
		SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
		if (verify && (s->tls_ca_file != NULL ?
		    SSL_CTX_load_verify_locations(c->ctx, s->tls_ca_file,
						  NULL) :
		    SSL_CTX_set_default_verify_paths(c->ctx)) != 1) {
			set_err(c, "TLS: cannot load CA file %s",
				s->tls_ca_file ? s->tls_ca_file : "(system)");
			SSL_CTX_free(c->ctx);
			c->ctx = NULL;
			return -1;
		}
	}
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	if (s->port != NULL)
		SSL_set_tlsext_host_name(c->ssl, s->host);
	if (verify) {
		SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
		if (SSL_set1_host(c->ssl, s->host) != 1) {
			set_err(c, "TLS: cannot set the peer name");
			return -1;
		}
	}
	while ((r = SSL_connect(c->ssl)) != 1) {
		e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			long v = SSL_get_verify_result(c->ssl);

			set_err(c, "TLS handshake failed%s%s", v != X509_V_OK ?
				": " : "", v != X509_V_OK ?
				X509_verify_cert_error_string(v) : "");
			ERR_clear_error();
			return -1;
		}
		if (!wait_fd(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
			     deadline, s->greeting_ms, "in the TLS handshake"))
			return -1;
	}
	return 0;
}

static int
starttls(struct smtp_client *c)
{
	struct smtp_reply r;

	if (!c->starttls) {
		if (c->s->tls == SMTP_TLS_ENCRYPT) {
			set_err(c, "peer does not offer STARTTLS "
				"(tls = encrypt)");
			return -1;
		}
		return 0;
	}
	if (command(c, "STARTTLS\r\n", &r, c->s->mail_ms, "STARTTLS") < 0)
		return -1;
	if (r.code != 220) {
		if (c->s->tls == SMTP_TLS_ENCRYPT) {
			set_err(c, "STARTTLS refused: %d %s", r.code, r.text);
			return -1;
		}
		return 0;
	}
	/* Anything the peer sent before the handshake is an injection. */
	buf_reset(&c->in);
	if (tls_start(c) < 0)
		return -1;
	return hello(c);
}

static int
auth(struct smtp_client *c)
{
	const struct smtp_client_settings *s = c->s;
	size_t ul, pl;
	unsigned char *raw;
	char *line;
	struct smtp_reply r;
	int rc = -1;

	if (s->auth_user == NULL)
		return 0;
	if (c->ssl == NULL && !s->auth_plaintext) {
		set_err(c, "not sending the password without TLS "
			"(auth_plaintext = no)");
		return -1;
	}
	if (!c->auth_plain) {
		set_err(c, "peer does not offer AUTH PLAIN");
		return -1;
	}
	ul = strlen(s->auth_user);
	pl = strlen(s->auth_password ? s->auth_password : "");
	raw = xmalloc(ul + pl + 2);
	raw[0] = '\0';
	memcpy(raw + 1, s->auth_user, ul);
	raw[ul + 1] = '\0';
	memcpy(raw + ul + 2, s->auth_password ? s->auth_password : "", pl);
	line = xmalloc(16 + 4 * ((ul + pl + 2 + 2) / 3) + 1);
	strcpy(line, "AUTH PLAIN ");
	EVP_EncodeBlock((unsigned char *)line + 11, raw, (int)(ul + pl + 2));
	strcat(line, "\r\n");
	if (command(c, line, &r, s->mail_ms, "AUTH") == 0) {
		if (r.code == 235)
			rc = 0;
		else
			set_err(c, "AUTH refused: %d %s", r.code, r.text);
	}
	OPENSSL_cleanse(raw, ul + pl + 2);
	OPENSSL_cleanse(line, strlen(line));
	free(raw);
	free(line);
	return rc;
}

struct smtp_client *
smtp_client_new(const struct smtp_client_settings *s)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));

	c->s = s;
	c->fd = -1;
	buf_init(&c->in);
	return c;
}

bool
smtp_client_connected(const struct smtp_client *c)
{
	return c->fd >= 0;
}

bool
smtp_client_timed_out(const struct smtp_client *c)
{
	return c->timed_out;
}

bool
smtp_client_cancelled(const struct smtp_client *c)
{
	return c->cancelled;
}

void
smtp_client_close(struct smtp_client *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->transactions = 0;
	c->after_dot = false;
	buf_reset(&c->in);
}

int
smtp_client_open(struct smtp_client *c, const char **error_r)
{
	struct smtp_reply r;

	smtp_client_close(c);
	*error_r = c->err;
	c->cancelled = false;
	if (open_socket(c) < 0)
		return -1;
	if (read_reply(c, &r, c->s->greeting_ms, "the greeting") < 0)
		goto fail;
	if (r.code != 220) {
		set_err(c, "greeting: %d %s", r.code, r.text);
		goto fail;
	}
	if (hello(c) < 0)
		goto fail;
	if (c->s->tls != SMTP_TLS_NONE && starttls(c) < 0)
		goto fail;
	if (auth(c) < 0)
		goto fail;
	return 0;
fail:
	smtp_client_close(c);
	return -1;
}

void
smtp_client_free(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	struct smtp_reply r;

	*cp = NULL;
	if (c == NULL)
		return;
	if (c->fd >= 0 &&
	    io_write(c, "QUIT\r\n", 6, QUIT_MS, "QUIT") == 0)
		(void)read_reply(c, &r, QUIT_MS, "QUIT");
	smtp_client_close(c);
	SSL_CTX_free(c->ctx);
	buf_free(&c->in);
	free(c);
}

/* --- the transaction ---------------------------------------------------- */

/* Every recipient without a reply yet gets r. */
static void
reply_rest(struct smtp_reply *replies, size_t n, const struct smtp_reply *r)
{
	for (size_t i = 0; i < n; i++)
		if (replies[i].code == 0 || replies[i].code / 100 == 2)
			replies[i] = *r;
}

/* Send the MAIL/RCPT/DATA group (after RSET when due), in one write when
 * the peer pipelines, and read the replies in order. Returns the number
 * of accepted recipients, -1 on a broken connection, -2 when the RSET
 * before it found the connection dead. *data_ok: 354 to DATA. */
static int
envelope(struct smtp_client *c, const char *sender, const char *const *rcpts,
	 size_t n, size_t len, struct smtp_reply *replies, bool *data_ok)
{
	const struct smtp_client_settings *s = c->s;
	struct buf cmd;
	struct smtp_reply r;
	bool rset = c->transactions > 0;
	int accepted = 0, rc = -1;

	buf_init(&cmd);
	*data_ok = false;
	if (rset) {
		if (c->pipelining)
			buf_append_str(&cmd, "RSET\r\n");
		else if (command(c, "RSET\r\n", &r, s->mail_ms, "RSET") < 0 ||
			 r.code / 100 != 2)
			return -2;
	}
	buf_printf(&cmd, "MAIL FROM:<%s>", sender);
	if (c->size_max > 0)
		buf_printf(&cmd, " SIZE=%zu", len);
	buf_append_str(&cmd, "\r\n");
	if (c->pipelining) {
		for (size_t i = 0; i < n; i++)
			buf_printf(&cmd, "RCPT TO:<%s>\r\n", rcpts[i]);
		buf_append_str(&cmd, "DATA\r\n");
	}
	if (io_write(c, cmd.data, cmd.len, s->mail_ms, "MAIL FROM") < 0) {
		rc = rset ? -2 : -1;
		goto out;
	}
	if (rset && c->pipelining) {
		if (read_reply(c, &r, s->mail_ms, "RSET") < 0 ||
		    r.code / 100 != 2) {
			rc = -2;
			goto out;
		}
	}
	c->transactions++;
	if (read_reply(c, &r, s->mail_ms, "MAIL FROM") < 0)
		goto out;
	if (r.code / 100 != 2)
		reply_rest(replies, n, &r);
	for (size_t i = 0; i < n; i++) {
		struct smtp_reply rr;

		if (!c->pipelining) {
			if (r.code / 100 != 2)
				break;
			buf_reset(&cmd);
			buf_printf(&cmd, "RCPT TO:<%s>\r\n", rcpts[i]);
			if (io_write(c, cmd.data, cmd.len, s->rcpt_ms,
				     "RCPT TO") < 0)
				goto out;
		}
		if (read_reply(c, &rr, s->rcpt_ms, "RCPT TO") < 0)
			goto out;
		if (r.code / 100 != 2)
			continue;	/* MAIL already decided */
		if (rr.code / 100 == 2)
			accepted++;
		else
			replies[i] = rr;
	}
	if (!c->pipelining && accepted > 0 &&
	    io_write(c, "DATA\r\n", 6, s->data_ms, "DATA") < 0)
		goto out;
	if (c->pipelining || accepted > 0) {
		if (read_reply(c, &r, s->data_ms, "DATA") < 0)
			goto out;
		*data_ok = r.code == 354;
		if (!*data_ok)
			reply_rest(replies, n, &r);
	}
	rc = accepted;
out:
	buf_free(&cmd);
	return rc;
}

/* Send the dot-stuffed body in blocks; the final dot is its own write so
 * that "sent" has one meaning. */
static int
send_body(struct smtp_client *c, const void *body, size_t len,
	  enum smtp_stage *stage_r)
{
	struct buf data;
	size_t off = 0, chunk;
	int rc = -1;

	buf_init(&data);
	smtp_dot_stuff(&data, body, len);
	data.len -= 3;			/* ".\r\n" goes last, alone */
	while (off < data.len) {
		chunk = data.len - off < BLOCK_LEN ? data.len - off : BLOCK_LEN;
		if (io_write(c, data.data + off, chunk, c->s->block_ms,
			     "the message") < 0)
			goto out;
		off += chunk;
	}
	if (io_write(c, ".\r\n", 3, c->s->block_ms, "the final dot") < 0)
		goto out;
	*stage_r = SMTP_STAGE_DOT;
	c->after_dot = true;
	rc = 0;
out:
	buf_free(&data);
	return rc;
}

/* A 421 means the peer is closing the session (RFC 5321 3.8): close our
 * side too, so the next message starts on a fresh connection. */
static int
closing(struct smtp_client *c, const struct smtp_reply *replies, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (replies[i].code == 421) {
			smtp_client_close(c);
			break;
		}
	return 0;
}

int
smtp_client_send(struct smtp_client *c, const char *sender,
		 const char *const *rcpts, size_t n, const void *body,
		 size_t len, struct smtp_reply *replies,
		 enum smtp_stage *stage_r, const char **error_r)
{
	struct smtp_reply r;
	bool data_ok;
	int acc;

	*error_r = c->err;
	*stage_r = SMTP_STAGE_NONE;
	c->timed_out = false;
	c->cancelled = false;
	c->after_dot = false;
	memset(replies, 0, n * sizeof(*replies));
	if (c->fd < 0) {
		set_err(c, "not connected");
		return -2;
	}
	if (c->size_max > 0 && len > c->size_max) {
		r.code = 552;
		snprintf(r.text, sizeof(r.text), "5.3.4 message size %zu "
			 "exceeds the peer's limit %llu", len,
			 (unsigned long long)c->size_max);
		reply_rest(replies, n, &r);
		return 0;
	}
	*stage_r = SMTP_STAGE_ENVELOPE;
	acc = envelope(c, sender, rcpts, n, len, replies, &data_ok);
	if (acc < 0)
		goto broken;
	if (!data_ok)
		return closing(c, replies, n);
	if (send_body(c, acc > 0 ? body : "", acc > 0 ? len : 0,
		      stage_r) < 0)
		goto broken;
	if (acc == 0) {		/* 354 without recipients: just end it */
		if (read_reply(c, &r, c->s->dot_ms, "end of data") < 0)
			goto broken;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (replies[i].code != 0)
			continue;	/* refused at RCPT */
		if (read_reply(c, &r, c->s->dot_ms, "end of data") < 0)
			goto broken;
		replies[i] = r;
		if (!c->s->lmtp)
			reply_rest(replies, n, &r);
	}
	return closing(c, replies, n);
broken:
	smtp_client_close(c);
	if (acc == -2) {
		*stage_r = SMTP_STAGE_NONE;
		return -2;
	}
	return -1;
}
