/*
 * ccmail_convert.c - MIME message -> cc:Mail-style import document, and
 * back (postern-ccmail(5)).
 *
 * Owns:    struct ccmail_message, ccmail_doc, ccmail_import and all they
 *          point to; the GMime objects of one parse, which are created,
 *          used and unreferenced inside ccmail_message_parse().
 * Threads: any, after ccmail_convert_init(). GMime's GObjects are not
 *          thread-safe, so none escapes a call: the result is copied into
 *          plain memory. Its charset and iconv helpers are thread-safe.
 *          The parser options are made per call, never the shared default.
 *
 * Rendering works on UTF-8 lines and converts each one to the document
 * charset on its own, so a stateful charset is back in its initial state
 * at every CRLF and a byte that starts a line means what it says.
 */
#include "ccmail_convert.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <iconv.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

/* Every GObject class the converter meets, in one message. */
static const char warm_up[] =
	"From: A <a@b.example>\r\nTo: g: c@d.example;\r\n"
	"Date: Sun, 22 Nov 2026 14:05:00 +0100\r\nSubject: =?UTF-8?Q?x?=\r\n"
	"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
	"\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n"
	"\r\n--c\r\nContent-Type: text/plain\r\n\r\nt\r\n--c--\r\n"
	"--b\r\nContent-Type: application/octet-stream; name=a\r\n"
	"Content-Transfer-Encoding: base64\r\n\r\nAA==\r\n--b\r\n"
	"Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\nz\r\n"
	"--b--\r\n";

/* GLib creates a type's class the first time it is used, under its own
 * locks, which TSan cannot see (GLib is not instrumented). Using every
 * class here, inside pthread_once, makes the workers' first use plainly
 * ordered after their creation. */
static void
gmime_init_once(void)
{
	struct ccmail_message *m = NULL;
	char why[CCMAIL_WHY_LEN];

	g_mime_init();
	if (ccmail_message_parse(warm_up, sizeof(warm_up) - 1, &m, why,
				 sizeof(why)) < 0)
		panic("ccmail: GMime cannot parse its warm-up message: %s",
		      why);
	ccmail_message_free(&m);
}

void
ccmail_convert_init(void)
{
	if (pthread_once(&gmime_once, gmime_init_once) != 0)
		panic("ccmail: pthread_once failed");
}

/* --- small helpers ------------------------------------------------------ */

/* A copy of s (NULL: "") with control characters as blanks, trimmed. */
static char *
clean_value(const char *s)
{
	char *out, *p, *end;

	out = xstrdup(s == NULL ? "" : s);
	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	for (p = out; *p == ' '; p++)
		;
	memmove(out, p, strlen(p) + 1);
	end = out + strlen(out);
	while (end > out && end[-1] == ' ')
		*--end = '\0';
	return out;
}

/* Bytes in the UTF-8 sequence that starts with c (1 for a stray byte). */
static size_t
utf8_len(unsigned char c)
{
	if (c >= 0xf0 && c < 0xf8)
		return 4;
	if (c >= 0xe0)
		return c < 0xf0 ? 3 : 1;
	if (c >= 0xc0)
		return 2;
	return 1;
}

/* A safe attachment title from a MIME file name: no directory part, no
 * control or reserved characters, no leading dot, at most
 * CCMAIL_TITLE_MAX bytes cut at a character boundary. Caller frees. */
static char *
safe_title(const char *name, size_t n)
{
	const char *base = name == NULL ? "" : name, *p;
	char *out;
	size_t len, cut = 0;

	for (p = base; *p != '\0'; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	out = clean_value(base);
	for (char *q = out; *q != '\0'; q++)
		if (strchr("\"*:<>?|", *q) != NULL)
			*q = '_';
	if (out[0] == '.')
		out[0] = '_';
	len = strlen(out);
	while (cut < len) {
		size_t c = utf8_len((unsigned char)out[cut]);

		if (cut + c > CCMAIL_TITLE_MAX)
			break;
		cut += c;
	}
	out[cut < len ? cut : len] = '\0';
	while ((len = strlen(out)) > 0 &&
	       (out[len - 1] == ' ' || out[len - 1] == '.'))
		out[len - 1] = '\0';
	if (out[0] == '\0') {
		free(out);
		out = xmalloc(32);
		snprintf(out, 32, "ATTACH%zu.DAT", n);
	}
	return out;
}

/* --- parsing the message (GMime) ---------------------------------------- */

/* One parse in progress. */
struct walk {
	struct ccmail_message *m;	/* being filled */
	size_t cap;
	bool lost;			/* a critical parser issue */
	char why[CCMAIL_WHY_LEN];
};

static void
on_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
	   gpointer user)
{
	struct walk *w = user;

	/* Content after these is not where GMime can find it. */
	if (code != GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY &&
	    code != GMIME_CRIT_NESTING_OVERFLOW &&
	    code != GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT)
		return;
	if (!w->lost)
		snprintf(w->why, sizeof(w->why), "%s at byte %" PRId64 "%s%s",
			 code == GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY ?
			 "multipart without boundary" :
			 code == GMIME_CRIT_NESTING_OVERFLOW ?
			 "MIME nesting too deep" :
			 "MIME part without headers or content",
			 (int64_t)offset, item == NULL ? "" : ": ",
			 item == NULL ? "" : "(value omitted)");
	w->lost = true;
}

