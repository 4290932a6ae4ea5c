/*
 * fuzz_ccmail.c - the ccmail converter (src/ccmail_convert.c, GMime):
 * message parse, render, and the import file reader.
 *
 * Input: byte 0 picks the mode and the document charset, the rest is a
 * message (or, in import mode, an import file). Oracles: no sanitizer
 * report; a message that converts renders into an import file that the
 * strict reader accepts, with one item per message item.
 */
#include "fuzz.h"
#include "ccmail_convert.h"

#include <string.h>

static const char *const charsets[] = { "ISO-8859-1", "UTF-8" };

static void
convert(const char *raw, size_t len, const char *charset)
{
	struct ccmail_render_args a = {
		.from_name = "Doe, Jane at HQ", .to_name = "Roe, Rick at HQ",
		.base = "1a2b.0", .charset = charset,
	};
	struct ccmail_message *m = NULL;
	struct ccmail_doc *doc = NULL;
	struct ccmail_import *imp = NULL;
	char why[256];

	if (ccmail_message_parse(raw, len, &m, why, sizeof(why)) < 0) {
		FUZZ_CHECK(m == NULL);
		return;
	}
	FUZZ_CHECK(ccmail_render(m, &a, &doc, why, sizeof(why)) == 0);
	if (ccmail_import_parse(doc->text.data, doc->text.len, charset, &imp,
				why, sizeof(why)) < 0) {
		fprintf(stderr, "read back: %s\n", why);
		FUZZ_CHECK(!"the rendered import file reads back");
	}
	FUZZ_CHECK(imp->nitems == m->nitems);
	ccmail_import_free(&imp);
	ccmail_doc_free(&doc);
	ccmail_message_free(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ccmail_import *imp = NULL;
	char why[256];
	char *copy;

	if (size < 1)
		return 0;
	ccmail_convert_init();
	copy = malloc(size);	/* exact size, for ASan */
	if (copy == NULL)
		abort();
	memcpy(copy, data + 1, size - 1);
	if (data[0] & 2) {
		if (ccmail_import_parse(copy, size - 1, charsets[data[0] & 1],
					&imp, why, sizeof(why)) == 0)
			ccmail_import_free(&imp);
		FUZZ_CHECK(imp == NULL);
	} else {
		convert(copy, size - 1, charsets[data[0] & 1]);
	}
	free(copy);
	return 0;
}
