/*
 * driver_table.c - the list of drivers, and how each is made from the
 * configuration.
 *
 * Owns:    the constant table below; the thread-local error buffer of
 *          maildir_new(). Drivers it makes belong to the caller.
 * Threads: any.
 *
 * The drivers themselves know nothing of postern.conf: each takes its own
 * options struct, so that it can be tested and reused alone. Turning the
 * snapshot's fields into those options is this file's job, one function
 * per row.
 */
#include "driver_table.h"
#include "driver_ccmail.h"
#include "driver_imap.h"
#include "driver_jmap.h"
#include "driver_maildir.h"
#include "driver_smtp.h"
#include "lib/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The reconnect cap of drivers without a reconnect_max key, seconds. */
#define DRIVER_TABLE_RECONNECT_MAX	60u

/* The smtp/lmtp client settings for peer p; strings are borrowed from
 * cfg (driver_smtp_new() copies them). */
static void
peer_settings(const struct config *cfg, const struct config_peer *p,
	      bool lmtp, int cancel_fd, struct smtp_client_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->lmtp = lmtp;
	s->host = p->relay.host;
	s->port = p->relay.port;
	s->helo = cfg->ingress_hostname;
	s->tls = p->tls == CONFIG_TLS_ENCRYPT ? SMTP_TLS_ENCRYPT :
		 p->tls == CONFIG_TLS_MAY ? SMTP_TLS_MAY : SMTP_TLS_NONE;
	s->tls_ca_file = p->tls_ca_file;
	s->tls_verify = p->tls_verify;
	s->auth_user = p->auth_user;
	s->auth_plaintext = p->auth_plaintext;
	s->connect_ms = p->connect_timeout * 1000u;
	s->greeting_ms = p->greeting_timeout * 1000u;
	s->mail_ms = p->mail_timeout * 1000u;
	s->rcpt_ms = p->rcpt_timeout * 1000u;
	s->data_ms = p->data_timeout * 1000u;
	s->block_ms = p->block_timeout * 1000u;
	s->dot_ms = p->dot_timeout * 1000u;
	s->cancel_fd = cancel_fd;
}

static enum imap_tls
imap_tls_of(enum config_tls t)
{
	switch (t) {
	case CONFIG_TLS_MAY:		return IMAP_TLS_MAY;
	case CONFIG_TLS_ENCRYPT:	return IMAP_TLS_ENCRYPT;
	case CONFIG_TLS_IMPLICIT:	return IMAP_TLS_IMPLICIT;
	default:			return IMAP_TLS_NONE;
	}
}

/* The probe of an [smtp]/[lmtp] section (NULL: none, or an error in
 * *error_r): an imap driver used for look() only. imap:// uses STARTTLS
 * when offered, imaps:// TLS from the start, verified as tls_verify and
 * tls_ca_file of the section say. */
static struct driver *
probe_from_config(const struct config_peer *cp, int cancel_fd,
		  const char **error_r)
{
	struct imap_url u;
	struct driver *d;
	struct driver_imap_opts o = { 0 };

	if (imap_url_parse(cp->probe, &u, error_r) < 0)
		return NULL;
	o.s.host = u.host;
	o.s.port = u.port;
	o.s.tls = u.implicit ? IMAP_TLS_IMPLICIT : IMAP_TLS_MAY;
	o.s.tls_ca_file = cp->tls_ca_file;
	o.s.tls_verify = cp->tls_verify;
	o.s.auth_plaintext = !u.implicit;
	o.s.cancel_fd = cancel_fd;
	o.s.connect_ms = cp->connect_timeout * 1000u;
	o.s.command_ms = cp->mail_timeout * 1000u;
	o.s.append_ms = cp->dot_timeout * 1000u;
	o.user = u.user;
	o.mailbox = u.mailbox;
	o.password_file = cp->probe_password_file;
	d = driver_imap_new(&o, error_r);
	imap_url_free(&u);
	return d;
}

/* "NAME HOST:PORT", or "NAME PATH" for a socket (no port). */
static void
describe_hostport(const char *name, const struct config_hostport *hp,
		  char *buf, size_t len)
{
	snprintf(buf, len, "%s %s%s%s", name, hp->host, hp->port ? ":" : "",
		 hp->port ? hp->port : "");
}

