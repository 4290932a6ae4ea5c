/*
 * ingress_tls.h - the server side of STARTTLS on the ingress: the
 * OpenSSL context made from [ingress] tls_cert and tls_key, and the
 * words a session's Received: header and log use for a handshake.
 *
 * The context belongs to the configuration snapshot that loaded it (see
 * config.h), so a SIGHUP reload picks up a renewed certificate and the
 * sessions already running keep theirs. OpenSSL counts its references:
 * every SSL made from it holds one.
 */
#ifndef POSTERN_INGRESS_TLS_H
#define POSTERN_INGRESS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* A server context with the certificate chain in cert_path and the
 * private key in key_path (PEM), TLS 1.2 at least, no renegotiation, no
 * compression. NULL on failure, with the reason (naming the file) in
 * why[0..len). The caller owns the result (SSL_CTX_free()). Any thread. */
SSL_CTX *
ingress_tls_ctx_new(const char *cert_path, const char *key_path, char *why,
		    size_t len);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" for a
 * finished handshake, into buf[0..len). Returns buf. */
const char *
ingress_tls_describe(SSL *ssl, char *buf, size_t len);

/* OpenSSL error err (0: the first one queued on this thread) as text
 * into buf, or "unknown error"; clears the thread's queue. Returns buf. */
const char *
ingress_tls_error(unsigned long err, char *buf, size_t len);

#endif
