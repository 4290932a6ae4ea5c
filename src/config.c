/*
 * config.c - parse postern.conf into a frozen, refcounted snapshot.
 *
 * Owns:    every struct config and everything it points to; the
 *          thread-local error buffer behind *error_r.
 * Threads: config_load() from any thread (it keeps no shared state);
 *          the readers and config_ref()/config_unref() from any thread
 *          holding a reference.
 *
 * One table (keys[]) lists every section, key, type and default. Defaults
 * are parsed from their text by the same code as the file, so the built-in
 * values cannot drift from what postern.conf(5) and the sample say.
 *
 * libinih gives us no line numbers and joins indented lines onto the key
 * above, so it reads through our own line reader: that counts lines,
 * strips leading blanks (no continuation lines, indenting is harmless),
 * refuses lines too long for inih's buffer instead of letting it split
 * them, and catches unknown sections even when they hold no keys.
 */
#include "config.h"
#include "ccmail_convert.h"
#include "ccmail_map.h"
#include "driver_table.h"
#include "ingress_auth.h"
#include "ingress_tls.h"
#include "imap_client.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONFIG_ERRBUF_LEN	2048
#define CONFIG_WHY_LEN		512

static _Thread_local char errbuf[CONFIG_ERRBUF_LEN];

enum vtype {
	V_PATH,		/* absolute path */
	V_HOSTNAME,	/* empty: gethostname() at the end of the load */
	V_UINT,		/* unsigned */
	V_SIZE,		/* uint64_t, k/m/g suffix */
	V_SECS,		/* unsigned seconds, s/m/h/d suffix */
	V_MSECS,	/* unsigned milliseconds, also ms suffix */
	V_BOOL,		/* bool */
	V_ENUM,		/* enum, one of names[] */
	V_DRIVER,	/* enum config_driver, a name in driver_table.h */
	V_HOSTPORT,	/* struct config_hostport */
	V_HOSTPORT_OPT,	/* the same, may be empty */
	V_NEXTHOP_OPT,	/* the same, or an absolute socket path (port NULL) */
	V_PATH_OPT,	/* absolute path, or empty: NULL */
	V_STR_OPT,	/* any string, empty: NULL */
	V_DOMAINS,	/* struct config_strlist */
	V_NETWORKS,	/* struct config_cidrlist */
	V_CHARSET,	/* an ASCII-compatible iconv charset name */
	V_FALLBACK,	/* "none" or a cc:Mail name pattern */
	V_WORD,		/* printable text without control characters */
	V_IDENT,	/* a program name: letters, digits, "-._/" */
	V_URL_OPT,	/* an http:// or https:// URL, or empty: NULL */
};

struct key {
	const char *section;
	const char *name;
	enum vtype type;
	size_t off;		/* of the field in struct config */
	uint64_t min, max;	/* V_UINT, V_SIZE, V_SECS (s), V_MSECS (ms) */
	const char *const *names;	/* V_ENUM, NULL-terminated */
	const char *def;	/* default, written as in the file */
};

static const char *const layout_names[] = {
	"address", "domain/localpart", NULL
};
static const char *const in_doubt_names[] = { "hold", "retry", NULL };
static const char *const window_names[] = { "message", "batch", NULL };
static const char *const tls_names[] = { "none", "may", "encrypt", NULL };
static const char *const auth_names[] = {
	"none", "optional", "required", NULL
};
static const char *const imap_tls_names[] = {
	"none", "may", "encrypt", "implicit", NULL
};
static const char *const level_names[] = {
	"error", "warning", "info", "debug", NULL
};
static const char *const log_format_names[] = {
	"text", "json", "syslog", NULL
};

_Static_assert(sizeof(enum config_driver) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_layout) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_in_doubt) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_auth) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(LOG_LVL_ERR == 0 && LOG_LVL_DEBUG == 3, "level_names order");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
_Static_assert(LOG_FMT_TEXT == 0 && LOG_FMT_JSON == 1 &&
	       LOG_FMT_SYSLOG == 2, "log_format_names order");

#define F(field)	offsetof(struct config, field)
#define KB		1024ull
#define MB		(1024ull * KB)
#define GB		(1024ull * MB)
#define DAY		86400ull

/* The keys [smtp] and [lmtp] share, apart from relay. The RFC 5321
 * 4.5.3.2 timeouts are the defaults. */
#define PEER_KEYS(sec, f, tls_def) \
	{ sec, "tls", V_ENUM, F(f.tls), 0, 0, tls_names, tls_def }, \
	{ sec, "tls_ca_file", V_PATH_OPT, F(f.tls_ca_file), 0, 0, NULL, "" }, \
	{ sec, "tls_verify", V_BOOL, F(f.tls_verify), 0, 0, NULL, "yes" }, \
	{ sec, "auth_user", V_STR_OPT, F(f.auth_user), 0, 0, NULL, "" }, \
	{ sec, "auth_password_file", V_PATH_OPT, F(f.auth_password_file), \
	  0, 0, NULL, "" }, \
	{ sec, "auth_plaintext", V_BOOL, F(f.auth_plaintext), 0, 0, NULL, \
	  "no" }, \
	{ sec, "connect_timeout", V_SECS, F(f.connect_timeout), 1, 86400, \
	  NULL, "30s" }, \
	{ sec, "greeting_timeout", V_SECS, F(f.greeting_timeout), 1, 86400, \
	  NULL, "5m" }, \
	{ sec, "mail_timeout", V_SECS, F(f.mail_timeout), 1, 86400, NULL, \
	  "5m" }, \
	{ sec, "rcpt_timeout", V_SECS, F(f.rcpt_timeout), 1, 86400, NULL, \
	  "5m" }, \
	{ sec, "data_timeout", V_SECS, F(f.data_timeout), 1, 86400, NULL, \
	  "2m" }, \
	{ sec, "block_timeout", V_SECS, F(f.block_timeout), 1, 86400, NULL, \
	  "3m" }, \
	{ sec, "dot_timeout", V_SECS, F(f.dot_timeout), 1, 86400, NULL, \
	  "10m" }, \
	{ sec, "reconnect_max", V_SECS, F(f.reconnect_max), 1, 86400, NULL, \
	  "60s" }

