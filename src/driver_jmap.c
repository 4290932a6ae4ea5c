/*
 * driver_jmap.c - the jmap driver: upload and Email/import per
 * recipient, and the look that finds a copy again.
 *
 * Owns:    struct jmap_driver: private copies of the settings (strings
 *          included), the password, one CURL easy handle and its header
 *          lists, the session last fetched, the mailbox ids found, and the
 *          buffers of a copy's header and of the last reply.
 * Threads: one object per worker; nothing is shared between objects
 *          (libcurl's global state is set up once by main()).
 *
 * A recipient's delivery is up to four requests on one kept connection:
 * the session (once, and again after a 401/404 or a changed
 * sessionState), Mailbox/query (and Mailbox/get) for the account's
 * mailbox (cached; made with create_mailbox when a name is not there), the
 * upload of the copy, and Email/import. Nothing is handed over until
 * Email/import has gone out: a failure before that is "unavailable" or
 * a plain deferral; after it, with no answer, the entry is in-doubt and
 * look() settles it. Servers that address mail by content (Cyrus: the
 * blobId is the SHA-1 of the bytes) answer a second import of the same
 * copy with alreadyExists, which is a delivery too.
 */
#include "driver_jmap.h"
#include "metrics.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <curl/curl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACCOUNT_MAX_LEN	256
#define REPLY_MAX	(16u * 1024 * 1024)	/* a longer reply: an error */
#define BOX_CACHE_MAX	1024			/* then forget them all */

#define CAP_CORE	"urn:ietf:params:jmap:core"
#define CAP_MAIL	"urn:ietf:params:jmap:mail"
#define CREATION_ID	"m"
#define LOOK_PROPERTY	"header:" DRIVER_DELIVERY_HEADER ":asText:all"

/* Where a step of a delivery left it. */
enum step {
	STEP_OK,	/* go on with the next step */
	STEP_DONE,	/* r holds the result */
	STEP_DOWN,	/* the server cannot be used, nothing handed over */
	STEP_STALE,	/* 401/404: fetch the session anew, try again */
	STEP_AGAIN,	/* the mailbox id or the blob was refused, or the
			   mailbox could not be made: again */
};

struct box {
	char *account;			/* owned */
	char *id;			/* owned */
};

/* A request body in one or two pieces (a copy: header, then message),
 * borrowed for the request. once: the whole body may go out only once
 * (Email/import): libcurl's resend of a request on a kept connection
 * that died is refused, and the entry is in-doubt instead. */
struct body {
	const char *p[2];
	size_t len[2];
	size_t off;			/* bytes handed to libcurl */
	bool once;
};

/* One request's outcome. */
struct http_res {
	long status;			/* 0: no HTTP reply */
	bool sent;			/* the whole body went to libcurl */
	const char *err;		/* status 0: why (owned by d) */
};

struct jmap_driver {
	struct driver base;		/* first: (struct driver *) casts */
	char *url;			/* owned: the session resource */
	char *account;			/* owned template */
	char *mailbox;			/* owned: a role or a name */
	bool create_mailbox;
	char *password;			/* owned, cleansed on free; NULL
					   with a token */
	char *token;			/* owned, cleansed on free */
	int cancel_fd;			/* borrowed */
	char peer[300];			/* "host:port" */
	CURL *curl;			/* owned */
	struct curl_slist *get_hdrs;	/* owned */
	struct curl_slist *json_hdrs;	/* owned */
	struct curl_slist *upload_hdrs;	/* owned */
	char curl_err[CURL_ERROR_SIZE];
	/* The session: api NULL until fetched; stale: fetch it again
	 * before the next request. */
	struct driver_jmap_session sess;
	char *base_url;			/* owned: where the session was */
	char *api;			/* owned: the absolute apiUrl */
	bool stale;
	struct box *box;		/* owned array of n_box */
	size_t n_box;
	struct buf hdr;			/* the header line of a copy */
	struct buf resp;		/* the last reply's body */
	uint64_t connect_us;		/* spent connecting, this recipient */
	char err[DRIVER_REPLY_LEN];	/* look()'s *error_r */
	/* This recipient's Mailbox/set, if one went out: then a mailbox
	 * still not found is deferred with why it was not made. */
	bool create_tried;
	char create_err[DRIVER_REPLY_LEN];
};

/* --- pure helpers ------------------------------------------------------ */

static void
copy_text(char *dst, size_t size, const char *s)
{
	snprintf(dst, size, "%s", s != NULL ? s : "");
}

static void
bad(struct driver_jmap_reply *x, const char *why)
{
	x->kind = DRIVER_JMAP_BAD;
	copy_text(x->type, sizeof(x->type), why);
}

int
driver_jmap_parse_session(const char *text, size_t len,
			  struct driver_jmap_session *s, const char **error_r)
{
	json_t *root = json_loadb(text, len, 0, NULL), *caps, *max;
	const char *api, *upload, *state;

	memset(s, 0, sizeof(*s));
	*error_r = NULL;
	caps = json_object_get(root, "capabilities");
	api = json_string_value(json_object_get(root, "apiUrl"));
	upload = json_string_value(json_object_get(root, "uploadUrl"));
	state = json_string_value(json_object_get(root, "state"));
	if (!json_is_object(root))
		*error_r = "not a JSON object";
	else if (api == NULL || upload == NULL)
		*error_r = "no apiUrl or uploadUrl";
	else if (json_object_get(caps, CAP_MAIL) == NULL)
		*error_r = "no " CAP_MAIL " capability";
	if (*error_r != NULL) {
		json_decref(root);
		return -1;
	}
	s->api_url = xstrdup(api);
	s->upload_url = xstrdup(upload);
	s->state = xstrdup(state != NULL ? state : "");
	max = json_object_get(json_object_get(caps, CAP_CORE),
			      "maxSizeUpload");
	if (json_is_integer(max) && json_integer_value(max) > 0)
		s->max_upload = (uint64_t)json_integer_value(max);
	json_decref(root);
	return 0;
}

