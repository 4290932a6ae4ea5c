/*
 * imap_client.c - blocking IMAP4rev1 client with poll() deadlines.
 *
 * Owns:    one struct conn (socket, TLS, input, the error text handed out
 *          through *error_r), the name of the user logged in, and the
 *          server's capabilities as last seen.
 * Threads: one thread at a time per object.
 *
 * Responses are read as logical lines: a line that announces a literal
 * ("{n}") continues after the n bytes, which are skipped, so untagged
 * data with literals in it never confuses the search for our tag.
 */
#include "imap_client.h"
#include "lib/conn.h"
#include "lib/xmalloc.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_LEN	(64 * 1024)	/* longer: a protocol error */
#define LOGOUT_MS	2000

struct imap_client {
	const struct imap_client_settings *s;	/* borrowed */
	struct conn conn;			/* owned */
	char *user;				/* owned; NULL: logged out */
	unsigned tagn;
	bool cap_starttls, cap_logindisabled, cap_auth_plain, cap_sasl_ir,
	     cap_literal_plus, cap_uidplus, caps_seen;
	struct buf line;			/* the current response line */
};

/* Called with each untagged line (after "* "), p[0..len). */
typedef void untagged_fn(struct imap_client *c, const char *p, size_t len,
			 void *arg);

/* --- pure helpers ------------------------------------------------------ */

static const struct {
	const char *name;
	enum imap_status st;
} status_names[] = {
	{ "OK", IMAP_OK }, { "NO", IMAP_NO }, { "BAD", IMAP_BAD },
	{ "BYE", IMAP_BYE }, { "PREAUTH", IMAP_PREAUTH },
};

/* Copy p[0..len) into dst (IMAP_TEXT_LEN), cut if longer. */
static void
copy_text(char *dst, const char *p, size_t len)
{
	if (len > IMAP_TEXT_LEN - 1)
		len = IMAP_TEXT_LEN - 1;
	memcpy(dst, p, len);
	dst[len] = '\0';
}

int
imap_parse_status(const char *p, size_t len, struct imap_resp *r)
{
	size_t i, wl = 0;
	const char *end = p + len, *close;

	while (wl < len && p[wl] != ' ')
		wl++;
	for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++)
		if (strlen(status_names[i].name) == wl &&
		    strncasecmp(p, status_names[i].name, wl) == 0)
			break;
	if (i == sizeof(status_names) / sizeof(status_names[0]))
		return -1;
	r->status = status_names[i].st;
	r->code[0] = r->text[0] = '\0';
	p += wl;
	if (p < end && *p == ' ')
		p++;
	if (p < end && *p == '[') {
		close = memchr(p, ']', (size_t)(end - p));
		if (close == NULL)
			return -1;
		copy_text(r->code, p + 1, (size_t)(close - p - 1));
		p = close + 1;
		if (p < end && *p == ' ')
			p++;
	}
	copy_text(r->text, p, (size_t)(end - p));
	return 0;
}

int
imap_literal_len(const char *p, size_t len, size_t *n_r)
{
	size_t i, n = 0;

	if (len < 3 || p[len - 1] != '}')
		return 0;
	i = len - 2;
	if (p[i] == '+' || p[i] == '-')
		i--;
	if (!isdigit((unsigned char)p[i]))
		return 0;
	while (i > 0 && isdigit((unsigned char)p[i]))
		i--;
	if (p[i] != '{')
		return 0;
	for (i++; p[i] != '}' && p[i] != '+' && p[i] != '-'; i++) {
		if (n > (SIZE_MAX - 9) / 10)
			return 0;
		n = n * 10 + (size_t)(p[i] - '0');
	}
	*n_r = n;
	return 1;
}

int
imap_quote(struct buf *b, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '\r' || *p == '\n' || *p >= 0x80)
			return -1;
	buf_append(b, "\"", 1);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, s, 1);
	}
	buf_append(b, "\"", 1);
	return 0;
}

uint32_t
imap_appenduid(const char *code)
{
	unsigned long v, uid;
	char *end;

	if (strncasecmp(code, "APPENDUID ", 10) != 0)
		return 0;
	v = strtoul(code + 10, &end, 10);
	if (end == code + 10 || *end != ' ')
		return 0;
	uid = strtoul(end + 1, &end, 10);
	(void)v;
	return uid > UINT32_MAX || (*end != '\0' && *end != ' ') ? 0 :
	       (uint32_t)uid;
}

