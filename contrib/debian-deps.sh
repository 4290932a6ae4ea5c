#!/bin/sh
# Install what postern needs to build and to run its whole test suite on
# Debian 12, as root. Postfix is installed only for its smtp-source and
# smtp-sink test peers and Dovecot for its LMTP and IMAP servers; "No configuration" keeps it from running as an MTA.
# pflogsumm reads posternd's log in tests/integration/pflogsumm.sh.
# clang (with libclang-rt-14-dev's libFuzzer) builds the fuzz targets and
# cppcheck is half of make analyze; .ci/run uses both.
# --no-install-recommends keeps the list honest: what a test needs is
# named here. swaks only recommends its TLS module (libnet-ssleay-perl)
# and suggests its SASL one (libauthen-sasl-perl); the STARTTLS and AUTH
# tests need both. mount (not part of a minimal Debian root) lets
# readme_first.sh put a private /var/lib in a namespace of its own.
# libcurl4-openssl-dev builds the jmap driver; its test peer, a private
# Cyrus 3.6, is installed last by contrib/cyrus-test-peer.sh (beside
# Dovecot, which it leaves alone).
set -eu
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" |
	debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends \
	build-essential autoconf automake pkg-config ca-certificates \
	liblmdb-dev lmdb-utils libevent-dev libcunit1-dev libssl-dev \
	libinih-dev libjansson-dev libcurl4-openssl-dev libcrypt-dev libgmime-3.0-dev libsystemd-dev \
	postfix swaks libnet-ssleay-perl libauthen-sasl-perl pflogsumm \
	python3 strace procps curl util-linux mount \
	dovecot-core dovecot-lmtpd dovecot-imapd openssl \
	nftables iproute2 fiu-utils libfiu-dev \
	clang libclang-rt-14-dev cppcheck

# The private Cyrus 3.6 JMAP peer of tests/integration/jmap_cyrus.sh and
# cyrus_smoke.sh: cyrus-common and cyrus-caldav (no Cyrus started, its
# unit disabled), cyrus-imapd's imapd unpacked into /opt. Idempotent: a
# second run installs nothing and unpacks imapd again only for another
# cyrus-common version.
sh "$(dirname "$0")/cyrus-test-peer.sh"
