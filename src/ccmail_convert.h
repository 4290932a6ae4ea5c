/*
 * ccmail_convert.h - RFC 5322/MIME message -> cc:Mail-style import
 * document, and an import file back into its fields and items. The
 * format is defined in postern-ccmail(5).
 *
 * Pure: no files, no configuration. Three steps:
 *   ccmail_message_parse()  raw message -> struct ccmail_message (GMime)
 *   ccmail_render()         message + names -> struct ccmail_doc (bytes)
 *   ccmail_import_parse()   import file bytes -> struct ccmail_import
 *
 * Threads: any, once ccmail_convert_init() has returned. GMime objects
 * live only inside one ccmail_message_parse() call and never leave it, so
 * no GMime object is ever seen by two threads; every result here is plain
 * memory owned by the caller.
 */
#ifndef POSTERN_CCMAIL_CONVERT_H
#define POSTERN_CCMAIL_CONVERT_H

#include "lib/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Longest attachment title written (bytes of UTF-8, before conversion). */
#define CCMAIL_TITLE_MAX	100
/* Reasons (error texts) fit in this. */
#define CCMAIL_WHY_LEN		200

enum ccmail_item_kind {
	CCMAIL_ITEM_TEXT = 1,
	CCMAIL_ITEM_FILE,
};

/* One item of a message's contents; everything owned by the message. */
struct ccmail_item {
	enum ccmail_item_kind kind;
	char *title;		/* FILE: safe file name (UTF-8); TEXT: NULL */
	unsigned char *data;	/* TEXT: UTF-8 text; FILE: decoded bytes */
	size_t len;
};

/* A parsed message. Strings are UTF-8 with control characters replaced
 * by blanks, never NULL ("" when absent), all owned by the message. */
struct ccmail_message {
	char *from;		/* address of the first From: mailbox */
	char *subject;
	char *date;		/* "MM/DD/YYYY HH:MM" in the sender's zone */
	char *msgid;
	char *to;		/* the To: and Cc: header lists, as text */
	char *cc;
	struct ccmail_item *items;	/* owned array */
	size_t nitems;
};

/* Make GMime usable: g_mime_init() exactly once per process (pthread_once),
 * so any thread may call this, any number of times. GMime is never shut
 * down: the process exit releases it. */
void
ccmail_convert_init(void);

/*
 * Parse the message raw[0..len) (CRLF or LF line ends). Text parts become
 * TEXT items (converted to UTF-8 from their charset), every other leaf
 * part a FILE item with its decoded bytes. Returns 0 with the message in
 * *msg_r (caller frees with ccmail_message_free()), or -1 when the
 * message cannot be converted without losing content; then why holds a
 * reason for a 5.6.0 reply. ccmail_convert_init() must have run.
 */
int
ccmail_message_parse(const void *raw, size_t len,
		     struct ccmail_message **msg_r, char *why, size_t whylen);

/* Free *msg and set *msg to NULL; NULL does nothing. */
void
ccmail_message_free(struct ccmail_message **msg);

/* What one import document is for. All borrowed for the call. */
struct ccmail_render_args {
	const char *from_name;	/* cc:Mail name, or the sender's address */
	const char *to_name;	/* the one recipient's cc:Mail name */
	const char *base;	/* stem of the file names: [0-9a-z.]+ */
	const char *charset;	/* of the document, e.g. "ISO-8859-1" */
};

/* An attachment file to write beside the import file. */
struct ccmail_file {
	char *name;			/* owned: "<base>.<n>.att" */
	const struct ccmail_item *item;	/* borrowed from the message */
};

/* The import file's bytes and its attachment files. */
struct ccmail_doc {
	struct buf text;		/* owned */
	struct ccmail_file *files;	/* owned array */
	size_t nfiles;
};

/*
 * Render m for one recipient. Characters that charset cannot hold become
 * '?' (one per character). Returns 0 with *doc_r (caller frees with
 * ccmail_doc_free(); it borrows items from m, so m must outlive it), or
 * -1 with why (unknown or not ASCII-compatible charset).
 */
int
ccmail_render(const struct ccmail_message *m,
	      const struct ccmail_render_args *a, struct ccmail_doc **doc_r,
	      char *why, size_t whylen);

/* Free *doc and set *doc to NULL; NULL does nothing. */
void
ccmail_doc_free(struct ccmail_doc **doc);

/* 0 if charset exists in iconv and writes printable ASCII, CR and LF as
 * themselves (the format's keywords must stay readable); -1 with why. */
int
ccmail_charset_check(const char *charset, char *why, size_t whylen);

/* One header field of an import file, owned by the struct ccmail_import. */
struct ccmail_field {
	char *name;
	char *value;		/* UTF-8 */
};

struct ccmail_import_item {
	enum ccmail_item_kind kind;
	char *text;		/* TEXT: lines joined with "\n", UTF-8 */
	char *file;		/* FILE: sibling file name */
	uint64_t size;		/* FILE: its size in bytes */
	char *title;		/* FILE: UTF-8 */
};

/* An import file read back; everything owned by it. */
struct ccmail_import {
	struct ccmail_field *fields;	/* in file order */
	size_t nfields;
	struct ccmail_import_item *items;
	size_t nitems;
};

/*
 * Read an import file data[0..len) written in charset. Strict: anything
 * postern-ccmail(5) does not allow (a missing CRLF, an unescaped line
 * that looks like a field, a wrong count, trailing bytes) fails. Returns
 * 0 with *imp_r (caller frees with ccmail_import_free()), or -1 with why.
 */
int
ccmail_import_parse(const char *data, size_t len, const char *charset,
		    struct ccmail_import **imp_r, char *why, size_t whylen);

/* The value of the first field called name (ASCII case ignored), borrowed
 * from imp, or NULL. */
const char *
ccmail_import_field(const struct ccmail_import *imp, const char *name);

/* Free *imp and set *imp to NULL; NULL does nothing. */
void
ccmail_import_free(struct ccmail_import **imp);

#endif