static struct ccmail_item *
add_item(struct walk *w, enum ccmail_item_kind kind)
{
	struct ccmail_message *m = w->m;

	if (m->nitems == w->cap) {
		w->cap = w->cap == 0 ? 4 : w->cap * 2;
		m->items = xrealloc(m->items, w->cap * sizeof(*m->items));
	}
	memset(&m->items[m->nitems], 0, sizeof(m->items[0]));
	m->items[m->nitems].kind = kind;
	return &m->items[m->nitems++];
}

/* The decoded bytes of a leaf part into an owned copy. */
static unsigned char *
part_bytes(GMimePart *part, size_t *len_r)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	GMimeStream *mem;
	GByteArray *ba;
	unsigned char *out;

	*len_r = 0;
	if (dw == NULL)
		return xmalloc(1);
	mem = g_mime_stream_mem_new();
	g_mime_data_wrapper_write_to_stream(dw, mem);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	out = xmalloc(ba->len + 1);
	if (ba->len > 0)	/* an empty GByteArray's data is NULL */
		memcpy(out, ba->data, ba->len);
	*len_r = ba->len;
	g_object_unref(mem);
	return out;
}

/* The serialized bytes of any object (an attached message). */
static unsigned char *
object_bytes(GMimeObject *obj, size_t *len_r)
{
	GMimeStream *mem = g_mime_stream_mem_new();
	GByteArray *ba;
	unsigned char *out;

	g_mime_object_write_to_stream(obj, NULL, mem);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	out = xmalloc(ba->len + 1);
	if (ba->len > 0)	/* an empty GByteArray's data is NULL */
		memcpy(out, ba->data, ba->len);
	*len_r = ba->len;
	g_object_unref(mem);
	return out;
}

/* Inline text/plain without a file name is text; the rest is a file. */
static bool
is_body_text(GMimeObject *obj)
{
	GMimeContentDisposition *cd;

	if (!GMIME_IS_TEXT_PART(obj) ||
	    !g_mime_content_type_is_type(g_mime_object_get_content_type(obj),
					 "text", "plain"))
		return false;
	cd = g_mime_object_get_content_disposition(obj);
	if (cd != NULL && g_mime_content_disposition_is_attachment(cd))
		return false;
	return g_mime_part_get_filename(GMIME_PART(obj)) == NULL;
}

static void
add_text(struct walk *w, GMimeTextPart *tp)
{
	char *text = g_mime_text_part_get_text(tp);
	struct ccmail_item *it;

	if (text == NULL || *text == '\0') {
		g_free(text);	/* no content: no item */
		return;
	}
	it = add_item(w, CCMAIL_ITEM_TEXT);
	it->len = strlen(text);
	it->data = xmemdup(text, it->len + 1);
	g_free(text);
}

static void
add_file(struct walk *w, GMimeObject *obj)
{
	struct ccmail_item *it = add_item(w, CCMAIL_ITEM_FILE);
	size_t n = w->m->nitems;

	if (GMIME_IS_PART(obj)) {
		it->title = safe_title(g_mime_part_get_filename(
					       GMIME_PART(obj)), n);
		it->data = part_bytes(GMIME_PART(obj), &it->len);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(
			GMIME_MESSAGE_PART(obj));
		char name[32];

		snprintf(name, sizeof(name), "MESSAGE%zu.EML", n);
		it->title = xstrdup(name);
		it->data = inner == NULL ? xmalloc(1) :
			   object_bytes(GMIME_OBJECT(inner), &it->len);
	} else {
		it->title = safe_title(NULL, n);
		it->data = object_bytes(obj, &it->len);
	}
}

