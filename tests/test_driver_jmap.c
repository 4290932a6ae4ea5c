/*
 * test_driver_jmap.c - the pure parts of the jmap driver: delivery ids,
 * the request bodies, the replies (session, upload, Mailbox/query,
 * Email/import, the look's Email/query + Email/get), how an import's
 * reply maps onto a result, and URLs. The HTTP side is exercised against
 * a real Cyrus in tests/integration/jmap_cyrus.sh.
 */
#include "driver_jmap.h"
#include "testlib.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

static int
suite_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int
suite_clean(void)
{
	curl_global_cleanup();
	return 0;
}

static void
test_driver_jmap_delivery_ids_never_contain_each_other(void)
{
	/* Cyrus's header filter is a case-insensitive substring match. */
	struct driver_msg m = { .store_id = 0xABCDEF, .qid = 1 };
	struct driver_rcpt r1 = { .idx = 1 }, r10 = { .idx = 10 };
	char a[DRIVER_DELIVERY_ID_LEN], b[DRIVER_DELIVERY_ID_LEN];
	char c[DRIVER_DELIVERY_ID_LEN];

	driver_delivery_id(&m, &r1, a);
	driver_delivery_id(&m, &r10, b);
	CU_ASSERT_PTR_NULL(strcasestr(b, a));
	CU_ASSERT_PTR_NULL(strcasestr(a, b));
	m.qid = 0x11;
	driver_delivery_id(&m, &r1, c);
	CU_ASSERT_PTR_NULL(strcasestr(c, a));
	CU_ASSERT_PTR_NULL(strcasestr(a, c));
	CU_ASSERT_EQUAL(a[0], '<');
	CU_ASSERT_EQUAL(a[strlen(a) - 1], '>');
}

/* The request text parsed back, and its first (or i-th) call. */
static json_t *
call_of(const char *text, size_t i, const char **name_r, json_t **args_r)
{
	json_t *req = json_loads(text, 0, NULL), *call;

	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(
		json_object_get(req, "using"), 0)), "urn:ietf:params:jmap:core");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(
		json_object_get(req, "using"), 1)), "urn:ietf:params:jmap:mail");
	call = json_array_get(json_object_get(req, "methodCalls"), i);
	*name_r = json_string_value(json_array_get(call, 0));
	*args_r = json_array_get(call, 1);
	CU_ASSERT_PTR_NOT_NULL(*name_r);
	return req;
}

static void
test_driver_jmap_requests(void)
{
	char *t = driver_jmap_import_request("alice", "Gabc", "mbox-1");
	const char *name;
	json_t *req, *args, *e;

	req = call_of(t, 0, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Email/import");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(args,
						 "accountId")), "alice");
	e = json_object_get(json_object_get(args, "emails"), "m");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "blobId")),
			       "Gabc");
	CU_ASSERT_TRUE(json_is_true(json_object_get(json_object_get(e,
					"mailboxIds"), "mbox-1")));
	CU_ASSERT_EQUAL(json_object_size(json_object_get(e, "mailboxIds")), 1);
	CU_ASSERT_TRUE(json_is_object(json_object_get(e, "keywords")));
	CU_ASSERT_EQUAL(json_object_size(json_object_get(e, "keywords")), 0);
	json_decref(req);
	free(t);

	t = driver_jmap_mailbox_request("bob", "inbox");
	req = call_of(t, 0, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Mailbox/query");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
		json_object_get(args, "filter"), "role")), "inbox");
	json_decref(req);
	req = call_of(t, 1, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Mailbox/get");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
		json_object_get(args, "#ids"), "resultOf")), "q");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(args, "properties")),
			3);
	json_decref(req);
	free(t);
	/* not a role: a name ("Inbox" is a name, roles are lower case) */
	t = driver_jmap_mailbox_request("bob", "Inbox");
	req = call_of(t, 0, &name, &args);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
		json_object_get(args, "filter"), "name")), "Inbox");
	CU_ASSERT_PTR_NULL(json_object_get(json_object_get(args, "filter"),
					   "role"));
	json_decref(req);
	free(t);

	t = driver_jmap_create_request("bob", "Postern");
	req = call_of(t, 0, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Mailbox/set");
	e = json_object_get(json_object_get(args, "create"), "m");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "name")),
			       "Postern");
	CU_ASSERT_TRUE(json_is_null(json_object_get(e, "parentId")));
	json_decref(req);
	free(t);
	CU_ASSERT_TRUE(driver_jmap_is_role("archive"));
	CU_ASSERT_FALSE(driver_jmap_is_role("Archive"));
	CU_ASSERT_FALSE(driver_jmap_is_role("inbox2"));

	t = driver_jmap_look_request("alice", "<1.2.3>");
	req = call_of(t, 0, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Email/query");
	e = json_object_get(json_object_get(args, "filter"), "header");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(e, 0)),
			       "X-Postern-Delivery");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(e, 1)),
			       "<1.2.3>");
	json_decref(req);
	req = call_of(t, 1, &name, &args);
	CU_ASSERT_STRING_EQUAL(name, "Email/get");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
		json_object_get(args, "#ids"), "path")), "/ids");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(
		json_object_get(args, "properties"), 0)),
		"header:X-Postern-Delivery:asText:all");
	json_decref(req);
	free(t);

	/* not UTF-8: no request */
	CU_ASSERT_PTR_NULL(driver_jmap_mailbox_request("al\xffice", "inbox"));
	CU_ASSERT_PTR_NULL(driver_jmap_look_request("alice", "\xc3("));
}