int
imap_url_parse(const char *url, struct imap_url *u, const char **error_r)
{
	struct imap_url v = { 0 };
	const char *p, *auth_end, *at, *hp, *colon;
	const char *why = "not imap[s]://USER@HOST[:PORT]/MAILBOX";

	if (strncmp(url, "imap://", 7) == 0) {
		p = url + 7;
	} else if (strncmp(url, "imaps://", 8) == 0) {
		p = url + 8;
		v.implicit = true;
	} else {
		goto bad;
	}
	auth_end = strchr(p, '/');
	if (auth_end == NULL || auth_end[1] == '\0')
		goto bad;
	at = NULL;
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL || at == p || at + 1 == auth_end)
		goto bad;
	hp = at + 1;
	if (*hp == '[') {
		colon = memchr(hp, ']', (size_t)(auth_end - hp));
		if (colon == NULL)
			goto bad;
		v.host = strndup(hp + 1, (size_t)(colon - hp - 1));
		colon++;
		if (colon < auth_end && *colon != ':')
			goto bad;
	} else {
		colon = memchr(hp, ':', (size_t)(auth_end - hp));
		v.host = strndup(hp, (size_t)((colon ? colon : auth_end) -
					      hp));
	}
	if (colon != NULL && colon < auth_end) {
		size_t pl = (size_t)(auth_end - colon - 1);
		unsigned long port;
		char *e;

		port = strtoul(colon + 1, &e, 10);
		if (pl == 0 || e != auth_end || port == 0 || port > 65535)
			goto bad;
		v.port = strndup(colon + 1, pl);
	} else {
		v.port = xstrdup(v.implicit ? "993" : "143");
	}
	if (v.host == NULL || v.host[0] == '\0' || v.port == NULL)
		goto bad;
	v.user = strndup(p, (size_t)(at - p));
	v.mailbox = xstrdup(auth_end + 1);
	if (v.user == NULL)
		goto bad;
	if (u != NULL)
		*u = v;
	else
		imap_url_free(&v);
	return 0;
bad:
	imap_url_free(&v);
	if (error_r != NULL)
		*error_r = why;
	return -1;
}

void
imap_url_free(struct imap_url *u)
{
	free(u->user);
	free(u->host);
	free(u->port);
	free(u->mailbox);
	memset(u, 0, sizeof(*u));
}

/* --- capabilities ------------------------------------------------------- */

/* Take the capability list p[0..len) (atoms separated by spaces). */
static void
caps_parse(struct imap_client *c, const char *p, size_t len)
{
	const char *end = p + len;
	size_t l;

	c->cap_starttls = c->cap_logindisabled = c->cap_auth_plain = false;
	c->cap_sasl_ir = c->cap_literal_plus = c->cap_uidplus = false;
	c->caps_seen = true;
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		for (l = 0; p + l < end && p[l] != ' ' && p[l] != ']'; l++)
			;
#define IS(w) (l == strlen(w) && strncasecmp(p, w, l) == 0)
		if (IS("STARTTLS"))
			c->cap_starttls = true;
		else if (IS("LOGINDISABLED"))
			c->cap_logindisabled = true;
		else if (IS("AUTH=PLAIN"))
			c->cap_auth_plain = true;
		else if (IS("SASL-IR"))
			c->cap_sasl_ir = true;
		else if (IS("LITERAL+"))
			c->cap_literal_plus = true;
		else if (IS("UIDPLUS"))
			c->cap_uidplus = true;
#undef IS
		if (p + l < end && p[l] == ']')
			break;
		p += l;
	}
}

/* A status line p[0..len) may carry [CAPABILITY ...]: take it. */
static void
caps_from_status(struct imap_client *c, const char *p, size_t len)
{
	const char *k = memmem(p, len, "[CAPABILITY ", 12);

	if (k != NULL)
		caps_parse(c, k + 12, len - (size_t)(k + 12 - p));
}

/* --- reading responses --------------------------------------------------- */

/* Read one logical line into c->line (literals skipped, each replaced by
 * "{}"), within deadline. 0 or -1. */
