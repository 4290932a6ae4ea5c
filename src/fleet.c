/*
 * fleet.c - ledger export as JSON lines, and the fleet-wide audit of
 * several exports (fleet.h).
 *
 * Owns:    the temporary bucket files of one fleet_verify() call.
 * Threads: the caller's only.
 * Format:  lmdb-schema/ledger.md (the records), man/postern.1 (the
 *          export's lines).
 */
#include "fleet.h"
#include "ledger.h"
#include "ledger_json.h"
#include "store_private.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 256

/* --- export ---------------------------------------------------------------- */

static char *
b64(const unsigned char *p, size_t len)
{
	char *s = xmalloc(4 * ((len + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)s, p, (int)len);
	return s;
}

/* The line of one record: what audit --json prints, and the store id,
 * the chain hashes and the stored bytes. The fleet audit rebuilds it
 * from "raw" and compares. */
static json_t *
export_json(const struct ledger_rec *rec, const unsigned char *raw,
	    size_t len, const char *store_id)
{
	json_t *o = ledger_json(rec);
	unsigned char h[32];
	char hex[65], *enc;

	ledger_sha256(raw, len, h);
	enc = b64(raw, len);
	json_object_set_new(o, "store_id", json_string(store_id));
	json_object_set_new(o, "prev_sha256",
			    json_string(ledger_hex(rec->prev_hash, hex)));
	json_object_set_new(o, "record_sha256",
			    json_string(ledger_hex(h, hex)));
	json_object_set_new(o, "raw", json_string(enc));
	free(enc);
	return o;
}

struct export {
	struct store *st;
	FILE *out;
	const char *store_id;
	uint64_t head;		/* stop after this record */
	uint64_t n;
	bool failed;		/* out could not be written */
};

static int
export_fn(const struct ledger_rec *rec, const unsigned char *raw,
	  size_t len, void *arg)
{
	struct export *e = arg;
	json_t *o;
	char *line;

	if (rec->seq > e->head)
		return 1;
	o = export_json(rec, raw, len, e->store_id);
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (line == NULL || fprintf(e->out, "%s\n", line) < 0) {
		free(line);
		e->failed = true;
		return 1;
	}
	free(line);
	/* The map's pages read so far need not stay in our RSS. */
	if (++e->n % 10000 == 0)
		store_map_trim(e->st);
	return 0;
}

int
fleet_export(struct store *st, uint64_t since, FILE *out, uint64_t *n_r,
	     const char **error_r)
{
	unsigned char head[32];
	char id[17], hex[65];
	struct export e = { st, out, id, 0, 0, false };
	json_t *o;
	char *line;
	int rc;

	*n_r = 0;
	snprintf(id, sizeof(id), "%016" PRIx64, store_id(st));
	/* The head first: what the daemon appends meanwhile is left for
	 * the next export (--since the head + 1). */
	if ((rc = ledger_head(st, &e.head, head, error_r)) != STORE_OK)
		return rc;
	if ((rc = ledger_foreach_raw(st, since > 0 ? since : 1, export_fn, &e,
				     error_r)) != STORE_OK)
		return rc;
	o = json_object();
	json_object_set_new(o, "store_id", json_string(id));
	json_object_set_new(o, "head_seq", json_integer((json_int_t)e.head));
	json_object_set_new(o, "head_sha256",
			    json_string(ledger_hex(head, hex)));
	json_object_set_new(o, "since", json_integer(
		(json_int_t)(since > 0 ? since : 1)));
	json_object_set_new(o, "records", json_integer((json_int_t)e.n));
	line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (e.failed || line == NULL || fprintf(out, "%s\n", line) < 0 ||
	    fflush(out) != 0) {
		free(line);
		snprintf(store_errbuf(), STORE_ERRBUF_LEN,
			 "cannot write the export: %s", strerror(errno));
		*error_r = store_errbuf();
		return STORE_ERR;
	}
	free(line);
	*n_r = e.n;
	return STORE_OK;
}

/* --- verify ---------------------------------------------------------------- */

/* One delivered record, filed in a bucket by its key. */
struct entry {
	unsigned char key[16];	/* SHA-256 of Message-ID, recipient,
				   received digest: the first 16 bytes */
	uint32_t inst;		/* index in the instance table */
	uint32_t file;		/* index in paths */
	uint64_t seq;
	uint64_t off;		/* the line's offset in its file */
};

struct vstate {
	char *const *paths;
	FILE *out;
	struct fleet_report *r;
	FILE *bucket[NBUCKETS];
	char (*ids)[17];	/* instances' store ids */
	size_t nids;
};

static void
problem(struct vstate *v, size_t file, const char *id, uint64_t seq,
	const char *fmt, const char *what)
{
	v->r->problems++;
	if (seq != 0)
		fprintf(v->out, "%s (instance %s): record %" PRIu64 ": ",
			v->paths[file], id[0] ? id : "?", seq);
	else
		fprintf(v->out, "%s (instance %s): ", v->paths[file],
			id[0] ? id : "?");
	fprintf(v->out, fmt, what);
	fputc('\n', v->out);
}

static uint32_t
instance_of(struct vstate *v, const char *id)
{
	for (size_t i = 0; i < v->nids; i++)
		if (strcmp(v->ids[i], id) == 0)
			return (uint32_t)i;
	v->ids = xrealloc(v->ids, (v->nids + 1) * sizeof(*v->ids));
	snprintf(v->ids[v->nids], sizeof(v->ids[0]), "%s", id);
	v->r->instances++;
	return (uint32_t)v->nids++;
}

/* Base64 into a new buffer; -1 if it is not base64. */
static ssize_t
unb64(const char *s, unsigned char **out_r)
{
	size_t len = strlen(s);
	unsigned char *p;
	int n;

	*out_r = NULL;
	if (len % 4 != 0)
		return -1;
	p = xmalloc(len / 4 * 3 + 1);
	n = EVP_DecodeBlock(p, (const unsigned char *)s, (int)len);
	if (n < 0) {
		free(p);
		return -1;
	}
	if (len > 0 && s[len - 1] == '=')
		n--;
	if (len > 1 && s[len - 2] == '=')
		n--;
	*out_r = p;
	return n;
}

static bool
hex_is(const char *hex, const unsigned char h[32])
{
	char buf[65];

	return hex != NULL && strcmp(hex, ledger_hex(h, buf)) == 0;
}

static void
entry_key(const struct ledger_rec *rec, unsigned char key[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[32];
	unsigned int n = 32;
	char c;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, rec->msgid, strlen(rec->msgid) + 1) != 1)
		panic("fleet: SHA-256 failed");
	for (const char *p = rec->rcpt; ; p++) {
		c = (char)tolower((unsigned char)*p);
		if (EVP_DigestUpdate(ctx, &c, 1) != 1)
			panic("fleet: SHA-256 failed");
		if (*p == '\0')
			break;
	}
	if (EVP_DigestUpdate(ctx, rec->received_sha, 32) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &n) != 1)
		panic("fleet: SHA-256 failed");
	EVP_MD_CTX_free(ctx);
	memcpy(key, md, 16);
}

