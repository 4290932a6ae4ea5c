/*
 * test_ingress_smtp.c - the SMTP/LMTP session state machine.
 *
 * Most tests are tables of {input bytes, expected reply prefixes, close?,
 * messages stored}. run_case() plays each input whole, then one byte at a
 * time, then in seeded random chunks, and requires the three to give the
 * same replies, the same messages and the same close decision.
 */
#include "ingress_smtp.h"
#include "lib/xmalloc.h"
#include "testlib.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define IN(s)		s, sizeof(s) - 1
#define MAX_MSGS	8
#define RANDOM_SEEDS	6
#define HELLO		"EHLO client.example\r\n"
#define ENVELOPE	HELLO "MAIL FROM:<a@example.org>\r\n" \
			"RCPT TO:<b@example.net>\r\n"
#define OK4		"250|250 2.1.0|250 2.1.5|354"

static time_t
fixed_now(void)
{
	return 1700000000;	/* Tue, 14 Nov 2023 22:13:20 UTC */
}

/* Recipients whose local part starts with "reject" are relaying. */
static int
rcpt_policy(void *arg, const char *addr)
{
	(void)arg;
	return strncmp(addr, "reject", 6) != 0;
}

static int
storage_full(void *arg, size_t size, const char **why_r)
{
	(void)arg;
	(void)size;
	(void)why_r;
	return 0;
}

/* The store cannot take mail at all (posternd's store_health()). */
static int
storage_down(void *arg, size_t size, const char **why_r)
{
	(void)arg;
	(void)size;
	*why_r = "store full";
	return -1;
}

static const struct smtp_limits lim_smtp = {
	.hostname = "mx.example",
	.max_message_size = 200000,
	.max_recipients = 5,
	.rcpt_ok = rcpt_policy,
	.now = fixed_now,
};

static const struct smtp_limits lim_small = {
	.hostname = "mx.example",
	.max_message_size = 100,
	.rcpt_ok = rcpt_policy,
	.now = fixed_now,
};

static const struct smtp_limits lim_big = {
	.hostname = "mx.example",
	.max_message_size = 4 * 1024 * 1024,
	.now = fixed_now,
};

static const struct smtp_limits lim_errors3 = {
	.hostname = "mx.example",
	.max_errors = 3,
	.now = fixed_now,
};

static const struct smtp_limits lim_lmtp = {
	.hostname = "lmtp.example",
	.lmtp = true,
	.max_recipients = 5,
	.rcpt_ok = rcpt_policy,
	.now = fixed_now,
};

static const struct smtp_limits lim_nospace = {
	.hostname = "mx.example",
	.storage_ok = storage_full,
	.now = fixed_now,
};

static const struct smtp_limits lim_nostore = {
	.hostname = "mx.example",
	.storage_ok = storage_down,
	.now = fixed_now,
};

static const struct smtp_limits lim_nostore_lmtp = {
	.hostname = "lmtp.example",
	.lmtp = true,
	.storage_ok = storage_down,
	.now = fixed_now,
};

struct smtp_case {
	const char *name;
	const struct smtp_limits *lim;	/* NULL: lim_smtp */
	const char *in;
	size_t len;
	const char *expect;	/* reply prefixes after the 220, '|' between */
	bool close;
	size_t nmsg;
	enum smtp_store_result store;
};

/* A message as the store saw it. */
struct got_msg {
	struct buf ser;		/* everything, for comparing runs */
	char *sender;
	char *msgid;
	size_t nrcpt;
	struct buf rcpts;	/* "a,b," */
	struct buf body;
};

struct got {
	struct buf out;
	bool closed;
	size_t nmsg;
	struct got_msg m[MAX_MSGS];
};

enum chunking {
	CH_WHOLE,
	CH_BYTE,
	CH_RANDOM,
};

#define CASE_ASSERT(cond, c) \
	CU_assertImplementation((cond), __LINE__, (c)->name, __FILE__, "", \
				CU_FALSE)

static uint32_t
next_rand(uint32_t *st)
{
	uint32_t x = *st;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*st = x;
	return x;
}

static void
got_free(struct got *g)
{
	size_t i;

	for (i = 0; i < g->nmsg && i < MAX_MSGS; i++) {
		buf_free(&g->m[i].ser);
		buf_free(&g->m[i].rcpts);
		buf_free(&g->m[i].body);
		free(g->m[i].sender);
		free(g->m[i].msgid);
	}
	buf_free(&g->out);
	memset(g, 0, sizeof(*g));
}

static void
record_message(struct smtp_session *s, struct got *g)
{
	struct smtp_message m;
	struct got_msg *gm;
	size_t i;

	smtp_session_message(s, &m);
	if (g->nmsg++ >= MAX_MSGS)
		return;
	gm = &g->m[g->nmsg - 1];
	gm->sender = xstrdup(m.sender);
	gm->msgid = xstrdup(m.msgid);
	gm->nrcpt = m.nrcpt;
	for (i = 0; i < m.nrcpt; i++)
		buf_printf(&gm->rcpts, "%s,", m.rcpts[i]);
	buf_append(&gm->body, m.body, m.body_len);
	buf_printf(&gm->ser, "%s\n%s\n%s\n", m.sender, gm->rcpts.data,
		   m.msgid);
	buf_append(&gm->ser, m.body, m.body_len);
}

/* Feed what is in pend until the session wants more or closes. */
static void
drain(struct smtp_session *s, struct buf *pend,
      enum smtp_store_result store, struct got *g)
{
	enum smtp_event ev;
	char qid[16];
	size_t used;

	for (;;) {
		ev = smtp_session_feed(s, pend->data, pend->len, &used,
				       &g->out);
		if (used > pend->len)
			CU_FAIL("feed used more than it was given");
		buf_consume(pend, used);
		if (ev == SMTP_EV_NONE) {
			if (pend->len != 0)
				CU_FAIL("NONE left input unused");
			return;
		}
		if (ev == SMTP_EV_CLOSE) {
			g->closed = true;
			return;
		}
		record_message(s, g);
		snprintf(qid, sizeof(qid), "QID%zu", g->nmsg);
		if (smtp_session_stored(s, store, qid, &g->out) ==
		    SMTP_EV_CLOSE) {
			g->closed = true;
			return;
		}
	}
}

static void
run(const struct smtp_case *c, enum chunking how, uint32_t seed,
    struct got *g)
{
	const struct smtp_limits *lim = c->lim != NULL ? c->lim : &lim_smtp;
	struct smtp_session *s;
	struct buf pend;
	size_t pos = 0, n, used, before;

	memset(g, 0, sizeof(*g));
	buf_init(&pend);
	s = smtp_session_new(lim, "192.0.2.1", "client.example");
	smtp_session_greeting(s, &g->out);
	while (pos < c->len && !g->closed) {
		n = c->len - pos;
		if (how == CH_BYTE)
			n = 1;
		else if (how == CH_RANDOM)
			n = 1 + next_rand(&seed) % 97;
		if (n > c->len - pos)
			n = c->len - pos;
		buf_append(&pend, c->in + pos, n);
		pos += n;
		drain(s, &pend, c->store, g);
	}
	if (g->closed) {
		/* Whatever comes after the close is ignored. */
		before = g->out.len;
		CU_ASSERT_EQUAL(smtp_session_feed(s, "NOOP\r\n", 6, &used,
						  &g->out), SMTP_EV_CLOSE);
		CU_ASSERT_EQUAL(used, 6);
		CU_ASSERT_EQUAL(g->out.len, before);
	}
	smtp_session_free(&s);
	CU_ASSERT_PTR_NULL(s);
	buf_free(&pend);
}

/* Every reply line is "ddd[ -]text" CRLF, at most 512 octets, and the
 * final lines match the expected prefixes after the greeting. */
static void
check_replies(const struct smtp_case *c, const struct buf *out)
{
	char *exp = xstrdup(c->expect), *save = NULL, *tok;
	const char *p = out->data, *end = out->data + out->len, *nl;
	size_t len, nreply = 0;
	bool ok = true;

	tok = strtok_r(exp, "|", &save);
	while (p < end) {
		nl = strstr(p, "\r\n");
		CASE_ASSERT(nl != NULL, c);
		if (nl == NULL)
			break;
		len = (size_t)(nl - p);
		CASE_ASSERT(len + 2 <= 512 && len >= 3 &&
			    memchr(p, '\r', len) == NULL &&
			    memchr(p, '\n', len) == NULL, c);
		if (len > 3 && p[3] == '-') {
			p = nl + 2;
			continue;
		}
		if (nreply++ > 0) {
			if (tok == NULL || strncmp(p, tok, strlen(tok)) != 0) {
				fprintf(stderr, "\n%s: reply %zu is \"%.*s\", "
					"expected \"%s\"\n", c->name,
					nreply - 1, (int)len, p,
					tok != NULL ? tok : "(none)");
				ok = false;
				break;
			}
			tok = strtok_r(NULL, "|", &save);
		}
		p = nl + 2;
	}
	if (ok && tok != NULL) {
		fprintf(stderr, "\n%s: missing reply \"%s\"\n", c->name, tok);
		ok = false;
	}
	CASE_ASSERT(ok, c);
	free(exp);
}

static bool
same_got(const struct got *a, const struct got *b)
{
	size_t i;

	if (a->closed != b->closed || a->nmsg != b->nmsg ||
	    a->out.len != b->out.len ||
	    memcmp(a->out.data, b->out.data, a->out.len) != 0)
		return false;
	for (i = 0; i < a->nmsg && i < MAX_MSGS; i++)
		if (a->m[i].ser.len != b->m[i].ser.len ||
		    memcmp(a->m[i].ser.data, b->m[i].ser.data,
			   a->m[i].ser.len) != 0)
			return false;
	return true;
}

/* Play c whole, byte by byte and in random chunks; check the expected
 * outcome and that every way of chunking gives the same result. If ref_r
 * is not NULL, the whole-input result is left there for the caller. */