static void walk_object(struct walk *w, GMimeObject *obj);

/* multipart/alternative: its text/plain if it has one, else its last
 * (richest) part. */
static void
walk_alternative(struct walk *w, GMimeMultipart *mp)
{
	int n = g_mime_multipart_get_count(mp);

	for (int i = 0; i < n; i++) {
		GMimeObject *sub = g_mime_multipart_get_part(mp, i);

		if (is_body_text(sub)) {
			walk_object(w, sub);
			return;
		}
	}
	if (n > 0)
		walk_object(w, g_mime_multipart_get_part(mp, n - 1));
}

static void
walk_object(struct walk *w, GMimeObject *obj)
{
	if (obj == NULL)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		GMimeContentType *ct = g_mime_object_get_content_type(obj);

		if (g_mime_content_type_is_type(ct, "multipart",
						"alternative")) {
			walk_alternative(w, mp);
			return;
		}
		for (int i = 0; i < g_mime_multipart_get_count(mp); i++)
			walk_object(w, g_mime_multipart_get_part(mp, i));
	} else if (is_body_text(obj)) {
		add_text(w, GMIME_TEXT_PART(obj));
	} else {
		add_file(w, obj);
	}
}

/* "a@b, c@d": the list as text, or "" */
static char *
list_text(InternetAddressList *l)
{
	char *s, *out;

	if (l == NULL || internet_address_list_length(l) == 0)
		return xstrdup("");
	s = internet_address_list_to_string(l, NULL, FALSE);
	out = clean_value(s);
	g_free(s);
	return out;
}

static void
fill_headers(struct ccmail_message *m, GMimeMessage *msg)
{
	InternetAddressList *from = g_mime_message_get_from(msg);
	InternetAddress *ia = NULL;
	GDateTime *dt = g_mime_message_get_date(msg);

	if (from != NULL && internet_address_list_length(from) > 0)
		ia = internet_address_list_get_address(from, 0);
	m->from = clean_value(ia != NULL && INTERNET_ADDRESS_IS_MAILBOX(ia) ?
		internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia))
		: NULL);
	m->subject = clean_value(g_mime_message_get_subject(msg));
	m->msgid = clean_value(g_mime_message_get_message_id(msg));
	m->to = list_text(g_mime_message_get_to(msg));
	m->cc = list_text(g_mime_message_get_cc(msg));
	if (dt != NULL) {
		char *s = g_date_time_format(dt, "%m/%d/%Y %H:%M");

		m->date = clean_value(s);
		g_free(s);
	} else {
		m->date = xstrdup("");
	}
}

int
ccmail_message_parse(const void *raw, size_t len,
		     struct ccmail_message **msg_r, char *why, size_t whylen)
{
	static const char *fallback[] = { "UTF-8", "ISO-8859-1", NULL };
	struct walk w = { .m = xcalloc(1, sizeof(*w.m)) };
	GMimeParserOptions *opt = g_mime_parser_options_new();
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(raw, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(st);
	GMimeMessage *msg;
	int rc = -1;

	/* Not the locale's: the same bytes always convert the same way. */
	g_mime_parser_options_set_fallback_charsets(opt, fallback);
	g_mime_parser_options_set_warning_callback(opt, on_warning, &w);
	msg = g_mime_parser_construct_message(parser, opt);
	if (msg == NULL) {
		snprintf(why, whylen, "not an RFC 5322 message");
	} else {
		fill_headers(w.m, msg);
		walk_object(&w, g_mime_message_get_mime_part(msg));
		if (w.lost)
			snprintf(why, whylen, "%s", w.why);
		else
			rc = 0;
		g_object_unref(msg);
	}
	g_object_unref(parser);
	g_object_unref(st);
	g_mime_parser_options_free(opt);
	if (rc < 0)
		ccmail_message_free(&w.m);
	*msg_r = w.m;
	return rc;
}

void
ccmail_message_free(struct ccmail_message **mp)
{
	struct ccmail_message *m = *mp;

	*mp = NULL;
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nitems; i++) {
		free(m->items[i].title);
		free(m->items[i].data);
	}
	free(m->items);
	free(m->from);
	free(m->subject);
	free(m->date);
	free(m->msgid);
	free(m->to);
	free(m->cc);
	free(m);
}

