/*
 * ingress_smtp.c - the ESMTP/LMTP server dialogue as a pure state machine.
 *
 * Owns:    one struct smtp_session per client connection: the command line
 *          being read, the envelope, and the message while it arrives and
 *          while it waits to be stored.
 * Threads: the event-loop thread that owns the connection. No I/O here:
 *          bytes come in through smtp_session_feed(), replies go out
 *          through the caller's struct buf.
 *
 * Framing follows RFC 5321 strictly: only CRLF ends a line, and only
 * CRLF.CRLF ends the data (the defence against SMTP smuggling, see
 * RELIABILITY.md H7). Every value copied into a reply or a header is
 * cleaned first, so client bytes can never start a new line there.
 */
#include "ingress_smtp.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CMD_LINE_MAX	512	/* octets incl. CRLF, RFC 5321 4.5.3.1.4 */
#define TEXT_LINE_MAX	1000	/* octets incl. CRLF, RFC 5321 4.5.3.1.6 */
#define LOCAL_PART_MAX	64
#define DOMAIN_MAX	255
#define PATH_MAX_LEN	256	/* incl. the angle brackets */
#define NAME_SHOW_MAX	255	/* HELO, client name in Received */
#define ECHO_MAX	64	/* client text quoted in a reply */
#define QID_MAX		64
#define MSGID_MAX	998
#define REPLY_MAX	512	/* octets incl. CRLF, RFC 5321 4.5.3.1.5 */

/* Bytes that would confuse a reader of our Received: comment. */
#define HEADER_AVOID	" ()[]\\;\"<>"

enum phase {
	PH_CMD,
	PH_DATA,
	PH_PAUSED,	/* a message waits for smtp_session_stored() */
	PH_TLS,		/* STARTTLS answered: the handshake is the glue's */
};

/* Which AUTH response the next line is. */
enum auth_wait {
	AW_NONE,
	AW_PLAIN,	/* "334 " sent: the PLAIN response */
	AW_LOGIN_USER,	/* "334 VXNlcm5hbWU6" sent */
	AW_LOGIN_PASS,	/* "334 UGFzc3dvcmQ6" sent */
};

/* Where the data reader is within a line. */
enum dot_state {
	DS_BOL,		/* after CRLF */
	DS_DOT,		/* "." at the start of a line */
	DS_DOT_CR,	/* ".\r" at the start of a line */
	DS_LINE,
	DS_CR,		/* "\r" inside a line */
};

/* Why the data will be refused at CRLF.CRLF; the first one seen wins. */
enum data_fault {
	DF_NONE,
	DF_BARE_LF,	/* these two close the session */
	DF_BARE_CR,
	DF_NUL,
	DF_LINE,
	DF_SIZE,
	DF_HEADER,
};

struct smtp_session {
	const struct smtp_limits *lim;	/* borrowed */
	char *hostname;			/* owned, cleaned */
	char *client_addr;		/* owned, cleaned */
	char *client_name;		/* owned, cleaned */
	size_t max_size;
	size_t max_rcpts;
	unsigned max_errors;

	enum phase phase;
	bool greeted;		/* the 220 went out */
	bool closed;		/* nothing more is read */
	unsigned errors;
	bool more;		/* input follows the byte being fed */

	struct buf line;	/* command line without CRLF */
	bool line_cr;
	bool line_long;
	bool line_nul;

	char *helo;		/* owned, cleaned; NULL before HELO */
	const char *proto;	/* static: "SMTP", "ESMTP", "LMTP" */

	char *tls_desc;		/* owned, cleaned; NULL: no TLS */
	char *auth_user;	/* owned; NULL: not authenticated */
	enum auth_wait auth_wait;
	char *login_user;	/* owned; AUTH LOGIN between its two steps */

	char *sender;		/* owned; NULL outside a transaction */
	char **rcpts;		/* owned strings, no duplicates */
	size_t nrcpt;
	size_t rcpt_cap;
	size_t *acc;		/* rcpts index of each RCPT answered 250 */
	size_t nacc;
	size_t acc_cap;
	size_t rcpt_tried;	/* RCPT commands in this transaction */

	struct buf body;	/* unstuffed data; final message when paused */
	enum dot_state ds;
	size_t line_len;	/* raw octets of the current data line */
	size_t line_off;	/* where it starts in body */
	bool in_header;
	size_t hdr_end;
	size_t qid_at;		/* where the queue id goes in Received: */
	size_t trace_len;	/* bytes of ours before the client's */
	size_t hdr_lines;
	enum data_fault bare;	/* DF_BARE_LF or DF_BARE_CR */
	enum data_fault fault;	/* any other reason to refuse */
	char *msgid;		/* owned, while paused */
};

/* --- cleaning and replies ----------------------------------------------- */

/* Append up to max bytes of p[0..n) to b; bytes that are not printable
 * ASCII, or are in avoid, become '?'. */
static void
put_clean(struct buf *b, const char *p, size_t n, size_t max,
	  const char *avoid)
{
	size_t i;
	char c;

	if (n > max)
		n = max;
	for (i = 0; i < n; i++) {
		c = p[i];
		if ((unsigned char)c < 0x20 || (unsigned char)c > 0x7e ||
		    strchr(avoid, c) != NULL)
			c = '?';
		buf_append(b, &c, 1);
	}
}

/* A cleaned copy of s (NULL: dflt) for headers; the caller owns it. */
static char *
clean_dup(const char *s, const char *dflt, size_t max)
{
	struct buf b;

	if (s == NULL || *s == '\0')
		s = dflt;
	buf_init(&b);
	put_clean(&b, s, strlen(s), max, HEADER_AVOID);
	if (b.len == 0)
		buf_append_str(&b, dflt);
	return b.data;
}

/* Append one reply line (CRLF added), cut to the RFC reply length. */
static void
reply(struct buf *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
reply(struct buf *out, const char *fmt, ...)
{
	char line[REPLY_MAX - 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		panic("ingress_smtp: bad reply format \"%s\"", fmt);
	buf_append_str(out, line);
	buf_append(out, "\r\n", 2);
}

/* Add one to the error count. The check against max_errors happens once
 * the command is answered (cmd_line). */
static void
count_error(struct smtp_session *s)
{
	s->errors++;
}

/* --- refusals in the log ------------------------------------------------ */

#define VERB_MAX	16

/* The command word of line[0..n) for the log, cleaned, in upper case;
 * "UNKNOWN" if there is none. */
static void
log_verb(char *verb, const char *line, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < VERB_MAX - 1 && line[i] != ' '; i++) {
		char c = line[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			   c == '-'))
			c = '?';
		verb[i] = c;
	}
	verb[i] = '\0';
	if (i == 0)
		snprintf(verb, VERB_MAX, "UNKNOWN");
}

/* The address of a RCPT TO:<...> line (cleaned) into rcpt (PATH_MAX_LEN
 * bytes), "" if there is none. */
static void
log_rcpt(char *rcpt, const char *line, size_t n)
{
	const char *lt = memchr(line, '<', n), *gt;
	struct buf b;

	rcpt[0] = '\0';
	if (lt == NULL)
		return;
	gt = memchr(lt, '>', n - (size_t)(lt - line));
	if (gt == NULL)
		return;
	buf_init(&b);
	put_clean(&b, lt + 1, (size_t)(gt - lt - 1), PATH_MAX_LEN - 1, "<>");
	if (b.data != NULL)
		snprintf(rcpt, PATH_MAX_LEN, "%s", b.data);
	buf_free(&b);
}