static void
test_driver_jmap_parse_session(void)
{
	static const char cyrus[] = "{\"capabilities\":{"
		"\"urn:ietf:params:jmap:core\":{\"maxSizeUpload\":1073741824,"
		"\"maxSizeRequest\":10485760},"
		"\"urn:ietf:params:jmap:mail\":{}},"
		"\"accounts\":{\"alice\":{}},\"username\":\"postern\","
		"\"apiUrl\":\"/jmap/\","
		"\"uploadUrl\":\"/jmap/upload/{accountId}/\","
		"\"state\":\"0\"}";
	struct driver_jmap_session s;
	const char *err;

	CU_ASSERT_EQUAL(driver_jmap_parse_session(cyrus, strlen(cyrus), &s,
						  &err), 0);
	CU_ASSERT_STRING_EQUAL(s.api_url, "/jmap/");
	CU_ASSERT_STRING_EQUAL(s.upload_url, "/jmap/upload/{accountId}/");
	CU_ASSERT_STRING_EQUAL(s.state, "0");
	CU_ASSERT_EQUAL(s.max_upload, 1073741824u);
	driver_jmap_session_free(&s);
	CU_ASSERT_PTR_NULL(s.api_url);

	CU_ASSERT_EQUAL(driver_jmap_parse_session("<html>", 6, &s, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "not a JSON object");
	CU_ASSERT_EQUAL(driver_jmap_parse_session("{\"apiUrl\":\"/a\"}", 15,
						  &s, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "no apiUrl or uploadUrl");
	static const char nomail[] = "{\"capabilities\":{"
		"\"urn:ietf:params:jmap:core\":{}},\"apiUrl\":\"/a\","
		"\"uploadUrl\":\"/u\"}";
	CU_ASSERT_EQUAL(driver_jmap_parse_session(nomail, strlen(nomail), &s,
						  &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "no urn:ietf:params:jmap:mail capability");
}

static void
import_reply(const char *text, struct driver_jmap_reply *x)
{
	driver_jmap_parse_import(text, strlen(text), x);
}

static void
test_driver_jmap_parse_import(void)
{
	struct driver_jmap_reply x;

	import_reply("{\"methodResponses\":[[\"Email/import\",{\"accountId\":"
		     "\"alice\",\"created\":{\"m\":{\"id\":\"Md4f9\",\"blobId\":"
		     "\"Gd4f9\"}},\"notCreated\":{}},\"i\"]],"
		     "\"sessionState\":\"7\"}", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_STRING_EQUAL(x.id, "Md4f9");
	CU_ASSERT_STRING_EQUAL(x.state, "7");

	import_reply("{\"methodResponses\":[[\"Email/import\",{\"created\":{},"
		     "\"notCreated\":{\"m\":{\"type\":\"alreadyExists\","
		     "\"existingId\":\"Md4f9\"}}},\"i\"]]}", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_EXISTS);
	CU_ASSERT_STRING_EQUAL(x.id, "Md4f9");
	CU_ASSERT_STRING_EQUAL(x.state, "");

	import_reply("{\"methodResponses\":[[\"Email/import\",{\"created\":{},"
		     "\"notCreated\":{\"m\":{\"type\":\"invalidProperties\","
		     "\"properties\":[\"mailboxIds\",\"keywords\"]}}},\"i\"]]}",
		     &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_NOT_CREATED);
	CU_ASSERT_STRING_EQUAL(x.type, "invalidProperties");
	CU_ASSERT_STRING_EQUAL(x.desc, "mailboxIds keywords");

	import_reply("{\"methodResponses\":[[\"error\",{\"type\":"
		     "\"accountNotFound\"},\"i\"]],\"sessionState\":\"0\"}", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_ERROR);
	CU_ASSERT_STRING_EQUAL(x.type, "accountNotFound");

	/* an answer to another call, or none */
	import_reply("{\"methodResponses\":[[\"Email/import\",{\"created\":"
		     "{\"m\":{\"id\":\"M1\"}}},\"x\"]]}", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_BAD);
	import_reply("{\"methodResponses\":[[\"Email/import\",{},\"i\"]]}",
		     &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_BAD);
	CU_ASSERT_STRING_EQUAL(x.type, "neither created nor notCreated");
	import_reply("[1,2", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_BAD);
}

/* A Mailbox/query + Mailbox/get reply with list (JSON text) */
static void
mailbox_reply(const char *list, const char *mailbox,
	      struct driver_jmap_reply *x)
{
	char t[1024];

	snprintf(t, sizeof(t), "{\"methodResponses\":[[\"Mailbox/query\","
		 "{\"ids\":[]},\"q\"],[\"Mailbox/get\",{\"list\":%s},\"g\"]],"
		 "\"sessionState\":\"5\"}", list);
	driver_jmap_parse_mailbox(t, strlen(t), mailbox, x);
}

static void
test_driver_jmap_parse_upload_and_mailbox(void)
{
	struct driver_jmap_reply x;
	static const char up[] = "{\"accountId\":\"alice\",\"blobId\":"
		"\"Gd4f90f\",\"size\":87,\"type\":\"message/rfc822\"}";
	static const char in[] = "[{\"id\":\"7f3b-uuid\",\"name\":\"Inbox\","
		"\"role\":\"inbox\",\"parentId\":null}]";
	/* the name filter matches parts of names: only the exact one,
	 * the top-level one first */
	static const char named[] = "[{\"id\":\"a\",\"name\":\"Postern2\","
		"\"role\":null,\"parentId\":null},{\"id\":\"b\",\"name\":"
		"\"Postern\",\"role\":null,\"parentId\":\"x\"},{\"id\":\"c\","
		"\"name\":\"Postern\",\"role\":null,\"parentId\":null}]";
	static const char created[] = "{\"methodResponses\":[[\"Mailbox/set\","
		"{\"created\":{\"m\":{\"id\":\"new-1\"}}},\"s\"]]}";
	static const char refused[] = "{\"methodResponses\":[[\"Mailbox/set\","
		"{\"notCreated\":{\"m\":{\"type\":\"forbidden\"}}},\"s\"]]}";
	static const char nf[] = "{\"methodResponses\":[[\"error\",{\"type\":"
		"\"accountNotFound\"},\"q\"]],\"sessionState\":\"0\"}";

	driver_jmap_parse_upload(up, strlen(up), &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_STRING_EQUAL(x.id, "Gd4f90f");
	driver_jmap_parse_upload("{}", 2, &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_BAD);
	mailbox_reply(in, "inbox", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_STRING_EQUAL(x.id, "7f3b-uuid");
	CU_ASSERT_STRING_EQUAL(x.state, "5");
	mailbox_reply(in, "Inbox", &x);		/* by its name */
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	mailbox_reply("[]", "inbox", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_NOT_FOUND);
	mailbox_reply(named, "Postern", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_STRING_EQUAL(x.id, "c");
	mailbox_reply(named, "Poster", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_NOT_FOUND);
	mailbox_reply(named, "archive", &x);	/* a role: none has it */
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_NOT_FOUND);
	driver_jmap_parse_create(created, strlen(created), &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_STRING_EQUAL(x.id, "new-1");
	driver_jmap_parse_create(refused, strlen(refused), &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_NOT_CREATED);
	CU_ASSERT_STRING_EQUAL(x.type, "forbidden");
	driver_jmap_parse_mailbox(nf, strlen(nf), "inbox", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_ERROR);
	CU_ASSERT_STRING_EQUAL(x.type, "accountNotFound");
	CU_ASSERT_STRING_EQUAL(x.state, "0");
}

static void
look_reply(const char *list, const char *id, struct driver_jmap_reply *x)
{
	char text[1024];

	snprintf(text, sizeof(text), "{\"methodResponses\":["
		 "[\"Email/query\",{\"ids\":[]},\"q\"],"
		 "[\"Email/get\",{\"list\":%s,\"notFound\":[]},\"g\"]],"
		 "\"sessionState\":\"0\"}", list);
	driver_jmap_parse_look(text, strlen(text), id, x);
}

static void
test_driver_jmap_parse_look_matches_exactly(void)
{
	struct driver_jmap_reply x;
	static const char err[] = "{\"methodResponses\":["
		"[\"error\",{\"type\":\"accountNotFound\"},\"q\"],"
		"[\"error\",{\"type\":\"accountNotFound\"},\"g\"]]}";

	look_reply("[{\"id\":\"M1\",\"header:X-Postern-Delivery:asText:all\":"
		   "[\"<A.B.1>\"]}]", "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_EQUAL(x.found, 1);
	/* the filter's substring and case-insensitive matches */
	look_reply("[{\"id\":\"M1\",\"header:X-Postern-Delivery:asText:all\":"
		   "[\"<A.B.10>\"]},{\"id\":\"M2\","
		   "\"header:X-Postern-Delivery:asText:all\":[\"<a.b.1>\"]}]",
		   "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_EQUAL(x.found, 0);
	/* ours first, an older one inside (mail that passed another
	 * postern): either value counts, each email once */
	look_reply("[{\"id\":\"M1\",\"header:X-Postern-Delivery:asText:all\":"
		   "[\"<A.B.1>\",\"<inner>\",\"<A.B.1>\"]},{\"id\":\"M2\","
		   "\"header:X-Postern-Delivery:asText:all\":[\"<C.D.2>\","
		   "\"<A.B.1>\"]}]", "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.found, 2);
	look_reply("[]", "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_OK);
	CU_ASSERT_EQUAL(x.found, 0);
	driver_jmap_parse_look(err, strlen(err), "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_ERROR);
	CU_ASSERT_STRING_EQUAL(x.type, "accountNotFound");
	static const char noget[] = "{\"methodResponses\":[[\"Email/query\","
		"{},\"q\"]]}";
	driver_jmap_parse_look(noget, strlen(noget), "<A.B.1>", &x);
	CU_ASSERT_EQUAL(x.kind, DRIVER_JMAP_BAD);
}

/* Map a reply of kind/type/desc; returns map_import's value. */
static int
map(enum driver_jmap_kind kind, const char *type, const char *desc,
    bool may_retry, struct driver_rcpt *r)
{
	struct driver_jmap_reply x = { .kind = kind };

	snprintf(x.id, sizeof(x.id), "%s", "M42");
	snprintf(x.type, sizeof(x.type), "%s", type);
	snprintf(x.desc, sizeof(x.desc), "%s", desc);
	memset(r, 0, sizeof(*r));
	return driver_jmap_map_import(&x, "alice", "h:80", may_retry, r);
}

static void
test_driver_jmap_map_import(void)
{
	struct driver_rcpt r;

	CU_ASSERT_EQUAL(map(DRIVER_JMAP_OK, "", "", true, &r), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_STRING_EQUAL(r.reply, "delivered to jmap M42 (account "
			       "alice)");
	/* Cyrus: the same bytes again */
	CU_ASSERT_EQUAL(map(DRIVER_JMAP_EXISTS, "alreadyExists", "", true,
			    &r), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_DELIVERED);
	CU_ASSERT_STRING_EQUAL(r.reply, "already in jmap M42 (account "
			       "alice)");
	map(DRIVER_JMAP_NOT_CREATED, "overQuota", "", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(r.reply, "4.2.2 h:80: over quota in account "
			       "alice: overQuota");
	map(DRIVER_JMAP_NOT_CREATED, "tooLarge", "", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_PERMFAIL);
	CU_ASSERT_NSTRING_EQUAL(r.reply, "5.3.4 ", 6);
	map(DRIVER_JMAP_ERROR, "accountNotFound", "", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_PERMFAIL);
	CU_ASSERT_STRING_EQUAL(r.reply, "5.1.1 h:80: no JMAP mail account "
			       "alice (accountNotFound)");
	map(DRIVER_JMAP_ERROR, "serverFail", "disk", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(r.reply, "4.3.0 h:80: Email/import into alice "
			       "failed: serverFail: disk");
	map(DRIVER_JMAP_ERROR, "serverPartialFail", "", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_UNKNOWN);
	map(DRIVER_JMAP_BAD, "no response to the call", "", true, &r);
	CU_ASSERT_EQUAL(r.result, CLAIM_UNKNOWN);
	CU_ASSERT_NSTRING_EQUAL(r.reply, "4.4.2 ", 6);
	/* a stale Inbox id or blob: once more, then deferred */
	CU_ASSERT_EQUAL(map(DRIVER_JMAP_NOT_CREATED, "invalidProperties",
			    "mailboxIds", true, &r), 1);
	CU_ASSERT_EQUAL(r.result, 0);
	CU_ASSERT_EQUAL(map(DRIVER_JMAP_NOT_CREATED, "blobNotFound", "", true,
			    &r), 1);
	CU_ASSERT_EQUAL(map(DRIVER_JMAP_NOT_CREATED, "invalidProperties",
			    "mailboxIds", false, &r), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
	CU_ASSERT_STRING_EQUAL(r.reply, "4.3.0 h:80: Email/import refused in "
			       "account alice: invalidProperties: mailboxIds");
	CU_ASSERT_EQUAL(map(DRIVER_JMAP_NOT_CREATED, "invalidProperties",
			    "keywords", true, &r), 0);
	CU_ASSERT_EQUAL(r.result, CLAIM_TEMPFAIL);
}

static void
test_driver_jmap_url(void)
{
	char *u;

	u = driver_jmap_url("http://127.0.0.1:8080/.well-known/jmap",
			    "/jmap/", NULL);
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:8080/jmap/");
	free(u);
	u = driver_jmap_url("http://127.0.0.1:8080/jmap/",
			    "/jmap/upload/{accountId}/", "a b@x");
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:8080/jmap/upload/"
			       "a%20b%40x/");
	free(u);
	u = driver_jmap_url("http://h/jmap/session", "api", NULL);
	CU_ASSERT_STRING_EQUAL(u, "http://h/jmap/api");
	free(u);
	u = driver_jmap_url("http://h/", "https://api.example/jmap/", NULL);
	CU_ASSERT_STRING_EQUAL(u, "https://api.example/jmap/");
	free(u);
	CU_ASSERT_PTR_NULL(driver_jmap_url("http://h/", "ftp://h/x", NULL));
	CU_ASSERT_PTR_NULL(driver_jmap_url("http://h/", "", NULL));
}

static void
test_driver_jmap_new_checks_its_options(void)
{
	struct driver_jmap_opts o = {
		.url = "http://127.0.0.1:1/jmap/", .user = "postern",
		.password = "pw", .account = "%l", .tls_verify = true,
		.timeout_ms = 1000, .cancel_fd = -1,
	};
	const char *err = NULL;
	struct driver *d = driver_jmap_new(&o, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_STRING_EQUAL(d->ops->name, "jmap");
	CU_ASSERT_TRUE(d->ops->can_look);
	CU_ASSERT_FALSE(d->ops->deliver_looks);
	driver_free(&d);
	CU_ASSERT_PTR_NULL(d);
	o.url = "imap://h/";
	CU_ASSERT_PTR_NULL(driver_jmap_new(&o, &err));
	CU_ASSERT_STRING_EQUAL(err, "url imap://h/: not an http:// or "
			       "https:// URL");
	o.url = "https://h/.well-known/jmap";
	o.password = NULL;
	o.password_file = "/nonexistent/pw";
	CU_ASSERT_PTR_NULL(driver_jmap_new(&o, &err));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "password_file /nonexistent/pw"));

	/* a token file whose first line is empty: refused at start */
	char path[] = "/tmp/postern-jmap-token.XXXXXX";
	int fd = mkstemp(path);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "\nsecond line\n", 13), 13);
	close(fd);
	o.password_file = NULL;
	o.user = NULL;
	o.token_file = path;
	CU_ASSERT_PTR_NULL(driver_jmap_new(&o, &err));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "its first line is empty"));
	fd = open(path, O_WRONLY | O_TRUNC);
	CU_ASSERT_EQUAL(write(fd, "tok.en.sig\n", 11), 11);
	close(fd);
	d = driver_jmap_new(&o, &err);
	CU_ASSERT_PTR_NOT_NULL(d);
	driver_free(&d);
	unlink(path);
}

static CU_TestInfo driver_jmap_tests[] = {
	{ "delivery_ids_never_contain_each_other",
	  test_driver_jmap_delivery_ids_never_contain_each_other },
	{ "requests", test_driver_jmap_requests },
	{ "parse_session", test_driver_jmap_parse_session },
	{ "parse_import", test_driver_jmap_parse_import },
	{ "parse_upload_and_mailbox",
	  test_driver_jmap_parse_upload_and_mailbox },
	{ "parse_look_matches_exactly",
	  test_driver_jmap_parse_look_matches_exactly },
	{ "map_import", test_driver_jmap_map_import },
	{ "url", test_driver_jmap_url },
	{ "new_checks_its_options", test_driver_jmap_new_checks_its_options },
	CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
	{ "driver_jmap", suite_init, suite_clean, NULL, NULL,
	  driver_jmap_tests },
	CU_SUITE_INFO_NULL,
};

TEST_MAIN(suites)