void
driver_jmap_session_free(struct driver_jmap_session *s)
{
	free(s->api_url);
	free(s->upload_url);
	free(s->state);
	memset(s, 0, sizeof(*s));
}

/* {"using": [core, mail], "methodCalls": calls} as compact text, owned
 * by the caller; NULL if calls is NULL (json_pack() refused a string
 * that is not UTF-8). Takes the reference to calls. */
static char *
request(json_t *calls)
{
	json_t *req = NULL;
	char *text = NULL;

	if (calls != NULL)
		req = json_pack("{s:[s,s], s:o}", "using", CAP_CORE, CAP_MAIL,
				"methodCalls", calls);
	if (req != NULL)
		text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return text;
}

bool
driver_jmap_is_role(const char *s)
{
	static const char *const roles[] = {
		"all", "archive", "drafts", "flagged", "important", "inbox",
		"junk", "sent", "subscribed", "trash",
	};

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(s, roles[i]) == 0)
			return true;
	return false;
}

char *
driver_jmap_mailbox_request(const char *account, const char *mailbox)
{
	return request(json_pack("[[s, {s:s, s:{s:s}}, s], "
				 "[s, {s:s, s:{s:s, s:s, s:s}, s:[s,s,s]}, s]]",
				 "Mailbox/query", "accountId", account,
				 "filter", driver_jmap_is_role(mailbox) ?
				 "role" : "name", mailbox, "q",
				 "Mailbox/get", "accountId", account, "#ids",
				 "resultOf", "q", "name", "Mailbox/query",
				 "path", "/ids", "properties", "name", "role",
				 "parentId", "g"));
}

char *
driver_jmap_create_request(const char *account, const char *name)
{
	return request(json_pack("[[s, {s:s, s:{s:{s:s, s:n}}}, s]]",
				 "Mailbox/set", "accountId", account,
				 "create", CREATION_ID, "name", name,
				 "parentId", "s"));
}

char *
driver_jmap_import_request(const char *account, const char *blob,
			   const char *box)
{
	return request(json_pack("[[s, {s:s, s:{s:{s:s, s:{s:b}, s:{}}}}, "
				 "s]]", "Email/import", "accountId", account,
				 "emails", CREATION_ID, "blobId", blob,
				 "mailboxIds", box, 1, "keywords", "i"));
}

char *
driver_jmap_look_request(const char *account, const char *id)
{
	return request(json_pack("[[s, {s:s, s:{s:[s,s]}}, s], "
				 "[s, {s:s, s:{s:s, s:s, s:s}, s:[s]}, s]]",
				 "Email/query", "accountId", account,
				 "filter", "header", DRIVER_DELIVERY_HEADER,
				 id, "q",
				 "Email/get", "accountId", account, "#ids",
				 "resultOf", "q", "name", "Email/query",
				 "path", "/ids", "properties", LOOK_PROPERTY,
				 "g"));
}

/* The reply's JSON object, its sessionState copied into x (which is
 * cleared first); NULL (x BAD) if it is not an object. */
static json_t *
reply_root(const char *text, size_t len, struct driver_jmap_reply *x)
{
	json_t *root = json_loadb(text, len, 0, NULL);

	memset(x, 0, sizeof(*x));
	if (!json_is_object(root)) {
		json_decref(root);
		bad(x, "not a JSON object");
		return NULL;
	}
	copy_text(x->state, sizeof(x->state),
		  json_string_value(json_object_get(root, "sessionState")));
	return root;
}

/* The arguments of the response tagged tag if it is method's (borrowed
 * from root); else NULL with x ERROR (the method failed: its type and
 * description) or BAD (no such response). */
static json_t *
method_args(json_t *root, const char *method, const char *tag,
	    struct driver_jmap_reply *x)
{
	json_t *e, *args;
	const char *name, *t;
	size_t i;

	json_array_foreach(json_object_get(root, "methodResponses"), i, e) {
		name = json_string_value(json_array_get(e, 0));
		args = json_array_get(e, 1);
		t = json_string_value(json_array_get(e, 2));
		if (name == NULL || !json_is_object(args) || t == NULL ||
		    strcmp(t, tag) != 0)
			continue;
		if (strcmp(name, method) == 0)
			return args;
		if (strcmp(name, "error") != 0)
			continue;
		x->kind = DRIVER_JMAP_ERROR;
		copy_text(x->type, sizeof(x->type), json_string_value(
				  json_object_get(args, "type")));
		copy_text(x->desc, sizeof(x->desc), json_string_value(
				  json_object_get(args, "description")));
		return NULL;
	}
	bad(x, "no response to the call");
	return NULL;
}

void
driver_jmap_parse_upload(const char *text, size_t len,
			 struct driver_jmap_reply *x)
{
	json_t *root = reply_root(text, len, x);
	const char *blob = json_string_value(json_object_get(root, "blobId"));

	if (root != NULL && blob == NULL)
		bad(x, "no blobId");
	else if (root != NULL)
		copy_text(x->id, sizeof(x->id), blob);
	json_decref(root);
}

