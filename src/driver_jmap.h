/*
 * driver_jmap.h - deliver into a mailbox (the Inbox, or one named or
 * given by role) of each recipient's account on a JMAP server (RFC 8620,
 * RFC 8621): upload the message, then Email/import.
 *
 * One driver object logs in as one user (HTTP Basic, or a bearer token)
 * and keeps one
 * libcurl easy handle, so its connection is reused. Each recipient maps
 * to a JMAP account (a template, as the imap driver's user) and gets its
 * own copy, which starts with a header X-Postern-Delivery naming the
 * delivery (driver_delivery_id()); look() finds that copy again with
 * Email/query and checks the header's value with Email/get: after a lost
 * reply or a crash, an in-doubt entry is looked for before it is
 * imported again.
 *
 * Threads: one object per worker; objects share nothing but libcurl's
 * global state, which posternd's main() sets up (curl_global_init())
 * before any thread starts.
 */
#ifndef POSTERN_DRIVER_JMAP_H
#define POSTERN_DRIVER_JMAP_H

#include "driver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every string is borrowed for the call (driver_jmap_new() copies). */
struct driver_jmap_opts {
	const char *url;		/* the session resource, http[s]:// */
	const char *user;		/* HTTP Basic; NULL with token_file */
	const char *password;		/* NULL: the first line of ... */
	const char *password_file;	/* ... this file */
	const char *token_file;		/* else: a bearer token, its first
					   line (RFC 6750) */
	/* The mailbox: a role of RFC 8621 ("inbox", "archive", ...: lower
	 * case, driver_jmap_is_role()) or else a mailbox name. */
	const char *mailbox;
	bool create_mailbox;		/* a name not found: Mailbox/set it */
	/* The accountId of a recipient, a template as in driver_expand():
	 * "%l" (the local part) for Cyrus. */
	const char *account;
	const char *tls_ca_file;	/* NULL: the system's CAs */
	bool tls_verify;		/* https: chain and host name */
	unsigned timeout_ms;		/* each HTTP request, connect to end */
	int cancel_fd;			/* borrowed; -1: none */
};

/* A driver for o. Returns NULL with *error_r (thread-local, valid until
 * the next call on this thread) when the URL is not http[s]:// or the
 * password file cannot be read. The caller owns the result and frees it
 * with driver_free(). Needs curl_global_init() done. */
struct driver *
driver_jmap_new(const struct driver_jmap_opts *o, const char **error_r);

/* --- pure helpers, for the driver and the unit tests ------------------ */

#define DRIVER_JMAP_ID_LEN	256	/* JMAP ids are at most 255 octets */
#define DRIVER_JMAP_TEXT_LEN	160

/* What a JMAP reply said, as far as the driver needs it. */
enum driver_jmap_kind {
	DRIVER_JMAP_OK,		/* the method answered: created, found */
	DRIVER_JMAP_NOT_FOUND,	/* mailbox: no such mailbox */
	DRIVER_JMAP_EXISTS,	/* Email/import: notCreated alreadyExists */
	DRIVER_JMAP_NOT_CREATED, /* Email/import: notCreated, see type */
	DRIVER_JMAP_ERROR,	/* the method failed: ["error", ...] */
	DRIVER_JMAP_BAD,	/* not the JMAP reply expected */
};

struct driver_jmap_reply {
	enum driver_jmap_kind kind;
	/* OK: the Email id created, or the mailbox id found or created;
	 * EXISTS: the
	 * existing Email id ("" if the server named none). */
	char id[DRIVER_JMAP_ID_LEN];
	size_t found;		/* look: emails whose header matches */
	/* NOT_CREATED, ERROR: the error type ("overQuota"); BAD: what was
	 * wrong. */
	char type[DRIVER_JMAP_TEXT_LEN];
	/* The error's description, and for invalidProperties the
	 * properties named; "" if none. */
	char desc[DRIVER_JMAP_TEXT_LEN];
	char state[DRIVER_JMAP_ID_LEN];	/* sessionState, "" if none */
};