/* One export file. */
static int
verify_file(struct vstate *v, size_t file, const char **error_r)
{
	FILE *f = fopen(v->paths[file], "r");
	char id[17] = "", *line = NULL;
	size_t cap = 0;
	ssize_t len;
	uint64_t off = 0, lineno = 0, expect = 0, last = 0;
	unsigned char prev[32];
	bool have_prev = false, headed = false;
	uint32_t inst = 0;

	if (f == NULL) {
		snprintf(store_errbuf(), STORE_ERRBUF_LEN, "%s: %s",
			 v->paths[file], strerror(errno));
		*error_r = store_errbuf();
		return -1;
	}
	v->r->exports++;
	for (; (len = getline(&line, &cap, f)) > 0; off += (uint64_t)len) {
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)len, 0, &je), *want;
		const char *sid = json_string_value(json_object_get(o,
							"store_id"));
		const char *raw_s = json_string_value(json_object_get(o,
							"raw"));
		struct ledger_rec rec;
		unsigned char *raw = NULL, h[32];
		ssize_t rlen;
		MDB_val mv;
		char lbuf[32];

		lineno++;
		if (o == NULL || !json_is_object(o) || sid == NULL ||
		    strlen(sid) != 16) {
			snprintf(lbuf, sizeof(lbuf), "%" PRIu64, lineno);
			problem(v, file, id, 0, "line %s: not an export line "
				"(no JSON object with a store_id)", lbuf);
			json_decref(o);
			continue;
		}
		if (id[0] == '\0') {
			snprintf(id, sizeof(id), "%s", sid);
			inst = instance_of(v, id);
		} else if (strcmp(id, sid) != 0) {
			problem(v, file, id, 0, "a line of another instance "
				"(%s) in the middle of the export", sid);
			json_decref(o);
			continue;
		}
		if (headed) {
			problem(v, file, id, 0, "%s", "lines after the head "
				"line");
			json_decref(o);
			break;
		}
		if (raw_s == NULL) {
			/* The head line. */
			json_int_t hs = json_integer_value(json_object_get(o,
							"head_seq"));
			const char *hh = json_string_value(json_object_get(o,
							"head_sha256"));

			headed = true;
			snprintf(lbuf, sizeof(lbuf), "%" PRIu64, (uint64_t)hs);
			if (last != 0 && (uint64_t)hs != last)
				problem(v, file, id, last, "the head line names "
					"record %s as the last", lbuf);
			else if (last != 0 && !hex_is(hh, prev))
				problem(v, file, id, last, "%s", "does not "
					"match the head's hash (tampered or "
					"corrupt)");
			json_decref(o);
			continue;
		}
		v->r->records++;
		rlen = unb64(raw_s, &raw);
		mv.mv_data = raw;
		mv.mv_size = rlen > 0 ? (size_t)rlen : 0;
		memset(&rec, 0, sizeof(rec));
		rec.seq = (uint64_t)json_integer_value(json_object_get(o,
							"seq"));
		if (rlen <= 0 || ledger_rec_decode(&mv, &rec) < 0) {
			problem(v, file, id, rec.seq, "%s", "raw is not a "
				"ledger record");
			free(raw);
			json_decref(o);
			have_prev = false;
			continue;
		}
		if (expect != 0 && rec.seq != expect)
			problem(v, file, id, rec.seq, "%s", "out of sequence "
				"(records missing or reordered)");
		ledger_sha256(raw, (size_t)rlen, h);
		if (have_prev && memcmp(rec.prev_hash, prev, 32) != 0)
			problem(v, file, id, rec.seq, "%s", "does not chain "
				"to the record before it (tampered or "
				"corrupt)");
		else if (!have_prev && rec.seq == 1 &&
			 memcmp(rec.prev_hash, (unsigned char[32]){ 0 },
				32) != 0)
			problem(v, file, id, rec.seq, "%s", "the first record "
				"chains to something");
		/* Every field as the exporter would write it from raw. */
		want = export_json(&rec, raw, (size_t)rlen, id);
		if (!json_equal(want, o))
			problem(v, file, id, rec.seq, "%s", "its fields differ "
				"from its raw record (tampered)");
		json_decref(want);
		memcpy(prev, h, 32);
		have_prev = true;
		last = rec.seq;
		expect = rec.seq + 1;
		if (rec.kind == LEDGER_RESUBMISSION)
			v->r->resubmissions++;
		if (rec.kind == LEDGER_DELIVERED) {
			struct entry e;

			memset(&e, 0, sizeof(e));
			entry_key(&rec, e.key);
			e.inst = inst;
			e.file = (uint32_t)file;
			e.seq = rec.seq;
			e.off = off;
			if (fwrite(&e, sizeof(e), 1, v->bucket[e.key[0]]) != 1)
				panic("fleet: cannot write a temporary file");
		}
		free(raw);
		json_decref(o);
	}
	free(line);
	if (ferror(f)) {
		snprintf(store_errbuf(), STORE_ERRBUF_LEN, "%s: %s",
			 v->paths[file], strerror(errno));
		*error_r = store_errbuf();
		fclose(f);
		return -1;
	}
	fclose(f);
	if (!headed)
		problem(v, file, id, 0, "%s", "no head line at the end "
			"(truncated?)");
	return 0;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = memcmp(x->key, y->key, sizeof(x->key));

	if (c != 0)
		return c;
	if (x->inst != y->inst)
		return x->inst < y->inst ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The record at off in file, decoded from its raw field. */
