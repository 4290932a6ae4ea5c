/*
 * config.h - the configuration of posternd and postern (postern.conf(5)).
 *
 * A loaded configuration is a frozen, refcounted snapshot: nothing changes
 * it after config_load() returns, so any thread may read its fields without
 * a lock while it holds a reference. SIGHUP reload loads a new snapshot and
 * swaps it in; a worker keeps the reference it started with and drops it
 * with config_unref() when done.
 *
 * Errors: every function that can fail points *error_r at a thread-local
 * buffer. The text stays valid until the next config_* call on the same
 * thread; copy it if it must live longer. The caller never frees it.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include "lib/log.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Built-in path the programs use when given no -c option. */
#define CONFIG_DEFAULT_PATH	"/etc/postern.conf"

/* [foreign] driver: the index of the driver's row in driver_table.c,
 * which has what each driver is called and how it is made. */
enum config_driver {
	CONFIG_DRIVER_MAILDIR,
	CONFIG_DRIVER_SMTP,
	CONFIG_DRIVER_LMTP,
	CONFIG_DRIVER_CCMAIL,
	CONFIG_DRIVER_IMAP,
	CONFIG_DRIVER_JMAP,
	CONFIG_DRIVER_COUNT		/* not a driver: how many there are */
};

enum config_layout {
	CONFIG_LAYOUT_ADDRESS,		/* ROOT/user@example.org/ */
	CONFIG_LAYOUT_DOMAIN_LOCALPART,	/* ROOT/example.org/user/ */
};

enum config_in_doubt {
	CONFIG_IN_DOUBT_HOLD,		/* keep for an operator to decide */
	CONFIG_IN_DOUBT_RETRY,		/* deliver again (may duplicate) */
};

/* [workers] in_doubt_window: what a crash can leave in-doubt with a
 * driver that cannot find its earlier deliveries while it delivers. */
enum config_window {
	CONFIG_WINDOW_MESSAGE,		/* the one message in flight */
	CONFIG_WINDOW_BATCH,		/* the worker's whole batch */
};

/* A listen address or next hop. Both strings are owned by the snapshot;
 * both are NULL when the key was left empty (only where that is allowed).
 * host has no brackets ("::1"); port is decimal, 1-65535. */
struct config_hostport {
	char *host;
	char *port;
};

enum config_tls {
	CONFIG_TLS_NONE,		/* never STARTTLS */
	CONFIG_TLS_MAY,			/* STARTTLS when offered */
	CONFIG_TLS_ENCRYPT,		/* STARTTLS or no delivery */
	CONFIG_TLS_IMPLICIT,		/* TLS from the start ([imap] only) */
};

/* A next hop of the smtp or lmtp driver ([smtp] and [lmtp] have the same
 * keys). relay.port is NULL when relay.host is a Unix socket path (lmtp
 * only); both NULL: not set. Strings are owned by the snapshot, NULL when
 * not set. Timeouts are seconds. */
struct config_peer {
	struct config_hostport relay;
	enum config_tls tls;
	char *tls_ca_file;
	bool tls_verify;
	char *auth_user;
	char *auth_password_file;
	bool auth_plaintext;		/* AUTH allowed without TLS */
	unsigned connect_timeout;
	unsigned greeting_timeout;
	unsigned mail_timeout;
	unsigned rcpt_timeout;
	unsigned data_timeout;
	unsigned block_timeout;
	unsigned dot_timeout;
	unsigned reconnect_max;		/* cap of the reconnect backoff */
	/* [smtp]/[lmtp] only: an imap:// URL to look for in-doubt
	 * deliveries (NULL: none), and the file with its password. */
	char *probe;
	char *probe_password_file;
};

/* The imap driver's server ([imap]). server.host NULL: not set. user and
 * mailbox are templates: %u the recipient, %l its local part, %d its
 * domain, %% a '%'. Strings are owned by the snapshot, NULL when not
 * set. Timeouts are seconds. */