static void
not_created(json_t *nc, struct driver_jmap_reply *x);

void
driver_jmap_parse_mailbox(const char *text, size_t len, const char *mailbox,
			  struct driver_jmap_reply *x)
{
	json_t *root = reply_root(text, len, x), *args = NULL, *e;
	const char *id, *what, *found = NULL;
	bool role = driver_jmap_is_role(mailbox), top;
	size_t i;

	if (root != NULL && method_args(root, "Mailbox/query", "q", x) != NULL)
		args = method_args(root, "Mailbox/get", "g", x);
	if (args == NULL) {
		json_decref(root);
		return;
	}
	json_array_foreach(json_object_get(args, "list"), i, e) {
		id = json_string_value(json_object_get(e, "id"));
		what = json_string_value(json_object_get(e, role ? "role" :
							 "name"));
		if (id == NULL || what == NULL || strcmp(mailbox, what) != 0)
			continue;
		top = json_is_null(json_object_get(e, "parentId"));
		if (found == NULL || top)
			found = id;
		if (top)
			break;
	}
	if (found == NULL)
		x->kind = DRIVER_JMAP_NOT_FOUND;
	else
		copy_text(x->id, sizeof(x->id), found);
	json_decref(root);
}

void
driver_jmap_parse_create(const char *text, size_t len,
			 struct driver_jmap_reply *x)
{
	json_t *root = reply_root(text, len, x), *args = NULL, *nc;
	const char *id;

	if (root != NULL)
		args = method_args(root, "Mailbox/set", "s", x);
	if (args != NULL) {
		id = json_string_value(json_object_get(json_object_get(
				json_object_get(args, "created"), CREATION_ID),
				"id"));
		nc = json_object_get(json_object_get(args, "notCreated"),
				     CREATION_ID);
		if (id != NULL)
			copy_text(x->id, sizeof(x->id), id);
		else if (nc != NULL)
			not_created(nc, x);
		else
			bad(x, "neither created nor notCreated");
	}
	json_decref(root);
}

/* "type" of a notCreated entry, with its description or the properties
 * it names (invalidProperties) in x->desc. */
static void
not_created(json_t *nc, struct driver_jmap_reply *x)
{
	json_t *p;
	size_t i, o = 0;

	copy_text(x->type, sizeof(x->type),
		  json_string_value(json_object_get(nc, "type")));
	if (strcmp(x->type, "alreadyExists") == 0) {
		x->kind = DRIVER_JMAP_EXISTS;
		copy_text(x->id, sizeof(x->id), json_string_value(
				  json_object_get(nc, "existingId")));
		return;
	}
	x->kind = DRIVER_JMAP_NOT_CREATED;
	copy_text(x->desc, sizeof(x->desc), json_string_value(
			  json_object_get(nc, "description")));
	json_array_foreach(json_object_get(nc, "properties"), i, p) {
		o = strlen(x->desc);
		snprintf(x->desc + o, sizeof(x->desc) - o, "%s%s",
			 o > 0 ? " " : "", json_string_value(p) ?
			 json_string_value(p) : "?");
	}
}

void
driver_jmap_parse_import(const char *text, size_t len,
			 struct driver_jmap_reply *x)
{
	json_t *root = reply_root(text, len, x), *args = NULL, *c, *nc;
	const char *id;

	if (root != NULL)
		args = method_args(root, "Email/import", "i", x);
	if (args != NULL) {
		c = json_object_get(json_object_get(args, "created"),
				    CREATION_ID);
		nc = json_object_get(json_object_get(args, "notCreated"),
				     CREATION_ID);
		id = json_string_value(json_object_get(c, "id"));
		if (id != NULL)
			copy_text(x->id, sizeof(x->id), id);
		else if (json_is_object(nc))
			not_created(nc, x);
		else
			bad(x, "neither created nor notCreated");
	}
	json_decref(root);
}

void
driver_jmap_parse_look(const char *text, size_t len, const char *id,
		       struct driver_jmap_reply *x)
{
	json_t *root = reply_root(text, len, x), *args = NULL, *e, *v;
	size_t i, j;

	if (root != NULL && method_args(root, "Email/query", "q", x) != NULL)
		args = method_args(root, "Email/get", "g", x);
	json_array_foreach(json_object_get(args, "list"), i, e) {
		json_array_foreach(json_object_get(e, LOOK_PROPERTY), j, v) {
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), id) == 0) {
				x->found++;
				break;
			}
		}
	}
	json_decref(root);
}

static bool
is_type(const struct driver_jmap_reply *x, const char *type)
{
	return strcmp(x->type, type) == 0;
}

/* The method failed as a whole ("error"): nothing was imported, except
 * after serverPartialFail. */
static void
map_method_error(const struct driver_jmap_reply *x, const char *account,
		 const char *peer, struct driver_rcpt *r)
{
	if (is_type(x, "accountNotFound") ||
	    is_type(x, "accountNotSupportedByMethod")) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.1.1 %s: no JMAP mail account %s "
			     "(%s)", peer, account, x->type);
	} else if (is_type(x, "serverPartialFail")) {
		r->result = CLAIM_UNKNOWN;
		driver_reply(r->reply, "4.4.2 %s: Email/import into %s: %s, "
			     "the server may have it", peer, account,
			     x->type);
	} else {
		r->result = CLAIM_TEMPFAIL;
		driver_reply(r->reply, "%s %s: Email/import into %s failed: "
			     "%s%s%s", is_type(x, "accountReadOnly") ||
			     is_type(x, "forbidden") ? "4.7.0" : "4.3.0",
			     peer, account, x->type, x->desc[0] ? ": " : "",
			     x->desc);
	}
}