static const struct key keys[] = {
	{ "store", "path", V_PATH, F(store_path), 0, 0, NULL,
	  "/var/lib/postern" },
	{ "store", "map_size", V_SIZE, F(store_map_size), MB, UINT64_MAX,
	  NULL, "64M" },
	{ "store", "map_max", V_SIZE, F(store_map_max), MB, UINT64_MAX,
	  NULL, "16G" },
	{ "store", "group_wait", V_MSECS, F(store_group_wait_ms), 0, 1000,
	  NULL, "3ms" },
	{ "ingress", "listen", V_HOSTPORT, F(ingress_listen), 0, 0, NULL,
	  "127.0.0.1:2525" },
	{ "ingress", "lmtp_listen", V_HOSTPORT_OPT, F(ingress_lmtp_listen),
	  0, 0, NULL, "" },
	{ "ingress", "accept_domains", V_DOMAINS,
	  F(ingress_accept_domains), 0, 0, NULL, "*" },
	{ "ingress", "allow_networks", V_NETWORKS,
	  F(ingress_allow_networks), 0, 0, NULL, "127.0.0.0/8 ::1/128" },
	{ "ingress", "hostname", V_HOSTNAME, F(ingress_hostname), 0, 0,
	  NULL, "" },
	{ "ingress", "max_sessions", V_UINT, F(ingress_max_sessions),
	  1, 1000000, NULL, "100" },
	{ "ingress", "max_sessions_per_ip", V_UINT,
	  F(ingress_max_sessions_per_ip), 0, 1000000, NULL, "50" },
	{ "ingress", "max_recipients", V_UINT, F(ingress_max_recipients),
	  1, 1000000, NULL, "1000" },
	{ "ingress", "max_message_size", V_SIZE,
	  F(ingress_max_message_size), 1, UINT64_MAX, NULL, "50M" },
	{ "ingress", "idle_timeout", V_SECS, F(ingress_idle_timeout),
	  1, UINT_MAX, NULL, "300s" },
	{ "ingress", "data_timeout", V_SECS, F(ingress_data_timeout),
	  1, UINT_MAX, NULL, "600s" },
	{ "ingress", "resubmit_window", V_SECS, F(ingress_resubmit_window),
	  0, 366u * 86400u, NULL, "5d" },
	{ "ingress", "tls", V_ENUM, F(ingress_tls), 0, 0, tls_names, "none" },
	{ "ingress", "tls_cert", V_PATH_OPT, F(ingress_tls_cert), 0, 0, NULL,
	  "" },
	{ "ingress", "tls_key", V_PATH_OPT, F(ingress_tls_key), 0, 0, NULL,
	  "" },
	{ "ingress", "tls_handshake_timeout", V_SECS,
	  F(ingress_tls_handshake_timeout), 1, 3600, NULL, "60s" },
	{ "ingress", "auth", V_ENUM, F(ingress_auth), 0, 0, auth_names,
	  "none" },
	{ "ingress", "auth_users", V_PATH_OPT, F(ingress_auth_users), 0, 0,
	  NULL, "" },
	{ "ingress", "auth_plaintext", V_BOOL, F(ingress_auth_plaintext), 0,
	  0, NULL, "no" },
	{ "daemon", "user", V_STR_OPT, F(daemon_user), 0, 0, NULL, "" },
	{ "ingress", "greet_pause", V_MSECS, F(ingress_greet_pause_ms),
	  0, 60000, NULL, "0" },
	{ "workers", "count", V_UINT, F(workers_count), 1, 1024, NULL, "16" },
	{ "workers", "batch", V_UINT, F(workers_batch), 1, 10000, NULL,
	  "16" },
	{ "workers", "lease", V_SECS, F(workers_lease), 1, UINT_MAX, NULL,
	  "600s" },
	{ "workers", "in_doubt_window", V_ENUM, F(workers_in_doubt_window),
	  0, 0, window_names, "message" },
	{ "foreign", "driver", V_DRIVER, F(foreign_driver), 0, 0, NULL,
	  "maildir" },
	{ "maildir", "root", V_PATH, F(maildir_root), 0, 0, NULL,
	  "/var/lib/postern/maildir" },
	{ "maildir", "layout", V_ENUM, F(maildir_layout), 0, 0,
	  layout_names, "address" },
	{ "ccmail", "drop_dir", V_PATH, F(ccmail_drop_dir), 0, 0, NULL,
	  "/var/spool/postern/ccmail" },
	{ "ccmail", "charset", V_CHARSET, F(ccmail_charset), 0, 0, NULL,
	  "ISO-8859-1" },
	{ "ccmail", "address_map", V_PATH_OPT, F(ccmail_address_map), 0, 0,
	  NULL, "" },
	{ "ccmail", "fallback", V_FALLBACK, F(ccmail_fallback), 0, 0, NULL,
	  "none" },
	{ "ccmail", "postoffice", V_WORD, F(ccmail_postoffice), 0, 0, NULL,
	  "POSTOFFICE" },
	{ "smtp", "relay", V_HOSTPORT_OPT, F(smtp.relay), 0, 0, NULL, "" },
	PEER_KEYS("smtp", smtp, "may"),
	{ "smtp", "probe", V_STR_OPT, F(smtp.probe), 0, 0, NULL, "" },
	{ "smtp", "probe_password_file", V_PATH_OPT,
	  F(smtp.probe_password_file), 0, 0, NULL, "" },
	{ "lmtp", "relay", V_NEXTHOP_OPT, F(lmtp.relay), 0, 0, NULL, "" },
	PEER_KEYS("lmtp", lmtp, "none"),
	{ "lmtp", "probe", V_STR_OPT, F(lmtp.probe), 0, 0, NULL, "" },
	{ "lmtp", "probe_password_file", V_PATH_OPT,
	  F(lmtp.probe_password_file), 0, 0, NULL, "" },
	{ "imap", "server", V_HOSTPORT_OPT, F(imap.server), 0, 0, NULL, "" },
	{ "imap", "tls", V_ENUM, F(imap.tls), 0, 0, imap_tls_names, "may" },
	{ "imap", "tls_ca_file", V_PATH_OPT, F(imap.tls_ca_file), 0, 0, NULL,
	  "" },
	{ "imap", "tls_verify", V_BOOL, F(imap.tls_verify), 0, 0, NULL, "yes" },
	{ "imap", "user", V_STR_OPT, F(imap.user), 0, 0, NULL, "" },
	{ "imap", "password_file", V_PATH_OPT, F(imap.password_file), 0, 0,
	  NULL, "" },
	{ "imap", "auth_plaintext", V_BOOL, F(imap.auth_plaintext), 0, 0, NULL,
	  "no" },
	{ "imap", "mailbox", V_WORD, F(imap.mailbox), 0, 0, NULL, "INBOX" },
	{ "imap", "create_mailbox", V_BOOL, F(imap.create_mailbox), 0, 0, NULL,
	  "no" },
	{ "imap", "connect_timeout", V_SECS, F(imap.connect_timeout), 1, 86400,
	  NULL, "30s" },
	{ "imap", "command_timeout", V_SECS, F(imap.command_timeout), 1, 86400,
	  NULL, "2m" },
	{ "imap", "append_timeout", V_SECS, F(imap.append_timeout), 1, 86400,
	  NULL, "10m" },
	{ "imap", "reconnect_max", V_SECS, F(imap.reconnect_max), 1, 86400,
	  NULL, "60s" },
	{ "jmap", "url", V_URL_OPT, F(jmap.url), 0, 0, NULL, "" },
	{ "jmap", "user", V_STR_OPT, F(jmap.user), 0, 0, NULL, "" },
	{ "jmap", "password", V_STR_OPT, F(jmap.password), 0, 0, NULL, "" },
	{ "jmap", "password_file", V_PATH_OPT, F(jmap.password_file), 0, 0,
	  NULL, "" },
	{ "jmap", "token_file", V_PATH_OPT, F(jmap.token_file), 0, 0, NULL,
	  "" },
	{ "jmap", "account", V_WORD, F(jmap.account), 0, 0, NULL, "%l" },
	{ "jmap", "mailbox", V_WORD, F(jmap.mailbox), 0, 0, NULL, "inbox" },
	{ "jmap", "create_mailbox", V_BOOL, F(jmap.create_mailbox), 0, 0, NULL,
	  "no" },
	{ "jmap", "tls_ca_file", V_PATH_OPT, F(jmap.tls_ca_file), 0, 0, NULL,
	  "" },
	{ "jmap", "tls_verify", V_BOOL, F(jmap.tls_verify), 0, 0, NULL, "yes" },
	{ "jmap", "timeout", V_SECS, F(jmap.timeout), 1, 86400, NULL, "5m" },
	{ "jmap", "reconnect_max", V_SECS, F(jmap.reconnect_max), 1, 86400,
	  NULL, "60s" },
	{ "bounce", "relay", V_HOSTPORT_OPT, F(bounce.relay), 0, 0, NULL,
	  "" },
	PEER_KEYS("bounce", bounce, "may"),
	{ "queue", "backoff_min", V_SECS, F(queue_backoff_min), 1, UINT_MAX,
	  NULL, "300s" },
	{ "queue", "backoff_max", V_SECS, F(queue_backoff_max), 1, UINT_MAX,
	  NULL, "4000s" },
	{ "queue", "max_lifetime", V_SECS, F(queue_max_lifetime), 1,
	  UINT_MAX, NULL, "5d" },
	{ "queue", "max_attempts", V_UINT, F(queue_max_attempts), 0,
	  1000000, NULL, "0" },
	{ "queue", "in_doubt_policy", V_ENUM, F(queue_in_doubt_policy), 0, 0,
	  in_doubt_names, "hold" },
	{ "queue", "look_again", V_SECS, F(queue_look_again), 0, 3600, NULL,
	  "5s" },
	{ "admin", "listen", V_HOSTPORT_OPT, F(admin_listen), 0, 0, NULL,
	  "" },
	{ "log", "level", V_ENUM, F(log_level), 0, 0, level_names, "info" },
	{ "log", "syslog", V_BOOL, F(log_syslog), 0, 0, NULL, "no" },
	{ "log", "format", V_ENUM, F(log_format), 0, 0, log_format_names,
	  "text" },
	{ "log", "syslog_name", V_IDENT, F(log_syslog_name), 0, 0, NULL,
	  "postern" },
};