static unsigned
reconnect_default(const struct config *cfg)
{
	(void)cfg;
	return DRIVER_TABLE_RECONNECT_MAX;
}

/* --- the rows ----------------------------------------------------------- */

static struct driver *
maildir_new(const struct config *cfg, int cancel_fd, const char **error_r)
{
	static _Thread_local char err[256];
	struct driver *d;

	(void)cancel_fd;
	d = driver_maildir_new(cfg->maildir_root,
		cfg->maildir_layout == CONFIG_LAYOUT_DOMAIN_LOCALPART ?
		MAILDIR_LAYOUT_DOMAIN_LOCAL : MAILDIR_LAYOUT_ADDRESS);
	if (d == NULL) {
		snprintf(err, sizeof(err), "[maildir] root \"%s\" is not "
			 "usable", cfg->maildir_root);
		*error_r = err;
	}
	return d;
}

static void
maildir_describe(const struct config *cfg, char *buf, size_t len)
{
	snprintf(buf, len, "maildir %s", cfg->maildir_root);
}

/* The smtp and lmtp rows share these: [smtp] and [lmtp] have the same
 * keys (struct config_peer), and cfg's driver says which section. */
static bool
is_lmtp(const struct config *cfg)
{
	return cfg->foreign_driver == CONFIG_DRIVER_LMTP;
}

static const struct config_peer *
peer_of(const struct config *cfg)
{
	return is_lmtp(cfg) ? &cfg->lmtp : &cfg->smtp;
}

/* The smtp or lmtp driver, with the section's probe if it has one. */
static struct driver *
relay_new(const struct config *cfg, int cancel_fd, const char **error_r)
{
	const struct config_peer *cp = peer_of(cfg);
	struct smtp_client_settings s;
	struct driver *probe = NULL;

	if (cp->probe != NULL &&
	    (probe = probe_from_config(cp, cancel_fd, error_r)) == NULL)
		return NULL;
	peer_settings(cfg, cp, is_lmtp(cfg), cancel_fd, &s);
	return driver_smtp_new(&s, cp->auth_password_file, &probe, error_r);
}

static unsigned
relay_reconnect_max(const struct config *cfg)
{
	return peer_of(cfg)->reconnect_max;
}

static void
relay_describe(const struct config *cfg, char *buf, size_t len)
{
	describe_hostport(is_lmtp(cfg) ? "lmtp" : "smtp", &peer_of(cfg)->relay,
			  buf, len);
}

static const char *
relay_lacks(const struct config *cfg, const char **key_r)
{
	*key_r = "relay";
	return peer_of(cfg)->relay.host == NULL ? "relay" : NULL;
}

static struct driver *
ccmail_new(const struct config *cfg, int cancel_fd, const char **error_r)
{
	struct driver_ccmail_opts o = {
		.drop_dir = cfg->ccmail_drop_dir,
		.charset = cfg->ccmail_charset,
		.address_map = cfg->ccmail_address_map,
		.fallback = cfg->ccmail_fallback,
		.postoffice = cfg->ccmail_postoffice,
	};

	(void)cancel_fd;
	return driver_ccmail_new(&o, error_r);
}

static void
ccmail_describe(const struct config *cfg, char *buf, size_t len)
{
	snprintf(buf, len, "ccmail %s", cfg->ccmail_drop_dir);
}

static struct driver *
imap_new(const struct config *cfg, int cancel_fd, const char **error_r)
{
	const struct config_imap *ci = &cfg->imap;
	struct driver_imap_opts o = {
		.s = {
			.host = ci->server.host,
			.port = ci->server.port,
			.tls = imap_tls_of(ci->tls),
			.tls_ca_file = ci->tls_ca_file,
			.tls_verify = ci->tls_verify,
			.auth_plaintext = ci->auth_plaintext,
			.cancel_fd = cancel_fd,
			.connect_ms = ci->connect_timeout * 1000u,
			.command_ms = ci->command_timeout * 1000u,
			.append_ms = ci->append_timeout * 1000u,
		},
		.user = ci->user,
		.mailbox = ci->mailbox,
		.password_file = ci->password_file,
		.create_mailbox = ci->create_mailbox,
	};

	return driver_imap_new(&o, error_r);
}

static unsigned
imap_reconnect_max(const struct config *cfg)
{
	return cfg->imap.reconnect_max;
}