/* --- rendering ---------------------------------------------------------- */

/* A UTF-8 sequence of k bytes at s (k <= left) is well-formed in shape. */
static size_t
skip_len(const char *s, size_t left)
{
	size_t k = utf8_len((unsigned char)s[0]);

	if (k > left)
		return 1;
	for (size_t i = 1; i < k; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			return 1;
	return k;
}

/* iconv_open(to, from) into *cd_r: 0, or -1 with nothing to close.
 * gcc 12's -fanalyzer takes iconv_open()'s failure value (iconv_t)-1 for
 * an allocation and calls it leaked on the failure path; only here, not
 * in every caller (make analyze, .ci/analyze). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static int
conv_open(iconv_t *cd_r, const char *to, const char *from)
{
	iconv_t cd = iconv_open(to, from);

	if (cd == (iconv_t)-1)
		return -1;
	*cd_r = cd;
	return 0;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Return cd to its initial state, appending the bytes that takes. */
static void
conv_reset(iconv_t cd, struct buf *out)
{
	char tmp[64], *o = tmp;
	size_t oleft = sizeof(tmp);

	iconv(cd, NULL, NULL, &o, &oleft);
	buf_append(out, tmp, sizeof(tmp) - oleft);
}

/* Append UTF-8 s[0..n) converted by cd; a character cd cannot convert
 * (or a byte that is not UTF-8) becomes one '?'. Ends in the initial
 * shift state. */
static void
conv_append(iconv_t cd, struct buf *out, const char *s, size_t n)
{
	char tmp[4096], *in = (char *)s, *o;
	size_t inleft = n, oleft, r, k;

	while (inleft > 0) {
		o = tmp;
		oleft = sizeof(tmp);
		r = iconv(cd, &in, &inleft, &o, &oleft);
		buf_append(out, tmp, sizeof(tmp) - oleft);
		if (r != (size_t)-1 || errno == E2BIG)
			continue;
		conv_reset(cd, out);
		buf_append(out, "?", 1);
		k = skip_len(in, inleft);
		in += k;
		inleft -= k;
	}
	conv_reset(cd, out);
}

int
ccmail_charset_check(const char *charset, char *why, size_t whylen)
{
	char ascii[0x7f - 0x20 + 2];
	struct buf b;
	iconv_t cd;
	int rc;

	if (conv_open(&cd, charset, "UTF-8") < 0) {
		snprintf(why, whylen, "charset \"%s\" is not known to iconv",
			 charset);
		return -1;
	}
	for (int c = 0x20; c < 0x7f; c++)
		ascii[c - 0x20] = (char)c;
	ascii[0x7f - 0x20] = '\r';
	ascii[0x7f - 0x20 + 1] = '\n';
	buf_init(&b);
	conv_append(cd, &b, ascii, sizeof(ascii));
	iconv_close(cd);
	rc = b.len == sizeof(ascii) && memcmp(b.data, ascii, b.len) == 0 ?
	     0 : -1;
	buf_free(&b);
	if (rc < 0)
		snprintf(why, whylen, "charset \"%s\" does not write ASCII as "
			 "ASCII", charset);
	return rc;
}

/* A line that an importer could take for a field: a letter, then
 * letters, digits, blanks, '-' or '_', then ':'. */
static bool
looks_like_field(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !((s[0] >= 'A' && s[0] <= 'Z') ||
			(s[0] >= 'a' && s[0] <= 'z')))
		return false;
	for (i = 1; i < n; i++) {
		char c = s[i];

		if (c == ':')
			return true;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == ' ' || c == '-' ||
		      c == '_'))
			return false;
	}
	return false;
}

struct out {
	iconv_t cd;
	struct buf *b;
	struct buf line;	/* scratch, UTF-8 */
};

/* Convert the UTF-8 line s[0..n) and end it with CRLF. */
static void
put_line(struct out *o, const char *s, size_t n)
{
	conv_append(o->cd, o->b, s, n);
	buf_append(o->b, "\r\n", 2);
}

static void
put_field(struct out *o, const char *name, const char *value)
{
	buf_reset(&o->line);
	buf_append_str(&o->line, name);
	buf_append(&o->line, ":", 1);
	if (value != NULL && *value != '\0') {
		buf_append(&o->line, " ", 1);
		buf_append_str(&o->line, value);
	}
	put_line(o, o->line.data, o->line.len);
}