struct config_imap {
	struct config_hostport server;
	enum config_tls tls;
	char *tls_ca_file;
	bool tls_verify;
	char *user;
	char *password_file;
	bool auth_plaintext;		/* password allowed without TLS */
	char *mailbox;
	bool create_mailbox;		/* CREATE on NO [TRYCREATE] */
	unsigned connect_timeout;
	unsigned command_timeout;
	unsigned append_timeout;
	unsigned reconnect_max;		/* cap of the reconnect wait */
};

/* The jmap driver's server ([jmap]). url is the session resource
 * (http:// or https://); account is a template as [imap] user. user with
 * password or password_file (not both), or token_file alone. mailbox: a
 * role ("inbox") or a name. Strings are owned by the snapshot, NULL
 * when not set. Timeouts are seconds. */
struct config_jmap {
	char *url;
	char *user;
	char *password;
	char *password_file;
	char *token_file;
	char *account;
	char *mailbox;
	bool create_mailbox;
	char *tls_ca_file;
	bool tls_verify;
	unsigned timeout;		/* each HTTP request */
	unsigned reconnect_max;		/* cap of the reconnect wait */
};

enum config_auth {
	CONFIG_AUTH_NONE,		/* no AUTH */
	CONFIG_AUTH_OPTIONAL,		/* AUTH offered, mail without it too */
	CONFIG_AUTH_REQUIRED,		/* MAIL before AUTH: 530 5.7.0 */
};

struct ingress_auth;

/* Strings owned by the snapshot. */
struct config_strlist {
	char **v;
	size_t n;
};

/* One network of allow_networks; host bits are always zero. */
struct config_cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned prefix;		/* 0-32 or 0-128 */
	unsigned char addr[16];		/* network order; AF_INET uses 4 */
};

struct config_cidrlist {
	struct config_cidr *v;		/* owned by the snapshot */
	size_t n;
};

/*
 * The snapshot. Every field is read-only after config_load(); every
 * pointer in it is owned by the snapshot and lives as long as the caller's
 * reference. Sizes are bytes; durations are whole seconds, except
 * store_group_wait_ms. Section and key names are in postern.conf(5).
 */
struct config {
	atomic_uint refs;	/* private: config_ref()/config_unref() only */
	char *source;		/* the file loaded; NULL: built-in defaults */

	/* [store] */
	char *store_path;		/* LMDB environment directory */
	uint64_t store_map_size;	/* initial map size */
	uint64_t store_map_max;		/* map never grows past this */
	unsigned store_group_wait_ms;	/* group commit under load, ms */

	/* [ingress] */
	struct config_hostport ingress_listen;	/* SMTP listener */
	struct config_hostport ingress_lmtp_listen; /* NULLs: none */
	/* lower case; "*" any, "*.example.org" subdomains of example.org */
	struct config_strlist ingress_accept_domains;
	struct config_cidrlist ingress_allow_networks;
	char *ingress_hostname;		/* never empty: gethostname() */
	unsigned ingress_max_sessions;
	unsigned ingress_max_sessions_per_ip;	/* 0: no limit */
	unsigned ingress_max_recipients;	/* per message */
	uint64_t ingress_max_message_size;
	unsigned ingress_idle_timeout;	/* seconds to wait for a command */
	unsigned ingress_data_timeout;	/* seconds for the whole DATA phase */
	unsigned ingress_resubmit_window; /* seconds; 0: no index */
	enum config_tls ingress_tls;	/* STARTTLS: none, may, encrypt */
	char *ingress_tls_cert;		/* PEM chain; NULL: not set */
	char *ingress_tls_key;		/* PEM key; NULL: not set */
	unsigned ingress_tls_handshake_timeout;	/* seconds */
	/* Made from tls_cert and tls_key when tls is not none, else NULL.
	 * Owned by the snapshot (one OpenSSL reference); only the loop
	 * thread makes SSLs from it, each of which holds its own. */
	SSL_CTX *ingress_tls_ctx;
	enum config_auth ingress_auth;
	char *ingress_auth_users;	/* users file; NULL: not set */
	bool ingress_auth_plaintext;	/* AUTH without TLS too */
	/* Loaded from auth_users when auth is not none, else NULL. Owned
	 * by the snapshot, read-only (ingress_auth.h). */
	struct ingress_auth *ingress_auth_table;