static int
reread(struct vstate *v, const struct entry *e, struct ledger_rec *rec)
{
	FILE *f = fopen(v->paths[e->file], "r");
	char *line = NULL;
	size_t cap = 0;
	json_t *o = NULL;
	unsigned char *raw = NULL;
	ssize_t n;
	MDB_val mv;
	int rc = -1;

	if (f != NULL && fseeko(f, (off_t)e->off, SEEK_SET) == 0 &&
	    getline(&line, &cap, f) > 0 &&
	    (o = json_loads(line, 0, NULL)) != NULL &&
	    (n = unb64(json_string_value(json_object_get(o, "raw")) ?: "x",
		       &raw)) > 0) {
		mv.mv_data = raw;
		mv.mv_size = (size_t)n;
		if (ledger_rec_decode(&mv, rec) == 0)
			rc = 0;
		rec->seq = e->seq;
	}
	free(raw);
	json_decref(o);
	free(line);
	if (f != NULL)
		fclose(f);
	return rc;
}

/* A run of entries with one key: distinct (instance, record) pairs
 * (overlapping exports of one store list a record twice). */
static void
report_run(struct vstate *v, const struct entry *run, size_t n)
{
	struct ledger_rec rec;
	size_t copies = 1;
	bool across = false;
	char q[STORE_QID_STRLEN], t[64];

	for (size_t i = 1; i < n; i++)
		if (run[i].inst != run[i - 1].inst ||
		    run[i].seq != run[i - 1].seq) {
			copies++;
			across = across || run[i].inst != run[0].inst;
		}
	if (copies < 2)
		return;
	v->r->twice++;
	if (reread(v, &run[0], &rec) < 0)
		memset(&rec, 0, sizeof(rec));
	fprintf(v->out, "delivered %zu times: %s to <%s>%s\n", copies,
		rec.msgid[0] ? rec.msgid : "(no Message-ID)", rec.rcpt,
		across ? " by different instances (the home MTA handed it "
		"to each: a retry after a lost reply that went to another "
		"instance, which a per-instance resubmission index cannot "
		"see)" : " by one instance (sent again after its "
		"resubmit_window, with the index off, or queued twice "
		"before it)");
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && run[i].inst == run[i - 1].inst &&
		    run[i].seq == run[i - 1].seq)
			continue;
		if (reread(v, &run[i], &rec) < 0) {
			fprintf(v->out, "  instance %s record %" PRIu64
				" (cannot be read again)\n",
				v->ids[run[i].inst], run[i].seq);
			continue;
		}
		fmt_iso(rec.done_us, t, sizeof(t));
		fprintf(v->out, "  instance %s queue id %s record %" PRIu64
			" delivered %s (%s)\n", v->ids[run[i].inst],
			store_qid_str(rec.qid, q), run[i].seq, t,
			v->paths[run[i].file]);
	}
}