int
driver_jmap_map_import(const struct driver_jmap_reply *x,
		       const char *account, const char *peer,
		       bool may_retry, struct driver_rcpt *r)
{
	switch (x->kind) {
	case DRIVER_JMAP_OK:
	case DRIVER_JMAP_EXISTS:
		r->result = CLAIM_DELIVERED;
		driver_reply(r->reply, "%s jmap %s (account %s)",
			     x->kind == DRIVER_JMAP_OK ? "delivered to" :
			     "already in", x->id[0] ? x->id : "?", account);
		return 0;
	case DRIVER_JMAP_ERROR:
		map_method_error(x, account, peer, r);
		return 0;
	case DRIVER_JMAP_BAD:
	case DRIVER_JMAP_NOT_FOUND:	/* not an Email/import kind */
		/* The request was answered, with what we cannot read. */
		r->result = CLAIM_UNKNOWN;
		driver_reply(r->reply, "4.4.2 %s: Email/import into %s: %s, "
			     "the server may have it", peer, account, x->type);
		return 0;
	case DRIVER_JMAP_NOT_CREATED:
		break;
	}
	if (may_retry && (is_type(x, "blobNotFound") ||
			  (is_type(x, "invalidProperties") &&
			   (strstr(x->desc, "mailboxIds") != NULL ||
			    strstr(x->desc, "blobId") != NULL))))
		return 1;
	r->result = is_type(x, "tooLarge") ? CLAIM_PERMFAIL : CLAIM_TEMPFAIL;
	driver_reply(r->reply, "%s %s: %s %s: %s%s%s",
		     is_type(x, "overQuota") ? "4.2.2" :
		     is_type(x, "tooLarge") ? "5.3.4" :
		     is_type(x, "forbidden") ? "4.7.0" : "4.3.0", peer,
		     is_type(x, "overQuota") ? "over quota in account" :
		     is_type(x, "tooLarge") ? "message too big for account" :
		     "Email/import refused in account", account, x->type,
		     x->desc[0] ? ": " : "", x->desc);
	return 0;
}

char *
driver_jmap_url(const char *base, const char *ref, const char *account)
{
	CURLU *u = curl_url();
	char *esc = account != NULL ? curl_easy_escape(NULL, account, 0) :
		    NULL, *s = NULL, *scheme = NULL, *out = NULL;
	struct buf b;
	const char *p;

	buf_init(&b);
	for (p = ref; *p != '\0'; p++) {
		if (esc != NULL && strncmp(p, "{accountId}", 11) == 0) {
			buf_append_str(&b, esc);
			p += 10;
		} else {
			buf_append(&b, p, 1);
		}
	}
	/* A second URL set on the handle is resolved against the first. */
	if (u != NULL && b.len > 0 &&
	    curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, b.data, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = xstrdup(s);
	curl_free(s);
	curl_free(scheme);
	curl_free(esc);
	curl_url_cleanup(u);
	buf_free(&b);
	return out;
}

/* --- HTTP -------------------------------------------------------------- */

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	struct jmap_driver *d = arg;

	n *= size;
	if (d->resp.len + n > REPLY_MAX)
		return 0;	/* CURLE_WRITE_ERROR */
	buf_append(&d->resp, p, n);
	return n;
}

static size_t
read_body(char *dst, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t want = size * n, done = 0, k, at;

	while (done < want) {
		k = b->off < b->len[0] ? 0 : 1;
		at = k == 0 ? b->off : b->off - b->len[0];
		if (at >= b->len[k])
			break;
		n = b->len[k] - at < want - done ? b->len[k] - at :
		    want - done;
		memcpy(dst + done, b->p[k] + at, n);
		done += n;
		b->off += n;
	}
	return done;
}

static int
seek_body(void *arg, curl_off_t off, int origin)
{
	struct body *b = arg;

	if (origin != SEEK_SET || off < 0 ||
	    (size_t)off > b->len[0] + b->len[1])
		return CURL_SEEKFUNC_FAIL;
	/* libcurl sends a request again when a kept connection gave no
	 * reply at all; the server may have acted on it all the same. */
	if (b->once && b->off == b->len[0] + b->len[1] && b->off > 0)
		return CURL_SEEKFUNC_FAIL;
	b->off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static int
on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
	    curl_off_t e)
{
	struct jmap_driver *d = arg;
	struct pollfd p = { .fd = d->cancel_fd, .events = POLLIN };

	(void)a;
	(void)b;
	(void)c;
	(void)e;
	return d->cancel_fd >= 0 && poll(&p, 1, 0) > 0 ? 1 : 0;
}

/* GET url (b NULL; redirects followed) or POST b to it with the headers
 * hdrs. The reply's body is in d->resp. */
static void
http(struct jmap_driver *d, const char *url, struct curl_slist *hdrs,
     struct body *b, struct http_res *h)
{
	CURL *c = d->curl;
	curl_off_t t = 0;
	CURLcode cc;
	long n = 0;