static void
run_case(const struct smtp_case *c, struct got *ref_r)
{
	struct got ref, g;
	uint32_t seed;
	bool same;

	run(c, CH_WHOLE, 0, &ref);
	check_replies(c, &ref.out);
	CASE_ASSERT(ref.closed == c->close, c);
	CASE_ASSERT(ref.nmsg == c->nmsg, c);
	if (ref.closed != c->close || ref.nmsg != c->nmsg)
		fprintf(stderr, "\n%s: closed %d nmsg %zu\n", c->name,
			ref.closed, ref.nmsg);
	run(c, CH_BYTE, 0, &g);
	same = same_got(&ref, &g);
	CASE_ASSERT(same, c);
	if (!same)
		fprintf(stderr, "\n%s: byte-at-a-time differs\n", c->name);
	got_free(&g);
	for (seed = 1; seed <= RANDOM_SEEDS; seed++) {
		run(c, CH_RANDOM, seed * 2654435761u, &g);
		same = same_got(&ref, &g);
		CASE_ASSERT(same, c);
		if (!same)
			fprintf(stderr, "\n%s: random chunks (seed %u) "
				"differ\n", c->name, seed);
		got_free(&g);
	}
	if (ref_r != NULL)
		*ref_r = ref;
	else
		got_free(&ref);
}

static void
run_table(const struct smtp_case *cases, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		run_case(&cases[i], NULL);
}

#define RUN_TABLE(t)	run_table(t, sizeof(t) / sizeof(t[0]))

/* One dynamic case: prefix + (pattern repeated n times) + suffix. */
static void
run_built(const char *name, const struct smtp_limits *lim,
	  const char *prefix, const char *pattern, size_t n,
	  const char *suffix, const char *expect, bool close, size_t nmsg)
{
	struct smtp_case c = {
		.name = name, .lim = lim, .expect = expect, .close = close,
		.nmsg = nmsg,
	};
	struct buf b;
	size_t i;

	buf_init(&b);
	buf_append_str(&b, prefix);
	for (i = 0; i < n; i++)
		buf_append_str(&b, pattern);
	buf_append_str(&b, suffix);
	c.in = b.data;
	c.len = b.len;
	run_case(&c, NULL);
	buf_free(&b);
}

/* The client's part of a stored message: what follows our Received:
 * field (which ends with the date) and a generated Message-ID:. */
static const char *
client_part(const struct got_msg *m, bool generated_id)
{
	const char *p = strstr(m->body.data, "(UTC)\r\n");

	if (p == NULL)
		return "";
	p += 7;
	if (generated_id && strncmp(p, "Message-ID: ", 12) == 0)
		p = strstr(p, "\r\n") + 2;
	return p;
}

/* --- tests -------------------------------------------------------------- */

static void
test_ingress_smtp_basic_transaction(void)
{
	static const struct smtp_case cases[] = {
		{ "esmtp", NULL, IN(ENVELOPE "DATA\r\nSubject: hi\r\n\r\n"
			"body\r\n.\r\nQUIT\r\n"),
		  OK4 "|250 2.0.0 Ok: queued as QID1|221 2.0.0", true, 1,
		  SMTP_STORE_OK },
		{ "helo", NULL, IN("HELO c\r\nMAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n"),
		  "250 mx.example|250 2.1.0|250 2.1.5|354|250 2.0.0", false,
		  1, SMTP_STORE_OK },
		{ "lower case verbs", NULL, IN("ehlo c\r\nmail from:<a@b.c>\r\n"
			"rcpt to:<d@e.f>\r\ndata\r\nx\r\n.\r\nquit\r\n"),
		  OK4 "|250 2.0.0|221", true, 1, SMTP_STORE_OK },
		{ "two messages", NULL, IN(ENVELOPE "DATA\r\n1\r\n.\r\n"
			"MAIL FROM:<>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"
			"2\r\n.\r\n"),
		  OK4 "|250 2.0.0 Ok: queued as QID1|250 2.1.0|250 2.1.5|354|"
		  "250 2.0.0 Ok: queued as QID2", false, 2, SMTP_STORE_OK },
		{ "no input", NULL, IN(""), "", false, 0, SMTP_STORE_OK },
		{ "empty message", NULL, IN(ENVELOPE "DATA\r\n.\r\n"),
		  OK4 "|250 2.0.0", false, 1, SMTP_STORE_OK },
	};
	struct smtp_case c = cases[0];
	struct got g;

	RUN_TABLE(cases);
	run_case(&c, &g);
	CU_ASSERT_STRING_EQUAL(g.m[0].sender, "a@example.org");
	CU_ASSERT_STRING_EQUAL(g.m[0].rcpts.data, "b@example.net,");
	CU_ASSERT(strncmp(g.m[0].body.data, "Received: from client.example "
			  "(client.example [192.0.2.1])\r\n\tby mx.example "
			  "(postern) with ESMTP id 0000000000000000;\r\n"
			  "\tTue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\n",
			  158) == 0);
	CU_ASSERT_STRING_EQUAL(client_part(&g.m[0], true),
			       "Subject: hi\r\n\r\nbody\r\n");
	CU_ASSERT(strstr(g.out.data, "250-mx.example\r\n250-PIPELINING\r\n"
			 "250-SIZE 200000\r\n250-8BITMIME\r\n"
			 "250 ENHANCEDSTATUSCODES\r\n") != NULL);
	CU_ASSERT(strncmp(g.out.data, "220 mx.example ESMTP postern\r\n",
			  30) == 0);
	got_free(&g);
}