/* If the reply appended to out from offset at refuses (4xx, 5xx), log
 * it in the shape of Postfix's smtpd reject line: the first reply line,
 * the command, and what the transaction had so far. rcpt: the RCPT's
 * address, "" or NULL. */
static void
log_refusal(const struct smtp_session *s, const struct buf *out, size_t at,
	    const char *verb, const char *rcpt)
{
	const char *p = out->data + at;
	const char *proto = s->proto != NULL ? s->proto :
		s->lim->lmtp ? "LMTP" : "SMTP";
	char text[REPLY_MAX];
	struct buf env;
	struct log_field f[] = {
		{ "queue_id", "NOQUEUE", false },
		{ "event", "reject", false },
		{ "command", verb, false },
		{ "client", s->client_addr, false },
		{ "reply", text, false },
		{ "from", s->sender, false },
		{ "to", rcpt != NULL && *rcpt != '\0' ? rcpt : NULL, false },
		{ "proto", proto, false },
		{ "helo", s->helo, false },
	};

	if (out->len <= at || (*p != '4' && *p != '5'))
		return;
	snprintf(text, sizeof(text), "%.*s", (int)strcspn(p, "\r\n"), p);
	buf_init(&env);
	if (s->sender != NULL)
		buf_printf(&env, " from=<%s>", s->sender);
	if (f[6].value != NULL)
		buf_printf(&env, " to=<%s>", rcpt);
	buf_printf(&env, " proto=%s", proto);
	if (s->helo != NULL)
		buf_printf(&env, " helo=<%s>", s->helo);
	log_event(LOG_LVL_INFO, f, sizeof(f) / sizeof(f[0]), "NOQUEUE: "
		  "reject: %s from %s[%s]: %s;%s", verb, s->client_name,
		  s->client_addr, text, env.data);
	buf_free(&env);
}

/* --- transaction -------------------------------------------------------- */

static void
reset_tx(struct smtp_session *s)
{
	size_t i;

	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	s->nrcpt = 0;
	s->nacc = 0;
	s->rcpt_tried = 0;
	/* Free rather than reset: one big message must not pin its memory
	 * for the rest of the session. */
	buf_free(&s->body);
	free(s->msgid);
	s->msgid = NULL;
}

static void
rcpt_add(struct smtp_session *s, const char *addr)
{
	if (s->nrcpt == s->rcpt_cap) {
		s->rcpt_cap = s->rcpt_cap == 0 ? 8 : s->rcpt_cap * 2;
		s->rcpts = xrealloc(s->rcpts, s->rcpt_cap * sizeof(*s->rcpts));
	}
	s->rcpts[s->nrcpt++] = xstrdup(addr);
}

static void
acc_add(struct smtp_session *s, size_t idx)
{
	if (s->nacc == s->acc_cap) {
		s->acc_cap = s->acc_cap == 0 ? 8 : s->acc_cap * 2;
		s->acc = xrealloc(s->acc, s->acc_cap * sizeof(*s->acc));
	}
	s->acc[s->nacc++] = idx;
}

/* Same mailbox: local part exactly, domain in any case. */
static bool
addr_same(const char *a, const char *b)
{
	const char *da = strrchr(a, '@'), *db = strrchr(b, '@');

	if (da == NULL || db == NULL)
		return da == db && strcasecmp(a, b) == 0;
	return da - a == db - b && memcmp(a, b, (size_t)(da - a)) == 0 &&
	       strcasecmp(da, db) == 0;
}

/* One reply after the data: SMTP one line, LMTP one line per RCPT that
 * was answered 250 (RFC 2033 4.2), naming the recipient if named. */
static void
reply_per_rcpt(struct smtp_session *s, struct buf *out, const char *code,
	       bool named, const char *text)
{
	size_t i;

	if (!s->lim->lmtp) {
		reply(out, "%s %s", code, text);
		return;
	}
	for (i = 0; i < s->nacc; i++) {
		if (named)
			reply(out, "%s <%s> %s", code, s->rcpts[s->acc[i]],
			      text);
		else
			reply(out, "%s %s", code, text);
	}
}

/* --- addresses ---------------------------------------------------------- */

static bool
is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c != '\0' &&
	       strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL);
}

static int
check_domain(const char *d)
{
	size_t n = strlen(d), i;

	if (n == 0 || n > DOMAIN_MAX)
		return -1;
	if (d[0] == '[') {
		if (n < 3 || d[n - 1] != ']')
			return -1;
		for (i = 1; i < n - 1; i++)
			if (strchr("[]\\ ", d[i]) != NULL)
				return -1;
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (d[i] == '.') {
			if (i == 0 || i == n - 1 || d[i - 1] == '.')
				return -1;
		} else if (!((d[i] >= 'a' && d[i] <= 'z') ||
			     (d[i] >= 'A' && d[i] <= 'Z') ||
			     (d[i] >= '0' && d[i] <= '9') ||
			     d[i] == '-' || d[i] == '_')) {
			return -1;
		}
	}
	return 0;
}

/* 0 if a (the text between the angle brackets) is an acceptable address:
 * "" only for a sender, "postmaster" alone only for a recipient. */
static int
check_addr(const char *a, bool sender)
{
	size_t n = strlen(a), i, local;

	if (n == 0)
		return sender ? 0 : -1;
	if (n + 2 > PATH_MAX_LEN || a[0] == '@')	/* source route */
		return -1;
	for (i = 0; i < n; i++)
		if ((unsigned char)a[i] < 0x20 || (unsigned char)a[i] > 0x7e ||
		    a[i] == '<' || a[i] == '>')
			return -1;
	if (a[0] == '"') {
		for (i = 1; a[i] != '\0' && a[i] != '"'; i++)
			if (a[i] == '\\' && a[++i] == '\0')
				return -1;
		if (a[i] != '"')
			return -1;
		local = i + 1;
	} else {
		for (i = 0; a[i] != '\0' && a[i] != '@'; i++)
			if (!is_atext(a[i]))
				return -1;
		local = i;
	}
	if (local == 0 || local > LOCAL_PART_MAX)
		return -1;
	if (a[local] == '\0')
		return !sender && strcasecmp(a, "postmaster") == 0 ? 0 : -1;
	if (a[local] != '@')
		return -1;
	return check_domain(a + local + 1);
}

/* Split "FROM:<addr> params" (kw "FROM:"), in place. Returns 0 with
 * *addr_r and *params_r pointing into arg, -1 for a syntax error, -2 for
 * a path that is there but malformed (unbalanced quote, '>' inside). */
static int
parse_path(char *arg, const char *kw, char **addr_r, char **params_r)
{
	size_t klen = strlen(kw);
	bool inq = false;
	char *p, *q;

	if (strncasecmp(arg, kw, klen) != 0)
		return -1;
	for (p = arg + klen; *p == ' '; p++)
		;
	if (*p != '<')
		return -1;
	for (q = p + 1; *q != '\0'; q++) {
		if (inq && *q == '\\' && q[1] != '\0')
			q++;
		else if (*q == '"')
			inq = !inq;
		else if (!inq && *q == '>')
			break;
	}
	if (*q != '>')
		return inq ? -2 : -1;
	*q++ = '\0';
	if (*q != '\0' && *q != ' ')
		return strchr(q, '>') != NULL ? -2 : -1;
	while (*q == ' ')
		q++;
	*addr_r = p + 1;
	*params_r = q;
	return 0;
}

/* Next space-separated word of *p (in place), or NULL. */
static char *
next_word(char **p)
{
	char *w = *p, *e;

	while (*w == ' ')
		w++;
	if (*w == '\0')
		return NULL;
	e = strchr(w, ' ');
	if (e != NULL)
		*e++ = '\0';
	else
		e = w + strlen(w);
	*p = e;
	return w;
}