	memset(h, 0, sizeof(*h));
	buf_reset(&d->resp);
	d->curl_err[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	if (b == NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	} else {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(b->len[0] + b->len[1]));
		curl_easy_setopt(c, CURLOPT_READDATA, b);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, b);
	}
	cc = curl_easy_perform(c);
	if (curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK &&
	    n > 0) {
		if (curl_easy_getinfo(c, CURLINFO_APPCONNECT_TIME_T, &t) !=
		    CURLE_OK || t == 0)
			curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &t);
		d->connect_us += t > 0 ? (uint64_t)t : 0;
		metrics_reconnect(d->base.ops->name);
	}
	h->sent = b == NULL || b->off == b->len[0] + b->len[1];
	if (cc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
		return;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK)
		h->err = "stopping";
	else if (cc == CURLE_SEND_FAIL_REWIND && b != NULL && b->once)
		h->err = "the connection closed with no reply";
	else
		h->err = d->curl_err[0] != '\0' ? d->curl_err :
			 curl_easy_strerror(cc);
}

static const char *
resp_text(const struct jmap_driver *d)
{
	return d->resp.data != NULL ? d->resp.data : "";
}

/* POST the JSON text req (owned: freed here; NULL: a name was not UTF-8,
 * status 400) to the API. */
static void
api_post(struct jmap_driver *d, char *req, bool once, struct http_res *h)
{
	struct body b = { .p = { req }, .len = { req ? strlen(req) : 0 },
			  .once = once };

	if (req == NULL) {
		memset(h, 0, sizeof(*h));
		h->status = 400;
		buf_reset(&d->resp);
		return;
	}
	http(d, d->api, d->json_hdrs, &b, h);
	free(req);
}

/* A reply from the API: a sessionState other than the session's means
 * the session changed; fetch it again before the next request. */
static void
note_state(struct jmap_driver *d, const struct driver_jmap_reply *x)
{
	if (x->state[0] != '\0' && d->sess.state != NULL &&
	    strcmp(x->state, d->sess.state) != 0)
		d->stale = true;
}

/* "HTTP 503" or the transport error, into buf. */
static const char *
why_of(const struct http_res *h, char *buf, size_t len)
{
	if (h->status == 0)
		return h->err != NULL ? h->err : "no reply";
	snprintf(buf, len, "HTTP %ld", h->status);
	return buf;
}

/* --- the session and the mailbox --------------------------------------- */

static void
session_drop(struct jmap_driver *d)
{
	driver_jmap_session_free(&d->sess);
	free(d->base_url);
	free(d->api);
	d->base_url = d->api = NULL;
}

/* The session, fetched if there is none or it is stale. 0, or -1 with
 * why (DRIVER_REPLY_LEN) filled in: the server cannot be used. */
static int
session_ensure(struct jmap_driver *d, char *why)
{
	struct driver_jmap_session s;
	struct http_res h;
	const char *err;
	char *eff = NULL, code[32];

	if (d->api != NULL && !d->stale)
		return 0;
	session_drop(d);
	d->stale = false;
	http(d, d->url, d->get_hdrs, NULL, &h);
	if (h.status == 401 || h.status == 403) {
		driver_reply(why, "%s: the login was refused (HTTP %ld)",
			     d->peer, h.status);
		return -1;
	}
	if (h.status != 200) {
		driver_reply(why, "%s: the session resource: %s", d->peer,
			     why_of(&h, code, sizeof(code)));
		return -1;
	}
	if (driver_jmap_parse_session(resp_text(d), d->resp.len, &s,
				      &err) < 0) {
		driver_reply(why, "%s: the session resource: %s", d->peer,
			     err);
		return -1;
	}
	curl_easy_getinfo(d->curl, CURLINFO_EFFECTIVE_URL, &eff);
	d->base_url = xstrdup(eff != NULL ? eff : d->url);
	d->api = driver_jmap_url(d->base_url, s.api_url, NULL);
	d->sess = s;
	if (d->api == NULL) {
		driver_reply(why, "%s: apiUrl \"%s\" is not an http[s] URL",
			     d->peer, s.api_url);
		session_drop(d);
		return -1;
	}
	return 0;
}

static void
box_forget(struct jmap_driver *d, const char *account)
{
	for (size_t i = 0; i < d->n_box; i++) {
		if (strcmp(d->box[i].account, account) != 0)
			continue;
		free(d->box[i].account);
		free(d->box[i].id);
		d->box[i] = d->box[--d->n_box];
		return;
	}
}

static const char *
box_add(struct jmap_driver *d, const char *account, const char *id)
{
	if (d->n_box == BOX_CACHE_MAX)
		while (d->n_box > 0)
			box_forget(d, d->box[0].account);
	if (d->box == NULL)
		d->box = xcalloc(BOX_CACHE_MAX, sizeof(*d->box));
	d->box[d->n_box].account = xstrdup(account);
	d->box[d->n_box].id = xstrdup(id);
	return d->box[d->n_box++].id;
}

/* What an HTTP answer h to method means for the step: the server down,
 * the session stale, a deferral (not 200: r filled in), or go on (200:
 * r holds a deferral until the caller knows better). */
static enum step
answered(struct jmap_driver *d, const struct http_res *h, const char *method,
	 struct driver_rcpt *r)
{
	char code[32];

	driver_reply(r->reply, "4.4.1 %s: %s: %s", d->peer, method,
		     why_of(h, code, sizeof(code)));
	if (h->status == 0 || h->status >= 500)
		return STEP_DOWN;
	if (h->status == 401 || h->status == 404)
		return STEP_STALE;
	r->result = CLAIM_TEMPFAIL;
	return h->status == 200 ? STEP_OK : STEP_DONE;
}