#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

/* One load in progress. */
struct ctx {
	const char *path;	/* borrowed, for messages */
	FILE *fp;
	struct config *cfg;	/* being filled; owned by config_load() */
	char *line;		/* getline() buffer, owned */
	size_t line_cap;
	unsigned lineno;	/* of the line last handed to inih */
	unsigned set_at[NKEYS];	/* line each key was last set on, 0: default */
	unsigned err_line;	/* first error; 0 with failed: no line */
	bool failed;
	char why[CONFIG_ERRBUF_LEN / 2];
};

static void *
field(struct config *cfg, const struct key *k)
{
	return (char *)cfg + k->off;
}

/* --- values ------------------------------------------------------------- */

/* Digits only (no sign, no blanks), at least one; *end_r after them. */
static int
parse_digits(const char *s, const char **end_r, uint64_t *v_r,
	     char *why, size_t len)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p == '-' && p[1] >= '0' && p[1] <= '9') {
		snprintf(why, len, "\"%s\" is negative", s);
		return -1;
	}
	if (*p < '0' || *p > '9') {
		snprintf(why, len, "\"%s\" is not a number", s);
		return -1;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
			snprintf(why, len, "\"%s\" is too large", s);
			return -1;
		}
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*end_r = p;
	*v_r = v;
	return 0;
}

static int
check_range(const char *s, uint64_t v, uint64_t min, uint64_t max,
	    char *why, size_t len)
{
	if (v < min) {
		snprintf(why, len, "\"%s\" is less than the minimum %llu", s,
			 (unsigned long long)min);
		return -1;
	}
	if (v > max) {
		snprintf(why, len, "\"%s\" is more than the maximum %llu", s,
			 (unsigned long long)max);
		return -1;
	}
	return 0;
}

