/*
 * fuzz_smtp.c - the SMTP/LMTP session (src/ingress_smtp.c): command parser
 * and DATA state machine, fed in chunks the input decides.
 *
 * Input: byte 0 options (LMTP, small limits, the store's answer, a
 * refusing rcpt_ok / storage_ok, a timeout while the message is being
 * stored, forbid_unauth_pipelining), byte 1 chunk size class, bytes 2-3 seed of the
 * chunk sizes, then the client's bytes. Oracles:
 * - chunking changes nothing: the session fed in random chunks gives the
 *   same replies and messages as one fed a byte at a time (unless
 *   forbid_unauth_pipelining is on, which judges by the chunks);
 * - in the byte-at-a-time session, once a 354 went out, nothing happens
 *   until the reference scanner's CRLF.CRLF, and something (a message or
 *   a refusal) happens exactly there: no smuggling (RELIABILITY.md H7);
 * - every reply line is "DDD[ -]..." with CRLF, no other CR or LF, at most
 *   512 octets;
 * - a message has CRLF line ends only and no NUL, and its sender and
 *   recipients pass smtp_path_ok(); relayed through the smtp_client's
 *   builder, its command lines are clean and the dot-stuffed data ends
 *   only at the final CRLF.CRLF.
 */
#include "fuzz.h"
#include "ingress_smtp.h"
#include "smtp_client.h"

#include <stdbool.h>
#include <string.h>

struct run {
	struct buf transcript;	/* every reply, in order */
	struct buf messages;	/* every message's envelope and body */
	unsigned nmsg;
};

static time_t
fixed_now(void)
{
	return 1700000000;
}

static int
rcpt_ok(void *arg, const char *addr)
{
	(void)arg;
	return addr[0] != 'x';
}

/* SIZE= of 1000000 or more: the store cannot take mail at all (421 and
 * close); of 100000 or more: no room for this one (452). */
static int
storage_ok(void *arg, size_t size, const char **why_r)
{
	(void)arg;
	if (size >= 1000000) {
		*why_r = "store full";
		return -1;
	}
	return size < 100000;
}

/* Lines that end in CRLF, no other CR or LF. If reply, each is a reply
 * line of at most 512 octets. */
static void
check_lines(const char *p, size_t n, bool reply)
{
	size_t start = 0, i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			FUZZ_CHECK(i + 1 < n && p[i + 1] == '\n');
			if (reply) {
				FUZZ_CHECK(i + 2 - start <= 512);
				FUZZ_CHECK(i - start >= 3);
				FUZZ_CHECK(p[start] >= '2' && p[start] <= '5');
				FUZZ_CHECK(p[start + 1] >= '0' &&
					   p[start + 1] <= '9');
				FUZZ_CHECK(p[start + 2] >= '0' &&
					   p[start + 2] <= '9');
				FUZZ_CHECK(i - start == 3 ||
					   p[start + 3] == ' ' ||
					   p[start + 3] == '-');
			}
			i++;
			start = i + 1;
		} else {
			FUZZ_CHECK(p[i] != '\n');
		}
	}
	FUZZ_CHECK(start == n);
}

/* Where "\r\n.\r\n" first ends at or after from (index of its '\n'), or
 * (size_t)-1. from points at the CRLF that precedes the data. */
static size_t
ref_data_end(const char *p, size_t n, size_t from)
{
	for (size_t i = from; i + 5 <= n; i++)
		if (memcmp(p + i, "\r\n.\r\n", 5) == 0)
			return i + 4;
	return (size_t)-1;
}

/* The relay side: what smtp_client would send for this message. */
static void
check_relay(const struct smtp_message *m)
{
	struct buf out;
	size_t i, end;

	buf_init(&out);
	FUZZ_CHECK(smtp_mail_line(&out, m->sender, m->body_len) == 0);
	for (i = 0; i < m->nrcpt; i++)
		FUZZ_CHECK(smtp_rcpt_line(&out, m->rcpts[i]) == 0);
	check_lines(out.data, out.len, false);
	buf_reset(&out);
	buf_append(&out, "\r\n", 2);	/* the DATA command's line end */
	smtp_dot_stuff(&out, m->body, m->body_len);
	check_lines(out.data, out.len, false);
	end = ref_data_end(out.data, out.len, 0);
	FUZZ_CHECK(end == out.len - 1);
	buf_free(&out);
}

static void
check_message(struct smtp_session *s, struct run *r)
{
	struct smtp_message m;
	size_t i;

	smtp_session_message(s, &m);
	FUZZ_CHECK(m.nrcpt > 0);
	FUZZ_CHECK(memchr(m.body, '\0', m.body_len) == NULL);
	check_lines(m.body, m.body_len, false);
	FUZZ_CHECK(smtp_path_ok(m.sender) == 0);
	for (i = 0; i < m.nrcpt; i++)
		FUZZ_CHECK(smtp_path_ok(m.rcpts[i]) == 0);
	FUZZ_CHECK(m.msgid != NULL && strchr(m.msgid, '\r') == NULL &&
		   strchr(m.msgid, '\n') == NULL);
	check_relay(&m);
	buf_printf(&r->messages, "<%s>", m.sender);
	for (i = 0; i < m.nrcpt; i++)
		buf_printf(&r->messages, " <%s>", m.rcpts[i]);
	buf_printf(&r->messages, " %s %zu\n", m.msgid, m.body_len);
	buf_append(&r->messages, m.body, m.body_len);
	r->nmsg++;
}