	/* [daemon] */
	char *daemon_user;	/* run as this user when started as root */
	unsigned ingress_greet_pause_ms; /* wait before the 220; 0: none */

	/* [workers] */
	unsigned workers_count;
	unsigned workers_batch;		/* entries claimed per txn */
	unsigned workers_lease;		/* claim lease, seconds */
	enum config_window workers_in_doubt_window;

	/* [foreign] */
	enum config_driver foreign_driver;

	/* [maildir] */
	char *maildir_root;
	enum config_layout maildir_layout;

	/* [ccmail] */
	char *ccmail_drop_dir;		/* import files go here */
	char *ccmail_charset;		/* of the import files */
	char *ccmail_address_map;	/* map file; NULL: none */
	char *ccmail_fallback;		/* "none" or a pattern */
	char *ccmail_postoffice;	/* default post office name */


	/* [smtp], [lmtp] */
	struct config_peer smtp;
	struct config_peer lmtp;

	/* [imap] */
	struct config_imap imap;

	/* [jmap] */
	struct config_jmap jmap;

	/* [bounce]: where DSNs go; relay.host NULL: none are sent */
	struct config_peer bounce;

	/* [queue] */
	unsigned queue_backoff_min;	/* seconds */
	unsigned queue_backoff_max;	/* seconds */
	unsigned queue_max_lifetime;	/* seconds */
	unsigned queue_max_attempts;	/* 0: no dead letters */
	enum config_in_doubt queue_in_doubt_policy;
	/* seconds that looks must not find an in-doubt entry before it
	 * is sent again; 0: the first look that does not find it */
	unsigned queue_look_again;

	/* [admin] */
	struct config_hostport admin_listen;	/* HTTP; NULLs: none */

	/* [log] */
	enum log_level log_level;
	bool log_syslog;		/* false: stderr */
	enum log_format log_format;
	char *log_syslog_name;		/* owned; openlog() ident, line name */
};

/*
 * Load the file at path (NULL: built-in defaults only, no file read) into
 * a new snapshot with one reference, owned by the caller, in *cfg_r. An
 * unknown section or key, a bad value or a line that is not "key = value",
 * "[section]" or a comment fails the whole load; *error_r then names the
 * file, the line and the key, and *cfg_r is untouched. Any thread; the
 * programs call it from main() at start and on SIGHUP.
 */
int
config_load(const char *path, struct config **cfg_r, const char **error_r);

/* Take one more reference to cfg, for a thread that keeps using it; cfg
 * must already be referenced by the caller. Returns cfg. Any thread. */
struct config *
config_ref(struct config *cfg);

/* Drop the reference *cfg_p and set *cfg_p to NULL; the last reference
 * frees the snapshot. NULL *cfg_p does nothing. Panics if the count was
 * already 0. Any thread. */
void
config_unref(struct config **cfg_p);

/* 1 if a client at sa may connect (its address is in one of
 * ingress.allow_networks; an IPv4-mapped IPv6 address also matches IPv4
 * networks), 0 if not or if sa is not AF_INET/AF_INET6. sa is borrowed.
 * Any thread holding a reference. */
int
config_network_allowed(const struct config *cfg, const struct sockaddr *sa);

/* 1 if mail for address (without <>) is accepted under
 * ingress.accept_domains, comparing the part after the last '@' without
 * regard to case; a bare "postmaster" is always accepted. 0 if not.
 * Any thread holding a reference. */
int
config_domain_accepted(const struct config *cfg, const char *address);

/* Split "host:port" or "[v6addr]:port" into *host_r (without brackets) and
 * *port_r (decimal 1-65535), both owned by the caller (free()). An empty s
 * is an error here; on error nothing is allocated. Any thread. */
int
config_parse_hostport(const char *s, char **host_r, char **port_r,
		      const char **error_r);

#endif