static int
parse_uint(const char *s, uint64_t *v_r, char *why, size_t len)
{
	const char *end;

	if (parse_digits(s, &end, v_r, why, len) < 0)
		return -1;
	if (*end != '\0') {
		snprintf(why, len, "\"%s\" is not a number", s);
		return -1;
	}
	return 0;
}

static int
parse_size(const char *s, uint64_t *v_r, char *why, size_t len)
{
	uint64_t v, mul = 1;
	const char *end;

	if (parse_digits(s, &end, &v, why, len) < 0)
		return -1;
	switch (*end) {
	case '\0':			break;
	case 'k': case 'K':	mul = KB; end++; break;
	case 'm': case 'M':	mul = MB; end++; break;
	case 'g': case 'G':	mul = GB; end++; break;
	default:		end = "?"; break;
	}
	if (*end != '\0') {
		snprintf(why, len, "\"%s\" is not a size (a number with an "
			 "optional k, m or g suffix)", s);
		return -1;
	}
	if (v > UINT64_MAX / mul) {
		snprintf(why, len, "\"%s\" is too large", s);
		return -1;
	}
	*v_r = v * mul;
	return 0;
}

/* Any duration, in milliseconds; a bare number is seconds. */
static int
parse_duration_ms(const char *s, bool ms_ok, uint64_t *v_r, char *why,
		  size_t len)
{
	uint64_t v, mul = 1000;
	const char *end;

	if (parse_digits(s, &end, &v, why, len) < 0)
		return -1;
	if (strcmp(end, "ms") == 0 && ms_ok)
		mul = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mul = 3600 * 1000;
	else if (strcmp(end, "d") == 0)
		mul = DAY * 1000;
	else {
		snprintf(why, len, "\"%s\" is not a duration (a number with an "
			 "optional %ss, m, h or d suffix)", s,
			 ms_ok ? "ms, " : "");
		return -1;
	}
	if (v > UINT64_MAX / mul) {
		snprintf(why, len, "\"%s\" is too large", s);
		return -1;
	}
	*v_r = v * mul;
	return 0;
}

static int
parse_bool(const char *s, bool *v_r, char *why, size_t len)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v_r = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v_r = false;
			return 0;
		}
	}
	snprintf(why, len, "\"%s\" is not a boolean (yes/no, true/false, "
		 "on/off, 1/0)", s);
	return -1;
}

/* The i-th value k may take (V_ENUM, V_DRIVER); NULL past the last. */
static const char *
enum_name(const struct key *k, size_t i)
{
	const struct driver_table_row *row;

	if (k->type != V_DRIVER)
		return k->names[i];
	row = driver_table_get(i);
	return row != NULL ? row->name : NULL;
}

static int
parse_enum(const char *s, const struct key *k, int *v_r, char *why,
	   size_t len)
{
	const char *name;
	size_t i, o;
	int n;

	for (i = 0; (name = enum_name(k, i)) != NULL; i++) {
		if (strcmp(s, name) == 0) {
			*v_r = (int)i;
			return 0;
		}
	}
	n = snprintf(why, len, "\"%s\" is not one of: ", s);
	o = n < 0 ? 0 : (size_t)n;
	for (i = 0; (name = enum_name(k, i)) != NULL && o < len; i++) {
		n = snprintf(why + o, len - o, "%s%s", i == 0 ? "" : ", ",
			     name);
		o += n < 0 ? 0 : (size_t)n;
	}
	return -1;
}

/* Letters, digits, '-' and '_' in labels joined by single dots. */
static bool
is_domain(const char *s)
{
	bool label_start = true;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '.') {
			if (label_start)
				return false;
			label_start = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		label_start = false;
	}
	return !label_start;
}

static int
parse_port(const char *s, const char *port, char *why, size_t len)
{
	uint64_t v = 0;
	const char *p;

	for (p = port; *p >= '0' && *p <= '9' && v <= 65535; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	if (p == port || *p != '\0' || v < 1 || v > 65535) {
		snprintf(why, len, "\"%s\": port \"%s\" is not a number from "
			 "1 to 65535", s, port);
		return -1;
	}
	return 0;
}

static int
parse_hostport(const char *s, char **host_r, char **port_r, char *why,
	       size_t len)
{
	const char *colon, *host = s;
	size_t hlen;
	char *h;
	struct in6_addr a6;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':') {
			snprintf(why, len, "\"%s\" is not [address]:port", s);
			return -1;
		}
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(why, len, "\"%s\" has no :port", s);
			return -1;
		}
		hlen = (size_t)(colon - s);
		if (memchr(s, ':', hlen) != NULL) {
			snprintf(why, len, "\"%s\": an IPv6 address must be "
				 "in brackets, as in [::1]:25", s);
			return -1;
		}
	}
	if (parse_port(s, colon + 1, why, len) < 0)
		return -1;
	h = xstrndup(host, hlen);
	if ((*s == '[' && inet_pton(AF_INET6, h, &a6) != 1) ||
	    (*s != '[' && !is_domain(h))) {
		snprintf(why, len, "\"%s\": \"%s\" is not a host name or "
			 "address", s, h);
		free(h);
		return -1;
	}
	*host_r = h;
	*port_r = xstrdup(colon + 1);
	return 0;
}

static int
parse_cidr(const char *s, struct config_cidr *c, char *why, size_t len)
{
	char *addr = xstrdup(s), *slash = strchr(addr, '/');
	unsigned maxbits, i;
	uint64_t prefix;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if (slash != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		maxbits = 128;
	} else {
		snprintf(why, len, "\"%s\" is not an IPv4 or IPv6 address or "
			 "network", s);
		goto out;
	}
	prefix = maxbits;
	if (slash != NULL && (parse_uint(slash, &prefix, why, len) < 0 ||
			      prefix > maxbits)) {
		snprintf(why, len, "\"%s\": the prefix length must be a number "
			 "from 0 to %u", s, maxbits);
		goto out;
	}
	c->prefix = (unsigned)prefix;
	for (i = c->prefix; i < maxbits; i++) {
		if (c->addr[i / 8] & (0x80u >> (i % 8))) {
			snprintf(why, len, "\"%s\" has bits set past the "
				 "prefix length /%u", s, c->prefix);
			goto out;
		}
	}
	rc = 0;
out:
	free(addr);
	return rc;
}