/* The session resource, as far as the driver uses it. Strings owned by
 * the struct (driver_jmap_session_free()); the URLs as the server wrote
 * them (maybe relative, uploadUrl with "{accountId}"). */
struct driver_jmap_session {
	char *api_url;
	char *upload_url;
	char *state;
	uint64_t max_upload;	/* maxSizeUpload; 0: not given */
};

/* Parse a session resource from text[0..len) into *s (cleared first).
 * 0; -1 (nothing to free) with *error_r (static text) when it is not
 * JSON, lacks apiUrl or uploadUrl, or does not offer
 * urn:ietf:params:jmap:mail. */
int
driver_jmap_parse_session(const char *text, size_t len,
			  struct driver_jmap_session *s, const char **error_r);

/* Free the strings of s and clear it. */
void
driver_jmap_session_free(struct driver_jmap_session *s);

/* The request bodies (compact JSON, owned by the caller: free()). Each
 * names the capabilities core and mail in "using".
 *   mailbox: Mailbox/query, filter role mailbox if driver_jmap_is_role()
 *           says it is one, else name mailbox, then Mailbox/get of what
 *           it found (name, role, parentId), in account;
 *   create: Mailbox/set, create a top-level mailbox named name;
 *   import: Email/import of blob into the mailbox box, no keywords;
 *   look:   Email/query, filter header X-Postern-Delivery id (the whole
 *           account), then Email/get of what it found with the
 *           property header:X-Postern-Delivery:asText:all. */
char *
driver_jmap_mailbox_request(const char *account, const char *mailbox);
char *
driver_jmap_create_request(const char *account, const char *name);
char *
driver_jmap_import_request(const char *account, const char *blob,
			   const char *box);

/* Whether s is one of RFC 8621's mailbox roles (IANA "IMAP Mailbox Name
 * Attributes", lower case as JMAP writes them). */
bool
driver_jmap_is_role(const char *s);
char *
driver_jmap_look_request(const char *account, const char *id);

/* Parse the reply text[0..len) to the request of the same name into *x.
 * upload: OK with id the blobId; mailbox: OK with id that of the
 * mailbox with role mailbox, or named exactly mailbox (a top-level one
 * first: the query's name filter matches parts of names), NOT_FOUND if
 * there is none; create: OK with id the new mailbox's, or NOT_CREATED
 * with its type; import:
 * OK with id the new Email's, EXISTS, NOT_CREATED or ERROR; look: OK
 * with found the number of emails one of whose X-Postern-Delivery
 * values is exactly id (Email/query's match is a substring match, and
 * may ignore case). Always fills *x. */
void
driver_jmap_parse_upload(const char *text, size_t len,
			 struct driver_jmap_reply *x);
void
driver_jmap_parse_mailbox(const char *text, size_t len, const char *mailbox,
			  struct driver_jmap_reply *x);
void
driver_jmap_parse_create(const char *text, size_t len,
			 struct driver_jmap_reply *x);
void
driver_jmap_parse_import(const char *text, size_t len,
			 struct driver_jmap_reply *x);
void
driver_jmap_parse_look(const char *text, size_t len, const char *id,
		       struct driver_jmap_reply *x);

/* Map an Email/import reply x for account onto r (result and reply;
 * peer names the server in failure texts). With may_retry, returns 1
 * without touching r when the import may be tried again with a fresh
 * mailbox id and blob (notCreated invalidProperties mailboxIds or blobId,
 * blobNotFound: nothing was imported); else 0. */
int
driver_jmap_map_import(const struct driver_jmap_reply *x,
		       const char *account, const char *peer,
		       bool may_retry, struct driver_rcpt *r);

/* The URL ref (absolute, or relative to base) with "{accountId}"
 * replaced by account, %-encoded; owned by the caller (free()), NULL if
 * it is not a URL. */
char *
driver_jmap_url(const char *base, const char *ref, const char *account);

#endif