static void
reply_unsupported(struct buf *out, const char *word)
{
	struct buf b;

	buf_init(&b);
	put_clean(&b, word, strlen(word), ECHO_MAX, "");
	reply(out, "555 5.5.4 Unsupported option: %s", b.data);
	buf_free(&b);
}

/* MAIL parameters (RFC 1870 SIZE, RFC 6152 BODY). Returns 0 or -1 after
 * replying; *size_r is the declared SIZE or 0. */
static int
mail_params(struct smtp_session *s, char *params, size_t *size_r,
	    struct buf *out)
{
	char *w, *v;
	size_t size;

	*size_r = 0;
	while ((w = next_word(&params)) != NULL) {
		if (strncasecmp(w, "SIZE=", 5) == 0) {
			v = w + 5;
			if (*v == '\0' ||
			    strspn(v, "0123456789") != strlen(v)) {
				reply(out, "501 5.5.4 Bad message size syntax");
				return -1;
			}
			for (size = 0; *v != '\0' && size <= s->max_size; v++)
				size = size * 10 + (size_t)(*v - '0');
			if (size > s->max_size) {
				reply(out, "552 5.3.4 Message size exceeds "
				      "fixed limit");
				return -1;
			}
			*size_r = size;
		} else if (strcasecmp(w, "BODY=7BIT") != 0 &&
			   strcasecmp(w, "BODY=8BITMIME") != 0) {
			reply_unsupported(out, w);
			return -1;
		}
	}
	return 0;
}

/* --- commands ----------------------------------------------------------- */

static bool
tls_offered(const struct smtp_session *s)
{
	return s->lim->starttls && !s->lim->lmtp && s->tls_desc == NULL;
}

static bool
auth_offered(const struct smtp_session *s)
{
	return s->lim->auth_check != NULL && !s->lim->lmtp &&
	       (s->tls_desc != NULL || s->lim->auth_plaintext);
}