/* One bucket: sorted in memory, runs of one key reported. */
static int
scan_bucket(struct vstate *v, FILE *b, const char **error_r)
{
	long size;
	size_t n, i, j;
	struct entry *e;

	if (fflush(b) != 0 || fseek(b, 0, SEEK_END) != 0 ||
	    (size = ftell(b)) < 0 || fseek(b, 0, SEEK_SET) != 0) {
		snprintf(store_errbuf(), STORE_ERRBUF_LEN, "temporary file: "
			 "%s", strerror(errno));
		*error_r = store_errbuf();
		return -1;
	}
	n = (size_t)size / sizeof(*e);
	if (n == 0)
		return 0;
	e = xmalloc(n * sizeof(*e));
	if (fread(e, sizeof(*e), n, b) != n) {
		free(e);
		snprintf(store_errbuf(), STORE_ERRBUF_LEN, "temporary file: "
			 "short read");
		*error_r = store_errbuf();
		return -1;
	}
	qsort(e, n, sizeof(*e), entry_cmp);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && memcmp(e[j].key, e[i].key, 16) == 0;
		     j++)
			;
		v->r->delivered++;
		for (size_t k = i + 1; k < j; k++)
			if (e[k].inst != e[k - 1].inst ||
			    e[k].seq != e[k - 1].seq)
				v->r->delivered++;
		if (j - i > 1)
			report_run(v, &e[i], j - i);
	}
	free(e);
	return 0;
}

int
fleet_verify(char *const *paths, size_t n, FILE *out,
	     struct fleet_report *r, const char **error_r)
{
	struct vstate v = { paths, out, r, { NULL }, NULL, 0 };
	int rc = 0;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < NBUCKETS; i++)
		if ((v.bucket[i] = tmpfile()) == NULL) {
			snprintf(store_errbuf(), STORE_ERRBUF_LEN,
				 "temporary file: %s", strerror(errno));
			*error_r = store_errbuf();
			rc = -1;
			goto out;
		}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = verify_file(&v, i, error_r);
	for (size_t i = 0; i < NBUCKETS && rc == 0; i++)
		rc = scan_bucket(&v, v.bucket[i], error_r);
out:
	for (size_t i = 0; i < NBUCKETS; i++)
		if (v.bucket[i] != NULL)
			fclose(v.bucket[i]);
	free(v.ids);
	if (rc < 0)
		return -1;
	return r->problems > 0 || r->twice > 0 ? 1 : 0;
}
