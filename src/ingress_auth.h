/*
 * ingress_auth.h - the users that may AUTH on the ingress: the file named
 * by [ingress] auth_users, one "user:HASH" a line, HASH a crypt(3) string
 * (yescrypt "$y$", SHA-512-crypt "$6$", SHA-256-crypt "$5$", bcrypt
 * "$2b$"), checked with libcrypt's crypt_r().
 *
 * A loaded table is frozen: it belongs to the configuration snapshot that
 * loaded it and is only read afterwards, so any thread holding the
 * snapshot may check against it.
 */
#ifndef POSTERN_INGRESS_AUTH_H
#define POSTERN_INGRESS_AUTH_H

#include <stddef.h>

struct ingress_auth;

/* Read path into a new table, owned by the caller (free it with
 * ingress_auth_free()). Blank lines and lines starting with '#' are
 * skipped. -1 with the reason (file and line) in why[0..len) for a line
 * that is not "user:HASH", a hash libcrypt cannot use or calls weak (DES,
 * MD5), a user named twice, an empty file, or a file we cannot read. */
int
ingress_auth_load(const char *path, struct ingress_auth **auth_r, char *why,
		  size_t len);

/* 1 if password is user's, 0 if not (or no such user: that costs one hash
 * as well, so a guess does not learn which users exist), -1 if libcrypt
 * failed. user and password are borrowed. Any thread; it takes a few
 * milliseconds of CPU (the point of these hashes). */
int
ingress_auth_check(const struct ingress_auth *auth, const char *user,
		   const char *password);

/* Free the table and set *auth_p to NULL; NULL does nothing. */
void
ingress_auth_free(struct ingress_auth **auth_p);

#endif