/* Split on commas and blanks; empty items are skipped. The caller owns
 * the array and its strings. */
static char **
split_list(const char *s, size_t *n_r)
{
	char *copy = xstrdup(s), *save = NULL, *tok, **v = NULL;
	size_t n = 0;

	for (tok = strtok_r(copy, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save)) {
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = xstrdup(tok);
	}
	free(copy);
	*n_r = n;
	return v;
}

static void
strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int
parse_domains(const char *s, struct config_strlist *l, char *why,
	      size_t len)
{
	size_t n, i;
	char **v = split_list(s, &n), *p;

	if (n == 0) {
		snprintf(why, len, "the list is empty");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *d = v[i];

		if (strncmp(d, "*.", 2) == 0)
			d += 2;
		if (strcmp(v[i], "*") != 0 && !is_domain(d)) {
			snprintf(why, len, "\"%s\" is not a domain, \"*\" or "
				 "\"*.domain\"", v[i]);
			strv_free(v, n);
			return -1;
		}
		for (p = v[i]; *p != '\0'; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	}
	l->v = v;
	l->n = n;
	return 0;
}

static int
parse_networks(const char *s, struct config_cidrlist *l, char *why,
	       size_t len)
{
	size_t n, i;
	char **v = split_list(s, &n);
	struct config_cidr *c;

	if (n == 0) {
		snprintf(why, len, "the list is empty");
		return -1;
	}
	c = xcalloc(n, sizeof(*c));
	for (i = 0; i < n; i++) {
		if (parse_cidr(v[i], &c[i], why, len) < 0) {
			free(c);
			strv_free(v, n);
			return -1;
		}
	}
	strv_free(v, n);
	l->v = c;
	l->n = n;
	return 0;
}

static int
parse_path(const char *s, char **v_r, char *why, size_t len)
{
	if (s[0] != '/') {
		snprintf(why, len, "\"%s\" is not an absolute path", s);
		return -1;
	}
	*v_r = xstrdup(s);
	return 0;
}

/* Free what a key's field owns and zero it. */
static void
value_free(struct config *cfg, const struct key *k)
{
	void *f = field(cfg, k);

	switch (k->type) {
	case V_PATH:
	case V_PATH_OPT:
	case V_CHARSET:
	case V_FALLBACK:
	case V_WORD:
	case V_IDENT:
	case V_URL_OPT:
	case V_STR_OPT:
	case V_HOSTNAME: {
		char **p = f;

		free(*p);
		*p = NULL;
		break;
	}
	case V_HOSTPORT:
	case V_HOSTPORT_OPT:
	case V_NEXTHOP_OPT: {
		struct config_hostport *hp = f;

		free(hp->host);
		free(hp->port);
		hp->host = hp->port = NULL;
		break;
	}
	case V_DOMAINS: {
		struct config_strlist *l = f;

		strv_free(l->v, l->n);
		l->v = NULL;
		l->n = 0;
		break;
	}
	case V_NETWORKS: {
		struct config_cidrlist *l = f;

		free(l->v);
		l->v = NULL;
		l->n = 0;
		break;
	}
	default:
		break;
	}
}

static int
set_number(struct config *cfg, const struct key *k, const char *s,
	   char *why, size_t len)
{
	uint64_t v;
	int rc;

	switch (k->type) {
	case V_UINT:
		rc = parse_uint(s, &v, why, len);
		break;
	case V_SIZE:
		rc = parse_size(s, &v, why, len);
		break;
	case V_SECS:
		rc = parse_duration_ms(s, false, &v, why, len);
		if (rc == 0) {
			/* Compare in seconds; never ms here. */
			v /= 1000;
		}
		break;
	default:
		rc = parse_duration_ms(s, true, &v, why, len);
		break;
	}
	if (rc < 0 || check_range(s, v, k->min, k->max, why, len) < 0)
		return -1;
	if (k->type == V_SIZE)
		*(uint64_t *)field(cfg, k) = v;
	else
		*(unsigned *)field(cfg, k) = (unsigned)v;
	return 0;
}

/* "http://" or "https://" (any case), a host, and no blank or control
 * character anywhere. */
static bool
is_http_url(const char *s)
{
	size_t n = strncasecmp(s, "http://", 7) == 0 ? 7 :
		   strncasecmp(s, "https://", 8) == 0 ? 8 : 0;

	if (n == 0 || s[n] == '\0' || s[n] == '/')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* The string-valued types that are checked and kept as written. */
static int
set_text(struct config *cfg, const struct key *k, const char *s, char *why,
	 size_t len)
{
	char *str = NULL;

	switch (k->type) {
	case V_PATH_OPT:
		if (*s != '\0' && parse_path(s, &str, why, len) < 0)
			return -1;
		break;
	case V_CHARSET:
		if (ccmail_charset_check(s, why, len) < 0)
			return -1;
		break;
	case V_FALLBACK:
		if (ccmail_fallback_check(s, why, len) < 0)
			return -1;
		break;
	case V_URL_OPT:
		if (*s != '\0' && !is_http_url(s)) {
			snprintf(why, len, "\"%s\" is not an http:// or "
				 "https:// URL", s);
			return -1;
		}
		break;
	case V_IDENT:
		if (*s == '\0' || strlen(s) > 63 ||
		    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			   "0123456789-._/") != strlen(s)) {
			snprintf(why, len, "\"%s\" is not 1 to 63 letters, "
				 "digits and \"-._/\"", s);
			return -1;
		}
		break;
	default:
		if (*s == '\0' || strlen(s) > 64) {
			snprintf(why, len, "must be 1 to 64 characters");
			return -1;
		}
		for (const char *p = s; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				snprintf(why, len, "contains a control "
					 "character");
				return -1;
			}
		}
		break;
	}
	if (str == NULL && *s != '\0')
		str = xstrdup(s);
	value_free(cfg, k);
	*(char **)field(cfg, k) = str;
	return 0;
}

/* Parse s into the field of k, replacing what was there only on success.
 * why gets the reason on failure. */