/* One text line: control characters but TAB become '?' (a CTRL-Z would
 * end the file for a DOS reader), then a '\' goes in front if the line
 * starts with '\' or looks like a field. */
static void
put_text_line(struct out *o, const char *s, size_t n)
{
	buf_reset(&o->line);
	if (n > 0 && (s[0] == '\\' || looks_like_field(s, n)))
		buf_append(&o->line, "\\", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			c = '?';
		buf_append(&o->line, &c, 1);
	}
	put_line(o, o->line.data == NULL ? "" : o->line.data, o->line.len);
}

/* Lines of a text: split at LF, a CR before the LF dropped; a last line
 * without LF counts too. */
static size_t
count_lines(const char *s, size_t n)
{
	size_t lines = 0;

	for (size_t i = 0; i < n; i++)
		if (s[i] == '\n')
			lines++;
	return n > 0 && s[n - 1] != '\n' ? lines + 1 : lines;
}

static void
put_text(struct out *o, const struct ccmail_item *it)
{
	const char *s = (const char *)it->data, *end = s + it->len, *nl;
	char head[48];

	snprintf(head, sizeof(head), "Text item: %zu",
		 count_lines(s, it->len));
	put_line(o, head, strlen(head));
	while (s < end) {
		size_t n;

		nl = memchr(s, '\n', (size_t)(end - s));
		n = nl == NULL ? (size_t)(end - s) : (size_t)(nl - s);
		put_text_line(o, s, n > 0 && s[n - 1] == '\r' ? n - 1 : n);
		s += nl == NULL ? n : n + 1;
	}
}

static void
put_file(struct out *o, struct ccmail_doc *doc, const struct ccmail_item *it,
	 const char *base)
{
	struct ccmail_file *f = &doc->files[doc->nfiles];
	size_t namelen = strlen(base) + 32;

	f->name = xmalloc(namelen);
	snprintf(f->name, namelen, "%s.%zu.att", base, doc->nfiles + 1);
	f->item = it;
	doc->nfiles++;
	buf_reset(&o->line);
	buf_printf(&o->line, "File item: %s %zu %s", f->name, it->len,
		   it->title);
	put_line(o, o->line.data, o->line.len);
}

static void
render_headers(struct out *o, const struct ccmail_message *m,
	       const struct ccmail_render_args *a)
{
	put_line(o, "Message:", 8);
	put_field(o, "From", a->from_name);
	put_field(o, "To", a->to_name);
	if (*m->date != '\0')
		put_field(o, "Date", m->date);
	put_field(o, "Subject", m->subject);
	if (*m->msgid != '\0')
		put_field(o, "X-Message-ID", m->msgid);
	if (*m->to != '\0')
		put_field(o, "X-Original-To", m->to);
	if (*m->cc != '\0')
		put_field(o, "X-Original-Cc", m->cc);
	put_field(o, "X-Postern-Id", a->base);
}

int
ccmail_render(const struct ccmail_message *m,
	      const struct ccmail_render_args *a, struct ccmail_doc **doc_r,
	      char *why, size_t whylen)
{
	struct ccmail_doc *doc;
	struct out o;
	char head[48];

	if (ccmail_charset_check(a->charset, why, whylen) < 0 ||
	    conv_open(&o.cd, a->charset, "UTF-8") < 0)
		return -1;
	doc = xcalloc(1, sizeof(*doc));
	doc->files = xcalloc(m->nitems + 1, sizeof(*doc->files));
	buf_init(&doc->text);
	o.b = &doc->text;
	buf_init(&o.line);
	render_headers(&o, m, a);
	snprintf(head, sizeof(head), "Contents: %zu", m->nitems);
	put_line(&o, head, strlen(head));
	for (size_t i = 0; i < m->nitems; i++) {
		if (m->items[i].kind == CCMAIL_ITEM_TEXT)
			put_text(&o, &m->items[i]);
		else
			put_file(&o, doc, &m->items[i], a->base);
	}
	buf_free(&o.line);
	iconv_close(o.cd);
	*doc_r = doc;
	return 0;
}

void
ccmail_doc_free(struct ccmail_doc **dp)
{
	struct ccmail_doc *doc = *dp;

	*dp = NULL;
	if (doc == NULL)
		return;
	for (size_t i = 0; i < doc->nfiles; i++)
		free(doc->files[i].name);
	free(doc->files);
	buf_free(&doc->text);
	free(doc);
}

