#!/usr/bin/env python3
"""load_helper.py - helpers for load_maildir.sh.

  capture PORTFILE OUTDIR
      A tiny SMTP receiver on 127.0.0.1 (port 0; the port is written to
      PORTFILE). It answers every command with 250 (354 for DATA), and
      writes each message, dot-unstuffed, CRLF turned to LF, to
      OUTDIR/msg.N. Runs until killed.

  check ROOT EXPECTED REFERENCE
      Every delivered file under ROOT/*/new and ROOT/*/cur: strip
      Return-Path, Delivered-To, the 3-line Received header and a
      postern-made Message-ID line, blank the values of smtp-source's
      Date: and Message-Id: fields; compare the sha256 of the rest with
      that of REFERENCE. Checks the count (EXPECTED) and that the names
      are distinct. Prints a summary; exit 0 if all is well.
"""

import hashlib
import os
import socket
import sys
import threading


def serve_one(conn, outdir, counter, lock):
    f = conn.makefile("rb")
    conn.sendall(b"220 capture ESMTP\r\n")
    while True:
        line = f.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb == b"DATA":
            conn.sendall(b"354 go\r\n")
            data = []
            while True:
                d = f.readline()
                if not d or d == b".\r\n":
                    break
                if d.startswith(b"."):
                    d = d[1:]
                data.append(d)
            with lock:
                counter[0] += 1
                n = counter[0]
            body = b"".join(data).replace(b"\r\n", b"\n")
            with open(os.path.join(outdir, "msg.%d" % n), "wb") as o:
                o.write(body)
            conn.sendall(b"250 ok\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            break
        else:
            conn.sendall(b"250 ok\r\n")
    conn.close()


def capture(portfile, outdir):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % s.getsockname()[1])
    os.rename(tmp, portfile)
    counter, lock = [0], threading.Lock()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve_one, args=(c, outdir, counter, lock),
                         daemon=True).start()


def strip(data):
    """The message as the client sent it: drop what postern added."""
    lines = data.split(b"\n")
    i = 0
    if lines[i].startswith(b"Return-Path: "):
        i += 1
    if lines[i].startswith(b"Delivered-To: "):
        i += 1
    if lines[i].startswith(b"Received: "):
        i += 1
        while lines[i].startswith(b"\t"):
            i += 1
    if lines[i].startswith(b"Message-ID: "):
        i += 1
    return normalize(b"\n".join(lines[i:]))


def normalize(msg):
    """smtp-source puts the time and a counter in its Date: and
    Message-Id: fields; blank their values (header section only)."""
    head, sep, body = msg.partition(b"\n\n")
    out = []
    for line in head.split(b"\n"):
        if line.startswith(b"Date: "):
            line = b"Date: X"
        elif line.startswith(b"Message-Id: "):
            line = b"Message-Id: X"
        out.append(line)
    return b"\n".join(out) + sep + body


def check(root, expected, reference):
    with open(reference, "rb") as f:
        ref = normalize(f.read())
    refsum = hashlib.sha256(ref).hexdigest()
    names, sums = set(), {}
    nfiles = 0
    for rcpt in sorted(os.listdir(root)):
        for sub in ("new", "cur"):
            d = os.path.join(root, rcpt, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                nfiles += 1
                names.add(name.split(":")[0])
                with open(os.path.join(d, name), "rb") as f:
                    h = hashlib.sha256(strip(f.read())).hexdigest()
                sums[h] = sums.get(h, 0) + 1
    ok = True
    print("files=%d expected=%d distinct_names=%d distinct_sha256=%d" %
          (nfiles, expected, len(names), len(sums)))
    if nfiles != expected:
        print("FAIL: %d files, expected %d" % (nfiles, expected))
        ok = False
    if len(names) != nfiles:
        print("FAIL: %d duplicate names" % (nfiles - len(names)))
        ok = False
    if list(sums) != [refsum]:
        print("FAIL: contents differ from the reference %s: %s" %
              (refsum[:16], {k[:16]: v for k, v in sums.items()}))
        ok = False
    return 0 if ok else 1


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "capture":
        capture(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "check":
        return check(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