static int
value_set(struct config *cfg, const struct key *k, const char *s,
	  char *why, size_t len)
{
	struct config_hostport hp = { NULL, NULL };
	struct config_strlist sl;
	struct config_cidrlist cl;
	char *str = NULL;
	int e;

	switch (k->type) {
	case V_UINT:
	case V_SIZE:
	case V_SECS:
	case V_MSECS:
		return set_number(cfg, k, s, why, len);
	case V_BOOL:
		return parse_bool(s, field(cfg, k), why, len);
	case V_ENUM:
	case V_DRIVER:
		if (parse_enum(s, k, &e, why, len) < 0)
			return -1;
		*(int *)field(cfg, k) = e;
		return 0;
	case V_PATH:
		if (parse_path(s, &str, why, len) < 0)
			return -1;
		value_free(cfg, k);
		*(char **)field(cfg, k) = str;
		return 0;
	case V_PATH_OPT:
	case V_CHARSET:
	case V_FALLBACK:
	case V_WORD:
	case V_IDENT:
	case V_URL_OPT:
		return set_text(cfg, k, s, why, len);
	case V_STR_OPT:
		value_free(cfg, k);
		*(char **)field(cfg, k) = *s == '\0' ? NULL : xstrdup(s);
		return 0;
	case V_NEXTHOP_OPT:
		if (*s == '/') {
			hp.host = xstrdup(s);
		} else if (*s != '\0' &&
			   parse_hostport(s, &hp.host, &hp.port, why, len) < 0) {
			return -1;
		}
		value_free(cfg, k);
		*(struct config_hostport *)field(cfg, k) = hp;
		return 0;
	case V_HOSTNAME:
		if (*s != '\0' && !is_domain(s)) {
			snprintf(why, len, "\"%s\" is not a host name", s);
			return -1;
		}
		value_free(cfg, k);
		*(char **)field(cfg, k) = *s == '\0' ? NULL : xstrdup(s);
		return 0;
	case V_HOSTPORT:
	case V_HOSTPORT_OPT:
		if (*s == '\0' && k->type == V_HOSTPORT) {
			snprintf(why, len, "must not be empty");
			return -1;
		}
		if (*s != '\0' &&
		    parse_hostport(s, &hp.host, &hp.port, why, len) < 0)
			return -1;
		value_free(cfg, k);
		*(struct config_hostport *)field(cfg, k) = hp;
		return 0;
	case V_DOMAINS:
		if (parse_domains(s, &sl, why, len) < 0)
			return -1;
		value_free(cfg, k);
		*(struct config_strlist *)field(cfg, k) = sl;
		return 0;
	case V_NETWORKS:
		if (parse_networks(s, &cl, why, len) < 0)
			return -1;
		value_free(cfg, k);
		*(struct config_cidrlist *)field(cfg, k) = cl;
		return 0;
	}
	panic("config: key %s.%s has no type", k->section, k->name);
}

/* --- the file ----------------------------------------------------------- */

static const struct key *
key_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 &&
		    strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Keys that were: a file that still sets one is read, with a warning
 * naming the file and line; the value is not used. */
static const struct {
	const char *section, *name, *why;
} obsolete[] = {
	{ "ingress", "commit_wait", "postern 0.2 has one group commit, "
	  "[store] group_wait" },
};

static const char *
obsolete_why(const char *section, const char *name)
{
	for (size_t i = 0; i < sizeof(obsolete) / sizeof(obsolete[0]); i++)
		if (strcmp(obsolete[i].section, section) == 0 &&
		    strcmp(obsolete[i].name, name) == 0)
			return obsolete[i].why;
	return NULL;
}

static bool
section_known(const char *section)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0)
			return true;
	return false;
}

