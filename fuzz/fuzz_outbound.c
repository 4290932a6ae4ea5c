/*
 * fuzz_outbound.c - the smtp_client's outbound builders (src/smtp_client.c):
 * MAIL FROM / RCPT TO lines and dot-stuffing, on arbitrary values.
 *
 * Input: sender NUL rcpt NUL ... NUL NUL body. Oracles: a command line is
 * built only for a value smtp_path_ok() accepts, and then it is exactly
 * one CRLF-terminated line; the dot-stuffed body has no CR or LF outside
 * a CRLF, its data ends only at the final CRLF.CRLF, and un-stuffing it
 * gives back the body with stray CR/LF as spaces (RELIABILITY.md H7, H8).
 */
#include "fuzz.h"
#include "smtp_client.h"

#include <stdbool.h>
#include <string.h>

/* One line, CRLF at the end and nowhere else. */
static void
check_one_line(const struct buf *b, size_t from)
{
	const char *p = b->data + from;
	size_t n = b->len - from;

	FUZZ_CHECK(n >= 2 && memcmp(p + n - 2, "\r\n", 2) == 0);
	FUZZ_CHECK(memchr(p, '\r', n - 2) == NULL);
	FUZZ_CHECK(memchr(p, '\n', n - 2) == NULL);
	FUZZ_CHECK(memchr(p, '\0', n) == NULL);
	FUZZ_CHECK(n <= 512);
}

static void
check_path(const char *addr)
{
	struct buf b;
	bool ctl = strpbrk(addr, "\r\n<>") != NULL;
	int ok = smtp_path_ok(addr);

	FUZZ_CHECK(!ctl || ok < 0);
	buf_init(&b);
	FUZZ_CHECK(smtp_mail_line(&b, addr, 1000) == ok);
	FUZZ_CHECK(ok == 0 || b.len == 0);
	if (ok == 0)
		check_one_line(&b, 0);
	buf_reset(&b);
	FUZZ_CHECK(smtp_rcpt_line(&b, addr) == ok);
	FUZZ_CHECK(ok == 0 || b.len == 0);
	if (ok == 0)
		check_one_line(&b, 0);
	buf_free(&b);
}

/* What the peer must read back: body, stray CR/LF as spaces, ending in
 * CRLF unless empty. */
static void
expected(const char *p, size_t n, struct buf *want)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
			buf_append(want, "\r\n", 2);
			i++;
		} else if (p[i] == '\r' || p[i] == '\n') {
			buf_append(want, " ", 1);
		} else {
			buf_append(want, p + i, 1);
		}
	}
	if (want->len > 0 && (want->len < 2 ||
	    memcmp(want->data + want->len - 2, "\r\n", 2) != 0))
		buf_append(want, "\r\n", 2);
}

/* The receiving side of RFC 5321 4.5.2, with lines split at CRLF only. */
static void
check_body(const char *p, size_t n)
{
	struct buf out, got, want;
	size_t i = 0, e;
	bool end = false;

	buf_init(&out);
	buf_init(&got);
	buf_init(&want);
	smtp_dot_stuff(&out, p, n);
	while (i < out.len) {
		FUZZ_CHECK(!end);
		for (e = i; e + 1 < out.len && !(out.data[e] == '\r' &&
		     out.data[e + 1] == '\n'); e++)
			FUZZ_CHECK(out.data[e] != '\r' && out.data[e] != '\n');
		FUZZ_CHECK(e + 1 < out.len);
		if (e - i == 1 && out.data[i] == '.') {
			end = true;
		} else {
			size_t s = i + (out.data[i] == '.');

			buf_append(&got, out.data + s, e + 2 - s);
		}
		i = e + 2;
	}
	FUZZ_CHECK(end);
	expected(p, n, &want);
	FUZZ_CHECK(got.len == want.len &&
		   (got.len == 0 || memcmp(got.data, want.data, got.len) == 0));
	buf_free(&out);
	buf_free(&got);
	buf_free(&want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1), *p, *end;

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	end = copy + size;
	for (p = copy; p < end && *p != '\0'; p += strlen(p) + 1)
		check_path(p);
	if (p < end)
		p++;		/* the empty field before the body */
	if (p > end)
		p = end;	/* the last field ran to the end */
	check_body(p, (size_t)(end - p));
	free(copy);
	return 0;
}