/* Move out to the transcript after checking it; true if it said 354. */
static bool
take(struct buf *out, struct run *r)
{
	bool go = false;

	check_lines(out->data, out->len, true);
	for (size_t i = 0; i + 4 <= out->len; i++)
		if ((i == 0 || out->data[i - 1] == '\n') &&
		    memcmp(out->data + i, "354 ", 4) == 0)
			go = true;
	buf_append(&r->transcript, out->data, out->len);
	buf_reset(out);
	return go;
}

/* Feed p[0..n) until used or closed; true once closed. */
static bool
feed(struct smtp_session *s, const char *p, size_t n,
     enum smtp_store_result res, struct buf *out, struct run *r, int *ev_r,
     bool timeout)
{
	enum smtp_event ev;
	size_t used;

	*ev_r = 0;
	while (n > 0) {
		ev = smtp_session_feed(s, p, n, &used, out);
		FUZZ_CHECK(used <= n);
		p += used;
		n -= used;
		if (ev == SMTP_EV_CLOSE)
			return true;
		if (ev == SMTP_EV_MESSAGE) {
			*ev_r = 1;
			check_message(s, r);
			if (timeout)	/* the client went quiet meanwhile */
				smtp_session_timeout(s, out);
			if (smtp_session_stored(s, res, "1A2B", out) ==
			    SMTP_EV_CLOSE)
				return true;
		} else {
			FUZZ_CHECK(n == 0);
		}
	}
	return false;
}

static bool
same(const struct buf *x, const struct buf *y)
{
	return x->len == y->len &&
	       (x->len == 0 || memcmp(x->data, y->data, x->len) == 0);
}

static uint32_t
xorshift(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void
run_chunks(const struct smtp_limits *lim, enum smtp_store_result res,
	   bool timeout, unsigned cls, uint32_t seed, const char *p, size_t n,
	   struct run *r)
{
	static const size_t maxchunk[] = { 1, 8, 64, 1 << 20 };
	struct smtp_session *s = smtp_session_new(lim, "192.0.2.1",
						  "client.example");
	struct buf out;
	size_t pos = 0, len;
	int ev;

	buf_init(&out);
	smtp_session_greeting(s, &out);
	take(&out, r);
	seed |= 1;
	while (pos < n) {
		len = 1 + xorshift(&seed) % maxchunk[cls & 3];
		if (len > n - pos)
			len = n - pos;
		if (feed(s, p + pos, len, res, &out, r, &ev, timeout)) {
			take(&out, r);
			break;
		}
		take(&out, r);
		pos += len;
	}
	buf_free(&out);
	smtp_session_free(&s);
}

/* A byte at a time, against the reference scanner. */
static void
run_bytes(const struct smtp_limits *lim, enum smtp_store_result res,
	  bool timeout, const char *p, size_t n, struct run *r)
{
	struct smtp_session *s = smtp_session_new(lim, "192.0.2.1",
						  "client.example");
	struct buf out;
	size_t i, data_end = (size_t)-1;
	bool closed = false;
	int ev;

	buf_init(&out);
	smtp_session_greeting(s, &out);
	take(&out, r);
	for (i = 0; i < n && !closed; i++) {
		closed = feed(s, p + i, 1, res, &out, r, &ev, timeout);
		if (data_end != (size_t)-1 && i < data_end) {
			FUZZ_CHECK(out.len == 0 && !closed && ev == 0);
			continue;
		}
		if (data_end != (size_t)-1) {	/* i == data_end */
			FUZZ_CHECK(out.len > 0 || ev == 1);
			data_end = (size_t)-1;
		}
		if (take(&out, r)) {
			FUZZ_CHECK(i >= 1 && p[i - 1] == '\r' && p[i] == '\n');
			data_end = ref_data_end(p, n, i - 1);
		}
	}
	take(&out, r);
	buf_free(&out);
	smtp_session_free(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_limits lim = {
		.hostname = "mx.example", .now = fixed_now,
	};
	enum smtp_store_result res;
	struct run a, b;
	const char *p = (const char *)data + 4;
	size_t n;

	if (size < 4)
		return 0;
	n = size - 4;
	lim.lmtp = data[0] & 1;
	if (data[0] & 2) {
		lim.max_message_size = 300;
		lim.max_recipients = 3;
		lim.max_errors = 3;
	}
	res = (enum smtp_store_result)((data[0] >> 2) & 3);
	if (data[0] & 16)
		lim.rcpt_ok = rcpt_ok;
	if (data[0] & 32)
		lim.storage_ok = storage_ok;
	lim.forbid_unauth_pipelining = data[0] & 128;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	buf_init(&a.transcript);
	buf_init(&a.messages);
	buf_init(&b.transcript);
	buf_init(&b.messages);
	run_chunks(&lim, res, data[0] & 64, data[1],
		   (uint32_t)data[2] << 8 | data[3], p, n, &a);
	run_bytes(&lim, res, data[0] & 64, p, n, &b);
	FUZZ_CHECK(a.nmsg == b.nmsg || lim.forbid_unauth_pipelining);
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%u messages, %zu reply bytes\n", a.nmsg,
			a.transcript.len);
	FUZZ_CHECK(lim.forbid_unauth_pipelining ||
		   (same(&a.transcript, &b.transcript) &&
		    same(&a.messages, &b.messages)));
	buf_free(&a.transcript);
	buf_free(&a.messages);
	buf_free(&b.transcript);
	buf_free(&b.messages);
	return 0;
}
