#!/usr/bin/env python3
"""smtp_table.py - table-driven check of posternd's SMTP/LMTP replies.

Every row talks to a running posternd over a raw socket, so bare CR/LF
bytes go out exactly as written. Run by smtp_codes.sh, which starts the
daemons:

  --smtp PORT     main daemon: accept_domains = foreign.example,
                  max_recipients = 3, max_message_size = 100k
  --lmtp PORT     LMTP listener of the main daemon
  --maildir DIR   maildir root of the main daemon
  --deny PORT     daemon with allow_networks = 10.0.0.0/8
  --limits PORT   daemon with max_sessions = 3, max_sessions_per_ip = 2,
                  idle_timeout = 2s, data_timeout = 3s, greet_pause = 500ms
  --limits-maildir DIR  maildir root of the limits daemon
  --max-size N    max_message_size of the main daemon, in bytes

Prints one line per row: PASS|FAIL name: expected ... got ...
Exit status 0 if every row passed, else 1.
"""

import argparse
import os
import select
import socket
import sys
import time

TIMEOUT = 10.0
ARGS = None


class Closed(Exception):
    pass


class Conn:
    """A raw SMTP client connection with a reply reader."""

    def __init__(self, port, greet=True, src=None):
        """src: the local address to connect from (any 127.0.0.0/8
        address is ours on Linux), so limits per client IP can be
        tried from one host."""
        self.s = socket.create_connection(("127.0.0.1", port), TIMEOUT,
                                          (src, 0) if src else None)
        self.s.settimeout(TIMEOUT)
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def send(self, data):
        self.s.sendall(data)

    def _line(self, timeout=None):
        self.s.settimeout(TIMEOUT if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                raise Closed(self.buf.decode("latin-1"))
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def reply(self, timeout=None):
        """The last line of one (possibly multi-line) reply."""
        while True:
            line = self._line(timeout)
            if len(line) < 4 or line[3] != "-":
                return line

    def cmd(self, data, timeout=None):
        self.send(data)
        return self.reply(timeout)

    def closed(self, timeout=5.0):
        """True if the server closes the connection (EOF or RST) within
        timeout, after any replies still buffered."""
        self.s.settimeout(timeout)
        end = time.time() + timeout
        try:
            while time.time() < end:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def replies_until_close(self, timeout=5.0):
        """Every reply line until EOF; the list and whether EOF came."""
        out = []
        try:
            while True:
                out.append(self.reply(timeout))
        except Closed:
            return out, True
        except socket.timeout:
            return out, False

    def drip(self, data, step=0.5):
        """Send data one byte every step seconds, and stop early once the
        server says something or closes. Returns the bytes sent."""
        sent = 0
        for i in range(len(data)):
            try:
                self.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            r, _, _ = select.select([self.s], [], [], step)
            if r:
                break
        return sent

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


RESULTS = []


def check(name, expected, got, ok):
    RESULTS.append(ok)
    print("%s %s: expected %s, got %s" %
          ("PASS" if ok else "FAIL", name, expected, got))
    sys.stdout.flush()


def code_is(reply, prefix):
    """reply starts with prefix, and a prefix that ends in a code or an
    enhanced status is followed by a space or the end (so "500 5.5.2"
    matches "500 5.5.2 Error..." but not "500 5.5.20")."""
    if reply is None or not reply.startswith(prefix):
        return False
    rest = reply[len(prefix):]
    return rest == "" or not prefix[-1].isdigit() or rest[0] in " -"


# Recipients of transactions that were refused, or cut off before the
# reply to the dot: none of them may ever get a file (catalogue: "nothing
# stored unless the reply was 250"). Checked once, after a sentinel.
NOT_STORED = []


def row(name, expected, fn):
    """Run fn() -> (ok, got); exceptions are failures."""
    try:
        ok, got = fn()
    except Closed as e:
        ok, got = False, "connection closed early (%r)" % str(e)[:80]
    except (socket.timeout, TimeoutError):
        ok, got = False, "timeout"
    except OSError as e:
        ok, got = False, "error %s" % e
    check(name, expected, got, ok)


def session(port=None, ehlo=True):
    c = Conn(port or ARGS.smtp)
    if ehlo:
        r = c.cmd(b"EHLO client.example\r\n")
        if not r.startswith("250"):
            raise Closed("EHLO got " + r)
    return c


def simple(name, cmds, expect, port=None, ehlo=True, still_open=True):
    """Send cmds (each answered by one reply) and compare the last reply
    with expect (a prefix). still_open: the connection must then still
    answer NOOP with 250."""
    def fn():
        c = session(port, ehlo)
        try:
            r = None
            for x in cmds:
                r = c.cmd(x)
            ok = code_is(r, expect)
            got = r
            if ok and still_open:
                n = c.cmd(b"NOOP\r\n")
                if not n.startswith("250"):
                    ok = False
                    got += " (then NOOP got %s)" % n
            return ok, got
        finally:
            c.close()
    row(name, expect + (" (stays open)" if still_open else ""), fn)


def rcpt_dir(rcpt, root=None):
    return os.path.join(root or ARGS.maildir, rcpt.lower())


def delivered(rcpt, root=None):
    """The delivered files of rcpt (new/ and cur/) under root (default:
    the main daemon's maildir)."""
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(rcpt_dir(rcpt, root), sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return out


def wait_delivered(rcpt, n=1, timeout=15.0, root=None):
    end = time.time() + timeout
    while time.time() < end:
        f = delivered(rcpt, root)
        if len(f) >= n:
            return f
        time.sleep(0.05)
    return delivered(rcpt, root)


def send_message(rcpts, body, port=None, sender=b"a@home.example"):
    """A whole good transaction; returns the reply after the dot."""
    c = session(port)
    try:
        c.cmd(b"MAIL FROM:<" + sender + b">\r\n")
        for r in rcpts:
            x = c.cmd(b"RCPT TO:<" + r + b">\r\n")
            if not x.startswith("250"):
                return "RCPT " + x
        x = c.cmd(b"DATA\r\n")
        if not x.startswith("354"):
            return "DATA " + x
        r = c.cmd(body + b".\r\n")
        c.cmd(b"QUIT\r\n")
        return r
    finally:
        c.close()


# --- rows -----------------------------------------------------------------

def rows_commands():
    simple("row 02: unknown verb FOO", [b"FOO bar\r\n"], "500 5.5.2")
    simple("row 26: 8-bit command without SMTPUTF8",
           [b"NOOP caf\xc3\xa9 \xff\r\n"], "500 5.5.2")
    simple("row 26: 8-bit address without SMTPUTF8",
           [b"MAIL FROM:<caf\xc3\xa9@home.example>\r\n"], "501 5.1.7")
    simple("row 25: EHLO without argument", [b"EHLO\r\n"], "501 ",
           ehlo=False)
    simple("row 25: HELO without argument", [b"HELO\r\n"], "501 ",
           ehlo=False)
    simple("row 06: MAIL FROM:foo (no brackets)", [b"MAIL FROM:foo\r\n"],
           "501 5.5.4")
    simple("row 06: MAIL junk", [b"MAIL junk\r\n"], "501 5.5.4")
    simple("row 07: bad sender <a b@c>", [b"MAIL FROM:<a b@home.example>\r\n"],
           "501 5.1.7")
    simple("row 07: bad sender <@x:a@b> (source route)",
           [b"MAIL FROM:<@relay.example:a@home.example>\r\n"], "501 5.1.7")
    simple("row 07: bad sender <a@b..c>", [b"MAIL FROM:<a@home..example>\r\n"],
           "501 5.1.7")
    simple("row 07: sender local-part 65 octets",
           [b"MAIL FROM:<" + b"x" * 65 + b"@home.example>\r\n"], "501 5.1.7")
    simple("row 07: sender local-part 64 octets (ok)",
           [b"MAIL FROM:<" + b"x" * 64 + b"@home.example>\r\n"], "250")
    simple("row 07: bad recipient <b@>",
           [b"MAIL FROM:<a@home.example>\r\n", b"RCPT TO:<b@>\r\n"],
           "501 5.1.3")
    simple("row 07: bad recipient, domain 256 octets",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<b@" + (b"d" * 63 + b".") * 4 + b"ab>\r\n"],
           "501 5.1.3")
    simple("row 08: bad recipient <\"unterminated@x>",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<\"b@foreign.example>\r\n"], "501 5.1.3")
    simple("row 06: RCPT TO:foo (no brackets)",
           [b"MAIL FROM:<a@home.example>\r\n", b"RCPT TO:foo\r\n"],
           "501 5.5.4")
    simple("row 11: MAIL SIZE=abc", [b"MAIL FROM:<a@home.example> SIZE=abc\r\n"],
           "501 5.5.4")
    simple("row 05: RCPT before MAIL", [b"RCPT TO:<b@foreign.example>\r\n"],
           "503 5.5.1")
    simple("row 05: DATA before MAIL", [b"DATA\r\n"], "503 5.5.1")
    simple("row 05: DATA before RCPT",
           [b"MAIL FROM:<a@home.example>\r\n", b"DATA\r\n"], "503 5.5.1")
    simple("row 05: nested MAIL",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"MAIL FROM:<a@home.example>\r\n"], "503 5.5.1")
    simple("row 05: MAIL before EHLO", [b"MAIL FROM:<a@home.example>\r\n"],
           "503 5.5.1", ehlo=False)
    simple("row 01: command line 512 octets incl. CRLF (ok)",
           [b"NOOP " + b"x" * 505 + b"\r\n"], "250")
    simple("row 01: command line 513 octets",
           [b"NOOP " + b"x" * 506 + b"\r\n"], "500 5.5.2")
    simple("row 01: command line 2000 octets", [b"A" * 2000 + b"\r\n"],
           "500 5.5.2")
    simple("row 11: SIZE= above the limit",
           [b"MAIL FROM:<a@home.example> SIZE=%d\r\n" % (ARGS.max_size + 1)],
           "552 5.3.4")
    simple("row 11: SIZE= at the limit (ok)",
           [b"MAIL FROM:<a@home.example> SIZE=%d\r\n" % ARGS.max_size],
           "250")
    simple("row 11: SIZE= huge number",
           [b"MAIL FROM:<a@home.example> SIZE=99999999999999999999999\r\n"],
           "552 5.3.4")
    simple("recipient outside accept_domains",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<b@elsewhere.example>\r\n"], "550 5.7.1")
    simple("recipient in a subdomain of accept_domains",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<b@sub.foreign.example>\r\n"], "550 5.7.1")
    simple("bare postmaster accepted",
           [b"MAIL FROM:<a@home.example>\r\n", b"RCPT TO:<postmaster>\r\n"],
           "250")
    simple("row 10: DATA when every recipient was rejected",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<b@elsewhere.example>\r\n", b"DATA\r\n"], "554 5.5.1")
    simple("VRFY", [b"VRFY b@foreign.example\r\n"], "252")
    simple("HELP", [b"HELP\r\n"], "214")
    simple("row 25: NOOP", [b"NOOP\r\n"], "250 2.0.0")
    simple("row 25: RSET", [b"MAIL FROM:<a@home.example>\r\n", b"RSET\r\n"],
           "250 2.0.0")
    simple("row 25: MAIL after RSET (transaction cleared)",
           [b"MAIL FROM:<a@home.example>\r\n", b"RSET\r\n",
            b"MAIL FROM:<a@home.example>\r\n"], "250")
    simple("row 24: QUIT", [b"QUIT\r\n"], "221 2.0.0", still_open=False)

    def quit_closes():
        c = session()
        r = c.cmd(b"QUIT\r\n")
        cl = c.closed()
        c.close()
        return r.startswith("221") and cl, "%s, closed=%s" % (r, cl)
    row("QUIT closes", "221 and close", quit_closes)

    def too_many_rcpts():
        c = session()
        try:
            c.cmd(b"MAIL FROM:<a@home.example>\r\n")
            got = [c.cmd(b"RCPT TO:<r%d@foreign.example>\r\n" % i)
                   for i in range(1, 5)]
            ok = ([x[:3] for x in got[:3]] == ["250"] * 3 and
                  code_is(got[3], "452 4.5.3"))
            got = [x[:9] for x in got]
            r = c.cmd(b"DATA\r\n")
            ok = ok and r.startswith("354")
            got.append(r[:3])
            r = c.cmd(b"Subject: rcpts\r\n\r\nx\r\n.\r\n")
            ok = ok and r.startswith("250")
            got.append(r[:3])
            return ok, " ".join(got)
        finally:
            c.close()
    row("row 09: too many recipients (max_recipients = 3)",
        "250 250 250 452 4.5.3 354 250", too_many_rcpts)

    def rcpts_delivered():
        f = [len(wait_delivered("r%d@foreign.example" % i, 1, 10 if i < 4
                                else 1)) for i in range(1, 5)]
        return f == [1, 1, 1, 0], "files per rcpt %s" % f
    row("row 09: too many recipients: only the 3 accepted get a copy",
        "[1, 1, 1, 0]", rcpts_delivered)

    def errors_limit():
        c = session()
        try:
            got = []
            for i in range(20):
                got.append(c.cmd(b"FOO%d\r\n" % i)[:9])
            rest, cl = c.replies_until_close()
            got += [x[:9] for x in rest]
            ok = (got[:19] == ["500 5.5.2"] * 19 and
                  got[19:] == ["500 5.5.2", "421 4.7.0"] and cl)
            return ok, "%s, closed=%s" % (" ".join(sorted(set(got[:19])))
                                          + " x19 then " +
                                          " ".join(got[19:]), cl)
        except Closed:
            return False, "closed before the 20th reply"
        finally:
            c.close()
    row("row 02: 20 unknown commands",
        "500 5.5.2 x19, then 500 5.5.2 421 4.7.0 and close", errors_limit)

    def http(req):
        def fn():
            c = Conn(ARGS.smtp)
            try:
                c.send(req)
                rest, cl = c.replies_until_close()
                ok = cl and len(rest) == 1 and code_is(rest[0], "221 2.7.0")
                return ok, "%s, closed=%s" % (rest, cl)
            finally:
                c.close()
        return fn
    for req in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                b"CONNECT mx.example:25 HTTP/1.1\r\n\r\n"):
        row("row 03: HTTP %s" % req.split(b" ")[0].decode(),
            "221 2.7.0 and close", http(req))

    def early_talker():
        c = Conn(ARGS.limits, greet=False)
        try:
            c.send(b"EHLO client.example\r\n")
            rest, cl = c.replies_until_close()
            ok = (cl and len(rest) >= 1 and code_is(rest[-1], "554 5.5.0")
                  and not any(x.startswith("250") for x in rest))
            return ok, "%s, closed=%s" % (rest, cl)
        finally:
            c.close()

    simple("row 07: recipient path over 256 octets",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<" + b"l" * 64 + b"@" + b"d" * 63 + b"." + b"e" * 63 +
            b"." + b"f" * 63 + b".example>\r\n"], "501 5.1.3")
    simple("row 08: NUL in the sender",
           [b"MAIL FROM:<a\x00b@home.example>\r\n"], "501 5.1.7")
    simple("row 08: NUL in a recipient",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<nul\x00x@foreign.example>\r\n"], "501 5.1.3")
    simple("row 08: quoted CRLF in a recipient: the CRLF ends the line "
           "(501 5.1.3), the rest is no command",
           [b"MAIL FROM:<a@home.example>\r\n",
            b"RCPT TO:<\"a\r\n", b"b\"@foreign.example>\r\n"], "500 5.5.2")

    def starttls():
        # No STARTTLS in the listener: refused, and the plaintext after
        # it in the same packet runs as plaintext, never "after TLS".
        c = session()
        try:
            c.send(b"STARTTLS\r\nRSET\r\n")
            r1, r2 = c.reply(), c.reply()
            ok = code_is(r1, "502 5.5.1") or code_is(r1, "500 5.5.2")
            ok = ok and code_is(r2, "250 2.0.0")
            return ok, "%s | %s" % (r1, r2)
        finally:
            c.close()
    row("row 18: STARTTLS with a command in the same packet",
        "502 5.5.1 (or 500 5.5.2), then 250 2.0.0 in plaintext", starttls)

    def quit_mid():
        c = session()
        try:
            c.cmd(b"MAIL FROM:<a@home.example>\r\n")
            c.cmd(b"RCPT TO:<quitmid@foreign.example>\r\n")
            r = c.cmd(b"QUIT\r\n")
            cl = c.closed()
            return code_is(r, "221 2.0.0") and cl, "%s, closed=%s" % (r, cl)
        finally:
            c.close()
    NOT_STORED.append("quitmid")
    row("row 24: QUIT mid-transaction", "221 2.0.0 and close", quit_mid)

    def bare_lf_cmd(data, name):
        def fn():
            c = Conn(ARGS.smtp)
            try:
                c.cmd(b"EHLO client.example\r\n")
                c.send(data)
                rest, cl = c.replies_until_close()
                ok = (cl and len(rest) == 1 and
                      code_is(rest[0], "550 5.5.2"))
                return ok, "%s, closed=%s" % (rest, cl)
            finally:
                c.close()
        row(name, "550 5.5.2 and close", fn)
    bare_lf_cmd(b"NOOP\n", "row 14: bare LF in a command (NOOP\\n)")
    bare_lf_cmd(b"MAIL FROM:<a@home.example>\nRCPT TO:<x@foreign.example>"
                b"\r\n", "row 14: bare LF in a command (MAIL ...\\n RCPT ...)")
    bare_lf_cmd(b"NOOP\rNOOP\r\n", "row 14: bare CR in a command")
    bare_lf_cmd(b"RCPT TO:<\"a\rb\"@x>\r\n",
                "row 08: bare CR in a quoted recipient (as row 14)")


def rows_data():
    big = ARGS.max_size

    def data_row(name, body, expect, rcpt, close=False,
                 mail=b"MAIL FROM:<a@home.example>\r\n"):
        if not expect.startswith("250"):
            NOT_STORED.append(rcpt.decode().split("@")[0])

        def fn():
            c = session()
            try:
                c.cmd(mail)
                r = c.cmd(b"RCPT TO:<" + rcpt + b">\r\n")
                if not r.startswith("250"):
                    return False, "RCPT " + r
                r = c.cmd(b"DATA\r\n")
                if not r.startswith("354"):
                    return False, "DATA " + r
                c.send(body)
                rest, cl = c.replies_until_close(3.0)
                codes = [x[:3] for x in rest]
                if close:
                    ok = cl and len(rest) == 1 and code_is(rest[0], expect)
                else:
                    ok = (not cl and len(rest) == 1 and
                          code_is(rest[0], expect))
                    if ok:
                        n = c.cmd(b"NOOP\r\n")
                        ok = n.startswith("250")
                return ok, "%s, closed=%s" % (codes if len(rest) > 1
                                              else rest, cl)
            finally:
                c.close()
        row(name, "%s%s" % (expect, " and close" if close else
                            " (stays open)"), fn)

    data_row("data line of 1000 octets incl. CRLF (ok)",
             b"Subject: l\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n", "250",
             b"line1000@foreign.example")
    data_row("data line over 1000 octets",
             b"Subject: l\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n", "500 5.5.6",
             b"line1001@foreign.example")
    data_row("row 12: body above max_message_size",
             b"Subject: big\r\n\r\n" +
             (b"z" * 78 + b"\r\n") * (big // 80 + 10) + b".\r\n",
             "552 5.3.4", b"big@foreign.example")
    data_row("row 12: body above the limit after a false SIZE=10",
             b"Subject: big\r\n\r\n" +
             (b"z" * 78 + b"\r\n") * (big // 80 + 10) + b".\r\n",
             "552 5.3.4", b"falsesize@foreign.example",
             mail=b"MAIL FROM:<a@home.example> SIZE=10\r\n")
    data_row("row 16: NUL in message data",
             b"Subject: nul\r\n\r\na\x00b\r\n.\r\n", "550 5.6.0",
             b"nul@foreign.example")
    data_row("row 15: bare LF inside DATA",
             b"Subject: lf\r\n\r\nline1\nline2\r\n.\r\n", "550 5.5.2",
             b"barelf@foreign.example", close=True)
    data_row("row 16: bare CR inside DATA",
             b"Subject: cr\r\n\r\nline1\rline2\r\n.\r\n", "550 5.5.2",
             b"barecr@foreign.example", close=True)
    smuggle = [("\\n.\\n", b"\n.\n"), ("\\n.\\r\\n", b"\n.\r\n"),
               ("\\r\\n.\\n", b"\r\n.\n"), ("\\r.\\r\\n", b"\r.\r\n")]
    for i, (name, seq) in enumerate(smuggle, 1):
        body = (b"Subject: smuggle %d\r\n\r\nhello" % i + seq +
                b"MAIL FROM:<evil@home.example>\r\n"
                b"RCPT TO:<inject%d@foreign.example>\r\n"
                b"DATA\r\n"
                b"Subject: injected\r\n\r\nspoofed\r\n.\r\n" % i)
        data_row("row 15: smuggling %s then MAIL FROM" % name, body,
                 "550 5.5.2",
                 b"smuggle%d@foreign.example" % i, close=True)

    many_hdr = b"".join(b"X-H%d: v\r\n" % i for i in range(1001))
    data_row("row 13: header section over 1000 lines", many_hdr + b"\r\nx\r\n.\r\n",
             "552 5.3.4", b"hdr@foreign.example")
    data_row("row 13: header section over 100 KB",
             b"X-Big: " + b"v" * 900 + b"\r\n" +
             b"".join(b"\tv" * 300 + b"\r\n" for _ in range(200)) +
             b"\r\nx\r\n.\r\n", "552 5.3.4", b"hdrbytes@foreign.example")

    def pipelined():
        c = session()
        try:
            got = []
            c.send(b"MAIL FROM:<a@home.example>\r\n"
                   b"RCPT TO:<pipe1@foreign.example>\r\nDATA\r\n")
            got += [c.reply()[:3] for _ in range(3)]
            c.send(b"Subject: p1\r\n\r\none\r\n.\r\n"
                   b"MAIL FROM:<a@home.example>\r\n"
                   b"RCPT TO:<pipe2@foreign.example>\r\nDATA\r\n")
            got += [c.reply()[:3] for _ in range(4)]
            c.send(b"Subject: p2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
            got += [c.reply()[:3] for _ in range(2)]
            ok = got == ["250", "250", "354", "250", "250", "250", "354",
                         "250", "221"]
            if ok:
                f = [len(wait_delivered(x)) for x in
                     ("pipe1@foreign.example", "pipe2@foreign.example")]
                ok = f == [1, 1]
                got.append("files %s" % f)
            return ok, " ".join(got)
        finally:
            c.close()
    row("pipelined: 2 messages, next MAIL in the same write as the dot",
        "250 250 354 250 250 250 354 250 221 files [1, 1]", pipelined)

    def mid_data_disconnect():
        c = session()
        c.cmd(b"MAIL FROM:<a@home.example>\r\n")
        c.cmd(b"RCPT TO:<middata@foreign.example>\r\n")
        r = c.cmd(b"DATA\r\n")
        c.send(b"Subject: cut\r\n\r\nhalf a message\r\n")
        c.close()
        return r.startswith("354"), "DATA %s, then closed by us" % r[:3]
    row("row 24: client disconnects in the middle of DATA", "354 (file count "
        "checked below)", mid_data_disconnect)

    def dots():
        body = (b"Subject: dots\r\n\r\nfirst\r\n..foo\r\n..bar.\r\n.baz\r\n"
                b"a.b\r\n...\r\n.\r\n")
        r = send_message([b"dots@foreign.example"], body)
        if not r.startswith("250"):
            return False, r
        f = wait_delivered("dots@foreign.example")
        if len(f) != 1:
            return False, "%d files" % len(f)
        with open(f[0], "rb") as fh:
            data = fh.read()
        tail = data.split(b"\n\n", 1)[1]
        want = b"first\n.foo\n.bar.\nbaz\na.b\n..\n"
        return tail == want, repr(tail)
    row("row 17: dot-unstuffing (..foo ..bar. .baz a.b ...)",
        repr(b"first\n.foo\n.bar.\nbaz\na.b\n..\n"), dots)

    def refused_not_delivered():
        # A sentinel sent after the refused messages; once it is
        # delivered (and a little more), nothing else may have appeared.
        r = send_message([b"sentinel@foreign.example"],
                         b"Subject: sentinel\r\n\r\nx\r\n.\r\n")
        if not r.startswith("250") or \
                len(wait_delivered("sentinel@foreign.example")) != 1:
            return False, "sentinel not delivered (%s)" % r
        time.sleep(1.0)
        bad = {}
        for n in NOT_STORED + ["middata"] + \
                ["inject%d" % i for i in range(1, 5)]:
            k = len(delivered(n + "@foreign.example"))
            if k:
                bad[n] = k
        good = len(delivered("line1000@foreign.example"))
        return not bad and good == 1, \
            "refused with files: %s; line1000 files %d" % (bad or "none",
                                                           good)
    row("rows 08-16, 24: maildir: no file for any refused/smuggled message",
        "none; line1000 files 1", refused_not_delivered)


def rows_lmtp():
    def lmtp():
        c = Conn(ARGS.lmtp)
        try:
            got = [c.greeting[:3]]
            got.append(c.cmd(b"LHLO client.example\r\n")[:3])
            got.append(c.cmd(b"MAIL FROM:<a@home.example>\r\n")[:3])
            got.append(c.cmd(b"RCPT TO:<l1@foreign.example>\r\n")[:3])
            got.append(c.cmd(b"RCPT TO:<l2@foreign.example>\r\n")[:3])
            got.append(c.cmd(b"DATA\r\n")[:3])
            c.send(b"Subject: lmtp\r\n\r\nx\r\n.\r\n")
            got.append(c.reply()[:3])
            got.append(c.reply()[:3])
            n = c.cmd(b"NOOP\r\n")[:3]   # no third reply in between
            got.append(n)
            c.cmd(b"QUIT\r\n")
            ok = got == ["220", "250", "250", "250", "250", "354", "250",
                         "250", "250"]
            if ok:
                f = [len(wait_delivered(x)) for x in
                     ("l1@foreign.example", "l2@foreign.example")]
                ok = f == [1, 1]
                got.append("files %s" % f)
            return ok, " ".join(got)
        finally:
            c.close()
    row("LMTP: LHLO, 2 RCPT, DATA -> two replies after the dot",
        "220 250 250 250 250 354 250 250 (NOOP) 250, files [1, 1]", lmtp)

    simple("LMTP: EHLO is unknown on the LMTP port",
           [b"EHLO client.example\r\n"], "500", port=ARGS.lmtp, ehlo=False)


def rows_deny():
    def deny():
        c = Conn(ARGS.deny, greet=False)
        try:
            rest, cl = c.replies_until_close()
            ok = cl and len(rest) == 1 and rest[0].startswith("554")
            return ok, "%s, closed=%s" % (rest, cl)
        finally:
            c.close()
    row("client outside allow_networks", "554 and close", deny)


def rows_limits():
    def idle():
        t0 = time.time()    # the timeout runs from the connect
        c = Conn(ARGS.limits)
        try:
            rest, cl = c.replies_until_close(10.0)
            dt = time.time() - t0
            ok = (cl and len(rest) == 1 and code_is(rest[0], "421 4.4.2")
                  and 1.5 <= dt <= 6)
            return ok, "%s after %.1fs, closed=%s" % (rest, dt, cl)
        finally:
            c.close()
    row("row 19: idle timeout (idle_timeout = 2s)", "421 4.4.2 after ~2s and close",
        idle)

    def timed_out(rest, cl):
        return (cl and len(rest) == 1 and code_is(rest[0], "421 4.4.2") and
                rest[0].endswith("test.postern.invalid Error: timeout "
                                 "exceeded"))

    def drip_command():
        # Every byte comes well inside idle_timeout, but the line takes
        # 30 s: the deadline is for the whole line, not per read.
        line = b"EHLO " + b"x" * 55 + b"\r\n"
        c = Conn(ARGS.limits)
        try:
            sent = c.drip(line)
            rest, cl = c.replies_until_close(10.0)
            ok = timed_out(rest, cl) and sent < len(line)
            return ok, "%s after %d of %d bytes, closed=%s" % (
                rest, sent, len(line), cl)
        finally:
            c.close()
    row("row 19: command line dripped 1 byte/0.5s (idle_timeout = 2s)",
        "421 4.4.2 <host> Error: timeout exceeded before the line ends, "
        "close", drip_command)

    def drip_data():
        # Complete data lines every 1.5 s do not re-arm anything: the
        # DATA phase as a whole has data_timeout.
        body = b"Subject: drip\r\n\r\n" + b"l\r\n" * 30 + b".\r\n"
        c = session(ARGS.limits)
        try:
            c.cmd(b"MAIL FROM:<a@home.example>\r\n")
            r = c.cmd(b"RCPT TO:<ldrip@foreign.example>\r\n")
            d = c.cmd(b"DATA\r\n")
            if not r.startswith("250") or not d.startswith("354"):
                return False, "RCPT %s, DATA %s" % (r, d)
            sent = c.drip(body)
            rest, cl = c.replies_until_close(10.0)
        finally:
            c.close()
        ok = timed_out(rest, cl) and sent < len(body)
        got = "%s after %d of %d bytes, closed=%s" % (rest, sent, len(body),
                                                     cl)
        # nothing stored: a sentinel sent after it arrives, the drip not
        s = send_message([b"lsentinel@foreign.example"],
                         b"Subject: sentinel\r\n\r\nx\r\n", ARGS.limits)
        n = len(wait_delivered("lsentinel@foreign.example",
                               root=ARGS.limits_maildir))
        m = len(delivered("ldrip@foreign.example", ARGS.limits_maildir))
        ok = ok and code_is(s, "250") and n == 1 and m == 0
        return ok, got + "; sentinel %s, %d file(s); drip %d file(s)" % (
            s[:3], n, m)
    row("row 19: DATA dripped 1 byte/0.5s (data_timeout = 3s)",
        "421 4.4.2 <host> Error: timeout exceeded before the dot, close; "
        "0 stored", drip_data)

    def refused(c, ip):
        rest, cl = c.replies_until_close()
        ok = (cl and len(rest) == 1 and code_is(rest[0], "421 4.7.0") and
              rest[0].endswith("test.postern.invalid Error: too many "
                               "connections from " + ip))
        return ok, "%s, closed=%s" % (rest, cl)

    def per_ip():
        a = Conn(ARGS.limits)
        b = Conn(ARGS.limits)
        d = None
        try:
            c = Conn(ARGS.limits, greet=False)
            try:
                ok, got = refused(c, "127.0.0.1")
            finally:
                c.close()
            # another address still gets in; the first two still work
            d = Conn(ARGS.limits, src="127.0.0.2")
            ra = a.cmd(b"NOOP\r\n")
            rb = b.cmd(b"NOOP\r\n")
            ok = (ok and d.greeting.startswith("220") and
                  ra.startswith("250") and rb.startswith("250"))
            return ok, "third from 127.0.0.1: %s; 127.0.0.2: %s; first " \
                "two NOOP: %s %s" % (got, d.greeting[:3], ra[:3], rb[:3])
        finally:
            a.close()
            b.close()
            if d is not None:
                d.close()
    row("row 20: too many sessions from one IP (max_sessions_per_ip = 2, "
        "open 3)", "third 421 4.7.0 <host> Error: too many connections "
        "from 127.0.0.1 and close; 127.0.0.2 gets 220; first two 250",
        per_ip)

    def sessions():
        time.sleep(0.5)     # the server has seen the closes above
        a = Conn(ARGS.limits)
        b = Conn(ARGS.limits, src="127.0.0.2")
        d = Conn(ARGS.limits, src="127.0.0.3")
        try:
            c = Conn(ARGS.limits, greet=False, src="127.0.0.4")
            try:
                ok, got = refused(c, "127.0.0.4")
            finally:
                c.close()
            # the first three still work
            r = [x.cmd(b"NOOP\r\n") for x in (a, b, d)]
            ok = ok and all(x.startswith("250") for x in r)
            return ok, "fourth: %s; first three NOOP: %s" % (
                got, " ".join(x[:3] for x in r))
        finally:
            a.close()
            b.close()
            d.close()
    row("row 20: too many sessions (max_sessions = 3, open 4 from 4 IPs)",
        "fourth 421 4.7.0 <host> Error: too many connections from "
        "127.0.0.4 and close; first three 250", sessions)

    def slot_freed():
        # After the clients above closed, a new session gets a 220.
        time.sleep(0.5)
        c = Conn(ARGS.limits, greet=False)
        try:
            r = c.reply()
            return r.startswith("220"), r
        finally:
            c.close()
    row("session slots freed after close", "220", slot_freed)

    def early_talker():
        c = Conn(ARGS.limits, greet=False)
        try:
            c.send(b"EHLO client.example\r\n")
            rest, cl = c.replies_until_close()
            ok = (cl and len(rest) == 1 and code_is(rest[0], "554 5.5.0"))
            return ok, "%s, closed=%s" % (rest, cl)
        finally:
            c.close()
    row("row 04: client talks before the greeting (greet_pause = 500ms)",
        "554 5.5.0 and close, no 220", early_talker)

    def pipelined(name, first, data):
        def fn():
            c = Conn(ARGS.limits)
            try:
                if first:
                    c.cmd(first)
                c.send(data)
                rest, cl = c.replies_until_close()
                ok = cl and rest and code_is(rest[-1], "554 5.5.0") and \
                    not any(x.startswith("354") for x in rest)
                return ok, "%s, closed=%s" % ([x[:9] for x in rest], cl)
            finally:
                c.close()
        row("row 04: " + name, "554 5.5.0 and close, no 354", fn)
    pipelined("message sent behind DATA without waiting for the 354",
              b"EHLO client.example\r\n",
              b"MAIL FROM:<a@home.example>\r\n"
              b"RCPT TO:<across@foreign.example>\r\nDATA\r\n"
              b"Subject: across\r\n\r\nx\r\n.\r\n")
    pipelined("pipelining after HELO (no PIPELINING advertised)",
              b"HELO client.example\r\n",
              b"MAIL FROM:<a@home.example>\r\n"
              b"RCPT TO:<across@foreign.example>\r\n")
    pipelined("a command behind EHLO in the same write", None,
              b"EHLO client.example\r\nMAIL FROM:<a@home.example>\r\n")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--smtp", type=int, required=True)
    p.add_argument("--lmtp", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--deny", type=int, required=True)
    p.add_argument("--limits", type=int, required=True)
    p.add_argument("--limits-maildir", required=True)
    p.add_argument("--max-size", type=int, required=True)
    ARGS = p.parse_args()
    rows_commands()
    rows_data()
    rows_lmtp()
    rows_deny()
    rows_limits()
    bad = RESULTS.count(False)
    print("smtp_table: %d rows, %d passed, %d failed" %
          (len(RESULTS), len(RESULTS) - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
