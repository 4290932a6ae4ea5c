#!/usr/bin/env python3
"""tls_peer.py - a small ESMTP receiver with STARTTLS and AUTH PLAIN, for
smtp_tls.sh (smtp-sink has neither).

  tls_peer.py PORTFILE OUTDIR CERT KEY USER PASSWORD

Listens on 127.0.0.1 (port 0; the port goes to PORTFILE). EHLO offers
PIPELINING, SIZE and STARTTLS; after the handshake also AUTH PLAIN. MAIL
is refused with 530 until AUTH succeeded. Each message goes to
OUTDIR/msg.N as received (still dot-stuffed); OUTDIR/events gets one line
per fact: "tls TLSv1.3", "auth ok USER", "auth bad", "mail". Runs until
killed.
"""

import base64
import os
import socket
import ssl
import sys
import threading

LOCK = threading.Lock()
COUNT = [0]


def event(outdir, text):
    with LOCK, open(os.path.join(outdir, "events"), "a") as f:
        f.write(text + "\n")


def session(conn, a):
    outdir, ctx, user, password = a
    tls = False
    authed = False
    f = conn.makefile("rb")
    conn.sendall(b"220 tls-peer ESMTP\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        cmd = line.strip().decode("ascii", "replace")
        verb = cmd.split(" ")[0].upper()
        if verb in ("EHLO", "HELO"):
            caps = ["tls-peer", "PIPELINING", "SIZE 10000000"]
            caps.append("AUTH PLAIN" if tls else "STARTTLS")
            out = "".join("250-%s\r\n" % c for c in caps[:-1])
            conn.sendall((out + "250 %s\r\n" % caps[-1]).encode())
        elif verb == "STARTTLS" and not tls:
            conn.sendall(b"220 2.0.0 go ahead\r\n")
            conn = ctx.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            tls = True
            event(outdir, "tls " + conn.version())
        elif verb == "AUTH":
            parts = cmd.split(" ")
            try:
                raw = base64.b64decode(parts[2]).split(b"\0")
                ok = (len(parts) == 3 and parts[1].upper() == "PLAIN" and
                      raw[1].decode() == user and raw[2].decode() == password)
            except Exception:
                ok = False
            authed = ok
            event(outdir, "auth ok " + user if ok else "auth bad")
            conn.sendall(b"235 2.7.0 ok\r\n" if ok else
                         b"535 5.7.8 bad credentials\r\n")
        elif verb == "MAIL":
            if not authed:
                conn.sendall(b"530 5.7.0 authentication required\r\n")
            else:
                event(outdir, "mail")
                conn.sendall(b"250 2.1.0 ok\r\n")
        elif verb in ("RCPT", "RSET", "NOOP"):
            conn.sendall(b"250 2.0.0 ok\r\n")
        elif verb == "DATA":
            conn.sendall(b"354 go\r\n")
            data = []
            while True:
                l = f.readline()
                if not l or l == b".\r\n":
                    break
                data.append(l)
            with LOCK:
                COUNT[0] += 1
                n = COUNT[0]
            with open(os.path.join(outdir, "msg.%d" % n), "wb") as m:
                m.write(b"".join(data))
            conn.sendall(b"250 2.0.0 queued as %d\r\n" % n)
        elif verb == "QUIT":
            conn.sendall(b"221 2.0.0 bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 what\r\n")


def main():
    portfile, outdir, cert, key, user, password = sys.argv[1:7]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    with open(portfile + ".tmp", "w") as p:
        p.write("%d\n" % s.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=lambda c=conn: safe(c, (outdir, ctx, user,
                                                        password)),
                         daemon=True).start()


def safe(conn, a):
    try:
        session(conn, a)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