static int
read_line(struct imap_client *c, uint64_t deadline, unsigned ms,
	  const char *what)
{
	struct conn *k = &c->conn;
	size_t len, lit, take;
	char *nl;

	buf_reset(&c->line);
	for (;;) {
		nl = k->in.len > 0 ? memchr(k->in.data, '\n', k->in.len) :
		     NULL;
		if (nl == NULL) {
			if (k->in.len + c->line.len > LINE_MAX_LEN) {
				conn_set_err(k, "response line too long to %s",
					     what);
				return -1;
			}
			if (conn_fill(k, deadline, ms, what) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - k->in.data);
		if (len > 0 && k->in.data[len - 1] == '\r')
			len--;
		buf_append(&c->line, k->in.data, len);
		buf_consume(&k->in, (size_t)(nl - k->in.data) + 1);
		if (!imap_literal_len(c->line.data, c->line.len, &lit))
			return 0;
		while (lit > 0) {	/* skip the literal's bytes */
			if (k->in.len == 0 &&
			    conn_fill(k, deadline, ms, what) < 0)
				return -1;
			take = k->in.len < lit ? k->in.len : lit;
			buf_consume(&k->in, take);
			lit -= take;
		}
		buf_append_str(&c->line, "{}");
	}
}

/* Read until the tagged reply to tag (or, with want_cont, a "+"). Each
 * untagged line goes to fn (may be NULL). 0: *r is the tagged reply;
 * 1: continuation request; -1: broken (c->conn.err). */
static int
response(struct imap_client *c, const char *tag, unsigned ms,
	 const char *what, struct imap_resp *r, bool want_cont,
	 untagged_fn *fn, void *arg)
{
	uint64_t deadline = conn_now_ms() + ms;
	size_t tl = strlen(tag);
	const char *p;
	size_t len;
	struct imap_resp u;

	for (;;) {
		if (read_line(c, deadline, ms, what) < 0)
			return -1;
		p = c->line.data;
		len = c->line.len;
		if (len >= 1 && p[0] == '+' && want_cont)
			return 1;
		if (len > 2 && p[0] == '*' && p[1] == ' ') {
			caps_from_status(c, p + 2, len - 2);
			if (len > 13 && strncasecmp(p + 2, "CAPABILITY ", 11)
			    == 0)
				caps_parse(c, p + 13, len - 13);
			if (imap_parse_status(p + 2, len - 2, &u) == 0 &&
			    u.status == IMAP_BYE)
				conn_set_err(&c->conn, "server said BYE: %s",
					     u.text);
			if (fn != NULL)
				fn(c, p + 2, len - 2, arg);
			continue;
		}
		if (len > tl && memcmp(p, tag, tl) == 0 && p[tl] == ' ') {
			caps_from_status(c, p + tl + 1, len - tl - 1);
			if (imap_parse_status(p + tl + 1, len - tl - 1, r) < 0)
				break;
			return 0;
		}
		if (len >= 1 && p[0] == '+')
			continue;	/* not asked for: ignore */
		break;
	}
	conn_set_err(&c->conn, "malformed response to %s", what);
	return -1;
}

/* A new tag into tag (16 bytes). */
static void
next_tag(struct imap_client *c, char *tag)
{
	snprintf(tag, 16, "p%u", ++c->tagn);
}

/* Send "<tag> <cmd>\r\n" and read the tagged reply. 0 or -1. */
static int
command(struct imap_client *c, const char *cmd, struct imap_resp *r,
	const char *what, untagged_fn *fn, void *arg)
{
	char tag[16];
	struct buf b;
	int rc;

	next_tag(c, tag);
	buf_init(&b);
	buf_printf(&b, "%s %s\r\n", tag, cmd);
	rc = conn_write(&c->conn, b.data, b.len, c->s->command_ms, what);
	OPENSSL_cleanse(b.data, b.len);
	buf_free(&b);
	if (rc < 0)
		return -1;
	return response(c, tag, c->s->command_ms, what, r, false, fn, arg);
}

/* --- connect, STARTTLS, login --------------------------------------------- */

static int
tls_start(struct imap_client *c)
{
	const struct imap_client_settings *s = c->s;
	struct conn_tls t = {
		.host = s->host,
		.ca_file = s->tls_ca_file,
		.verify = s->tls >= IMAP_TLS_ENCRYPT && s->tls_verify,
	};

	c->caps_seen = false;
	return conn_tls_start(&c->conn, &t, s->connect_ms);
}

static int
greeting(struct imap_client *c, bool *preauth_r)
{
	struct imap_resp r;

	if (read_line(c, conn_now_ms() + c->s->connect_ms, c->s->connect_ms,
		      "the greeting") < 0)
		return -1;
	if (c->line.len < 2 || memcmp(c->line.data, "* ", 2) != 0 ||
	    imap_parse_status(c->line.data + 2, c->line.len - 2, &r) < 0) {
		conn_set_err(&c->conn, "malformed greeting");
		return -1;
	}
	if (r.status != IMAP_OK && r.status != IMAP_PREAUTH) {
		conn_set_err(&c->conn, "greeting: %s", c->line.data + 2);
		return -1;
	}
	*preauth_r = r.status == IMAP_PREAUTH;
	caps_from_status(c, c->line.data + 2, c->line.len - 2);
	return 0;
}

/* CAPABILITY unless the capabilities are known. */
static int
capabilities(struct imap_client *c)
{
	struct imap_resp r;

	if (c->caps_seen)
		return 0;
	if (command(c, "CAPABILITY", &r, "CAPABILITY", NULL, NULL) < 0)
		return -1;
	if (r.status != IMAP_OK) {
		conn_set_err(&c->conn, "CAPABILITY refused: %s", r.text);
		return -1;
	}
	return 0;
}

static int
starttls(struct imap_client *c)
{
	struct imap_resp r;

	if (!c->cap_starttls) {
		if (c->s->tls == IMAP_TLS_ENCRYPT) {
			conn_set_err(&c->conn, "server does not offer "
				     "STARTTLS (tls = encrypt)");
			return -1;
		}
		return 0;
	}
	if (command(c, "STARTTLS", &r, "STARTTLS", NULL, NULL) < 0)
		return -1;
	if (r.status != IMAP_OK) {
		if (c->s->tls == IMAP_TLS_ENCRYPT) {
			conn_set_err(&c->conn, "STARTTLS refused: %s", r.text);
			return -1;
		}
		return 0;
	}
	if (tls_start(c) < 0)
		return -1;
	return capabilities(c);
}

/* AUTHENTICATE PLAIN (with SASL-IR when offered) or LOGIN; the reply
 * into *r. 0 or -1 (broken). */
static int
login_cmd(struct imap_client *c, const char *user, const char *password,
	  struct imap_resp *r)
{
	size_t ul = strlen(user), pl = strlen(password);
	unsigned char *raw;
	char *b64, tag[16];
	struct buf b;
	int rc = -1;

	buf_init(&b);
	if (!c->cap_auth_plain) {
		buf_append_str(&b, "LOGIN ");
		if (imap_quote(&b, user) < 0 || (buf_append_str(&b, " "),
		    imap_quote(&b, password) < 0))
			conn_set_err(&c->conn, "user name or password not "
				     "sendable with LOGIN");
		else
			rc = command(c, b.data, r, "LOGIN", NULL, NULL);
		goto out;
	}
	raw = xmalloc(ul + pl + 2);
	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[ul + 1] = '\0';
	memcpy(raw + ul + 2, password, pl);
	b64 = xmalloc(4 * ((ul + pl + 2 + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)(ul + pl + 2));
	OPENSSL_cleanse(raw, ul + pl + 2);
	free(raw);
	next_tag(c, tag);
	if (c->cap_sasl_ir)
		buf_printf(&b, "%s AUTHENTICATE PLAIN %s\r\n", tag, b64);
	else
		buf_printf(&b, "%s AUTHENTICATE PLAIN\r\n", tag);
	if (conn_write(&c->conn, b.data, b.len, c->s->command_ms,
		       "AUTHENTICATE") < 0)
		goto out_b64;
	rc = response(c, tag, c->s->command_ms, "AUTHENTICATE", r,
		      !c->cap_sasl_ir, NULL, NULL);
	if (rc == 1) {
		buf_reset(&b);
		buf_printf(&b, "%s\r\n", b64);
		rc = conn_write(&c->conn, b.data, b.len, c->s->command_ms,
				"AUTHENTICATE");
		if (rc == 0)
			rc = response(c, tag, c->s->command_ms,
				      "AUTHENTICATE", r, false, NULL, NULL);
	}
out_b64:
	OPENSSL_cleanse(b64, strlen(b64));
	free(b64);
out:
	if (b.data != NULL)
		OPENSSL_cleanse(b.data, b.len);
	buf_free(&b);
	return rc < 0 ? -1 : 0;
}

static int
login(struct imap_client *c, const char *user, const char *password,
      bool *auth_r)
{
	struct imap_resp r;

	if (c->conn.ssl == NULL && !c->s->auth_plaintext) {
		conn_set_err(&c->conn, "not sending the password without TLS "
			     "(auth_plaintext = no)");
		return -1;
	}
	if (!c->cap_auth_plain && c->cap_logindisabled) {
		conn_set_err(&c->conn, "server offers neither AUTH=PLAIN "
			     "nor LOGIN");
		return -1;
	}
	c->caps_seen = false;	/* they change after login */
	if (login_cmd(c, user, password, &r) < 0)
		return -1;
	if (r.status != IMAP_OK) {
		*auth_r = true;
		conn_set_err(&c->conn, "login as %s refused: %s%s%s%s", user,
			     r.code[0] ? "[" : "", r.code,
			     r.code[0] ? "] " : "", r.text);
		return -1;
	}
	return capabilities(c);
}

struct imap_client *
imap_client_new(const struct imap_client_settings *s)
{
	struct imap_client *c = xcalloc(1, sizeof(*c));

	c->s = s;
	conn_init(&c->conn);
	c->conn.cancel_fd = s->cancel_fd;
	buf_init(&c->line);
	return c;
}

void
imap_client_close(struct imap_client *c)
{
	conn_close(&c->conn);
	free(c->user);
	c->user = NULL;
	c->caps_seen = false;
}

int
imap_client_open(struct imap_client *c, const char *user,
		 const char *password, bool *auth_r, const char **error_r)
{
	const struct imap_client_settings *s = c->s;
	bool preauth = false;

	imap_client_close(c);
	*error_r = c->conn.err;
	*auth_r = false;
	if (conn_open(&c->conn, s->host, s->port, s->connect_ms) < 0)
		return -1;
	if (s->tls == IMAP_TLS_IMPLICIT && tls_start(c) < 0)
		goto fail;
	if (greeting(c, &preauth) < 0 || capabilities(c) < 0)
		goto fail;
	if ((s->tls == IMAP_TLS_MAY || s->tls == IMAP_TLS_ENCRYPT) &&
	    !preauth && starttls(c) < 0)
		goto fail;
	if (!preauth && login(c, user, password, auth_r) < 0)
		goto fail;
	c->user = xstrdup(user);
	return 0;
fail:
	imap_client_close(c);
	return -1;
}

const char *
imap_client_user(const struct imap_client *c)
{
	return c->conn.fd >= 0 ? c->user : NULL;
}

bool
imap_client_timed_out(const struct imap_client *c)
{
	return c->conn.timed_out;
}

bool
imap_client_cancelled(const struct imap_client *c)
{
	return c->conn.cancelled;
}

void
imap_client_free(struct imap_client **cp)
{
	struct imap_client *c = *cp;
	struct imap_resp r;
	char tag[16], cmd[32];

	*cp = NULL;
	if (c == NULL)
		return;
	if (c->conn.fd >= 0) {
		next_tag(c, tag);
		snprintf(cmd, sizeof(cmd), "%s LOGOUT\r\n", tag);
		c->conn.cancel_fd = -1;
		if (conn_write(&c->conn, cmd, strlen(cmd), LOGOUT_MS,
			       "LOGOUT") == 0)
			(void)response(c, tag, LOGOUT_MS, "LOGOUT", &r, false,
				       NULL, NULL);
	}
	imap_client_close(c);
	conn_free(&c->conn);
	buf_free(&c->line);
	free(c);
}

/* --- commands ------------------------------------------------------------ */

/* An idle connection the server has closed (or said BYE on) is readable:
 * find out before sending anything. true if it is still usable. */
static bool
still_open(struct imap_client *c)
{
	struct pollfd pfd = { c->conn.fd, POLLIN, 0 };

	if (c->conn.fd < 0)
		return false;
	if (c->conn.ssl != NULL && SSL_pending(c->conn.ssl) > 0)
		return false;
	return c->conn.in.len == 0 && poll(&pfd, 1, 0) == 0;
}

int
imap_client_append(struct imap_client *c, const char *mailbox,
		   const void *hdr, size_t hlen, const void *body,
		   size_t blen, struct imap_resp *r, uint32_t *uid_r,
		   enum imap_stage *stage_r, const char **error_r)
{
	const struct imap_client_settings *s = c->s;
	char tag[16];
	struct buf b;
	int rc = -1;

	*error_r = c->conn.err;
	*stage_r = IMAP_STAGE_NONE;
	*uid_r = 0;
	c->conn.timed_out = c->conn.cancelled = false;
	c->conn.no_cancel = false;
	if (!still_open(c)) {
		conn_set_err(&c->conn, "connection closed while idle");
		imap_client_close(c);
		return -2;
	}
	next_tag(c, tag);
	buf_init(&b);
	buf_printf(&b, "%s APPEND ", tag);
	if (imap_quote(&b, mailbox) < 0) {
		conn_set_err(&c->conn, "mailbox name not sendable: %s",
			     mailbox);
		buf_free(&b);
		return -2;
	}
	buf_printf(&b, " {%zu%s}\r\n", hlen + blen,
		   c->cap_literal_plus ? "+" : "");
	if (conn_write(&c->conn, b.data, b.len, s->command_ms, "APPEND") < 0)
		goto broken;
	if (!c->cap_literal_plus) {
		rc = response(c, tag, s->command_ms, "APPEND", r, true, NULL,
			      NULL);
		if (rc == 0)
			goto out;	/* refused before the literal */
		if (rc < 0)
			goto broken;
	}
	if (conn_write(&c->conn, hdr, hlen, s->append_ms, "the message") < 0 ||
	    conn_write(&c->conn, body, blen, s->append_ms, "the message") < 0 ||
	    conn_write(&c->conn, "\r\n", 2, s->append_ms, "the message") < 0)
		goto broken;
	*stage_r = IMAP_STAGE_SENT;
	/* Like SMTP's final dot: the reply decides whether the server has
	 * it, so stopping posternd does not cut this wait short. */
	c->conn.no_cancel = true;
	rc = response(c, tag, s->append_ms, "APPEND", r, false, NULL, NULL);
	c->conn.no_cancel = false;
	if (rc < 0)
		goto broken;
	*uid_r = imap_appenduid(r->code);
out:
	buf_free(&b);
	return 0;
broken:
	buf_free(&b);
	imap_client_close(c);
	return -1;
}

int
imap_client_create(struct imap_client *c, const char *mailbox,
		   struct imap_resp *r, const char **error_r)
{
	struct buf b;
	int rc = -1;

	*error_r = c->conn.err;
	buf_init(&b);
	buf_append_str(&b, "CREATE ");
	if (imap_quote(&b, mailbox) < 0)
		conn_set_err(&c->conn, "mailbox name not sendable: %s",
			     mailbox);
	else if ((rc = command(c, b.data, r, "CREATE", NULL, NULL)) < 0)
		imap_client_close(c);
	buf_free(&b);
	return rc;
}

/* "SEARCH 4 7 9": the first number into *(uint32_t *)arg. */
static void
search_line(struct imap_client *c, const char *p, size_t len, void *arg)
{
	uint32_t *uid = arg;
	char tmp[32];
	size_t l;

	(void)c;
	if (len < 8 || strncasecmp(p, "SEARCH ", 7) != 0 || *uid != 0)
		return;
	l = strspn(p + 7, "0123456789");
	if (l == 0 || l >= sizeof(tmp))
		return;
	memcpy(tmp, p + 7, l);
	tmp[l] = '\0';
	*uid = (uint32_t)strtoul(tmp, NULL, 10);
}

int
imap_client_search_header(struct imap_client *c, const char *mailbox,
			  const char *field, const char *value,
			  uint32_t *uid_r, const char **error_r)
{
	struct imap_resp r;
	struct buf b;
	int rc = -1;

	*error_r = c->conn.err;
	*uid_r = 0;
	c->conn.timed_out = c->conn.cancelled = false;
	buf_init(&b);
	buf_append_str(&b, "EXAMINE ");
	if (imap_quote(&b, mailbox) < 0) {
		conn_set_err(&c->conn, "mailbox name not sendable: %s",
			     mailbox);
		goto out;
	}
	if (command(c, b.data, &r, "EXAMINE", NULL, NULL) < 0)
		goto broken;
	if (r.status != IMAP_OK) {
		if (strcasecmp(r.code, "NONEXISTENT") == 0)
			rc = 0;
		else
			conn_set_err(&c->conn, "EXAMINE %s refused: %s",
				     mailbox, r.text);
		goto out;
	}
	buf_reset(&b);
	buf_append_str(&b, "UID SEARCH HEADER ");
	if (imap_quote(&b, field) < 0 || (buf_append_str(&b, " "),
	    imap_quote(&b, value) < 0)) {
		conn_set_err(&c->conn, "search text not sendable");
		goto out;
	}
	if (command(c, b.data, &r, "UID SEARCH", search_line, uid_r) < 0)
		goto broken;
	if (r.status != IMAP_OK) {
		conn_set_err(&c->conn, "UID SEARCH refused: %s", r.text);
		goto out;
	}
	rc = *uid_r != 0 ? 1 : 0;
	goto out;
broken:
	imap_client_close(c);
out:
	buf_free(&b);
	return rc;
}