/* Mailbox/set: create the mailbox d->mailbox (a name) in account. Its
 * id into *id_r as mailbox_of() does; a failure: r filled in. */
static enum step
mailbox_create(struct jmap_driver *d, const char *account, const char **id_r,
	       struct driver_rcpt *r)
{
	struct driver_jmap_reply x;
	struct http_res h;
	enum step st;

	d->create_tried = true;
	api_post(d, driver_jmap_create_request(account, d->mailbox), false,
		 &h);
	st = answered(d, &h, "Mailbox/set", r);
	driver_reply(d->create_err, "%s", r->reply);
	if (st != STEP_OK)
		return st;
	driver_jmap_parse_create(resp_text(d), d->resp.len, &x);
	note_state(d, &x);
	if (x.kind == DRIVER_JMAP_OK) {
		log_info("%s: created mailbox %s in account %s (id %s)",
			 d->peer, d->mailbox, account, x.id);
		*id_r = box_add(d, account, x.id);
		return STEP_OK;
	}
	/* Another worker may have made it meanwhile: the caller's second
	 * pass finds it, or defers the recipient with this reply. */
	driver_reply(r->reply, "4.3.0 %s: cannot create mailbox %s in "
		     "account %s: %s%s%s", d->peer, d->mailbox, account,
		     x.type, x.desc[0] ? ": " : "", x.desc);
	driver_reply(d->create_err, "%s", r->reply);
	return STEP_AGAIN;
}

/* The id of the mailbox of account (cached) in *id_r, owned by d until
 * the next box_forget()/box_add(). A name not found is made with
 * create_mailbox, else the recipient bounces, as Postfix's local
 * delivery does for a mailbox that is not there. */
static enum step
mailbox_of(struct jmap_driver *d, const char *account, const char **id_r,
	   struct driver_rcpt *r)
{
	struct driver_jmap_reply x;
	struct http_res h;
	enum step st;

	for (size_t i = 0; i < d->n_box; i++) {
		if (strcmp(d->box[i].account, account) == 0) {
			*id_r = d->box[i].id;
			return STEP_OK;
		}
	}
	api_post(d, driver_jmap_mailbox_request(account, d->mailbox), false,
		 &h);
	if ((st = answered(d, &h, "Mailbox/query", r)) != STEP_OK)
		return st;
	driver_jmap_parse_mailbox(resp_text(d), d->resp.len, d->mailbox, &x);
	note_state(d, &x);
	if (x.kind == DRIVER_JMAP_OK) {
		*id_r = box_add(d, account, x.id);
		return STEP_OK;
	}
	if (x.kind == DRIVER_JMAP_NOT_FOUND && d->create_mailbox &&
	    !driver_jmap_is_role(d->mailbox)) {
		if (!d->create_tried)
			return mailbox_create(d, account, id_r, r);
		/* made and gone, or not made: never a bounce */
		driver_reply(r->reply, "%s", d->create_err);
		return STEP_DONE;
	}
	if (x.kind == DRIVER_JMAP_NOT_FOUND) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.1.1 %s: no mailbox %s%s in account "
			     "%s", d->peer, driver_jmap_is_role(d->mailbox) ?
			     "with role " : "", d->mailbox, account);
	} else if (x.kind == DRIVER_JMAP_ERROR &&
		   (is_type(&x, "accountNotFound") ||
		    is_type(&x, "accountNotSupportedByMethod"))) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.1.1 %s: no JMAP mail account %s "
			     "(%s)", d->peer, account, x.type);
	} else {
		driver_reply(r->reply, "4.3.0 %s: mailbox %s of account %s: "
			     "%s%s%s", d->peer, d->mailbox, account, x.type,
			     x.desc[0] ? ": " : "", x.desc);
	}
	return STEP_DONE;
}

/* --- deliver ----------------------------------------------------------- */

/* Upload d->hdr + the message to account; its blobId into blob. */
static enum step
upload(struct jmap_driver *d, const char *account, const struct driver_msg *m,
       char blob[DRIVER_JMAP_ID_LEN], struct driver_rcpt *r)
{
	struct body b = { .p = { d->hdr.data, m->body },
			  .len = { d->hdr.len, m->body_len } };
	struct driver_jmap_reply x;
	struct http_res h;
	char code[32], *url;

	if (d->sess.max_upload > 0 &&
	    d->hdr.len + m->body_len > d->sess.max_upload) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.3.4 %s: message too big (%zu bytes, "
			     "maxSizeUpload %llu)", d->peer,
			     d->hdr.len + m->body_len,
			     (unsigned long long)d->sess.max_upload);
		return STEP_DONE;
	}
	url = driver_jmap_url(d->base_url, d->sess.upload_url, account);
	if (url == NULL) {
		driver_reply(r->reply, "4.4.1 %s: uploadUrl \"%s\" is not an "
			     "http[s] URL", d->peer, d->sess.upload_url);
		return STEP_DOWN;
	}
	http(d, url, d->upload_hdrs, &b, &h);
	free(url);
	driver_reply(r->reply, "4.4.1 %s: upload to account %s: %s", d->peer,
		     account, why_of(&h, code, sizeof(code)));
	if (h.status == 0 || h.status >= 500)
		return STEP_DOWN;
	if (h.status == 401 || h.status == 404)
		return STEP_STALE;
	r->result = h.status == 413 ? CLAIM_PERMFAIL : CLAIM_TEMPFAIL;
	if (h.status == 413) {
		driver_reply(r->reply, "5.3.4 %s: message too big for account "
			     "%s (HTTP 413)", d->peer, account);
		return STEP_DONE;
	}
	if (h.status != 200 && h.status != 201)
		return STEP_DONE;
	driver_jmap_parse_upload(resp_text(d), d->resp.len, &x);
	if (x.kind != DRIVER_JMAP_OK) {
		driver_reply(r->reply, "4.3.0 %s: upload to account %s: %s",
			     d->peer, account, x.type);
		return STEP_DONE;
	}
	memcpy(blob, x.id, DRIVER_JMAP_ID_LEN);
	return STEP_OK;
}