/* --- reading an import file back ---------------------------------------- */

struct reader {
	const char *p, *end;
	iconv_t cd;
	struct buf line;	/* the current line, UTF-8, NUL-terminated */
	unsigned lineno;
	char *why;
	size_t whylen;
};

/* Next CRLF-terminated line into r->line. 1, 0 at the end, -1 error. */
static int
next_line(struct reader *r)
{
	const char *nl;
	char tmp[4096], *in, *o;
	size_t inleft, oleft;

	if (r->p == r->end)
		return 0;
	r->lineno++;
	nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	if (nl == NULL || nl == r->p || nl[-1] != '\r') {
		snprintf(r->why, r->whylen, "line %u: does not end in CRLF",
			 r->lineno);
		return -1;
	}
	buf_reset(&r->line);
	buf_append(&r->line, "", 0);
	in = (char *)r->p;
	inleft = (size_t)(nl - 1 - r->p);
	r->p = nl + 1;
	while (inleft > 0) {
		o = tmp;
		oleft = sizeof(tmp);
		if (iconv(r->cd, &in, &inleft, &o, &oleft) == (size_t)-1 &&
		    errno != E2BIG) {
			snprintf(r->why, r->whylen, "line %u: not valid in the "
				 "document charset", r->lineno);
			return -1;
		}
		buf_append(&r->line, tmp, sizeof(tmp) - oleft);
	}
	if (memchr(r->line.data, '\0', r->line.len) != NULL) {
		snprintf(r->why, r->whylen, "line %u: contains NUL", r->lineno);
		return -1;
	}
	return 1;
}

/* "Name: value" or "Name:" into *name_r / *value_r (pointers into s,
 * which is changed). false if s is not a field. */
static bool
split_field(char *s, char **name_r, char **value_r)
{
	char *colon;

	if (!looks_like_field(s, strlen(s)))
		return false;
	colon = strchr(s, ':');
	if (colon == NULL)	/* looks_like_field() saw one: never */
		return false;
	if (colon[1] != '\0' && (colon[1] != ' ' || colon[2] == '\0'))
		return false;
	*colon = '\0';
	*name_r = s;
	*value_r = colon[1] == '\0' ? colon + 1 : colon + 2;
	return true;
}

static bool
parse_count(const char *s, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*s == '\0' || strlen(s) > 15)
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*v_r = v;
	return v <= max;
}

static int
fail_at(struct reader *r, const char *what)
{
	snprintf(r->why, r->whylen, "line %u: %s", r->lineno, what);
	return -1;
}

/* The fields from "Message:" up to and including "Contents: N". */
static int
read_fields(struct reader *r, struct ccmail_import *imp, uint64_t *n_r)
{
	char *name, *value;
	size_t cap = 0;

	if (next_line(r) != 1 || strcmp(r->line.data, "Message:") != 0)
		return r->why[0] != '\0' ? -1 : fail_at(r, "no \"Message:\"");
	for (;;) {
		if (next_line(r) != 1)
			return r->why[0] != '\0' ? -1 :
			       fail_at(r, "no \"Contents:\"");
		if (!split_field(r->line.data, &name, &value))
			return fail_at(r, "not a field");
		if (strcmp(name, "Contents") == 0)
			break;
		if (strcmp(name, "From") != 0 && strcmp(name, "To") != 0 &&
		    strcmp(name, "Cc") != 0 && strcmp(name, "Date") != 0 &&
		    strcmp(name, "Subject") != 0 &&
		    strncmp(name, "X-", 2) != 0)
			return fail_at(r, "unknown field");
		if (imp->nfields == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			imp->fields = xrealloc(imp->fields,
					       cap * sizeof(*imp->fields));
		}
		imp->fields[imp->nfields].name = xstrdup(name);
		imp->fields[imp->nfields].value = xstrdup(value);
		imp->nfields++;
	}
	if (!parse_count(value, 1000000, n_r))
		return fail_at(r, "bad \"Contents:\" count");
	if (ccmail_import_field(imp, "From") == NULL ||
	    ccmail_import_field(imp, "To") == NULL)
		return fail_at(r, "no \"From:\" or no \"To:\" before it");
	return 0;
}

