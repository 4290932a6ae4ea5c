/*
 * ingress_tls.c - OpenSSL server contexts and handshake descriptions for
 * STARTTLS on the ingress.
 *
 * Owns:    nothing past a call: ingress_tls_ctx_new() hands its context to
 *          the caller (the configuration snapshot).
 * Threads: any; config_load() makes contexts, the loop thread describes
 *          handshakes.
 */
#include "ingress_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

/* Why OpenSSL refused path: its first error, with our own file check
 * first so that "No such file" reads plainly. */
static void
file_error(const char *what, const char *path, char *why, size_t len)
{
	unsigned long e = ERR_peek_error();
	char text[256];
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		snprintf(why, len, "%s %s: %s", what, path, strerror(errno));
	} else {
		fclose(f);
		ERR_error_string_n(e, text, sizeof(text));
		snprintf(why, len, "%s %s: %s", what, path,
			 e != 0 ? text : "not a PEM file");
	}
	ERR_clear_error();
}

SSL_CTX *
ingress_tls_ctx_new(const char *cert_path, const char *key_path, char *why,
		    size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(why, len, "cannot make a TLS context");
		ERR_clear_error();
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
			    SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* one STARTTLS per connection: no session cache to share */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		file_error("certificate", cert_path, why, len);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		file_error("private key", key_path, why, len);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, len, "private key %s does not match the "
			 "certificate %s", key_path, cert_path);
		ERR_clear_error();
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

const char *
ingress_tls_describe(SSL *ssl, char *buf, size_t len)
{
	int alg = 0, bits = SSL_get_cipher_bits(ssl, &alg);

	snprintf(buf, len, "%s with cipher %s (%d/%d bits)",
		 SSL_get_version(ssl), SSL_get_cipher_name(ssl), bits, alg);
	return buf;
}

const char *
ingress_tls_error(unsigned long err, char *buf, size_t len)
{
	if (err == 0)
		err = ERR_peek_error();
	if (err == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(err, buf, len);
	ERR_clear_error();
	return buf;
}