/* Email/import of blob into the mailbox box. From here on the server may have the
 * message: a request that went out and got no answer is in-doubt. */
static enum step
import(struct jmap_driver *d, const char *account, const char *blob,
       const char *box, bool may_retry, struct driver_rcpt *r)
{
	struct driver_jmap_reply x;
	struct http_res h;
	char code[32];

	api_post(d, driver_jmap_import_request(account, blob, box), true,
		 &h);
	if (h.status == 0 && !h.sent) {
		driver_reply(r->reply, "4.4.2 %s: Email/import: %s", d->peer,
			     h.err);
		return STEP_DOWN;
	}
	if (h.status == 0 || h.status >= 500) {
		r->result = CLAIM_UNKNOWN;
		driver_reply(r->reply, "4.4.2 %s: no reply to Email/import "
			     "(%s), the server may have it", d->peer,
			     why_of(&h, code, sizeof(code)));
		return STEP_DONE;
	}
	driver_reply(r->reply, "4.3.0 %s: Email/import: HTTP %ld", d->peer,
		     h.status);
	if (h.status == 401 || h.status == 404)
		return STEP_STALE;
	if (h.status != 200) {
		r->result = CLAIM_TEMPFAIL;
		return STEP_DONE;
	}
	driver_jmap_parse_import(resp_text(d), d->resp.len, &x);
	note_state(d, &x);
	return driver_jmap_map_import(&x, account, d->peer, may_retry, r) ?
	       STEP_AGAIN : STEP_DONE;
}

/* One pass: session, mailbox, upload, import. */
static enum step
deliver_pass(struct jmap_driver *d, const struct driver_msg *m,
	     struct driver_rcpt *r, const char *account, bool may_retry)
{
	char blob[DRIVER_JMAP_ID_LEN], why[DRIVER_REPLY_LEN];
	const char *box;
	enum step st;

	if (session_ensure(d, why) < 0) {
		driver_reply(r->reply, "4.4.1 %s", why);
		return STEP_DOWN;
	}
	st = mailbox_of(d, account, &box, r);
	if (st == STEP_OK)
		st = upload(d, account, m, blob, r);
	if (st == STEP_OK)
		st = import(d, account, blob, box, may_retry, r);
	if (st == STEP_AGAIN)
		box_forget(d, account);
	else if (st == STEP_STALE)
		d->stale = true;
	return st;
}

/* Deliver to one recipient: 0 (r filled in) or DRIVER_UNAVAILABLE. */
static int
deliver_one(struct driver *base, const struct driver_msg *m,
	    struct driver_rcpt *r)
{
	struct jmap_driver *d = (struct jmap_driver *)base;
	char account[ACCOUNT_MAX_LEN];
	enum step st = STEP_AGAIN;

	if (driver_expand(d->account, r->addr, account, sizeof(account)) <
	    0) {
		r->result = CLAIM_PERMFAIL;
		driver_reply(r->reply, "5.1.3 %s: account name too long",
			     d->peer);
		return 0;
	}
	buf_reset(&d->hdr);
	driver_delivery_header(&d->hdr, m, r);
	d->connect_us = 0;
	d->create_tried = false;
	/* A second pass after a fresh session (401/404), a refused mailbox
	 * id or blob, or a mailbox another worker made first; nothing was
	 * imported in the first. */
	for (int pass = 0; pass < 2; pass++) {
		st = deliver_pass(d, m, r, account, pass == 0);
		if (st != STEP_STALE && st != STEP_AGAIN)
			break;
	}
	r->connect_us += d->connect_us;
	if (st == STEP_DOWN)
		return DRIVER_UNAVAILABLE;
	if (st == STEP_STALE || st == STEP_AGAIN)	/* refused twice */
		r->result = CLAIM_TEMPFAIL;
	return 0;
}

static int
jmap_deliver(struct driver *base, const struct driver_msg *m,
	     struct driver_rcpt *r, size_t n)
{
	return driver_deliver_each(base, m, r, n, deliver_one);
}

/* --- look -------------------------------------------------------------- */