static int
read_text(struct reader *r, const char *count, struct ccmail_import_item *it)
{
	struct buf text;
	uint64_t n;
	int rc = -1;

	if (!parse_count(count, UINT64_MAX >> 4, &n))
		return fail_at(r, "bad \"Text item:\" count");
	buf_init(&text);
	buf_append(&text, "", 0);
	for (uint64_t i = 0; i < n; i++) {
		const char *s;

		if (next_line(r) != 1) {
			if (r->why[0] == '\0')
				fail_at(r, "text ends early");
			goto out;
		}
		s = r->line.data;
		if (*s == '\\') {
			s++;
		} else if (looks_like_field(s, strlen(s))) {
			fail_at(r, "unescaped text line looks like a field");
			goto out;
		}
		buf_append_str(&text, s);
		buf_append(&text, "\n", 1);
	}
	it->kind = CCMAIL_ITEM_TEXT;
	it->text = xstrdup(text.data);
	rc = 0;
out:
	buf_free(&text);
	return rc;
}

static bool
is_file_name(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
			return false;
	return true;
}

/* "<file> <size> <title>" */
static int
read_file_item(struct reader *r, char *v, struct ccmail_import_item *it)
{
	char *sp1 = strchr(v, ' '), *sp2;
	uint64_t size;

	if (sp1 == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
	    sp2[1] == '\0')
		return fail_at(r, "\"File item:\" needs file, size, title");
	*sp1 = *sp2 = '\0';
	if (!is_file_name(v, strlen(v)) ||
	    !parse_count(sp1 + 1, UINT64_MAX >> 4, &size))
		return fail_at(r, "bad \"File item:\" file name or size");
	it->kind = CCMAIL_ITEM_FILE;
	it->file = xstrdup(v);
	it->size = size;
	it->title = xstrdup(sp2 + 1);
	return 0;
}

static int
read_items(struct reader *r, struct ccmail_import *imp, uint64_t n)
{
	char *name, *value;

	imp->items = xcalloc(n + 1, sizeof(*imp->items));
	for (uint64_t i = 0; i < n; i++) {
		struct ccmail_import_item *it = &imp->items[i];

		if (next_line(r) != 1)
			return r->why[0] != '\0' ? -1 :
			       fail_at(r, "fewer items than \"Contents:\" says");
		if (!split_field(r->line.data, &name, &value))
			return fail_at(r, "not an item");
		if (strcmp(name, "Text item") == 0) {
			if (read_text(r, value, it) < 0)
				return -1;
		} else if (strcmp(name, "File item") == 0) {
			if (read_file_item(r, value, it) < 0)
				return -1;
		} else {
			return fail_at(r, "not \"Text item:\" or \"File item:\"");
		}
		imp->nitems++;
	}
	if (r->p != r->end)
		return fail_at(r, "bytes after the last item");
	return 0;
}

int
ccmail_import_parse(const char *data, size_t len, const char *charset,
		    struct ccmail_import **imp_r, char *why, size_t whylen)
{
	struct ccmail_import *imp;
	struct reader r = { .p = data, .end = data + len, .why = why,
			    .whylen = whylen };
	uint64_t n;
	int rc = -1;

	why[0] = '\0';
	if (conv_open(&r.cd, "UTF-8", charset) < 0) {
		snprintf(why, whylen, "charset \"%s\" is not known", charset);
		return -1;
	}
	imp = xcalloc(1, sizeof(*imp));
	buf_init(&r.line);
	if (read_fields(&r, imp, &n) == 0 && read_items(&r, imp, n) == 0)
		rc = 0;
	buf_free(&r.line);
	iconv_close(r.cd);
	if (rc < 0)
		ccmail_import_free(&imp);
	*imp_r = imp;
	return rc;
}

const char *
ccmail_import_field(const struct ccmail_import *imp, const char *name)
{
	for (size_t i = 0; i < imp->nfields; i++)
		if (strcasecmp(imp->fields[i].name, name) == 0)
			return imp->fields[i].value;
	return NULL;
}

void
ccmail_import_free(struct ccmail_import **ip)
{
	struct ccmail_import *imp = *ip;

	*ip = NULL;
	if (imp == NULL)
		return;
	for (size_t i = 0; i < imp->nfields; i++) {
		free(imp->fields[i].name);
		free(imp->fields[i].value);
	}
	for (size_t i = 0; i < imp->nitems; i++) {
		free(imp->items[i].text);
		free(imp->items[i].file);
		free(imp->items[i].title);
	}
	free(imp->fields);
	free(imp->items);
	free(imp);
}