static enum smtp_event
cmd_helo(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	if (*arg == '\0') {
		/* Postfix sends no enhanced code here either. */
		reply(out, "501 Syntax: %s hostname", verb);
		count_error(s);
		return SMTP_EV_NONE;
	}
	reset_tx(s);
	free(s->helo);
	s->helo = clean_dup(arg, "unknown", NAME_SHOW_MAX);
	if (strcmp(verb, "HELO") == 0) {
		s->proto = "SMTP";
		reply(out, "250 %s", s->hostname);
		return SMTP_EV_NONE;
	}
	s->proto = s->lim->lmtp ? "LMTP" : "ESMTP";
	reply(out, "250-%s", s->hostname);
	reply(out, "250-PIPELINING");
	reply(out, "250-SIZE %zu", s->max_size);
	if (tls_offered(s))
		reply(out, "250-STARTTLS");
	if (auth_offered(s))
		reply(out, "250-AUTH PLAIN LOGIN");
	reply(out, "250-8BITMIME");
	reply(out, "250 ENHANCEDSTATUSCODES");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_mail(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	char *addr, *params;
	const char *why = NULL;
	size_t size;
	int rc, room;

	(void)verb;
	if (s->helo == NULL) {
		reply(out, "503 5.5.1 Error: send HELO/EHLO first");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->sender != NULL) {
		reply(out, "503 5.5.1 Error: nested MAIL command");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->lim->tls_required && s->tls_desc == NULL && !s->lim->lmtp) {
		reply(out, "530 5.7.0 Must issue a STARTTLS command first");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->lim->auth_required && s->auth_user == NULL && !s->lim->lmtp) {
		reply(out, "530 5.7.0 Authentication required");
		count_error(s);
		return SMTP_EV_NONE;
	}
	rc = parse_path(arg, "FROM:", &addr, &params);
	if (rc == -1) {
		reply(out, "501 5.5.4 Syntax: MAIL FROM:<address>");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (rc != 0 || check_addr(addr, true) != 0) {
		reply(out, "501 5.1.7 Bad sender address syntax");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (mail_params(s, params, &size, out) != 0) {
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->lim->storage_ok != NULL &&
	    (room = s->lim->storage_ok(s->lim->storage_arg, size, &why)) < 1) {
		/* Cannot store at all: 421 and close, so that the client
		 * goes elsewhere and does not keep this session (RFC 5321
		 * 3.8; posternd(8), "WHEN IT CANNOT STORE"). */
		if (room < 0) {
			reply(out, "421 4.3.2 %s Service not available (%s), "
			      "closing transmission channel", s->hostname,
			      why != NULL ? why : "store");
			return SMTP_EV_CLOSE;
		}
		reply(out, "452 4.3.1 Insufficient system storage");
		return SMTP_EV_NONE;
	}
	s->sender = xstrdup(addr);
	s->rcpt_tried = 0;
	reply(out, "250 2.1.0 Ok");
	return SMTP_EV_NONE;
}

/* Index of a recipient already in the envelope, or nrcpt. */
static size_t
rcpt_find(const struct smtp_session *s, const char *addr)
{
	size_t i;

	for (i = 0; i < s->nrcpt; i++)
		if (addr_same(s->rcpts[i], addr))
			break;
	return i;
}

static enum smtp_event
cmd_rcpt(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	char *addr, *params, *w;
	size_t idx;
	int rc;

	(void)verb;
	if (s->sender == NULL) {
		reply(out, "503 5.5.1 Error: need MAIL command");
		count_error(s);
		return SMTP_EV_NONE;
	}
	s->rcpt_tried++;
	rc = parse_path(arg, "TO:", &addr, &params);
	if (rc == -1) {
		reply(out, "501 5.5.4 Syntax: RCPT TO:<address>");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (rc != 0 || check_addr(addr, false) != 0) {
		reply(out, "501 5.1.3 Bad recipient address syntax");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if ((w = next_word(&params)) != NULL) {
		reply_unsupported(out, w);
		count_error(s);
		return SMTP_EV_NONE;
	}
	idx = rcpt_find(s, addr);
	if (idx == s->nrcpt) {
		/* Not an error: RFC 5321 4.5.3.1.10 wants the client to go on
		 * with the rest in a later transaction. */
		if (s->nrcpt >= s->max_rcpts) {
			reply(out, "452 4.5.3 Error: too many recipients");
			return SMTP_EV_NONE;
		}
		if (s->lim->rcpt_ok != NULL &&
		    !s->lim->rcpt_ok(s->lim->rcpt_arg, addr)) {
			reply(out, "550 5.7.1 <%s>: Relay access denied", addr);
			count_error(s);
			return SMTP_EV_NONE;
		}
		rcpt_add(s, addr);
	}
	acc_add(s, idx);
	reply(out, "250 2.1.5 Ok");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_data(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)verb;
	if (*arg != '\0') {
		reply(out, "501 5.5.4 Syntax: DATA");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->nrcpt == 0) {
		if (s->sender == NULL || s->rcpt_tried == 0)
			reply(out, "503 5.5.1 Error: need RCPT command");
		else
			reply(out, "554 5.5.1 Error: no valid recipients");
		count_error(s);
		return SMTP_EV_NONE;
	}
	buf_free(&s->body);
	s->phase = PH_DATA;
	s->ds = DS_BOL;
	s->line_len = 0;
	s->line_off = 0;
	s->in_header = true;
	s->hdr_end = 0;
	s->hdr_lines = 0;
	s->bare = DF_NONE;
	s->fault = DF_NONE;
	reply(out, "354 End data with <CR><LF>.<CR><LF>");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_rset(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)verb;
	if (*arg != '\0') {
		reply(out, "501 5.5.4 Syntax: RSET");
		count_error(s);
		return SMTP_EV_NONE;
	}
	reset_tx(s);
	reply(out, "250 2.0.0 Ok");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_noop(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)s;
	(void)verb;
	(void)arg;
	reply(out, "250 2.0.0 Ok");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_quit(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)s;
	(void)verb;
	(void)arg;
	reply(out, "221 2.0.0 Bye");
	return SMTP_EV_CLOSE;
}

static enum smtp_event
cmd_vrfy(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)verb;
	if (*arg == '\0') {
		reply(out, "501 5.5.4 Syntax: VRFY address");
		count_error(s);
		return SMTP_EV_NONE;
	}
	reply(out, "252 2.0.0 Cannot VRFY user, but will accept message "
	      "and attempt delivery");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_help(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	(void)verb;
	(void)arg;
	reply(out, "214 2.0.0 Commands: %s MAIL RCPT DATA RSET NOOP QUIT "
	      "VRFY HELP%s%s", s->lim->lmtp ? "LHLO" : "EHLO HELO",
	      tls_offered(s) ? " STARTTLS" : "",
	      auth_offered(s) ? " AUTH" : "");
	return SMTP_EV_NONE;
}

static enum smtp_event
cmd_starttls(struct smtp_session *s, const char *verb, char *arg,
	     struct buf *out)
{
	(void)verb;
	if (s->tls_desc != NULL) {
		reply(out, "554 5.5.1 Error: TLS already active");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (!tls_offered(s)) {
		/* not configured: as if we had never heard of it */
		reply(out, "500 5.5.2 Error: command not recognized");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (*arg != '\0') {
		reply(out, "501 5.5.4 Syntax: STARTTLS");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->sender != NULL) {
		reply(out, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return SMTP_EV_NONE;
	}
	reply(out, "220 2.0.0 Ready to start TLS");
	s->phase = PH_TLS;
	return SMTP_EV_STARTTLS;
}

/* Strict RFC 4648 base64 of a whole line into an owned, NUL-terminated
 * buffer (*len_r without the NUL). -1 if it is not valid base64. */
static int
b64_decode(const char *in, char **out_r, size_t *len_r)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		"abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), i, o = 0, pad = 0;
	unsigned acc = 0, bits = 0;
	const char *p;
	char *out;

	if (n % 4 != 0)
		return -1;
	while (pad < 2 && pad < n && in[n - 1 - pad] == '=')
		pad++;
	out = xmalloc(n / 4 * 3 + 1);
	for (i = 0; i < n - pad; i++) {
		p = in[i] == '\0' ? NULL : strchr(abc, in[i]);
		if (p == NULL) {
			free(out);
			return -1;
		}
		acc = ((acc << 6) | (unsigned)(p - abc)) & 0xffffffu;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	/* the bits the padding stands for must be zero */
	if ((acc & ((1u << bits) - 1)) != 0) {
		free(out);
		return -1;
	}
	out[o] = '\0';
	*out_r = out;
	*len_r = o;
	return 0;
}

/* Ask the checker about user/password and reply; the password is the
 * caller's to wipe. */
static void
auth_finish(struct smtp_session *s, const char *user, const char *pass,
	    struct buf *out)
{
	struct buf shown;
	int rc;

	buf_init(&shown);
	put_clean(&shown, user, strlen(user), ECHO_MAX, HEADER_AVOID);
	rc = *user == '\0' ? 0 : s->lim->auth_check(s->lim->auth_arg, user,
						     pass);
	if (rc == 1) {
		s->auth_user = xstrdup(user);
		log_info("[%s]: authenticated as %s", s->client_addr,
			 shown.data != NULL ? shown.data : "");
		reply(out, "235 2.7.0 Authentication successful");
	} else if (rc == 0) {
		log_warn("[%s]: authentication failed for user \"%s\"",
			 s->client_addr, shown.data != NULL ? shown.data : "");
		reply(out, "535 5.7.8 Error: authentication failed");
		count_error(s);
	} else {
		reply(out, "454 4.7.0 Temporary authentication failure");
	}
	buf_free(&shown);
}

/* RFC 4616: [authzid] NUL authcid NUL passwd. We act for the user only,
 * so an authzid must be empty or the same user. */
static void
auth_plain(struct smtp_session *s, const char *resp, struct buf *out)
{
	char *dec, *user, *pass;
	size_t len;

	if (b64_decode(resp, &dec, &len) < 0) {
		reply(out, "501 5.5.2 Error: malformed base64 response");
		count_error(s);
		return;
	}
	user = memchr(dec, '\0', len);
	pass = user == NULL ? NULL : memchr(user + 1, '\0',
					    len - (size_t)(user + 1 - dec));
	if (pass == NULL || memchr(pass + 1, '\0',
				   len - (size_t)(pass + 1 - dec)) != NULL ||
	    (dec[0] != '\0' && strcmp(dec, user + 1) != 0)) {
		reply(out, "535 5.7.8 Error: authentication failed");
		count_error(s);
	} else {
		auth_finish(s, user + 1, pass + 1, out);
	}
	explicit_bzero(dec, len);
	free(dec);
}

/* One line answering a 334 challenge. */
static void
auth_response(struct smtp_session *s, const char *resp, struct buf *out)
{
	enum auth_wait w = s->auth_wait;
	char *dec = NULL;
	size_t len = 0;

	s->auth_wait = AW_NONE;
	if (strcmp(resp, "*") == 0) {
		free(s->login_user);
		s->login_user = NULL;
		reply(out, "501 5.7.0 Authentication aborted");
		count_error(s);
		return;
	}
	if (w == AW_PLAIN) {
		auth_plain(s, resp, out);
		return;
	}
	if (b64_decode(resp, &dec, &len) < 0 || strlen(dec) != len) {
		if (dec != NULL && len > 0)
			explicit_bzero(dec, len);
		free(dec);
		free(s->login_user);
		s->login_user = NULL;
		reply(out, "501 5.5.2 Error: malformed base64 response");
		count_error(s);
		return;
	}
	if (w == AW_LOGIN_USER) {
		s->login_user = dec;
		s->auth_wait = AW_LOGIN_PASS;
		reply(out, "334 UGFzc3dvcmQ6");
		return;
	}
	auth_finish(s, s->login_user, dec, out);
	explicit_bzero(dec, len);
	free(dec);
	free(s->login_user);
	s->login_user = NULL;
}

static enum smtp_event
cmd_auth(struct smtp_session *s, const char *verb, char *arg,
	 struct buf *out)
{
	char *mech, *initial;

	(void)verb;
	if (s->lim->auth_check == NULL || s->lim->lmtp) {
		reply(out, "503 5.5.1 Error: authentication not enabled");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (!auth_offered(s)) {
		reply(out, "538 5.7.11 Encryption required for requested "
		      "authentication mechanism");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->helo == NULL) {
		reply(out, "503 5.5.1 Error: send HELO/EHLO first");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->auth_user != NULL) {
		reply(out, "503 5.5.1 Error: already authenticated");
		count_error(s);
		return SMTP_EV_NONE;
	}
	if (s->sender != NULL) {
		reply(out, "503 5.5.1 Error: MAIL transaction in progress");
		count_error(s);
		return SMTP_EV_NONE;
	}
	mech = next_word(&arg);
	initial = next_word(&arg);
	if (mech == NULL || next_word(&arg) != NULL) {
		reply(out, "501 5.5.4 Syntax: AUTH mechanism");
		count_error(s);
	} else if (strcasecmp(mech, "PLAIN") == 0) {
		if (initial == NULL) {
			s->auth_wait = AW_PLAIN;
			reply(out, "334 ");
		} else {
			auth_plain(s, strcmp(initial, "=") == 0 ? "" :
				   initial, out);
		}
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_wait = AW_LOGIN_USER;
		if (initial == NULL)
			reply(out, "334 VXNlcm5hbWU6");
		else
			auth_response(s, initial, out);
	} else {
		reply(out, "504 5.5.4 Unsupported authentication mechanism");
		count_error(s);
	}
	return SMTP_EV_NONE;
}

/* Which listener a command exists on. */
enum cmd_mode {
	CM_BOTH,
	CM_SMTP,
	CM_LMTP,
};

static const struct command {
	const char *verb;
	enum smtp_event (*fn)(struct smtp_session *s, const char *verb,
			      char *arg, struct buf *out);
	enum cmd_mode mode;
} commands[] = {
	{ "EHLO", cmd_helo, CM_SMTP },
	{ "HELO", cmd_helo, CM_SMTP },
	{ "LHLO", cmd_helo, CM_LMTP },
	{ "MAIL", cmd_mail, CM_BOTH },
	{ "RCPT", cmd_rcpt, CM_BOTH },
	{ "DATA", cmd_data, CM_BOTH },
	{ "RSET", cmd_rset, CM_BOTH },
	{ "NOOP", cmd_noop, CM_BOTH },
	{ "QUIT", cmd_quit, CM_BOTH },
	{ "VRFY", cmd_vrfy, CM_BOTH },
	{ "HELP", cmd_help, CM_BOTH },
	{ "STARTTLS", cmd_starttls, CM_SMTP },
	{ "AUTH", cmd_auth, CM_SMTP },
};

/* An HTTP request sent to us through a proxy (Postfix
 * smtpd_forbidden_commands). */
static bool
is_http_verb(const char *verb, size_t n)
{
	static const char *const http[] = {
		"GET", "POST", "CONNECT", "HEAD", "PUT",
	};
	size_t i;

	for (i = 0; i < sizeof(http) / sizeof(http[0]); i++)
		if (strlen(http[i]) == n && strncasecmp(verb, http[i], n) == 0)
			return true;
	return false;
}

static const struct command *
find_command(const struct smtp_session *s, const char *verb, size_t n)
{
	size_t i;
	const struct command *c;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		c = &commands[i];
		if (strlen(c->verb) != n || strncasecmp(verb, c->verb, n) != 0)
			continue;
		if (c->mode == CM_BOTH ||
		    (c->mode == CM_LMTP) == s->lim->lmtp)
			return c;
	}
	return NULL;
}

/* See forbid_unauth_pipelining in ingress_smtp.h. c is NULL for an
 * unknown verb. */
static bool
unauth_pipelining(const struct smtp_session *s, const struct command *c)
{
	bool ends_group, allowed;

	if (!s->lim->forbid_unauth_pipelining || !s->more)
		return false;
	ends_group = c != NULL && (c->fn == cmd_helo || c->fn == cmd_data ||
				   c->fn == cmd_noop || c->fn == cmd_vrfy);
	allowed = s->helo != NULL && strcmp(s->proto, "SMTP") != 0;
	return ends_group || !allowed;
}

/* Run one complete command line (s->line, without CRLF). */
static enum smtp_event
run_command(struct smtp_session *s, struct buf *out)
{
	char *line = s->line.data, *arg, *end;
	const struct command *c;
	size_t vlen, i;
	bool eightbit = false;

	if (line == NULL) {
		buf_append(&s->line, "", 0);
		line = s->line.data;
	}
	vlen = strcspn(line, " ");
	for (arg = line + vlen; *arg == ' '; arg++)
		;
	for (end = arg + strlen(arg); end > arg && end[-1] == ' '; end--)
		;
	*end = '\0';
	for (i = 0; i < s->line.len; i++)
		if ((unsigned char)line[i] > 0x7f)
			eightbit = true;
	if (is_http_verb(line, vlen)) {
		reply(out, "221 2.7.0 Error: I can break rules, too. Goodbye.");
		return SMTP_EV_CLOSE;
	}
	c = find_command(s, line, vlen);
	if (unauth_pipelining(s, c)) {
		reply(out, "554 5.5.0 Error: SMTP protocol synchronization");
		return SMTP_EV_CLOSE;
	}
	if (c == NULL) {
		reply(out, "500 5.5.2 Error: command not recognized");
		count_error(s);
		return SMTP_EV_NONE;
	}
	/* MAIL and RCPT answer 8-bit addresses with 501 5.1.x themselves. */
	if (eightbit && c->fn != cmd_mail && c->fn != cmd_rcpt) {
		reply(out, "500 5.5.2 Error: bad UTF-8 syntax");
		count_error(s);
		return SMTP_EV_NONE;
	}
	return c->fn(s, c->verb, arg, out);
}

/* A NUL in MAIL or RCPT is a bad address (RELIABILITY.md catalogue row
 * 8), answered like any other: 501 5.1.7 / 5.1.3, and the session goes
 * on. True if it was one of those. */
static bool
nul_in_path(const struct smtp_session *s, struct buf *out)
{
	const char *line = s->line.data;

	if (s->line.len >= 5 && strncasecmp(line, "MAIL ", 5) == 0) {
		reply(out, "501 5.1.7 Bad sender address syntax");
		return true;
	}
	if (s->line.len >= 5 && strncasecmp(line, "RCPT ", 5) == 0) {
		reply(out, "501 5.1.3 Bad recipient address syntax");
		return true;
	}
	return false;
}

/* A complete line arrived: check it, run it, enforce the error limit. */
static enum smtp_event
cmd_line(struct smtp_session *s, struct buf *out)
{
	enum smtp_event ev;
	char verb[VERB_MAX], rcpt[PATH_MAX_LEN] = "";
	size_t at = out->len;

	/* before the line is parsed in place, or wiped (AUTH) */
	if (s->auth_wait != AW_NONE) {
		snprintf(verb, sizeof(verb), "AUTH");
	} else {
		log_verb(verb, s->line.data != NULL ? s->line.data : "",
			 s->line.len);
		if (strcmp(verb, "RCPT") == 0)
			log_rcpt(rcpt, s->line.data, s->line.len);
	}
	if (s->auth_wait != AW_NONE && !s->line_nul) {
		if (s->line_long) {
			s->auth_wait = AW_NONE;
			free(s->login_user);
			s->login_user = NULL;
			reply(out, "500 5.5.6 Error: authentication response "
			      "too long");
			count_error(s);
		} else {
			auth_response(s, s->line.data != NULL ? s->line.data
				      : "", out);
		}
		/* the line may hold a password */
		if (s->line.data != NULL)
			explicit_bzero(s->line.data, s->line.len);
		ev = SMTP_EV_NONE;
	} else if (s->line_nul && nul_in_path(s, out)) {
		count_error(s);
		ev = SMTP_EV_NONE;
	} else if (s->line_nul) {
		reply(out, "500 5.5.2 Error: NUL character in command");
		ev = SMTP_EV_CLOSE;
	} else if (s->line_long) {
		reply(out, "500 5.5.2 Error: command line too long");
		count_error(s);
		ev = SMTP_EV_NONE;
	} else {
		ev = run_command(s, out);
		if (strncasecmp(s->line.data, "AUTH", 4) == 0)
			explicit_bzero(s->line.data, s->line.len);
	}
	buf_reset(&s->line);
	s->line_long = false;
	s->line_nul = false;
	log_refusal(s, out, at, verb, rcpt);
	if (ev == SMTP_EV_NONE && s->errors >= s->max_errors) {
		at = out->len;
		reply(out, "421 4.7.0 %s Error: too many errors", s->hostname);
		log_refusal(s, out, at, verb, rcpt);
		ev = SMTP_EV_CLOSE;
	}
	return ev;
}

/* A bare CR or LF in a command line: refused, logged, the end. */
static enum smtp_event
bare_in_command(struct smtp_session *s, struct buf *out, const char *what)
{
	char verb[VERB_MAX];
	size_t at = out->len;

	log_verb(verb, s->line.data != NULL ? s->line.data : "", s->line.len);
	reply(out, "550 5.5.2 Error: bare <%s> received", what);
	log_refusal(s, out, at, verb, NULL);
	return SMTP_EV_CLOSE;
}

/* One byte in command mode. Only CRLF ends a line (RFC 5321 2.3.8); a
 * bare CR or LF closes the session, as Postfix does with
 * smtpd_forbid_bare_newline = reject. */
static enum smtp_event
cmd_byte(struct smtp_session *s, char c, struct buf *out)
{
	if (s->line_cr) {
		s->line_cr = false;
		if (c == '\n')
			return cmd_line(s, out);
		return bare_in_command(s, out, "CR");
	}
	if (c == '\r') {
		s->line_cr = true;
	} else if (c == '\n') {
		return bare_in_command(s, out, "LF");
	} else {
		if (c == '\0')
			s->line_nul = true;
		if (s->line.len < CMD_LINE_MAX - 2)
			buf_append(&s->line, &c, 1);
		else
			s->line_long = true;
	}
	return SMTP_EV_NONE;
}

/* --- message data ------------------------------------------------------- */

static void
data_fault(struct smtp_session *s, enum data_fault f)
{
	if (f == DF_BARE_LF || f == DF_BARE_CR) {
		if (s->bare == DF_NONE)
			s->bare = f;
	} else if (s->fault == DF_NONE) {
		s->fault = f;
	}
}

static bool
storing(const struct smtp_session *s)
{
	return s->bare == DF_NONE && s->fault == DF_NONE;
}

/* Keep one unstuffed byte of the message, within the size limit. Once
 * the message is doomed nothing more is kept. */
static void
data_put(struct smtp_session *s, char c)
{
	if (!storing(s))
		return;
	if (s->body.len >= s->max_size) {
		data_fault(s, DF_SIZE);
		buf_free(&s->body);
		return;
	}
	buf_append(&s->body, &c, 1);
}

/* "Name:" with a printable name: a header field (RFC 5322 2.2). */
static bool
is_field(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == ':')
			return i > 0;
		if ((unsigned char)p[i] < 33 || (unsigned char)p[i] > 126)
			return false;
	}
	return false;
}

/* A line (with its CRLF) was kept: track the header section and its
 * limits. The first line that is neither a field nor a continuation
 * starts the body. */
static void
data_line_done(struct smtp_session *s)
{
	const char *p = s->body.data + s->line_off;
	size_t n = s->body.len - s->line_off;

	if (s->in_header) {
		if (n == 2) {
			s->in_header = false;
			s->hdr_end = s->body.len;
		} else if (p[0] == ' ' || p[0] == '\t' || is_field(p, n)) {
			s->hdr_lines++;
			if (s->hdr_lines > SMTP_MAX_HEADER_LINES ||
			    s->body.len > SMTP_MAX_HEADER_BYTES)
				data_fault(s, DF_HEADER);
		} else {
			s->in_header = false;
			s->hdr_end = s->line_off;
		}
	}
	s->line_off = s->body.len;
}

/* One byte in data mode; true when it completed CRLF.CRLF. Stray CR and
 * LF are never line ends here, so "\n.\n", "\n.\r\n", "\r\n.\n" and
 * "\r.\r\n" stay inside the message (RELIABILITY.md H7). */
static bool
data_byte(struct smtp_session *s, char c)
{
	if (++s->line_len > TEXT_LINE_MAX)
		data_fault(s, DF_LINE);
	switch (s->ds) {
	case DS_BOL:
		if (c == '.') {
			s->ds = DS_DOT;
			return false;
		}
		break;
	case DS_DOT:
		if (c == '\r') {
			s->ds = DS_DOT_CR;
			return false;
		}
		break;		/* RFC 5321 4.5.2: the first dot goes */
	case DS_DOT_CR:
		if (c == '\n')
			return true;
		data_fault(s, DF_BARE_CR);
		break;
	case DS_CR:
		if (c == '\n') {
			data_put(s, '\r');
			data_put(s, '\n');
			if (storing(s))
				data_line_done(s);
			s->ds = DS_BOL;
			s->line_len = 0;
			return false;
		}
		data_fault(s, DF_BARE_CR);
		break;
	case DS_LINE:
		break;
	}
	s->ds = DS_LINE;
	if (c == '\r')
		s->ds = DS_CR;
	else if (c == '\n')
		data_fault(s, DF_BARE_LF);
	else if (c == '\0')
		data_fault(s, DF_NUL);
	else
		data_put(s, c);
	return false;
}

/* The bytes data_byte() would only count and keep: a run of plain line
 * bytes (no CR, LF or NUL, not a dot at the start of a line), within the
 * line and size limits, appended in one go. Returns how many of p[0..n)
 * it took; 0 leaves the next byte to data_byte(). */
static size_t
data_run(struct smtp_session *s, const char *p, size_t n)
{
	size_t k = 0, lim;

	if (!storing(s) || (s->ds != DS_LINE &&
			    (s->ds != DS_BOL || p[0] == '.')))
		return 0;
	lim = TEXT_LINE_MAX - s->line_len;
	if (s->max_size - s->body.len < lim)
		lim = s->max_size - s->body.len;
	if (n < lim)
		lim = n;
	while (k < lim && p[k] != '\r' && p[k] != '\n' && p[k] != '\0')
		k++;
	if (k == 0)
		return 0;
	buf_append(&s->body, p, k);
	s->line_len += k;
	s->ds = DS_LINE;
	return k;
}

/* End of a header line starting at i in h[0..n). */
static size_t
line_end(const char *h, size_t n, size_t i)
{
	const char *nl = memchr(h + i, '\n', n - i);

	return nl == NULL ? n : (size_t)(nl - h) + 1;
}

/* The msg-id in a Message-ID value: the "<...>" part if there is one,
 * else the trimmed value; folding removed, control bytes replaced. NULL if
 * the value is empty. The caller owns it. */
static char *
msgid_value(const char *v, size_t n)
{
	const char *lt = memchr(v, '<', n), *gt = NULL;
	struct buf b;
	size_t i;

	if (lt != NULL)
		gt = memchr(lt, '>', n - (size_t)(lt - v));
	if (gt != NULL) {
		n = (size_t)(gt - lt) + 1;
		v = lt;
	}
	while (n > 0 && v[0] != '\0' && strchr(" \t\r\n", v[0]) != NULL) {
		v++;
		n--;
	}
	while (n > 0 && v[n - 1] != '\0' &&
	       strchr(" \t\r\n", v[n - 1]) != NULL)
		n--;
	if (n == 0)
		return NULL;
	buf_init(&b);
	for (i = 0; i < n && b.len < MSGID_MAX; i++)
		if (v[i] != '\r' && v[i] != '\n')
			put_clean(&b, v + i, 1, 1, "");
	return b.data;
}

/* The client's Message-ID, or NULL if the header section has none. */
static char *
find_msgid(const char *h, size_t n)
{
	size_t i, e, ve;

	for (i = 0; i < n; i = e) {
		e = line_end(h, n, i);
		if (e - i < 11 || strncasecmp(h + i, "Message-ID:", 11) != 0)
			continue;
		for (ve = e; ve < n && (h[ve] == ' ' || h[ve] == '\t');)
			ve = line_end(h, n, ve);
		return msgid_value(h + i + 11, ve - i - 11);
	}
	return NULL;
}

/* "<HEX@hostname>": SHA-256 over the envelope and the client's bytes, so
 * a client that retries the same message gets the same id. */
static char *
make_msgid(const struct smtp_session *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0, i;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	struct buf b;
	bool ok;
	size_t r;

	if (ctx == NULL)
		panic("ingress_smtp: EVP_MD_CTX_new failed");
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, s->sender, strlen(s->sender) + 1) == 1;
	for (r = 0; ok && r < s->nrcpt; r++)
		ok = EVP_DigestUpdate(ctx, s->rcpts[r],
				      strlen(s->rcpts[r]) + 1) == 1;
	ok = ok && EVP_DigestUpdate(ctx, "", 1) == 1 &&
	     EVP_DigestUpdate(ctx, s->body.data, s->body.len) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 16;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		panic("ingress_smtp: SHA-256 failed");
	buf_init(&b);
	buf_append(&b, "<", 1);
	for (i = 0; i < 16; i++)
		buf_printf(&b, "%02x", md[i]);
	buf_printf(&b, "@%s>", s->hostname);
	return b.data;
}

/* Put our Received: field (and a Message-ID: if needed) before the
 * client's bytes, in place. Every value in it was cleaned on the way in. */
static void
finish_message(struct smtp_session *s)
{
	struct buf pre;
	size_t n;
	bool esmtp;

	if (s->in_header)
		s->hdr_end = s->body.len;
	s->msgid = find_msgid(s->body.data, s->hdr_end);
	buf_init(&pre);
	buf_printf(&pre, "Received: from %s (%s [%s])\r\n",
		   s->helo, s->client_name, s->client_addr);
	if (s->tls_desc != NULL)
		buf_printf(&pre, "\t(using %s)\r\n", s->tls_desc);
	esmtp = strcmp(s->proto, "ESMTP") == 0;
	/* RFC 3848: ESMTPS, ESMTPA, ESMTPSA */
	/* "id QID" as Postfix writes it: the store writes the queue id
	 * over the zeros in the transaction that assigns it. */
	buf_printf(&pre, "\tby %s (postern) with %s%s%s id ",
		   s->hostname, s->proto,
		   esmtp && s->tls_desc != NULL ? "S" : "",
		   esmtp && s->auth_user != NULL ? "A" : "");
	s->qid_at = pre.len;
	buf_printf(&pre, "0000000000000000;\r\n\t");
	buf_put_date(&pre, s->lim->now != NULL ? s->lim->now() : time(NULL));
	buf_append(&pre, "\r\n", 2);
	if (s->msgid == NULL) {
		s->msgid = make_msgid(s);
		buf_printf(&pre, "Message-ID: %s\r\n", s->msgid);
	}
	n = s->body.len;
	s->trace_len = pre.len;
	buf_append(&s->body, pre.data, pre.len);
	memmove(s->body.data + pre.len, s->body.data, n);
	memcpy(s->body.data, pre.data, pre.len);
	buf_free(&pre);
}

/* The first accepted recipient, for a refusal's to= (as Postfix's
 * END-OF-MESSAGE lines have it), NULL if none. */
static const char *
first_rcpt(const struct smtp_session *s)
{
	return s->nacc > 0 ? s->rcpts[s->acc[0]] : NULL;
}

/* CRLF.CRLF arrived: refuse the message or pause with it. */
static enum smtp_event
data_end(struct smtp_session *s, struct buf *out)
{
	enum smtp_event ev = SMTP_EV_NONE;
	size_t at = out->len;

	s->phase = PH_CMD;
	if (s->bare != DF_NONE) {
		reply_per_rcpt(s, out, "550 5.5.2", false, s->bare == DF_BARE_LF
			       ? "Error: bare <LF> received"
			       : "Error: bare <CR> received");
		ev = SMTP_EV_CLOSE;
	} else if (s->fault == DF_NUL) {
		reply_per_rcpt(s, out, "550 5.6.0", false,
			       "Error: NUL character in message data");
	} else if (s->fault == DF_LINE) {
		reply_per_rcpt(s, out, "500 5.5.6", false,
			       "Error: line too long in message data");
	} else if (s->fault == DF_SIZE) {
		reply_per_rcpt(s, out, "552 5.3.4", false,
			       "Message size exceeds fixed limit");
	} else if (s->fault == DF_HEADER) {
		reply_per_rcpt(s, out, "552 5.3.4", false,
			       "Error: message header exceeds fixed limit");
	} else {
		finish_message(s);
		s->phase = PH_PAUSED;
		return SMTP_EV_MESSAGE;
	}
	log_refusal(s, out, at, "END-OF-MESSAGE", first_rcpt(s));
	reset_tx(s);
	return ev;
}

/* --- public ------------------------------------------------------------- */

struct smtp_session *
smtp_session_new(const struct smtp_limits *lim, const char *client_addr,
		 const char *client_name)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));

	s->lim = lim;
	s->hostname = clean_dup(lim->hostname, "localhost", NAME_SHOW_MAX);
	s->client_addr = clean_dup(client_addr, "unknown", NAME_SHOW_MAX);
	s->client_name = clean_dup(client_name, "unknown", NAME_SHOW_MAX);
	s->max_size = lim->max_message_size != 0 ? lim->max_message_size
		: SMTP_DEFAULT_MAX_MESSAGE_SIZE;
	s->max_rcpts = lim->max_recipients != 0 ? lim->max_recipients
		: SMTP_DEFAULT_MAX_RECIPIENTS;
	s->max_errors = lim->max_errors != 0 ? lim->max_errors
		: SMTP_DEFAULT_MAX_ERRORS;
	s->phase = PH_CMD;
	buf_init(&s->line);
	buf_init(&s->body);
	return s;
}

void
smtp_session_free(struct smtp_session **sp)
{
	struct smtp_session *s = *sp;

	*sp = NULL;
	if (s == NULL)
		return;
	reset_tx(s);
	free(s->rcpts);
	free(s->acc);
	free(s->helo);
	free(s->tls_desc);
	free(s->auth_user);
	if (s->login_user != NULL)
		explicit_bzero(s->login_user, strlen(s->login_user));
	free(s->login_user);
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.len);
	buf_free(&s->line);
	free(s->client_name);
	free(s->client_addr);
	free(s->hostname);
	free(s);
}

void
smtp_session_greeting(struct smtp_session *s, struct buf *out)
{
	s->greeted = true;
	reply(out, "220 %s %s postern", s->hostname,
	      s->lim->lmtp ? "LMTP" : "ESMTP");
}

enum smtp_event
smtp_session_feed(struct smtp_session *s, const char *data, size_t len,
		  size_t *consumed_r, struct buf *out)
{
	enum smtp_event ev = SMTP_EV_NONE;
	size_t i = 0;

	if (s->closed) {
		*consumed_r = len;
		return SMTP_EV_CLOSE;
	}
	if (s->phase == PH_PAUSED || s->phase == PH_TLS) {
		*consumed_r = 0;
		return SMTP_EV_NONE;
	}
	if (!s->greeted && len > 0) {
		size_t at = out->len;

		reply(out, "554 5.5.0 Error: SMTP protocol synchronization");
		log_refusal(s, out, at, "CONNECT", NULL);
		ev = SMTP_EV_CLOSE;
	}
	while (i < len && ev == SMTP_EV_NONE) {
		if (s->phase == PH_DATA) {
			i += data_run(s, data + i, len - i);
			if (i < len && data_byte(s, data[i++]))
				ev = data_end(s, out);
		} else {
			s->more = i + 1 < len;
			ev = cmd_byte(s, data[i++], out);
		}
	}
	if (ev == SMTP_EV_CLOSE) {
		s->closed = true;
		i = len;
	} else if (ev == SMTP_EV_STARTTLS) {
		/* Plaintext sent after STARTTLS was never protected: it must
		 * not run once TLS is up (RFC 3207 5). */
		if (i < len)
			log_warn("[%s]: %zu byte(s) pipelined after STARTTLS "
				 "discarded", s->client_addr, len - i);
		i = len;
	}
	*consumed_r = i;
	return ev;
}

void
smtp_session_message(struct smtp_session *s, struct smtp_message *m_r)
{
	if (s->phase != PH_PAUSED)
		panic("ingress_smtp: no message waits to be stored");
	m_r->sender = s->sender;
	m_r->rcpts = (const char *const *)s->rcpts;
	m_r->nrcpt = s->nrcpt;
	m_r->msgid = s->msgid;
	m_r->body = s->body.data;
	m_r->body_len = s->body.len;
	m_r->qid_at = s->qid_at;
	m_r->trace_len = s->trace_len;
}

void
smtp_session_take_body(struct smtp_session *s, char **body_r,
		       size_t *len_r)
{
	if (s->phase != PH_PAUSED)
		panic("ingress_smtp: no message waits to be stored");
	*body_r = s->body.data;
	*len_r = s->body.len;
	buf_init(&s->body);
}

/* A queue id as a reply may quote it. */
static void
qid_clean(struct buf *q, const char *qid)
{
	put_clean(q, qid != NULL ? qid : "?", qid != NULL ? strlen(qid) : 1,
		  QID_MAX, HEADER_AVOID);
}

#define RESUB_TEXT "(resubmission, not queued again)"

/* The 250 of a message some of whose recipients the resubmission index
 * recognised (orig_qids: smtp_session_stored_resub). */
static void
reply_resub(struct smtp_session *s, struct buf *out, const char *qid,
	    const char *const *orig_qids)
{
	struct buf q, o;
	size_t old = 0, first = s->nrcpt;

	buf_init(&q);
	buf_init(&o);
	qid_clean(&q, qid);
	for (size_t i = 0; i < s->nrcpt; i++)
		if (orig_qids[i] != NULL && old++ == 0)
			first = i;
	if (first < s->nrcpt)
		qid_clean(&o, orig_qids[first]);
	if (s->lim->lmtp) {
		for (size_t i = 0; i < s->nacc; i++) {
			const char *oq = orig_qids[s->acc[i]];
			struct buf b;

			buf_init(&b);
			if (oq != NULL)
				qid_clean(&b, oq);
			if (oq != NULL)
				reply(out, "250 2.1.5 <%s> Ok: already queued "
				      "as %s " RESUB_TEXT, s->rcpts[s->acc[i]],
				      b.data);
			else
				reply(out, "250 2.1.5 <%s> Ok: queued as %s",
				      s->rcpts[s->acc[i]], q.data);
			buf_free(&b);
		}
	} else if (old == s->nrcpt) {
		reply(out, "250 2.0.0 Ok: already queued as %s " RESUB_TEXT,
		      o.data);
	} else {
		reply(out, "250 2.0.0 Ok: queued as %s (%zu of %zu recipients "
		      "already queued as %s, resubmission, not queued again)",
		      q.data, old, s->nrcpt, o.data);
	}
	buf_free(&o);
	buf_free(&q);
}

enum smtp_event
smtp_session_stored(struct smtp_session *s, enum smtp_store_result result,
		    const char *qid, struct buf *out)
{
	return smtp_session_stored_resub(s, result, qid, NULL, out);
}

enum smtp_event
smtp_session_stored_resub(struct smtp_session *s,
			  enum smtp_store_result result, const char *qid,
			  const char *const *orig_qids, struct buf *out)
{
	struct buf q, text;
	size_t at = out->len;
	bool resub = false;

	if (s->phase != PH_PAUSED)
		panic("ingress_smtp: stored() without a waiting message");
	for (size_t i = 0; orig_qids != NULL && i < s->nrcpt; i++)
		resub = resub || orig_qids[i] != NULL;
	buf_init(&q);
	buf_init(&text);
	qid_clean(&q, qid);
	if (s->closed) {
		/* timed out meanwhile: the client is gone */
	} else if (result == SMTP_STORE_OK && resub) {
		reply_resub(s, out, qid, orig_qids);
	} else if (result == SMTP_STORE_OK) {
		buf_printf(&text, "Ok: queued as %s", q.data);
		reply_per_rcpt(s, out, s->lim->lmtp ? "250 2.1.5" : "250 2.0.0",
			       true, text.data);
	} else if (result == SMTP_STORE_TEMPFAIL) {
		reply_per_rcpt(s, out, "451 4.3.0", true,
			       "Error: queue file write error");
	} else if (result == SMTP_STORE_FULL) {
		reply_per_rcpt(s, out, "452 4.3.1", true,
			       "Insufficient system storage");
	} else {
		buf_printf(&text, "%s Error: queue file write error, closing "
			   "connection", s->hostname);
		reply_per_rcpt(s, out, "421 4.3.0", false, text.data);
		s->closed = true;
	}
	log_refusal(s, out, at, "END-OF-MESSAGE", first_rcpt(s));
	buf_free(&text);
	buf_free(&q);
	reset_tx(s);
	s->phase = PH_CMD;
	return s->closed ? SMTP_EV_CLOSE : SMTP_EV_NONE;
}

void
smtp_session_tls_started(struct smtp_session *s, const char *desc)
{
	struct buf b;

	if (s->phase != PH_TLS)
		panic("ingress_smtp: TLS started without STARTTLS");
	reset_tx(s);
	free(s->helo);
	s->helo = NULL;
	s->proto = NULL;
	free(s->auth_user);
	s->auth_user = NULL;
	buf_init(&b);
	put_clean(&b, desc, strlen(desc), NAME_SHOW_MAX, "\\;\"<>");
	if (b.len == 0)
		buf_append_str(&b, "TLS");
	free(s->tls_desc);
	s->tls_desc = b.data;
	s->phase = PH_CMD;
}

const char *
smtp_session_auth_user(const struct smtp_session *s)
{
	return s->auth_user;
}

bool
smtp_session_in_data(const struct smtp_session *s)
{
	return s->phase == PH_DATA && !s->closed;
}

/* The last reply of a session that we end: "421 <code> <hostname>
 * <text>", once. */
static void
close_421(struct smtp_session *s, struct buf *out, const char *code,
	  const char *text)
{
	if (s->closed)
		return;
	reply(out, "421 %s %s %s", code, s->hostname, text);
	s->closed = true;
}

void
smtp_session_timeout(struct smtp_session *s, struct buf *out)
{
	close_421(s, out, "4.4.2", "Error: timeout exceeded");
}

void
smtp_session_shutdown(struct smtp_session *s, struct buf *out)
{
	close_421(s, out, "4.3.2", "Service shutting down, closing "
		  "transmission channel");
}