static int
jmap_look(struct driver *base, const struct driver_msg *m,
	  const struct driver_rcpt *r, const char **error_r)
{
	struct jmap_driver *d = (struct jmap_driver *)base;
	char account[ACCOUNT_MAX_LEN], id[DRIVER_DELIVERY_ID_LEN], code[32];
	struct driver_jmap_reply x;
	struct http_res h = { 0 };

	*error_r = d->err;
	if (driver_expand(d->account, r->addr, account, sizeof(account)) <
	    0) {
		driver_reply(d->err, "%s: account name too long", d->peer);
		return -1;
	}
	driver_delivery_id(m, r, id);
	for (int pass = 0; pass < 2; pass++) {
		if (session_ensure(d, d->err) < 0)
			return -1;
		api_post(d, driver_jmap_look_request(account, id), false, &h);
		if (h.status == 401 || h.status == 404) {
			d->stale = true;
			continue;
		}
		break;
	}
	if (h.status != 200) {
		driver_reply(d->err, "%s: Email/query in account %s: %s",
			     d->peer, account, why_of(&h, code, sizeof(code)));
		return -1;
	}
	driver_jmap_parse_look(resp_text(d), d->resp.len, id, &x);
	note_state(d, &x);
	if (x.kind != DRIVER_JMAP_OK) {
		/* accountNotFound too: a copy may be there all the same
		 * (rights taken away for a while); cannot tell. */
		driver_reply(d->err, "%s: Email/query in account %s: %s%s%s",
			     d->peer, account, x.type, x.desc[0] ? ": " : "",
			     x.desc);
		return -1;
	}
	if (x.found > 0)
		log_debug("%s: %s found in account %s (%zu)", d->peer, id,
			  account, x.found);
	return x.found > 0 ? 1 : 0;
}

/* --- the object -------------------------------------------------------- */

static void
jmap_free(struct driver **dp)
{
	struct jmap_driver *d = (struct jmap_driver *)*dp;

	*dp = NULL;
	if (d == NULL)
		return;
	if (d->curl != NULL)
		curl_easy_cleanup(d->curl);
	curl_slist_free_all(d->get_hdrs);
	curl_slist_free_all(d->json_hdrs);
	curl_slist_free_all(d->upload_hdrs);
	session_drop(d);
	while (d->n_box > 0)
		box_forget(d, d->box[0].account);
	free(d->box);
	free(d->url);
	free(d->account);
	free(d->mailbox);
	driver_password_free(&d->password);
	driver_password_free(&d->token);
	buf_free(&d->hdr);
	buf_free(&d->resp);
	free(d);
}

static const struct driver_ops jmap_ops = {
	.name = "jmap",
	.can_look = true,
	.deliver_looks = false,
	.deliver = jmap_deliver,
	.look = jmap_look,
	.free = jmap_free,
};

/* Accept: application/json, and Content-Type: ctype unless NULL. */
static struct curl_slist *
headers(const char *ctype)
{
	struct curl_slist *l = curl_slist_append(NULL,
						 "Accept: application/json");
	char h[64];

	snprintf(h, sizeof(h), "Content-Type: %s", ctype ? ctype : "");
	if (l != NULL && ctype != NULL)
		l = curl_slist_append(l, h);
	/* No "Expect: 100-continue" wait before a large body. */
	if (l != NULL && ctype != NULL)
		l = curl_slist_append(l, "Expect:");
	if (l == NULL)
		panic("driver_jmap: out of memory");
	return l;
}

/* "host:port" of the URL into d->peer; -1 if it is not http[s]. */
static int
set_peer(struct jmap_driver *d)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *scheme = NULL;
	int rc = -1;

	if (u != NULL && curl_url_set(u, CURLUPART_URL, d->url, 0) ==
	    CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
	    CURLUE_OK) {
		snprintf(d->peer, sizeof(d->peer), "%s:%s", host, port);
		rc = 0;
	}
	curl_free(host);
	curl_free(port);
	curl_free(scheme);
	curl_url_cleanup(u);
	return rc;
}

/* The options every request shares. */
static void
setup_curl(struct jmap_driver *d, const struct driver_jmap_opts *o)
{
	CURL *c = d->curl;

	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);	/* threads */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	/* Redirects of the session resource are followed; the password
	 * goes along only on the same host (CURLOPT_UNRESTRICTED_AUTH
	 * off), never to a host a redirect names. */
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	if (d->token != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, d->token);
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, o->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, d->password);
	}
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
	if (o->tls_ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->tls_ca_file);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "postern/" PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->curl_err);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
	curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_body);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
}

struct driver *
driver_jmap_new(const struct driver_jmap_opts *o, const char **error_r)
{
	static _Thread_local char err[600];
	struct jmap_driver *d = xcalloc(1, sizeof(*d));
	struct driver *b = &d->base;

	d->base.ops = &jmap_ops;
	d->url = xstrdup(o->url);
	d->account = xstrdup(o->account);
	d->cancel_fd = o->cancel_fd;
	buf_init(&d->hdr);
	buf_init(&d->resp);
	if (set_peer(d) < 0) {
		snprintf(err, sizeof(err), "url %s: not an http:// or "
			 "https:// URL", o->url);
		*error_r = err;
		goto fail;
	}
	d->mailbox = xstrdup(o->mailbox != NULL ? o->mailbox : "inbox");
	d->create_mailbox = o->create_mailbox;
	if (o->token_file != NULL) {
		if ((d->token = driver_read_password("token_file",
				o->token_file, error_r)) == NULL)
			goto fail;
		if (d->token[0] == '\0') {
			snprintf(err, sizeof(err), "token_file %s: its first "
				 "line is empty", o->token_file);
			*error_r = err;
			goto fail;
		}
	} else if (o->password != NULL) {
		d->password = xstrdup(o->password);
	} else if ((d->password = driver_read_password("password_file",
			o->password_file, error_r)) == NULL) {
		goto fail;
	}
	d->curl = curl_easy_init();
	if (d->curl == NULL) {
		*error_r = "cannot make a libcurl handle";
		goto fail;
	}
	d->get_hdrs = headers(NULL);
	d->json_hdrs = headers("application/json");
	d->upload_hdrs = headers("message/rfc822");
	setup_curl(d, o);
	return b;
fail:
	jmap_free(&b);
	return NULL;
}