/* Record the first error only: later ones are often its echoes. */
static void
ctx_fail(struct ctx *c, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
ctx_fail(struct ctx *c, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;
	c->failed = true;
	c->err_line = line;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	/* The reason quotes the file's bytes and goes to the log and the
	 * terminal as one line: no control byte may start another. */
	for (char *p = c->why; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static int
on_value(void *user, const char *section, const char *name,
	 const char *value)
{
	struct ctx *c = user;
	const struct key *k;
	const char *old;
	char why[CONFIG_WHY_LEN];

	if (c->failed)
		return 0;
	if (*section == '\0') {
		ctx_fail(c, c->lineno, "key \"%s\" is outside any section",
			 name);
		return 0;
	}
	if (!section_known(section)) {
		ctx_fail(c, c->lineno, "unknown section [%s]", section);
		return 0;
	}
	k = key_find(section, name);
	if (k == NULL && (old = obsolete_why(section, name)) != NULL) {
		log_warn("%s:%u: [%s] %s is obsolete and ignored (%s)",
			 c->path, c->lineno, section, name, old);
		return 1;
	}
	if (k == NULL) {
		ctx_fail(c, c->lineno, "unknown key \"%s\" in section [%s]",
			 name, section);
		return 0;
	}
	if (value_set(c->cfg, k, value, why, sizeof(why)) < 0) {
		ctx_fail(c, c->lineno, "[%s] %s: %s", section, name, why);
		return 0;
	}
	c->set_at[k - keys] = c->lineno;
	return 1;
}

/* A "[name]" line: complain now about an unknown name, since inih calls
 * us for keys only and an empty unknown section would go unnoticed. */
static void
check_section_line(struct ctx *c, const char *line)
{
	const char *close = strchr(line, ']');
	char *name;

	if (close == NULL)
		return;		/* inih reports the syntax error */
	name = xstrndup(line + 1, (size_t)(close - line - 1));
	if (!section_known(name))
		ctx_fail(c, c->lineno, "unknown section [%s]", name);
	free(name);
}

/* inih's fgets-like reader: one whole line per call, or NULL to stop. */
static char *
read_line(char *str, int num, void *stream)
{
	struct ctx *c = stream;
	const char *p;
	ssize_t n;
	size_t len;

	if (c->failed)
		return NULL;
	errno = 0;
	n = getline(&c->line, &c->line_cap, c->fp);
	if (n < 0) {
		if (ferror(c->fp))
			ctx_fail(c, 0, "cannot read %s: %s", c->path,
				 strerror(errno != 0 ? errno : EIO));
		return NULL;
	}
	c->lineno++;
	p = c->line;
	if (c->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	if (strlen(c->line) != (size_t)n) {
		ctx_fail(c, c->lineno, "the line contains a NUL byte");
		return NULL;
	}
	p += strspn(p, " \t");
	len = strlen(p);
	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	/* inih needs room for the text, "\r\n" and the NUL. */
	if (num < 4 || len > (size_t)num - 3) {
		ctx_fail(c, c->lineno, "the line is too long (at most %d "
			 "characters)", num - 3);
		return NULL;
	}
	memcpy(str, p, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	if (*p == '[')
		check_section_line(c, p);
	return str;
}

/* --- the snapshot ------------------------------------------------------- */

static void
config_destroy(struct config *cfg)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		value_free(cfg, &keys[i]);
	SSL_CTX_free(cfg->ingress_tls_ctx);
	ingress_auth_free(&cfg->ingress_auth_table);
	free(cfg->source);
	free(cfg);
}

static struct config *
config_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	char why[CONFIG_WHY_LEN];
	size_t i;

	atomic_init(&cfg->refs, 1);
	for (i = 0; i < NKEYS; i++) {
		if (value_set(cfg, &keys[i], keys[i].def, why,
			      sizeof(why)) < 0)
			panic("config: default of [%s] %s: %s",
			      keys[i].section, keys[i].name, why);
	}
	return cfg;
}

static unsigned
later(const struct ctx *c, const char *s1, const char *n1, const char *s2,
      const char *n2)
{
	unsigned a = c->set_at[key_find(s1, n1) - keys];
	unsigned b = c->set_at[key_find(s2, n2) - keys];

	return a > b ? a : b;
}

/* A password without a user (or the reverse) is a mistake. */
static void
check_peer(struct ctx *c, const char *sec, const struct config_peer *p)
{
	if ((p->auth_user == NULL) != (p->auth_password_file == NULL))
		ctx_fail(c, later(c, sec, "auth_user", sec,
				  "auth_password_file"),
			 "[%s] auth_user and auth_password_file go together",
			 sec);
	if ((p->probe == NULL) != (p->probe_password_file == NULL))
		ctx_fail(c, later(c, sec, "probe", sec, "probe_password_file"),
			 "[%s] probe and probe_password_file go together", sec);
	if (p->probe != NULL && imap_url_parse(p->probe, NULL, NULL) < 0)
		ctx_fail(c, later(c, sec, "probe", sec, "probe"),
			 "[%s] probe: not imap[s]://USER@HOST[:PORT]/MAILBOX: "
			 "%s", sec, p->probe);
}

static unsigned
set_line(const struct ctx *c, const char *sec, const char *name)
{
	return c->set_at[key_find(sec, name) - keys];
}

/* [ingress] tls: both files there, and they make a context. */
static void
load_tls(struct ctx *c)
{
	struct config *cfg = c->cfg;
	char why[CONFIG_WHY_LEN];

	if (cfg->ingress_tls == CONFIG_TLS_NONE)
		return;
	if (cfg->ingress_tls_cert == NULL || cfg->ingress_tls_key == NULL) {
		ctx_fail(c, set_line(c, "ingress", "tls"), "[ingress] tls = %s "
			 "needs tls_cert and tls_key",
			 tls_names[cfg->ingress_tls]);
		return;
	}
	cfg->ingress_tls_ctx = ingress_tls_ctx_new(cfg->ingress_tls_cert,
						   cfg->ingress_tls_key, why,
						   sizeof(why));
	if (cfg->ingress_tls_ctx == NULL)
		ctx_fail(c, later(c, "ingress", "tls_cert", "ingress",
				  "tls_key"), "[ingress] tls_cert/tls_key: %s",
			 why);
}

/* [ingress] auth: a users file, and a way to ever offer AUTH. */
static void
load_auth(struct ctx *c)
{
	struct config *cfg = c->cfg;
	char why[CONFIG_WHY_LEN];

	if (cfg->ingress_auth == CONFIG_AUTH_NONE)
		return;
	if (cfg->ingress_auth_users == NULL) {
		ctx_fail(c, set_line(c, "ingress", "auth"), "[ingress] auth = "
			 "%s needs auth_users", auth_names[cfg->ingress_auth]);
		return;
	}
	if (cfg->ingress_tls == CONFIG_TLS_NONE &&
	    !cfg->ingress_auth_plaintext) {
		ctx_fail(c, set_line(c, "ingress", "auth"), "[ingress] auth "
			 "is offered over TLS only: set tls (or "
			 "auth_plaintext = yes)");
		return;
	}
	if (ingress_auth_load(cfg->ingress_auth_users,
			      &cfg->ingress_auth_table, why, sizeof(why)) < 0)
		ctx_fail(c, set_line(c, "ingress", "auth_users"),
			 "[ingress] auth_users: %s", why);
}

/* [foreign] driver: its section has what the driver needs. */
static void
check_driver(struct ctx *c)
{
	const struct driver_table_row *row = driver_table_of(c->cfg);
	const char *key, *lacks;

	if (row->lacks == NULL ||
	    (lacks = row->lacks(c->cfg, &key)) == NULL)
		return;
	ctx_fail(c, later(c, "foreign", "driver", row->section, key),
		 "[foreign] driver = %s needs [%s] %s", row->name,
		 row->section, lacks);
}

/* Rules between keys, checked once the whole file is in. */
static void
check_cross(struct ctx *c)
{
	const struct config *cfg = c->cfg;

	if (cfg->store_map_size > cfg->store_map_max)
		ctx_fail(c, later(c, "store", "map_size", "store", "map_max"),
			 "[store] map_size must not be larger than [store] "
			 "map_max");
	if (cfg->queue_backoff_min > cfg->queue_backoff_max)
		ctx_fail(c, later(c, "queue", "backoff_min", "queue",
				  "backoff_max"),
			 "[queue] backoff_min must not be larger than [queue] "
			 "backoff_max");
	check_driver(c);
	check_peer(c, "smtp", &cfg->smtp);
	check_peer(c, "lmtp", &cfg->lmtp);
	check_peer(c, "bounce", &cfg->bounce);
	if (cfg->jmap.password != NULL && cfg->jmap.password_file != NULL)
		ctx_fail(c, later(c, "jmap", "password", "jmap",
				  "password_file"),
			 "[jmap] password and password_file: set one, not "
			 "both");
	if (cfg->jmap.token_file != NULL &&
	    (cfg->jmap.user != NULL || cfg->jmap.password != NULL ||
	     cfg->jmap.password_file != NULL))
		ctx_fail(c, later(c, "jmap", "token_file", "jmap",
				  cfg->jmap.user != NULL ? "user" :
				  cfg->jmap.password != NULL ? "password" :
				  "password_file"),
			 "[jmap] token_file is a login of its own: set it, or "
			 "user with password or password_file, not both");
	if (!c->failed)
		load_tls(c);
	if (!c->failed)
		load_auth(c);
}

static void
resolve_hostname(struct config *cfg)
{
	char name[256];

	if (cfg->ingress_hostname != NULL)
		return;
	if (gethostname(name, sizeof(name)) < 0 || name[0] == '\0')
		snprintf(name, sizeof(name), "localhost");
	name[sizeof(name) - 1] = '\0';
	cfg->ingress_hostname = xstrdup(name);
}

static void
load_file(struct ctx *c)
{
	int rc;

	rc = ini_parse_stream(read_line, c, on_value, c);
	if (rc > 0 && (!c->failed || (unsigned)rc < c->err_line)) {
		c->failed = false;
		ctx_fail(c, (unsigned)rc, "syntax error (expected \"key = "
			 "value\", \"[section]\" or a comment)");
	} else if (rc < 0 && !c->failed) {
		ctx_fail(c, 0, "cannot parse %s", c->path);
	}
	if (!c->failed)
		check_cross(c);
}

int
config_load(const char *path, struct config **cfg_r, const char **error_r)
{
	struct ctx *c;
	struct config *cfg = config_defaults();

	if (path == NULL) {
		resolve_hostname(cfg);
		*cfg_r = cfg;
		return 0;
	}
	c = xcalloc(1, sizeof(*c));
	c->path = path;
	c->cfg = cfg;
	c->fp = fopen(path, "re");
	if (c->fp == NULL)
		ctx_fail(c, 0, "cannot open %s: %s", path, strerror(errno));
	else
		load_file(c);
	if (c->fp != NULL)
		fclose(c->fp);
	free(c->line);
	if (c->failed) {
		if (c->err_line == 0)
			snprintf(errbuf, sizeof(errbuf), "%s", c->why);
		else
			snprintf(errbuf, sizeof(errbuf), "%s:%u: %s", path,
				 c->err_line, c->why);
		*error_r = errbuf;
		free(c);
		config_destroy(cfg);
		return -1;
	}
	free(c);
	resolve_hostname(cfg);
	cfg->source = xstrdup(path);
	*cfg_r = cfg;
	return 0;
}

struct config *
config_ref(struct config *cfg)
{
	if (atomic_fetch_add_explicit(&cfg->refs, 1,
				      memory_order_relaxed) == 0)
		panic("config_ref: snapshot %p has no references left",
		      (void *)cfg);
	return cfg;
}

void
config_unref(struct config **cfg_p)
{
	struct config *cfg = *cfg_p;
	unsigned old;

	*cfg_p = NULL;
	if (cfg == NULL)
		return;
	/* acq_rel: the last holder must see every other holder's reads done
	 * before it frees. */
	old = atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel);
	if (old == 0)
		panic("config_unref: snapshot %p unreferenced twice",
		      (void *)cfg);
	if (old == 1)
		config_destroy(cfg);
}

/* --- lookups ------------------------------------------------------------ */

static bool
cidr_match(const struct config_cidr *c, const unsigned char *addr)
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	unsigned char mask;

	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (unsigned char)(0xffu << (8 - rest));
	return (c->addr[full] & mask) == (addr[full] & mask);
}

int
config_network_allowed(const struct config *cfg, const struct sockaddr *sa)
{
	const unsigned char *v4 = NULL, *v6 = NULL;
	size_t i;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		v4 = (const unsigned char *)
			&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a =
			&((const struct sockaddr_in6 *)sa)->sin6_addr;

		v6 = a->s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			v4 = a->s6_addr + 12;
	} else {
		return 0;
	}
	for (i = 0; i < cfg->ingress_allow_networks.n; i++) {
		const struct config_cidr *c = &cfg->ingress_allow_networks.v[i];

		if ((c->family == AF_INET && v4 != NULL && cidr_match(c, v4)) ||
		    (c->family == AF_INET6 && v6 != NULL && cidr_match(c, v6)))
			return 1;
	}
	return 0;
}