static void
imap_describe(const struct config *cfg, char *buf, size_t len)
{
	describe_hostport("imap", &cfg->imap.server, buf, len);
}

static const char *
imap_lacks(const struct config *cfg, const char **key_r)
{
	const struct config_imap *ci = &cfg->imap;

	*key_r = "server";
	return ci->server.host == NULL || ci->user == NULL ||
	       ci->password_file == NULL ?
	       "server, user and password_file" : NULL;
}

static struct driver *
jmap_new(const struct config *cfg, int cancel_fd, const char **error_r)
{
	const struct config_jmap *cj = &cfg->jmap;
	struct driver_jmap_opts o = {
		.url = cj->url,
		.user = cj->user,
		.password = cj->password,
		.password_file = cj->password_file,
		.token_file = cj->token_file,
		.mailbox = cj->mailbox,
		.create_mailbox = cj->create_mailbox,
		.account = cj->account,
		.tls_ca_file = cj->tls_ca_file,
		.tls_verify = cj->tls_verify,
		.timeout_ms = cj->timeout * 1000u,
		.cancel_fd = cancel_fd,
	};

	return driver_jmap_new(&o, error_r);
}

static unsigned
jmap_reconnect_max(const struct config *cfg)
{
	return cfg->jmap.reconnect_max;
}

static void
jmap_describe(const struct config *cfg, char *buf, size_t len)
{
	snprintf(buf, len, "jmap %s", cfg->jmap.url);
}

static const char *
jmap_lacks(const struct config *cfg, const char **key_r)
{
	const struct config_jmap *cj = &cfg->jmap;

	*key_r = "url";
	return cj->url == NULL || (cj->token_file == NULL &&
				   (cj->user == NULL ||
				    (cj->password == NULL &&
				     cj->password_file == NULL))) ?
	       "url, and user with password or password_file, or "
	       "token_file" : NULL;
}

/* In the order of enum config_driver, which is also the order in which
 * postern.conf(5) and config_load()'s errors list the names. */
static const struct driver_table_row rows[] = {
	[CONFIG_DRIVER_MAILDIR] = {
		"maildir", "maildir", maildir_new, reconnect_default,
		maildir_describe, NULL,
	},
	[CONFIG_DRIVER_SMTP] = {
		"smtp", "smtp", relay_new, relay_reconnect_max,
		relay_describe, relay_lacks,
	},
	[CONFIG_DRIVER_LMTP] = {
		"lmtp", "lmtp", relay_new, relay_reconnect_max,
		relay_describe, relay_lacks,
	},
	[CONFIG_DRIVER_CCMAIL] = {
		"ccmail", "ccmail", ccmail_new, reconnect_default,
		ccmail_describe, NULL,
	},
	[CONFIG_DRIVER_IMAP] = {
		"imap", "imap", imap_new, imap_reconnect_max, imap_describe,
		imap_lacks,
	},
	[CONFIG_DRIVER_JMAP] = {
		"jmap", "jmap", jmap_new, jmap_reconnect_max, jmap_describe,
		jmap_lacks,
	},
};

_Static_assert(sizeof(rows) / sizeof(rows[0]) == CONFIG_DRIVER_COUNT,
	       "one row per enum config_driver");

const struct driver_table_row *
driver_table_get(size_t i)
{
	return i < CONFIG_DRIVER_COUNT ? &rows[i] : NULL;
}

int
driver_table_find(const char *name)
{
	for (size_t i = 0; i < CONFIG_DRIVER_COUNT; i++)
		if (strcmp(rows[i].name, name) == 0)
			return (int)i;
	return -1;
}

const struct driver_table_row *
driver_table_of(const struct config *cfg)
{
	const struct driver_table_row *row =
		driver_table_get((size_t)cfg->foreign_driver);

	if (row == NULL)
		panic("driver_table: [foreign] driver %d has no row",
		      (int)cfg->foreign_driver);
	return row;
}

struct driver *
driver_table_bounce_new(const struct config *cfg, int cancel_fd,
			const char **error_r)
{
	struct smtp_client_settings s;

	*error_r = NULL;
	if (cfg->bounce.relay.host == NULL)
		return NULL;
	peer_settings(cfg, &cfg->bounce, false, cancel_fd, &s);
	return driver_smtp_new(&s, cfg->bounce.auth_password_file, NULL,
			       error_r);
}
