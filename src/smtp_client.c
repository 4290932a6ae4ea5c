/*
 * smtp_client.c - blocking SMTP/LMTP client with poll() deadlines.
 *
 * Owns:    one struct conn (socket, TLS, read buffer, the error text
 *          handed out through *error_r) and the session's state.
 * Threads: one thread at a time per object.
 *
 * Every wait is one of lib/conn's poll() deadlines, so no peer can keep a
 * worker longer than the configured RFC 5321 timeouts.
 */
#include "smtp_client.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_LEN	2048		/* longer reply lines: protocol error */
#define BLOCK_LEN	(64 * 1024)	/* one "data block" of RFC 5321 */
#define QUIT_MS		2000

struct smtp_client {
	const struct smtp_client_settings *s;	/* borrowed */
	struct conn conn;			/* owned: socket, TLS, input */
	bool pipelining, starttls, auth_plain, esc;
	uint64_t size_max;			/* 0: no SIZE limit known */
	unsigned transactions;			/* on this connection */
};

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

/* Postfix's cleanup_replace_stray_cr_lf: a CR or LF that is not part of
 * a CRLF pair becomes a space, so the peer can never see a line end we
 * did not mean (outbound SMTP smuggling, RELIABILITY.md H7). */
void
smtp_dot_stuff(struct buf *out, const void *body, size_t len)
{
	const char *p = body;
	size_t i = 0, run;
	bool bol = true;

	while (i < len) {
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
			buf_append(out, "\r\n", 2);
			i += 2;
			bol = true;
			continue;
		}
		if (p[i] == '\r' || p[i] == '\n') {
			buf_append(out, " ", 1);
			i++;
			bol = false;
			continue;
		}
		if (bol && p[i] == '.')
			buf_append(out, ".", 1);
		for (run = i; run < len && p[run] != '\r' && p[run] != '\n';)
			run++;
		buf_append(out, p + i, run - i);
		i = run;
		bol = false;
	}
	if (!bol)
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
}

int
smtp_path_ok(const char *addr)
{
	size_t n = 0;

	for (; addr[n] != '\0'; n++)
		if ((unsigned char)addr[n] < 0x20 ||
		    (unsigned char)addr[n] > 0x7e ||
		    addr[n] == '<' || addr[n] == '>')
			return -1;
	return n <= SMTP_PATH_MAX - 2 ? 0 : -1;
}

int
smtp_mail_line(struct buf *out, const char *sender, size_t size)
{
	if (smtp_path_ok(sender) < 0)
		return -1;
	buf_printf(out, "MAIL FROM:<%s>", sender);
	if (size > 0)
		buf_printf(out, " SIZE=%zu", size);
	buf_append_str(out, "\r\n");
	return 0;
}

int
smtp_rcpt_line(struct buf *out, const char *rcpt)
{
	if (smtp_path_ok(rcpt) < 0)
		return -1;
	buf_printf(out, "RCPT TO:<%s>\r\n", rcpt);
	return 0;
}

/* --- replies ----------------------------------------------------------- */