int
config_domain_accepted(const struct config *cfg, const char *address)
{
	const struct config_strlist *l = &cfg->ingress_accept_domains;
	const char *at, *dom;
	size_t i, dlen, slen;

	if (address == NULL)
		return 0;
	if (strcasecmp(address, "postmaster") == 0)
		return 1;
	at = strrchr(address, '@');
	dom = at == NULL ? NULL : at + 1;
	dlen = dom == NULL ? 0 : strlen(dom);
	for (i = 0; i < l->n; i++) {
		const char *d = l->v[i];

		if (strcmp(d, "*") == 0)
			return 1;
		if (dom == NULL)
			continue;
		if (d[0] == '*') {
			/* "*.example.org": a non-empty label, then the dot */
			slen = strlen(d + 1);
			if (dlen > slen &&
			    strcasecmp(dom + dlen - slen, d + 1) == 0)
				return 1;
		} else if (strcasecmp(dom, d) == 0) {
			return 1;
		}
	}
	return 0;
}

int
config_parse_hostport(const char *s, char **host_r, char **port_r,
		      const char **error_r)
{
	if (s == NULL || *s == '\0') {
		snprintf(errbuf, sizeof(errbuf), "the address is empty");
		*error_r = errbuf;
		return -1;
	}
	if (parse_hostport(s, host_r, port_r, errbuf, sizeof(errbuf)) < 0) {
		*error_r = errbuf;
		return -1;
	}
	return 0;
}