static void
test_ingress_smtp_simple_commands(void)
{
	static const struct smtp_case cases[] = {
		{ "noop", NULL, IN("NOOP\r\nNOOP x\r\n"), "250 2.0.0|250 2.0.0",
		  false, 0, SMTP_STORE_OK },
		{ "rset", NULL, IN("RSET\r\nRSET x\r\n"), "250 2.0.0|501 5.5.4",
		  false, 0, SMTP_STORE_OK },
		{ "vrfy", NULL, IN("VRFY root\r\nVRFY\r\n"),
		  "252 2.0.0|501 5.5.4", false, 0, SMTP_STORE_OK },
		{ "help", NULL, IN("HELP\r\n"), "214 2.0.0", false, 0,
		  SMTP_STORE_OK },
		{ "ehlo without argument", NULL, IN("EHLO\r\nHELO \r\n"),
		  "501 Syntax: EHLO hostname|501 Syntax: HELO hostname",
		  false, 0, SMTP_STORE_OK },
		{ "unknown verb", NULL, IN("FOO bar\r\nNOOP\r\n"),
		  "500 5.5.2 Error: command not recognized|250", false, 0,
		  SMTP_STORE_OK },
		{ "empty line", NULL, IN("\r\nNOOP\r\n"), "500 5.5.2|250",
		  false, 0, SMTP_STORE_OK },
		{ "lhlo is lmtp only", NULL, IN("LHLO c\r\n"), "500 5.5.2",
		  false, 0, SMTP_STORE_OK },
		{ "no starttls offered", NULL, IN("STARTTLS\r\n"), "500 5.5.2",
		  false, 0, SMTP_STORE_OK },
		{ "quit", NULL, IN("QUIT\r\n"), "221 2.0.0 Bye", true, 0,
		  SMTP_STORE_OK },
		{ "data with argument", NULL, IN(ENVELOPE "DATA x\r\n"),
		  "250|250|250|501 5.5.4", false, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_command_sequence(void)
{
	static const struct smtp_case cases[] = {
		{ "mail before helo", NULL, IN("MAIL FROM:<a@b.c>\r\n"),
		  "503 5.5.1 Error: send HELO/EHLO first", false, 0,
		  SMTP_STORE_OK },
		{ "rcpt before mail", NULL, IN(HELLO "RCPT TO:<a@b.c>\r\n"),
		  "250|503 5.5.1 Error: need MAIL command", false, 0,
		  SMTP_STORE_OK },
		{ "data before mail", NULL, IN(HELLO "DATA\r\n"),
		  "250|503 5.5.1 Error: need RCPT command", false, 0,
		  SMTP_STORE_OK },
		{ "data before rcpt", NULL, IN(HELLO "MAIL FROM:<a@b.c>\r\n"
			"DATA\r\n"),
		  "250|250|503 5.5.1 Error: need RCPT command", false, 0,
		  SMTP_STORE_OK },
		{ "nested mail", NULL, IN(ENVELOPE "MAIL FROM:<x@b.c>\r\n"),
		  "250|250|250|503 5.5.1 Error: nested MAIL command", false,
		  0, SMTP_STORE_OK },
		{ "no valid recipients", NULL, IN(HELLO "MAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<reject@x.y>\r\nRCPT TO:<bad>\r\nDATA\r\n"),
		  "250|250|550 5.7.1|501 5.1.3|554 5.5.1 Error: no valid "
		  "recipients", false, 0, SMTP_STORE_OK },
		{ "ehlo resets", NULL, IN(ENVELOPE HELLO "RCPT TO:<c@d.e>\r\n"
			"DATA\r\n"),
		  "250|250|250|250|503 5.5.1 Error: need MAIL|503 5.5.1",
		  false, 0, SMTP_STORE_OK },
		{ "rset resets", NULL, IN(ENVELOPE "RSET\r\nDATA\r\n"
			"MAIL FROM:<c@d.e>\r\n"),
		  "250|250|250|250 2.0.0|503 5.5.1|250 2.1.0", false, 0,
		  SMTP_STORE_OK },
		{ "data then commands as text", NULL, IN(ENVELOPE "DATA\r\n"
			"QUIT\r\nRSET\r\n.\r\nNOOP\r\n"),
		  OK4 "|250 2.0.0 Ok: queued|250 2.0.0 Ok", false, 1,
		  SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_mail_syntax(void)
{
	static const struct smtp_case cases[] = {
		{ "no brackets", NULL, IN(HELLO "MAIL FROM:a@b.c\r\n"),
		  "250|501 5.5.4 Syntax: MAIL FROM:<address>", false, 0,
		  SMTP_STORE_OK },
		{ "junk", NULL, IN(HELLO "MAIL junk\r\nMAIL\r\n"
			"MAIL FROM:<a@b.c\r\nMAIL FROM:<a@b.c>junk\r\n"),
		  "250|501 5.5.4|501 5.5.4|501 5.5.4|501 5.5.4", false, 0,
		  SMTP_STORE_OK },
		{ "space after colon", NULL, IN(HELLO "MAIL FROM: <a@b.c>\r\n"),
		  "250|250 2.1.0", false, 0, SMTP_STORE_OK },
		{ "null sender", NULL, IN(HELLO "MAIL FROM:<>\r\n"),
		  "250|250 2.1.0", false, 0, SMTP_STORE_OK },
		{ "quoted local part", NULL, IN(HELLO
			"MAIL FROM:<\"a b\\\"c\"@b.c>\r\n"), "250|250 2.1.0",
		  false, 0, SMTP_STORE_OK },
		{ "address literal", NULL, IN(HELLO
			"MAIL FROM:<a@[192.0.2.1]>\r\n"), "250|250 2.1.0",
		  false, 0, SMTP_STORE_OK },
		{ "control char", NULL, IN(HELLO "MAIL FROM:<a\tb@c.d>\r\n"
			"MAIL FROM:<a@c\x01" "d>\r\n"),
		  "250|501 5.1.7 Bad sender address syntax|501 5.1.7", false,
		  0, SMTP_STORE_OK },
		{ "angle inside", NULL, IN(HELLO "MAIL FROM:<a<b@c.d>\r\n"
			"MAIL FROM:<a>b@c.d>\r\nMAIL FROM:<\"a>b\"@c.d>\r\n"),
		  "250|501 5.1.7|501 5.1.7|501 5.1.7", false, 0,
		  SMTP_STORE_OK },
		{ "unbalanced quote", NULL, IN(HELLO "MAIL FROM:<\"ab@c.d>\r\n"
			"MAIL FROM:<a\"b@c.d>\r\n"),
		  "250|501 5.1.7|501 5.1.7", false, 0, SMTP_STORE_OK },
		{ "eight bit", NULL, IN(HELLO
			"MAIL FROM:<j\xc3\xb6rg@c.d>\r\n"),
		  "250|501 5.1.7", false, 0, SMTP_STORE_OK },
		{ "source route", NULL, IN(HELLO
			"MAIL FROM:<@x.y,@z.w:a@c.d>\r\n"), "250|501 5.1.7",
		  false, 0, SMTP_STORE_OK },
		{ "missing parts", NULL, IN(HELLO "MAIL FROM:<a@>\r\n"
			"MAIL FROM:<@c.d>\r\nMAIL FROM:<a>\r\n"
			"MAIL FROM:<a@c..d>\r\nMAIL FROM:<a@-c d>\r\n"),
		  "250|501 5.1.7|501 5.1.7|501 5.1.7|501 5.1.7|501 5.1.7",
		  false, 0, SMTP_STORE_OK },
		{ "kept as given", NULL, IN(HELLO "MAIL FROM:<Mixed.Case@Ex."
			"ORG>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nx\r\n.\r\n"),
		  "250|250|250|354|250", false, 1, SMTP_STORE_OK },
	};
	char local[80], domain[300];
	struct buf b;
	struct got g;
	struct smtp_case c = cases[12];

	RUN_TABLE(cases);
	run_case(&c, &g);
	CU_ASSERT_STRING_EQUAL(g.m[0].sender, "Mixed.Case@Ex.ORG");
	CU_ASSERT_STRING_EQUAL(g.m[0].rcpts.data, "Postmaster,");
	got_free(&g);

	/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256. */
	memset(local, 'l', sizeof(local));
	memset(domain, 'd', sizeof(domain));
	buf_init(&b);
	buf_printf(&b, "MAIL FROM:<%.64s@a.b>\r\n", local);
	run_built("local part 64", NULL, HELLO, b.data, 1, "", "250|250",
		  false, 0);
	buf_reset(&b);
	buf_printf(&b, "MAIL FROM:<%.65s@a.b>\r\n", local);
	run_built("local part 65", NULL, HELLO, b.data, 1, "", "250|501 5.1.7",
		  false, 0);
	buf_reset(&b);
	buf_printf(&b, "MAIL FROM:<a@%.249s.bc>\r\n", domain);
	run_built("path 256", NULL, HELLO, b.data, 1, "", "250|250",
		  false, 0);
	buf_reset(&b);
	buf_printf(&b, "MAIL FROM:<a@%.250s.bc>\r\n", domain);
	run_built("path 257", NULL, HELLO, b.data, 1, "", "250|501 5.1.7",
		  false, 0);
	buf_reset(&b);
	buf_printf(&b, "MAIL FROM:<%.256s>\r\n", domain);
	run_built("domain 256", NULL, HELLO, b.data, 1, "", "250|501 5.1.7",
		  false, 0);
	buf_free(&b);
}

static void
test_ingress_smtp_rcpt_syntax(void)
{
	static const struct smtp_case cases[] = {
		{ "no brackets", NULL, IN(ENVELOPE "RCPT TO:c@d.e\r\n"
			"RCPT c@d.e\r\n"),
		  "250|250|250|501 5.5.4 Syntax: RCPT TO:<address>|501 5.5.4",
		  false, 0, SMTP_STORE_OK },
		{ "bad address", NULL, IN(ENVELOPE "RCPT TO:<c@d@e>\r\n"
			"RCPT TO:<a\"b@c.d>\r\nRCPT TO:<\xff@c.d>\r\n"
			"RCPT TO:<@a.b:c@d.e>\r\n"),
		  "250|250|250|501 5.1.3 Bad recipient address syntax|"
		  "501 5.1.3|501 5.1.3|501 5.1.3", false, 0, SMTP_STORE_OK },
		{ "null recipient", NULL, IN(ENVELOPE "RCPT TO:<>\r\n"),
		  "250|250|250|501 5.1.3", false, 0, SMTP_STORE_OK },
		{ "postmaster only without domain", NULL, IN(ENVELOPE
			"RCPT TO:<postmaster>\r\nRCPT TO:<root>\r\n"),
		  "250|250|250|250 2.1.5|501 5.1.3", false, 0, SMTP_STORE_OK },
		{ "space after colon", NULL, IN(ENVELOPE
			"RCPT TO: <c@d.e>\r\n"),
		  "250|250|250|250 2.1.5", false, 0, SMTP_STORE_OK },
		{ "parameters unsupported", NULL, IN(ENVELOPE
			"RCPT TO:<c@d.e> NOTIFY=NEVER\r\n"),
		  "250|250|250|555 5.5.4 Unsupported option: NOTIFY=NEVER",
		  false, 0, SMTP_STORE_OK },
		{ "relay denied", NULL, IN(ENVELOPE "RCPT TO:<reject@x.y>\r\n"
			"DATA\r\nx\r\n.\r\n"),
		  "250|250|250|550 5.7.1 <reject@x.y>: Relay access denied|"
		  "354|250 2.0.0", false, 1, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_mail_parameters(void)
{
	static const struct smtp_case cases[] = {
		{ "size ok", NULL, IN(HELLO
			"MAIL FROM:<a@b.c> SIZE=200000\r\n"),
		  "250|250 2.1.0", false, 0, SMTP_STORE_OK },
		{ "size too big", NULL, IN(HELLO
			"MAIL FROM:<a@b.c> SIZE=200001\r\nMAIL FROM:<a@b.c> "
			"SIZE=99999999999999999999999999999\r\n"),
		  "250|552 5.3.4 Message size exceeds fixed limit|552 5.3.4",
		  false, 0, SMTP_STORE_OK },
		{ "size syntax", NULL, IN(HELLO "MAIL FROM:<a@b.c> SIZE=abc\r\n"
			"MAIL FROM:<a@b.c> SIZE=\r\nMAIL FROM:<a@b.c> "
			"SIZE=-1\r\n"),
		  "250|501 5.5.4 Bad message size syntax|501 5.5.4|501 5.5.4",
		  false, 0, SMTP_STORE_OK },
		{ "body", NULL, IN(HELLO "MAIL FROM:<a@b.c> BODY=8BITMIME "
			"size=10\r\nRSET\r\nMAIL FROM:<a@b.c> body=7bit\r\n"),
		  "250|250 2.1.0|250|250 2.1.0", false, 0, SMTP_STORE_OK },
		{ "unsupported", NULL, IN(HELLO "MAIL FROM:<a@b.c> "
			"BODY=BINARYMIME\r\nMAIL FROM:<a@b.c> AUTH=<>\r\n"
			"MAIL FROM:<a@b.c> SMTPUTF8\r\n"),
		  "250|555 5.5.4 Unsupported option: BODY=BINARYMIME|"
		  "555 5.5.4 Unsupported option: AUTH=<>|555 5.5.4", false,
		  0, SMTP_STORE_OK },
		{ "storage low", &lim_nospace, IN(HELLO
			"MAIL FROM:<a@b.c>\r\n"),
		  "250|452 4.3.1 Insufficient system storage", false, 0,
		  SMTP_STORE_OK },
		/* a store that cannot take any mail: 421 and close; what
		 * the client sent after MAIL is not answered */
		{ "store down", &lim_nostore, IN(HELLO
			"MAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<c@d.e>\r\n"),
		  "250|421 4.3.2 mx.example Service not available (store "
		  "full), closing transmission channel", true, 0,
		  SMTP_STORE_OK },
		{ "store down, LMTP", &lim_nostore_lmtp, IN("LHLO c\r\n"
			"MAIL FROM:<a@b.c>\r\n"),
		  "250|421 4.3.2 lmtp.example Service not available", true,
		  0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_recipient_limit(void)
{
	static const struct smtp_case cases[] = {
		{ "excess only", NULL, IN(ENVELOPE "RCPT TO:<r2@x.y>\r\n"
			"RCPT TO:<r3@x.y>\r\nRCPT TO:<r4@x.y>\r\n"
			"RCPT TO:<r5@x.y>\r\nRCPT TO:<r6@x.y>\r\n"
			"RCPT TO:<r7@x.y>\r\nRCPT TO:<b@example.net>\r\n"
			"DATA\r\nx\r\n.\r\n"),
		  "250|250|250|250|250|250|250|452 4.5.3 Error: too many "
		  "recipients|452 4.5.3|250 2.1.5|354|250 2.0.0", false, 1,
		  SMTP_STORE_OK },
	};
	struct smtp_case c = cases[0];
	struct got g;

	run_case(&c, &g);
	CU_ASSERT_EQUAL(g.m[0].nrcpt, 5);
	CU_ASSERT_STRING_EQUAL(g.m[0].rcpts.data,
			       "b@example.net,r2@x.y,r3@x.y,r4@x.y,r5@x.y,");
	got_free(&g);
}

static void
test_ingress_smtp_duplicate_recipients(void)
{
	static const struct smtp_case cases[] = {
		{ "duplicates", NULL, IN(ENVELOPE "RCPT TO:<b@example.net>\r\n"
			"RCPT TO:<b@EXAMPLE.net>\r\nRCPT TO:<B@example.net>\r\n"
			"DATA\r\nx\r\n.\r\n"),
		  "250|250|250|250 2.1.5|250 2.1.5|250 2.1.5|354|250", false,
		  1, SMTP_STORE_OK },
	};
	struct smtp_case c = cases[0];
	struct got g;

	run_case(&c, &g);
	CU_ASSERT_EQUAL(g.m[0].nrcpt, 2);
	CU_ASSERT_STRING_EQUAL(g.m[0].rcpts.data,
			       "b@example.net,B@example.net,");
	got_free(&g);
}

static void
test_ingress_smtp_error_limit(void)
{
	static const struct smtp_case cases[] = {
		{ "three errors", &lim_errors3, IN("FOO\r\n"
			"MAIL FROM:<a@b.c>\r\n"
			"NOOP\r\nBAR\r\nNOOP\r\n"),
		  "500 5.5.2|503 5.5.1|250|500 5.5.2|"
		  "421 4.7.0 mx.example Error: too many errors", true, 0,
		  SMTP_STORE_OK },
		{ "limits and policy are not errors", &lim_errors3, IN(HELLO
			"MAIL FROM:<a@b.c>\r\nRCPT TO:<r1@x.y>\r\n"
			"RCPT TO:<r2@x.y>\r\nRCPT TO:<r3@x.y>\r\nNOOP\r\n"),
		  "250|250|250|250|250|250", false, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
	run_built("twenty unknown", NULL, "", "FOO\r\n", 19, "NOOP\r\nFOO\r\n"
		  "NOOP\r\n", "500|500|500|500|500|500|500|500|500|500|500|500|"
		  "500|500|500|500|500|500|500|250|500 5.5.2|421 4.7.0", true,
		  0);
}

static void
test_ingress_smtp_http_verbs(void)
{
	static const struct smtp_case cases[] = {
		{ "get", NULL, IN("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		  "221 2.7.0 Error: I can break rules, too. Goodbye.", true,
		  0, SMTP_STORE_OK },
		{ "post", NULL, IN("POST /x HTTP/1.0\r\nNOOP\r\n"), "221 2.7.0",
		  true, 0, SMTP_STORE_OK },
		{ "connect", NULL, IN("CONNECT mx:25 HTTP/1.1\r\n"),
		  "221 2.7.0",
		  true, 0, SMTP_STORE_OK },
		{ "head", NULL, IN("head / HTTP/1.1\r\n"), "221 2.7.0", true, 0,
		  SMTP_STORE_OK },
		{ "put", NULL, IN(ENVELOPE "PUT /x HTTP/1.1\r\n"),
		  "250|250|250|221 2.7.0", true, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_command_line_length(void)
{
	/* 512 octets including CRLF is the most RFC 5321 allows. */
	run_built("510 + CRLF", NULL, "NOOP ", "x", 505, "\r\n", "250",
		  false, 0);
	run_built("511 + CRLF", NULL, "NOOP ", "x", 506, "\r\nNOOP\r\n",
		  "500 5.5.2|250", false, 0);
	run_built("2000 A", NULL, "", "A", 2000, "\r\nNOOP\r\n",
		  "500 5.5.2|250", false, 0);
	run_built("long then bare LF", NULL, "", "A", 2000, "\nNOOP\r\n",
		  "550 5.5.2", true, 0);
}

static void
test_ingress_smtp_bare_newline_in_command(void)
{
	static const struct smtp_case cases[] = {
		{ "bare lf", NULL, IN(HELLO "MAIL FROM:<a@b.c>\nNOOP\r\n"),
		  "250|550 5.5.2 Error: bare <LF> received", true, 0,
		  SMTP_STORE_OK },
		{ "bare cr", NULL, IN("NOOP\rNOOP\r\n"),
		  "550 5.5.2 Error: bare <CR> received", true, 0,
		  SMTP_STORE_OK },
		{ "cr cr lf", NULL, IN("NOOP\r\r\n"), "550 5.5.2", true, 0,
		  SMTP_STORE_OK },
		{ "lone lf", NULL, IN("\n"), "550 5.5.2", true, 0,
		  SMTP_STORE_OK },
		{ "nul", NULL, IN("NO\0OP\r\nNOOP\r\n"), "500 5.5.2", true, 0,
		  SMTP_STORE_OK },
		/* RELIABILITY.md catalogue row 8: a bad address, not a
		 * broken session. */
		{ "nul in sender", NULL,
		  IN(HELLO "MAIL FROM:<a\0b@c.d>\r\nNOOP\r\n"),
		  "250|501 5.1.7|250 2.0.0", false, 0, SMTP_STORE_OK },
		{ "nul in recipient", NULL,
		  IN(HELLO "MAIL FROM:<a@b.c>\r\nRCPT TO:<x\0@y.z>\r\n"
		     "NOOP\r\n"),
		  "250|250|501 5.1.3|250 2.0.0", false, 0, SMTP_STORE_OK },
		{ "after good commands", NULL, IN("NOOP\r\nNOOP\r\nQUIT\n"),
		  "250|250|550 5.5.2", true, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_eight_bit_command(void)
{
	static const struct smtp_case cases[] = {
		{ "noop", NULL, IN("NOOP caf\xc3\xa9\r\nNOOP\r\n"),
		  "500 5.5.2|250", false, 0, SMTP_STORE_OK },
		{ "ehlo", NULL, IN("EHLO h\xf6st\r\nMAIL FROM:<a@b.c>\r\n"),
		  "500 5.5.2|503 5.5.1", false, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

/* The four sequences of RELIABILITY.md H7 inside DATA, followed by
 * commands that would inject a second message: the whole thing is one
 * message, refused at the real CRLF.CRLF, and nothing after runs. */
static void
test_ingress_smtp_smuggling(void)
{
#define SMUGGLE(seq) ENVELOPE "DATA\r\nSubject: real\r\n\r\nreal body" seq \
	"MAIL FROM:<spoof@evil.example>\r\nRCPT TO:<victim@x.y>\r\n" \
	"DATA\r\nSubject: spoofed\r\n\r\nspoofed\r\n.\r\nQUIT\r\n"
	static const struct smtp_case cases[] = {
		{ "lf dot lf", NULL, IN(SMUGGLE("\n.\n")),
		  OK4 "|550 5.5.2 Error: bare <LF> received", true, 0,
		  SMTP_STORE_OK },
		{ "lf dot crlf", NULL, IN(SMUGGLE("\n.\r\n")),
		  OK4 "|550 5.5.2 Error: bare <LF> received", true, 0,
		  SMTP_STORE_OK },
		{ "crlf dot lf", NULL, IN(SMUGGLE("\r\n.\n")),
		  OK4 "|550 5.5.2 Error: bare <LF> received", true, 0,
		  SMTP_STORE_OK },
		{ "cr dot crlf", NULL, IN(SMUGGLE("\r.\r\n")),
		  OK4 "|550 5.5.2 Error: bare <CR> received", true, 0,
		  SMTP_STORE_OK },
		{ "cr dot cr", NULL, IN(SMUGGLE("\r.\r")),
		  OK4 "|550 5.5.2 Error: bare <CR> received", true, 0,
		  SMTP_STORE_OK },
		{ "crlf dot cr", NULL, IN(SMUGGLE("\r\n.\r")),
		  OK4 "|550 5.5.2 Error: bare <CR> received", true, 0,
		  SMTP_STORE_OK },
		{ "lf lf dot crlf", NULL, IN(SMUGGLE("\r\n\n.\r\n")),
		  OK4 "|550 5.5.2 Error: bare <LF> received", true, 0,
		  SMTP_STORE_OK },
		{ "bare cr in text", NULL, IN(ENVELOPE "DATA\r\na\rb\r\n.\r\n"
			"NOOP\r\n"), OK4 "|550 5.5.2 Error: bare <CR>", true, 0,
		  SMTP_STORE_OK },
		{ "bare lf first", NULL, IN(ENVELOPE "DATA\r\n\n.\r\n.\r\n"),
		  OK4 "|550 5.5.2 Error: bare <LF>", true, 0, SMTP_STORE_OK },
		{ "unterminated", NULL, IN(ENVELOPE "DATA\r\nreal\n.\n"
			"MAIL FROM:<x@y.z>\r\n"), OK4, false, 0,
		  SMTP_STORE_OK },
	};
#undef SMUGGLE

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_dot_unstuffing(void)
{
	static const struct smtp_case cases[] = {
		{ "dots", NULL, IN(ENVELOPE "DATA\r\nMessage-ID: <d@x>\r\n\r\n"
			"..foo\r\n...\r\n. \r\nx.\r\n.bar\r\na.b\r\n"
			"..\r\nend.\r\n.\r\n"),
		  OK4 "|250 2.0.0", false, 1, SMTP_STORE_OK },
		{ "dot inside lines", NULL, IN(ENVELOPE "DATA\r\nMessage-ID: "
			"<e@x>\r\n\r\na\r\n.x\r\n. \r\n.\r\n"),
		  OK4 "|250 2.0.0", false, 1, SMTP_STORE_OK },
	};
	struct smtp_case c;
	struct got g;

	c = cases[0];
	run_case(&c, &g);
	CU_ASSERT_STRING_EQUAL(client_part(&g.m[0], false),
			       "Message-ID: <d@x>\r\n\r\n.foo\r\n..\r\n \r\n"
			       "x.\r\nbar\r\na.b\r\n.\r\nend.\r\n");
	got_free(&g);
	c = cases[1];
	run_case(&c, &g);
	CU_ASSERT_STRING_EQUAL(client_part(&g.m[0], false),
			       "Message-ID: <e@x>\r\n\r\na\r\nx\r\n \r\n");
	got_free(&g);
}

static void
test_ingress_smtp_data_line_length(void)
{
	/* 1000 octets including CRLF (RFC 5321 4.5.3.1.6). */
	run_built("998 + CRLF", NULL, ENVELOPE "DATA\r\n", "x", 998,
		  "\r\n.\r\n", OK4 "|250 2.0.0", false, 1);
	run_built("999 + CRLF", NULL, ENVELOPE "DATA\r\n", "x", 999,
		  "\r\n.\r\nNOOP\r\n",
		  OK4 "|500 5.5.6 Error: line too long|250 2.0.0 Ok", false, 0);
	run_built("stuffed 999 + CRLF", NULL, ENVELOPE "DATA\r\n.", "x", 998,
		  "\r\n.\r\n", OK4 "|500 5.5.6", false, 0);
	run_built("long line then bare LF", NULL, ENVELOPE "DATA\r\n", "x",
		  2000, "\n\r\n.\r\n", OK4 "|550 5.5.2", true, 0);
}

static void
test_ingress_smtp_message_size(void)
{
	static const struct smtp_case cases[] = {
		{ "size param over", &lim_small, IN(HELLO
			"MAIL FROM:<a@b.c> SIZE=101\r\n"), "250|552 5.3.4",
		  false, 0, SMTP_STORE_OK },
	};

	struct smtp_case c = {
		"ehlo advertises", &lim_small, IN(HELLO), "250", false, 0,
		SMTP_STORE_OK,
	};
	struct got g;

	RUN_TABLE(cases);
	run_case(&c, &g);
	CU_ASSERT(strstr(g.out.data, "\r\n250-SIZE 100\r\n") != NULL);
	got_free(&g);
	/* The body counts unstuffed, with its CRLFs: 98 + 2 fits. */
	run_built("exactly the limit", &lim_small, ENVELOPE "DATA\r\n", "x",
		  98, "\r\n.\r\n", OK4 "|250 2.0.0", false, 1);
	run_built("one over", &lim_small, ENVELOPE "DATA\r\n", "x", 99,
		  "\r\n.\r\nNOOP\r\n",
		  OK4 "|552 5.3.4 Message size exceeds fixed limit|250", false,
		  0);
	run_built("far over, no SIZE", &lim_small, ENVELOPE "DATA\r\n",
		  "0123456789012345678901234567890123456789\r\n", 5000,
		  ".\r\nMAIL FROM:<a@b.c>\r\n", OK4 "|552 5.3.4|250 2.1.0",
		  false, 0);
}

static void
test_ingress_smtp_header_limits(void)
{
	char line[1000];

	run_built("1000 header lines", &lim_big, ENVELOPE "DATA\r\n",
		  "X-A: b\r\n", 1000, "\r\nbody\r\n.\r\n", OK4 "|250 2.0.0",
		  false, 1);
	run_built("1001 header lines", &lim_big, ENVELOPE "DATA\r\n",
		  "X-A: b\r\n", 1001, "\r\nbody\r\n.\r\nNOOP\r\n",
		  OK4 "|552 5.3.4|250", false, 0);
	run_built("folded lines count", &lim_big, ENVELOPE "DATA\r\nX-A: b\r\n",
		  " c\r\n", 1000, "\r\nbody\r\n.\r\n", OK4 "|552 5.3.4", false,
		  0);
	memset(line, 'v', sizeof(line));
	memcpy(line, "X-Long: ", 8);
	memcpy(line + 900, "\r\n", 3);
	run_built("over 100 KiB of header", &lim_big, ENVELOPE "DATA\r\n", line,
		  120, "\r\nbody\r\n.\r\n", OK4 "|552 5.3.4", false, 0);
	run_built("big body is not header", &lim_big, ENVELOPE "DATA\r\n"
		  "Subject: x\r\n\r\n", line, 1000, ".\r\n", OK4 "|250 2.0.0",
		  false, 1);
	run_built("headerless text ends the header", &lim_big, ENVELOPE
		  "DATA\r\nhello there\r\n", line, 1000, ".\r\n",
		  OK4 "|250 2.0.0", false, 1);
}

static void
test_ingress_smtp_nul_in_data(void)
{
	static const struct smtp_case cases[] = {
		{ "nul", NULL, IN(ENVELOPE "DATA\r\na\0b\r\n.\r\nNOOP\r\n"),
		  OK4 "|550 5.6.0|250", false, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_quit_and_close(void)
{
	static const struct smtp_case cases[] = {
		{ "quit mid transaction", NULL, IN(ENVELOPE "QUIT\r\n"
			"DATA\r\nx\r\n.\r\n"),
		  "250|250|250|221 2.0.0 Bye", true, 0, SMTP_STORE_OK },
		{ "disconnect in data", NULL, IN(ENVELOPE "DATA\r\nabc\r\n"),
		  OK4, false, 0, SMTP_STORE_OK },
		{ "disconnect before final lf", NULL, IN(ENVELOPE
			"DATA\r\nabc\r\n.\r"), OK4, false, 0, SMTP_STORE_OK },
		{ "pipelined after quit", NULL, IN("QUIT\r\nNOOP\r\n"
			"FOO\r\n"), "221", true, 0, SMTP_STORE_OK },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_lmtp_replies(void)
{
	static const struct smtp_case cases[] = {
		{ "per recipient", &lim_lmtp, IN("LHLO c\r\n"
			"MAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<r1@x.y>\r\nRCPT TO:<reject@x.y>\r\n"
			"RCPT TO:<r2@x.y>\r\nRCPT TO:<r1@x.y>\r\n"
			"DATA\r\nx\r\n.\r\nQUIT\r\n"),
		  "250|250|250|550 5.7.1|250|250|354|"
		  "250 2.1.5 <r1@x.y> Ok: queued as QID1|"
		  "250 2.1.5 <r2@x.y> Ok: queued as QID1|"
		  "250 2.1.5 <r1@x.y> Ok: queued as QID1|221", true, 1,
		  SMTP_STORE_OK },
		{ "ehlo and helo refused", &lim_lmtp, IN("EHLO c\r\nHELO c\r\n"
			"MAIL FROM:<a@b.c>\r\n"),
		  "500 5.5.2|500 5.5.2|503 5.5.1", false, 0, SMTP_STORE_OK },
		{ "too big per recipient", &lim_lmtp, IN("LHLO c\r\n"
			"MAIL FROM:<a@b.c>\r\nRCPT TO:<r1@x.y>\r\n"
			"RCPT TO:<r2@x.y>\r\nDATA\r\nx\0\r\n.\r\n"),
		  "250|250|250|250|354|550 5.6.0|550 5.6.0", false, 0,
		  SMTP_STORE_OK },
		{ "tempfail", &lim_lmtp, IN("LHLO c\r\nMAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<r1@x.y>\r\nRCPT TO:<r2@x.y>\r\n"
			"DATA\r\nx\r\n.\r\nNOOP\r\n"),
		  "250|250|250|250|354|451 4.3.0 <r1@x.y>|451 4.3.0 <r2@x.y>|"
		  "250", false, 1, SMTP_STORE_TEMPFAIL },
		{ "full", &lim_lmtp, IN("LHLO c\r\nMAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<r1@x.y>\r\nRCPT TO:<r2@x.y>\r\n"
			"DATA\r\nx\r\n.\r\n"),
		  "250|250|250|250|354|452 4.3.1|452 4.3.1", false, 1,
		  SMTP_STORE_FULL },
		{ "reopen", &lim_lmtp, IN("LHLO c\r\nMAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<r1@x.y>\r\nRCPT TO:<r2@x.y>\r\n"
			"DATA\r\nx\r\n.\r\nNOOP\r\n"),
		  "250|250|250|250|354|421 4.3.0|421 4.3.0", true, 1,
		  SMTP_STORE_REOPEN },
	};
	struct smtp_case c = cases[0];
	struct got g;

	RUN_TABLE(cases);
	run_case(&c, &g);
	CU_ASSERT(strncmp(g.out.data, "220 lmtp.example LMTP postern\r\n",
			  31) == 0);
	CU_ASSERT_STRING_EQUAL(g.m[0].rcpts.data, "r1@x.y,r2@x.y,");
	CU_ASSERT(strstr(g.m[0].body.data, "(postern) with LMTP id 0000000000000000;") != NULL);
	got_free(&g);
}

static void
test_ingress_smtp_store_failures(void)
{
	static const struct smtp_case cases[] = {
		/* RELIABILITY.md catalogue rows 22 (commit failure: 451
		 * 4.3.0), 21 at end of data (452 4.3.1) and 23 (MDB_PANIC:
		 * 421 4.3.0 and close); row 21 at MAIL is "storage low" in
		 * test_ingress_smtp_mail_parameters. */
		{ "tempfail", NULL, IN(ENVELOPE "DATA\r\nx\r\n.\r\n"
			"RCPT TO:<c@d.e>\r\nMAIL FROM:<a@b.c>\r\n"),
		  OK4 "|451 4.3.0|503 5.5.1|250 2.1.0", false, 1,
		  SMTP_STORE_TEMPFAIL },
		{ "full", NULL, IN(ENVELOPE "DATA\r\nx\r\n.\r\nNOOP\r\n"),
		  OK4 "|452 4.3.1|250", false, 1, SMTP_STORE_FULL },
		{ "reopen", NULL, IN(ENVELOPE "DATA\r\nx\r\n.\r\nNOOP\r\n"),
		  OK4 "|421 4.3.0 mx.example", true, 1, SMTP_STORE_REOPEN },
	};

	RUN_TABLE(cases);
}

static void
test_ingress_smtp_message_id_generated_and_stable(void)
{
	static const struct smtp_case cases[] = {
		{ "one", NULL, IN(ENVELOPE "DATA\r\nSubject: x\r\n\r\nhi\r\n"
			".\r\n"), OK4 "|250", false, 1, SMTP_STORE_OK },
		{ "other rcpt", NULL, IN(HELLO "MAIL FROM:<a@example.org>\r\n"
			"RCPT TO:<c@example.net>\r\nDATA\r\nSubject: x\r\n\r\n"
			"hi\r\n.\r\n"), OK4 "|250", false, 1, SMTP_STORE_OK },
		{ "id in body only", NULL, IN(ENVELOPE "DATA\r\nSubject: x\r\n"
			"\r\nMessage-ID: <no@x>\r\n.\r\n"), OK4 "|250", false,
		  1, SMTP_STORE_OK },
	};
	struct smtp_case c;
	struct got g1, g2, g3;
	const char *m, *hdr;
	size_t i;

	c = cases[0];
	run_case(&c, &g1);
	run_case(&c, &g2);
	c = cases[1];
	run_case(&c, &g3);
	m = g1.m[0].msgid;
	CU_ASSERT_EQUAL(strlen(m), 1 + 32 + 1 + strlen("mx.example") + 1);
	CU_ASSERT_EQUAL(m[0], '<');
	for (i = 1; i <= 32; i++)
		CU_ASSERT(strchr("0123456789abcdef", m[i]) != NULL);
	CU_ASSERT_STRING_EQUAL(m + 33, "@mx.example>");
	CU_ASSERT_STRING_EQUAL(g1.m[0].msgid, g2.m[0].msgid);
	CU_ASSERT_STRING_NOT_EQUAL(g1.m[0].msgid, g3.m[0].msgid);
	hdr = strstr(g1.m[0].body.data, "(UTC)\r\nMessage-ID: ");
	CU_ASSERT_PTR_NOT_NULL(hdr);
	if (hdr != NULL)
		CU_ASSERT(strncmp(hdr + 19, m, strlen(m)) == 0);
	CU_ASSERT_STRING_EQUAL(client_part(&g1.m[0], true),
			       "Subject: x\r\n\r\nhi\r\n");
	got_free(&g1);
	got_free(&g2);
	got_free(&g3);
	c = cases[2];
	run_case(&c, &g1);
	CU_ASSERT(strncmp(g1.m[0].msgid, "<", 1) == 0 &&
		  strstr(g1.m[0].msgid, "@mx.example>") != NULL);
	got_free(&g1);
}

static size_t
count_ci(const char *hay, const char *needle)
{
	size_t n = 0, len = strlen(needle);

	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, len) == 0)
			n++;
	return n;
}

static void
test_ingress_smtp_message_id_kept(void)
{
	static const struct smtp_case cases[] = {
		{ "lower case", NULL, IN(ENVELOPE "DATA\r\nSubject: x\r\n"
			"message-id:   <abc@def.example>  \r\n\r\nhi\r\n.\r\n"),
		  OK4 "|250", false, 1, SMTP_STORE_OK },
		{ "folded", NULL, IN(ENVELOPE "DATA\r\nMessage-Id:\r\n"
			"\t<fold@x.y>\r\nSubject: x\r\n\r\nhi\r\n.\r\n"),
		  OK4 "|250", false, 1, SMTP_STORE_OK },
		{ "no brackets", NULL, IN(ENVELOPE "DATA\r\nMESSAGE-ID: "
			"bare-id \r\n\r\n.\r\n"), OK4 "|250", false, 1,
		  SMTP_STORE_OK },
	};
	static const char *const ids[] = {
		"<abc@def.example>", "<fold@x.y>", "bare-id",
	};
	struct smtp_case c;
	struct got g;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = cases[i];
		run_case(&c, &g);
		CU_ASSERT_STRING_EQUAL(g.m[0].msgid, ids[i]);
		CU_ASSERT_EQUAL(count_ci(g.m[0].body.data, "message-id:"), 1);
		got_free(&g);
	}
}

/* Our Received: field is three lines of printable ASCII (four with the
 * TLS comment), whatever the client put in its HELO or the resolver in
 * its name. */
static void
check_received(const char *body)
{
	const char *end = strstr(body, "(UTC)\r\n"), *p;
	size_t crlf = 0;
	bool clean = true;

	CU_ASSERT_PTR_NOT_NULL_FATAL(end);
	CU_ASSERT(strncmp(body, "Received: from ", 15) == 0);
	for (p = body; p < end + 5; p++) {
		if (p[0] == '\r' && p[1] == '\n' && p[2] == '\t') {
			crlf++;
			p += 2;
		} else if ((unsigned char)*p < 0x20 ||
			   (unsigned char)*p > 0x7e) {
			clean = false;
		}
	}
	CU_ASSERT(clean);
	CU_ASSERT(crlf == 2 || (crlf == 3 && strncmp(strstr(body, "\r\n\t") + 3,
						     "(using ", 7) == 0));
	CU_ASSERT(end + 5 - body < 998 * 4);
}

static void
test_ingress_smtp_received_header_is_clean(void)
{
	static const struct smtp_case cases[] = {
		{ "hostile helo", NULL, IN("EHLO evil\x01\x1b[31m\t(x) [y]; "
			"\x7f" "X-Injected: yes\r\nMAIL FROM:<a@b.c>\r\n"
			"RCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n"),
		  OK4 "|250", false, 1, SMTP_STORE_OK },
	};
	struct smtp_case c = cases[0];
	struct smtp_session *s;
	struct smtp_message m;
	struct buf out;
	struct got g;
	size_t used;
	static const char in[] = HELLO "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>"
		"\r\nDATA\r\nx\r\n.\r\n";
	static const char want[] = "Received: from evil???31m??x???y????"
		"X-Injected:?yes (client.example [";

	run_case(&c, &g);
	check_received(g.m[0].body.data);
	CU_ASSERT(strncmp(g.m[0].body.data, want, strlen(want)) == 0);
	CU_ASSERT(strstr(g.m[0].body.data, "\nX-Injected") == NULL);
	got_free(&g);

	/* A hostile reverse name and address from the glue. */
	buf_init(&out);
	s = smtp_session_new(&lim_smtp, "1.2.3.4]\r\nX-Bad: 1",
			     "name\r\nX-Bad: 2 (comment)");
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(smtp_session_feed(s, in, sizeof(in) - 1, &used, &out),
			SMTP_EV_MESSAGE);
	CU_ASSERT_EQUAL(used, sizeof(in) - 1);
	smtp_session_message(s, &m);
	check_received(m.body);
	CU_ASSERT(strstr(m.body, "\nX-Bad") == NULL);
	smtp_session_free(&s);
	buf_free(&out);
}

/* --- STARTTLS and AUTH ------------------------------------------------- */

#define TLS_DESC	"TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 " \
			"(256/256 bits)"

/* joe / "s3cret pw" are good; "later" cannot be checked now. */
static int
auth_policy(void *arg, const char *user, const char *password)
{
	(void)arg;
	if (strcmp(user, "later") == 0)
		return -1;
	return strcmp(user, "joe") == 0 && strcmp(password, "s3cret pw") == 0;
}

static const struct smtp_limits lim_tls = {
	.hostname = "mx.example",
	.now = fixed_now,
	.starttls = true,
	.auth_check = auth_policy,
};

static const struct smtp_limits lim_encrypt = {
	.hostname = "mx.example",
	.now = fixed_now,
	.starttls = true,
	.tls_required = true,
	.auth_check = auth_policy,
	.auth_required = true,
	.max_errors = 4,
};

static const struct smtp_limits lim_auth_plain = {
	.hostname = "mx.example",
	.now = fixed_now,
	.auth_check = auth_policy,
	.auth_plaintext = true,
};

/* Feed all of in; the event, with out holding only the new replies. */
static enum smtp_event
say(struct smtp_session *s, const char *in, struct buf *out)
{
	enum smtp_event ev;
	size_t used;

	buf_reset(out);
	ev = smtp_session_feed(s, in, strlen(in), &used, out);
	if (ev != SMTP_EV_MESSAGE)
		CU_ASSERT_EQUAL(used, strlen(in));
	return ev;
}

#define SAYS(s, in, out, want) do {					\
	CU_ASSERT_EQUAL(say(s, in, out), SMTP_EV_NONE);			\
	CU_ASSERT_PTR_NOT_NULL_FATAL((out)->data);			\
	if (strncmp((out)->data, want, strlen(want)) != 0)		\
		fprintf(stderr, "\n%s -> %s", in, (out)->data);		\
	CU_ASSERT(strncmp((out)->data, want, strlen(want)) == 0);	\
} while (0)

/* Up to TLS: EHLO, STARTTLS, handshake. */
static struct smtp_session *
tls_session(const struct smtp_limits *lim, struct buf *out)
{
	struct smtp_session *s = smtp_session_new(lim, "192.0.2.1", "c.ex");

	smtp_session_greeting(s, out);
	CU_ASSERT_EQUAL(say(s, "EHLO c\r\nSTARTTLS\r\n", out),
			SMTP_EV_STARTTLS);
	smtp_session_tls_started(s, TLS_DESC);
	return s;
}

static void
test_ingress_smtp_starttls_resets_session(void)
{
	struct smtp_session *s;
	struct buf out;
	size_t used;

	buf_init(&out);
	s = smtp_session_new(&lim_tls, "192.0.2.1", NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(say(s, "EHLO c\r\n", &out), SMTP_EV_NONE);
	CU_ASSERT(strstr(out.data, "250-STARTTLS\r\n") != NULL);
	CU_ASSERT(strstr(out.data, "AUTH") == NULL);
	CU_ASSERT_EQUAL(say(s, "STARTTLS\r\n", &out), SMTP_EV_STARTTLS);
	CU_ASSERT_STRING_EQUAL(out.data, "220 2.0.0 Ready to start TLS\r\n");
	/* during the handshake nothing is read */
	buf_reset(&out);
	CU_ASSERT_EQUAL(smtp_session_feed(s, "NOOP\r\n", 6, &used, &out),
			SMTP_EV_NONE);
	CU_ASSERT_EQUAL(used, 0);
	CU_ASSERT_EQUAL(out.len, 0);
	smtp_session_tls_started(s, TLS_DESC);
	/* RFC 3207 4.2: the EHLO before TLS is forgotten */
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out, "503 5.5.1 Error: send HELO");
	CU_ASSERT_EQUAL(say(s, "EHLO c\r\n", &out), SMTP_EV_NONE);
	CU_ASSERT(strstr(out.data, "STARTTLS") == NULL);
	CU_ASSERT(strstr(out.data, "250-AUTH PLAIN LOGIN\r\n") != NULL);
	SAYS(s, "STARTTLS\r\n", &out, "554 5.5.1 Error: TLS already active");
	smtp_session_free(&s);
	buf_free(&out);
}

/* RELIABILITY.md row 18: a command pipelined after STARTTLS in the same
 * packet is plaintext an attacker may have injected; it never runs. */
static void
test_ingress_smtp_starttls_discards_pipelined_input(void)
{
	static const char in[] = "EHLO c\r\nSTARTTLS\r\n"
		"MAIL FROM:<evil@attacker.example>\r\n";
	struct smtp_session *s;
	struct buf out;
	size_t used;

	buf_init(&out);
	s = smtp_session_new(&lim_tls, "192.0.2.1", NULL);
	smtp_session_greeting(s, &out);
	buf_reset(&out);
	CU_ASSERT_EQUAL(smtp_session_feed(s, in, sizeof(in) - 1, &used, &out),
			SMTP_EV_STARTTLS);
	CU_ASSERT_EQUAL(used, sizeof(in) - 1);
	CU_ASSERT(strstr(out.data, "250 2.1.0") == NULL);
	CU_ASSERT(strcmp(out.data + out.len - 30,
			 "220 2.0.0 Ready to start TLS\r\n") == 0);
	smtp_session_tls_started(s, TLS_DESC);
	SAYS(s, "EHLO c\r\n", &out, "250-mx.example");
	SAYS(s, "RCPT TO:<b@example.net>\r\n", &out,
	     "503 5.5.1 Error: need MAIL");
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_starttls_refused(void)
{
	struct smtp_session *s;
	struct buf out;

	buf_init(&out);
	/* not offered */
	s = smtp_session_new(&lim_smtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(say(s, "EHLO c\r\n", &out), SMTP_EV_NONE);
	CU_ASSERT(strstr(out.data, "STARTTLS") == NULL);
	SAYS(s, "STARTTLS\r\n", &out, "500 5.5.2");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out,
	     "503 5.5.1 Error: authentication not enabled");
	smtp_session_free(&s);
	/* LMTP has neither */
	s = smtp_session_new(&lim_lmtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	SAYS(s, "STARTTLS\r\n", &out, "500 5.5.2");
	smtp_session_free(&s);
	/* with an argument, or inside a transaction */
	s = smtp_session_new(&lim_tls, NULL, NULL);
	smtp_session_greeting(s, &out);
	SAYS(s, "STARTTLS now\r\n", &out, "501 5.5.4 Syntax: STARTTLS");
	SAYS(s, "EHLO c\r\n", &out, "250-");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out, "250 2.1.0");
	SAYS(s, "STARTTLS\r\n", &out, "503 5.5.1");
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_tls_and_auth_required(void)
{
	struct smtp_session *s;
	struct buf out;

	buf_init(&out);
	s = smtp_session_new(&lim_encrypt, "192.0.2.1", NULL);
	smtp_session_greeting(s, &out);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out,
	     "530 5.7.0 Must issue a STARTTLS command first");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out,
	     "538 5.7.11 Encryption required");
	CU_ASSERT_EQUAL(say(s, "STARTTLS\r\n", &out), SMTP_EV_STARTTLS);
	smtp_session_tls_started(s, TLS_DESC);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out,
	     "530 5.7.0 Authentication required");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out, "235 2.7.0");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out, "250 2.1.0");
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_auth_plain(void)
{
	static const char data[] = "RCPT TO:<b@example.net>\r\nDATA\r\n"
		"Subject: x\r\n\r\nx\r\n.\r\n";
	struct smtp_session *s;
	struct smtp_message m;
	struct buf out;

	buf_init(&out);
	s = tls_session(&lim_tls, &out);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	/* "\0joe\0wrong" */
	SAYS(s, "AUTH PLAIN AGpvZQB3cm9uZw==\r\n", &out,
	     "535 5.7.8 Error: authentication failed");
	SAYS(s, "AUTH PLAIN !!!!\r\n", &out, "501 5.5.2");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcH=\r\n", &out, "501 5.5.2");
	/* authzid "bob" acting for joe */
	SAYS(s, "AUTH PLAIN Ym9iAGpvZQBzM2NyZXQgcHc=\r\n", &out, "535 5.7.8");
	SAYS(s, "AUTH PLAIN AGxhdGVyAHg=\r\n", &out, "454 4.7.0");
	SAYS(s, "AUTH CRAM-MD5\r\n", &out, "504 5.5.4");
	SAYS(s, "AUTH PLAIN\r\n", &out, "334 ");
	SAYS(s, "*\r\n", &out, "501 5.7.0 Authentication aborted");
	SAYS(s, "AUTH PLAIN\r\n", &out, "334 ");
	SAYS(s, "AGpvZQBzM2NyZXQgcHc=\r\n", &out,
	     "235 2.7.0 Authentication successful");
	CU_ASSERT_STRING_EQUAL(smtp_session_auth_user(s), "joe");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out,
	     "503 5.5.1 Error: already authenticated");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out, "250 2.1.0");
	CU_ASSERT_EQUAL(say(s, data, &out), SMTP_EV_MESSAGE);
	smtp_session_message(s, &m);
	check_received(m.body);
	CU_ASSERT(strstr(m.body, "\r\n\t(using " TLS_DESC ")\r\n") != NULL);
	CU_ASSERT(strstr(m.body, "(postern) with ESMTPSA id ") != NULL);
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_auth_login(void)
{
	struct smtp_session *s;
	struct buf out;

	buf_init(&out);
	s = tls_session(&lim_tls, &out);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	SAYS(s, "AUTH LOGIN\r\n", &out, "334 VXNlcm5hbWU6");
	SAYS(s, "am9l\r\n", &out, "334 UGFzc3dvcmQ6");
	SAYS(s, "bm9wZQ==\r\n", &out, "535 5.7.8");
	SAYS(s, "AUTH LOGIN am9l\r\n", &out, "334 UGFzc3dvcmQ6");
	SAYS(s, "czNjcmV0IHB3\r\n", &out, "235 2.7.0");
	SAYS(s, "MAIL FROM:<a@b.c>\r\n", &out, "250 2.1.0");
	SAYS(s, "AUTH LOGIN\r\n", &out, "503 5.5.1");
	smtp_session_free(&s);
	buf_free(&out);
}

/* Without TLS, AUTH is offered only if the listener allows plaintext;
 * TLS then is not in the Received: protocol name. */
static void
test_ingress_smtp_auth_without_tls(void)
{
	struct smtp_session *s;
	struct smtp_message m;
	struct buf out;

	buf_init(&out);
	s = smtp_session_new(&lim_tls, NULL, NULL);
	smtp_session_greeting(s, &out);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out, "538 5.7.11");
	smtp_session_free(&s);
	s = smtp_session_new(&lim_auth_plain, NULL, NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(say(s, "EHLO c\r\n", &out), SMTP_EV_NONE);
	CU_ASSERT(strstr(out.data, "250-AUTH PLAIN LOGIN\r\n") != NULL);
	SAYS(s, "AUTH PLAIN AGpvZQBzM2NyZXQgcHc=\r\n", &out, "235 2.7.0");
	CU_ASSERT_EQUAL(say(s, "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
			    "DATA\r\nx\r\n.\r\n", &out), SMTP_EV_MESSAGE);
	smtp_session_message(s, &m);
	CU_ASSERT(strstr(m.body, "(postern) with ESMTPA id ") != NULL);
	CU_ASSERT(strstr(m.body, "(using") == NULL);
	smtp_session_free(&s);
	buf_free(&out);
}

/* Guessing passwords counts toward the error limit. */
static void
test_ingress_smtp_auth_failures_count(void)
{
	struct smtp_session *s;
	struct buf out;
	int i;

	buf_init(&out);
	s = tls_session(&lim_encrypt, &out);
	SAYS(s, "EHLO c\r\n", &out, "250-");
	for (i = 0; i < 3; i++)
		SAYS(s, "AUTH PLAIN AGpvZQB3cm9uZw==\r\n", &out, "535 5.7.8");
	CU_ASSERT_EQUAL(say(s, "AUTH PLAIN AGpvZQB3cm9uZw==\r\n", &out),
			SMTP_EV_CLOSE);
	CU_ASSERT(strstr(out.data, "535 5.7.8") != NULL);
	CU_ASSERT(strstr(out.data, "421 4.7.0") != NULL);
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_pauses_while_storing(void)
{
	static const char in[] = ENVELOPE "DATA\r\nx\r\n.\r\nNOOP\r\n";
	struct smtp_session *s;
	struct smtp_message m;
	struct buf out;
	size_t used, len, at;

	buf_init(&out);
	s = smtp_session_new(&lim_smtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(smtp_session_feed(s, in, sizeof(in) - 1, &used, &out),
			SMTP_EV_MESSAGE);
	at = strstr(in, ".\r\nNOOP") - in + 3;
	CU_ASSERT_EQUAL(used, at);
	smtp_session_message(s, &m);
	CU_ASSERT_STRING_EQUAL(m.sender, "a@example.org");
	CU_ASSERT_EQUAL(m.nrcpt, 1);
	CU_ASSERT_STRING_EQUAL(m.rcpts[0], "b@example.net");
	CU_ASSERT(strstr(m.body, "from client.example (unknown [unknown])")
		  != NULL);
	CU_ASSERT_EQUAL(m.body_len, strlen(m.body));
	len = out.len;
	CU_ASSERT_EQUAL(smtp_session_feed(s, in + at, sizeof(in) - 1 - at,
					  &used, &out), SMTP_EV_NONE);
	CU_ASSERT_EQUAL(used, 0);
	CU_ASSERT_EQUAL(out.len, len);
	CU_ASSERT_EQUAL(smtp_session_stored(s, SMTP_STORE_OK, "Q\r\n1", &out),
			SMTP_EV_NONE);
	CU_ASSERT(strstr(out.data, "250 2.0.0 Ok: queued as Q??1\r\n") != NULL);
	CU_ASSERT_EQUAL(smtp_session_feed(s, in + at, sizeof(in) - 1 - at,
					  &used, &out), SMTP_EV_NONE);
	CU_ASSERT_EQUAL(used, sizeof(in) - 1 - at);
	CU_ASSERT(strcmp(out.data + out.len - 14, "250 2.0.0 Ok\r\n") == 0);
	smtp_session_free(&s);
	smtp_session_free(&s);
	buf_free(&out);
}

/* Feed each part in one call (what one read brought) to a session with
 * forbid_unauth_pipelining; the replies after the 220, whether it closed. */
static bool
sync_feed(const char *const *parts, struct buf *out)
{
	static const struct smtp_limits lim = {
		.hostname = "mx.example", .forbid_unauth_pipelining = true,
		.now = fixed_now,
	};
	struct smtp_session *s = smtp_session_new(&lim, "192.0.2.1", NULL);
	enum smtp_event ev = SMTP_EV_NONE;
	size_t used, len, off;

	smtp_session_greeting(s, out);
	buf_reset(out);
	for (; *parts != NULL && ev != SMTP_EV_CLOSE; parts++) {
		len = strlen(*parts);
		for (off = 0; off < len && ev != SMTP_EV_CLOSE; off += used) {
			ev = smtp_session_feed(s, *parts + off, len - off,
					       &used, out);
			if (ev == SMTP_EV_MESSAGE)
				ev = smtp_session_stored(s, SMTP_STORE_OK,
							 "Q", out);
		}
	}
	smtp_session_free(&s);
	return ev == SMTP_EV_CLOSE;
}

/* RELIABILITY.md catalogue row 4 and H4: what must be answered first is
 * answered first; a client that does not wait is cut off. */
static void
test_ingress_smtp_unauth_pipelining(void)
{
	static const char *const ok[] = {
		"EHLO c\r\n", "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
		"RCPT TO:<g@e.f>\r\nDATA\r\n", "x\r\n.\r\nMAIL FROM:<a@b.c>"
		"\r\nRSET\r\nNOOP\r\n", NULL };
	static const char *const across_data[] = {
		"EHLO c\r\n", "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
		"DATA\r\nSubject: x\r\n\r\nRSET\r\n.\r\n", NULL };
	static const char *const after_ehlo[] = {
		"EHLO c\r\nMAIL FROM:<a@b.c>\r\n", NULL };
	static const char *const helo_only[] = {
		"HELO c\r\n", "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
		NULL };
	static const char *const noop[] = {
		"EHLO c\r\n", "NOOP\r\nNOOP\r\n", NULL };
	struct buf out;

	buf_init(&out);
	CU_ASSERT_FALSE(sync_feed(ok, &out));
	CU_ASSERT(strstr(out.data, "5.5.0") == NULL);
	CU_ASSERT(strstr(out.data, "354 ") != NULL);
	CU_ASSERT(strstr(out.data, "250 2.0.0 Ok: queued as Q\r\n") != NULL);
	buf_reset(&out);
	CU_ASSERT_TRUE(sync_feed(across_data, &out));
	CU_ASSERT(strstr(out.data, "354 ") == NULL);	/* DATA not run */
	CU_ASSERT(strstr(out.data, "queued") == NULL);
	CU_ASSERT(strstr(out.data, "250 2.1.5 Ok\r\n554 5.5.0 Error: SMTP "
			 "protocol synchronization\r\n") != NULL);
	buf_reset(&out);
	CU_ASSERT_TRUE(sync_feed(after_ehlo, &out));
	CU_ASSERT_STRING_EQUAL(out.data, "554 5.5.0 Error: SMTP protocol "
			       "synchronization\r\n");
	buf_reset(&out);
	CU_ASSERT_TRUE(sync_feed(helo_only, &out));
	CU_ASSERT(strstr(out.data, "250 mx.example\r\n554 5.5.0") != NULL);
	buf_reset(&out);
	CU_ASSERT_TRUE(sync_feed(noop, &out));
	CU_ASSERT(strstr(out.data, "554 5.5.0") != NULL);
	buf_free(&out);
}

static void
test_ingress_smtp_early_talker(void)
{
	struct smtp_session *s;
	struct buf out;
	size_t used;

	buf_init(&out);
	s = smtp_session_new(&lim_smtp, "192.0.2.1", NULL);
	CU_ASSERT_EQUAL(smtp_session_feed(s, "", 0, &used, &out),
			SMTP_EV_NONE);
	CU_ASSERT_EQUAL(smtp_session_feed(s, "EHLO x\r\n", 8, &used, &out),
			SMTP_EV_CLOSE);
	CU_ASSERT_EQUAL(used, 8);
	CU_ASSERT_STRING_EQUAL(out.data, "554 5.5.0 Error: SMTP protocol "
			       "synchronization\r\n");
	smtp_session_free(&s);
	buf_free(&out);
}

static void
test_ingress_smtp_timeout(void)
{
	static const char in[] = ENVELOPE "DATA\r\nx\r\n.\r\n";
	struct smtp_session *s;
	struct buf out;
	size_t used;

	buf_init(&out);
	s = smtp_session_new(&lim_smtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	buf_reset(&out);
	smtp_session_timeout(s, &out);
	CU_ASSERT_STRING_EQUAL(out.data, "421 4.4.2 mx.example Error: "
			       "timeout exceeded\r\n");
	CU_ASSERT_EQUAL(smtp_session_feed(s, "NOOP\r\n", 6, &used, &out),
			SMTP_EV_CLOSE);
	smtp_session_timeout(s, &out);
	CU_ASSERT_EQUAL(out.len, 46);
	smtp_session_free(&s);

	/* Timed out while the message was being stored: no reply. */
	s = smtp_session_new(&lim_smtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_EQUAL(smtp_session_feed(s, in, sizeof(in) - 1, &used, &out),
			SMTP_EV_MESSAGE);
	smtp_session_timeout(s, &out);
	buf_reset(&out);
	CU_ASSERT_EQUAL(smtp_session_stored(s, SMTP_STORE_OK, "Q", &out),
			SMTP_EV_CLOSE);
	CU_ASSERT_EQUAL(out.len, 0);
	smtp_session_free(&s);
	buf_free(&out);
}

/* The glue times the DATA phase as a whole by smtp_session_in_data():
 * true from the 354 to CRLF.CRLF however the data is split, false
 * while the message waits to be stored and after a timeout. */
static void
test_ingress_smtp_in_data_spans_the_data_phase(void)
{
	static const char env[] = ENVELOPE;
	struct smtp_session *s;
	struct buf out;
	size_t used;

	buf_init(&out);
	s = smtp_session_new(&lim_smtp, NULL, NULL);
	smtp_session_greeting(s, &out);
	CU_ASSERT_FALSE(smtp_session_in_data(s));
	CU_ASSERT_EQUAL(smtp_session_feed(s, env, sizeof(env) - 1, &used,
					  &out), SMTP_EV_NONE);
	CU_ASSERT_FALSE(smtp_session_in_data(s));
	CU_ASSERT_EQUAL(smtp_session_feed(s, "DATA\r\n", 6, &used, &out),
			SMTP_EV_NONE);
	CU_ASSERT_TRUE(smtp_session_in_data(s));
	/* complete lines inside the data do not end the phase */
	CU_ASSERT_EQUAL(smtp_session_feed(s, "a\r\nb\r", 5, &used, &out),
			SMTP_EV_NONE);
	CU_ASSERT_TRUE(smtp_session_in_data(s));
	CU_ASSERT_EQUAL(smtp_session_feed(s, "\n.\r\n", 4, &used, &out),
			SMTP_EV_MESSAGE);
	CU_ASSERT_FALSE(smtp_session_in_data(s));
	CU_ASSERT_EQUAL(smtp_session_stored(s, SMTP_STORE_OK, "Q", &out),
			SMTP_EV_NONE);
	CU_ASSERT_FALSE(smtp_session_in_data(s));
	CU_ASSERT_EQUAL(smtp_session_feed(s, env, sizeof(env) - 1, &used,
					  &out), SMTP_EV_NONE);
	CU_ASSERT_EQUAL(smtp_session_feed(s, "DATA\r\nx", 7, &used, &out),
			SMTP_EV_NONE);
	CU_ASSERT_TRUE(smtp_session_in_data(s));
	smtp_session_timeout(s, &out);
	CU_ASSERT_FALSE(smtp_session_in_data(s));
	smtp_session_free(&s);
	buf_free(&out);
}

/* One long, mixed script over many seeds: chunk boundaries anywhere,
 * including between CR and LF and inside ".\r\n". */
static void
test_ingress_smtp_chunking_is_invisible(void)
{
	static const struct smtp_case c = {
		"mixed script", NULL, IN(ENVELOPE "DATA\r\n..a\r\n.\r\n"
			"NOOP\r\nFOO\r\nMAIL FROM:<x@y.z> SIZE=10\r\n"
			"RCPT TO:<r1@x.y>\r\nRCPT TO:<reject@x.y>\r\nDATA\r\n"
			"Message-ID: <m@x>\r\n\r\n.\r.\r\n..\r\n.\r\n"
			"MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\nz\r\n"
			".\r\nQUIT\r\n"),
		OK4 "|250 2.0.0|250|500|250|250|550|354|550 5.5.2", true, 1,
		SMTP_STORE_OK,
	};
	struct smtp_case c2;
	struct got ref, g;
	uint32_t seed;

	run_case(&c, &ref);
	for (seed = 100; seed < 400; seed++) {
		run(&c, CH_RANDOM, seed, &g);
		CU_ASSERT(same_got(&ref, &g));
		got_free(&g);
	}
	got_free(&ref);
	c2 = c;
	c2.len = strstr(c.in, ".\r.\r\n") - c.in;
	c2.expect = OK4 "|250 2.0.0|250|500|250|250|550|354";
	c2.close = false;
	c2.nmsg = 1;
	run_case(&c2, NULL);
}

static CU_TestInfo ingress_smtp_tests[] = {
	{ "basic_transaction", test_ingress_smtp_basic_transaction },
	{ "simple_commands", test_ingress_smtp_simple_commands },
	{ "command_sequence", test_ingress_smtp_command_sequence },
	{ "mail_syntax", test_ingress_smtp_mail_syntax },
	{ "rcpt_syntax", test_ingress_smtp_rcpt_syntax },
	{ "mail_parameters", test_ingress_smtp_mail_parameters },
	{ "recipient_limit", test_ingress_smtp_recipient_limit },
	{ "duplicate_recipients", test_ingress_smtp_duplicate_recipients },
	{ "error_limit", test_ingress_smtp_error_limit },
	{ "http_verbs", test_ingress_smtp_http_verbs },
	{ "command_line_length", test_ingress_smtp_command_line_length },
	{ "bare_newline_in_command",
	  test_ingress_smtp_bare_newline_in_command },
	{ "eight_bit_command", test_ingress_smtp_eight_bit_command },
	{ "smuggling", test_ingress_smtp_smuggling },
	{ "dot_unstuffing", test_ingress_smtp_dot_unstuffing },
	{ "data_line_length", test_ingress_smtp_data_line_length },
	{ "message_size", test_ingress_smtp_message_size },
	{ "header_limits", test_ingress_smtp_header_limits },
	{ "nul_in_data", test_ingress_smtp_nul_in_data },
	{ "quit_and_close", test_ingress_smtp_quit_and_close },
	{ "lmtp_replies", test_ingress_smtp_lmtp_replies },
	{ "store_failures", test_ingress_smtp_store_failures },
	{ "message_id_generated_and_stable",
	  test_ingress_smtp_message_id_generated_and_stable },
	{ "message_id_kept", test_ingress_smtp_message_id_kept },
	{ "received_header_is_clean",
	  test_ingress_smtp_received_header_is_clean },
	{ "starttls_resets_session",
	  test_ingress_smtp_starttls_resets_session },
	{ "starttls_discards_pipelined_input",
	  test_ingress_smtp_starttls_discards_pipelined_input },
	{ "starttls_refused", test_ingress_smtp_starttls_refused },
	{ "tls_and_auth_required", test_ingress_smtp_tls_and_auth_required },
	{ "auth_plain", test_ingress_smtp_auth_plain },
	{ "auth_login", test_ingress_smtp_auth_login },
	{ "auth_without_tls", test_ingress_smtp_auth_without_tls },
	{ "auth_failures_count", test_ingress_smtp_auth_failures_count },
	{ "pauses_while_storing", test_ingress_smtp_pauses_while_storing },
	{ "unauth_pipelining", test_ingress_smtp_unauth_pipelining },
	{ "early_talker", test_ingress_smtp_early_talker },
	{ "timeout", test_ingress_smtp_timeout },
	{ "in_data spans the DATA phase",
	  test_ingress_smtp_in_data_spans_the_data_phase },
	{ "chunking_is_invisible", test_ingress_smtp_chunking_is_invisible },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "ingress_smtp", NULL, NULL, NULL, NULL, ingress_smtp_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