/* Read one complete reply within ms; 0 or -1. */
static int
read_reply(struct smtp_client *c, struct smtp_reply *r, unsigned ms,
	   const char *what)
{
	uint64_t deadline = conn_now_ms() + ms;
	char *nl;
	size_t len;
	int rc;

	r->code = 0;
	r->text[0] = '\0';
	for (;;) {
		nl = c->conn.in.len > 0 ? memchr(c->conn.in.data, '\n', c->conn.in.len) :
		     NULL;
		if (nl == NULL) {
			if (c->conn.in.len > LINE_MAX_LEN) {
				conn_set_err(&c->conn, "reply line too long after %s",
					what);
				return -1;
			}
			if (conn_fill(&c->conn, deadline, ms, what) < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - c->conn.in.data);
		if (len > 0 && c->conn.in.data[len - 1] == '\r')
			len--;
		rc = smtp_reply_line(r, c->conn.in.data, len);
		buf_consume(&c->conn.in, (size_t)(nl - c->conn.in.data) + 1);
		if (rc < 0) {
			conn_set_err(&c->conn, "malformed reply to %s", what);
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
	if (conn_write(&c->conn, line, strlen(line), ms, what) < 0)
		return -1;
	return read_reply(c, r, ms, what);
}

/* --- connect, greeting, EHLO, STARTTLS, AUTH --------------------------- */

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
	uint64_t deadline = conn_now_ms() + c->s->mail_ms;
	char line[600];
	struct smtp_reply r = { 0 };
	char *nl;
	size_t len;
	int rc, first = 1;

	c->pipelining = c->starttls = c->auth_plain = c->esc = false;
	c->size_max = 0;
	snprintf(line, sizeof(line), "%s %s\r\n", c->s->lmtp ? "LHLO" : "EHLO",
		 c->s->helo);
	if (conn_write(&c->conn, line, strlen(line), c->s->mail_ms, "EHLO") < 0)
		return -1;
	for (;;) {
		nl = c->conn.in.len > 0 ? memchr(c->conn.in.data, '\n', c->conn.in.len) :
		     NULL;
		if (nl == NULL) {
			if (c->conn.in.len > LINE_MAX_LEN ||
			    conn_fill(&c->conn, deadline, c->s->mail_ms, "EHLO") < 0)
				return -1;
			continue;
		}
		len = (size_t)(nl - c->conn.in.data);
		if (len > 0 && c->conn.in.data[len - 1] == '\r')
			len--;
		rc = smtp_reply_line(&r, c->conn.in.data, len);
		if (rc >= 0 && !first && len > 4 && len - 4 < 512) {
			memcpy(line, c->conn.in.data + 4, len - 4);
			line[len - 4] = '\0';
			ehlo_keyword(c, line);
		}
		first = 0;
		buf_consume(&c->conn.in, (size_t)(nl - c->conn.in.data) + 1);
		if (rc < 0) {
			conn_set_err(&c->conn, "malformed reply to EHLO");
			return -1;
		}
		if (rc == 1)
			break;
	}
	if (r.code / 100 != 2) {
		conn_set_err(&c->conn, "EHLO refused: %d %s", r.code, r.text);
		return -1;
	}
	return 0;
}

static int
tls_start(struct smtp_client *c)
{
	const struct smtp_client_settings *s = c->s;
	struct conn_tls t = {
		.host = s->port != NULL ? s->host : NULL,
		.ca_file = s->tls_ca_file,
		.verify = s->tls == SMTP_TLS_ENCRYPT && s->tls_verify,
	};

	return conn_tls_start(&c->conn, &t, s->greeting_ms);
}

static int
starttls(struct smtp_client *c)
{
	struct smtp_reply r;

	if (!c->starttls) {
		if (c->s->tls == SMTP_TLS_ENCRYPT) {
			conn_set_err(&c->conn, "peer does not offer STARTTLS "
				"(tls = encrypt)");
			return -1;
		}
		return 0;
	}
	if (command(c, "STARTTLS\r\n", &r, c->s->mail_ms, "STARTTLS") < 0)
		return -1;
	if (r.code != 220) {
		if (c->s->tls == SMTP_TLS_ENCRYPT) {
			conn_set_err(&c->conn, "STARTTLS refused: %d %s", r.code, r.text);
			return -1;
		}
		return 0;
	}
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
	if (c->conn.ssl == NULL && !s->auth_plaintext) {
		conn_set_err(&c->conn, "not sending the password without TLS "
			"(auth_plaintext = no)");
		return -1;
	}
	if (!c->auth_plain) {
		conn_set_err(&c->conn, "peer does not offer AUTH PLAIN");
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
			conn_set_err(&c->conn, "AUTH refused: %d %s", r.code, r.text);
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
	conn_init(&c->conn);
	c->conn.cancel_fd = s->cancel_fd;
	return c;
}

bool
smtp_client_connected(const struct smtp_client *c)
{
	return c->conn.fd >= 0;
}

bool
smtp_client_timed_out(const struct smtp_client *c)
{
	return c->conn.timed_out;
}

bool
smtp_client_cancelled(const struct smtp_client *c)
{
	return c->conn.cancelled;
}

void
smtp_client_close(struct smtp_client *c)
{
	conn_close(&c->conn);
	c->transactions = 0;
}

int
smtp_client_open(struct smtp_client *c, const char **error_r)
{
	struct smtp_reply r;

	smtp_client_close(c);
	*error_r = c->conn.err;
	if (conn_open(&c->conn, c->s->host, c->s->port, c->s->connect_ms) < 0)
		return -1;
	if (read_reply(c, &r, c->s->greeting_ms, "the greeting") < 0)
		goto fail;
	if (r.code != 220) {
		conn_set_err(&c->conn, "greeting: %d %s", r.code, r.text);
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
	if (c->conn.fd >= 0 &&
	    conn_write(&c->conn, "QUIT\r\n", 6, QUIT_MS, "QUIT") == 0)
		(void)read_reply(c, &r, QUIT_MS, "QUIT");
	conn_free(&c->conn);
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
	smtp_mail_line(&cmd, sender, c->size_max > 0 ? len : 0);
	if (c->pipelining) {
		for (size_t i = 0; i < n; i++)
			smtp_rcpt_line(&cmd, rcpts[i]);
		buf_append_str(&cmd, "DATA\r\n");
	}
	if (conn_write(&c->conn, cmd.data, cmd.len, s->mail_ms, "MAIL FROM") < 0) {
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

		if (smtp_path_ok(rcpts[i]) < 0)
			continue;	/* never sent: 553 already */
		if (!c->pipelining) {
			if (r.code / 100 != 2)
				break;
			buf_reset(&cmd);
			smtp_rcpt_line(&cmd, rcpts[i]);
			if (conn_write(&c->conn, cmd.data, cmd.len, s->rcpt_ms,
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
	    conn_write(&c->conn, "DATA\r\n", 6, s->data_ms, "DATA") < 0)
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
		if (conn_write(&c->conn, data.data + off, chunk, c->s->block_ms,
			     "the message") < 0)
			goto out;
		off += chunk;
	}
	if (conn_write(&c->conn, ".\r\n", 3, c->s->block_ms, "the final dot") < 0)
		goto out;
	*stage_r = SMTP_STAGE_DOT;
	c->conn.no_cancel = true;
	rc = 0;
out:
	buf_free(&data);
	return rc;
}

/* Values that cannot go into a command line (H8) never reach the peer:
 * the recipient gets a local 553, or every one of them if the sender is
 * the bad value. True when nothing is left to send. */
static bool
refuse_paths(const char *sender, const char *const *rcpts, size_t n,
	     struct smtp_reply *replies)
{
	struct smtp_reply r = { .code = 553 };
	size_t i, bad = 0;

	if (smtp_path_ok(sender) < 0) {
		snprintf(r.text, sizeof(r.text), "5.1.7 postern: the sender "
			 "address cannot be sent in an SMTP command");
		reply_rest(replies, n, &r);
		return true;
	}
	snprintf(r.text, sizeof(r.text), "5.1.3 postern: the recipient "
		 "address cannot be sent in an SMTP command");
	for (i = 0; i < n; i++)
		if (smtp_path_ok(rcpts[i]) < 0) {
			replies[i] = r;
			bad++;
		}
	return bad == n;
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

	*error_r = c->conn.err;
	*stage_r = SMTP_STAGE_NONE;
	c->conn.timed_out = false;
	c->conn.cancelled = false;
	c->conn.no_cancel = false;
	memset(replies, 0, n * sizeof(*replies));
	if (c->conn.fd < 0) {
		conn_set_err(&c->conn, "not connected");
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
	if (refuse_paths(sender, rcpts, n, replies))
		return 0;
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
