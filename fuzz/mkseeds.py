#!/usr/bin/env python3
"""mkseeds.py SRCDIR - (re)write the seed inputs in SRCDIR/fuzz/corpus/.

Seeds are named seed-*; inputs that once crashed a target are named
crash-* and are never touched here (every file in a target's directory is
replayed by make check). The SMTP seeds are the rows of the bad-input
catalogue (RELIABILITY.md section 4) plus normal sessions.
"""
import os
import struct
import subprocess
import sys
import tempfile

SRC = sys.argv[1] if len(sys.argv) > 1 else "."
CORPUS = os.path.join(SRC, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- smtp: 4 header bytes (options, chunk class, seed), then the client.
OK = (b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
      b"RCPT TO:<b@example.com>\r\nDATA\r\n")
END = b"\r\n.\r\n"
SESSIONS = {
    "plain": OK + b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    "two": OK + b"a\r\n.\r\n" + OK[16:] + b"b\r\n.\r\nQUIT\r\n",
    "row01-long-cmd": b"EHLO x\r\n" + b"A" * 2000 + b"\r\nNOOP\r\n",
    "row02-unknown": b"EHLO x\r\n" + b"FOO\r\n" * 21,
    "row03-http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "row04-pipelining": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                        b"DATA\r\nx\r\n.\r\nMAIL FROM:<e@f>\r\n",
    "row05-order": b"EHLO x\r\nRCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\n"
                   b"MAIL FROM:<a@b>\r\nDATA\r\n",
    "row06-nobrackets": b"EHLO x\r\nMAIL FROM:foo\r\nMAIL junk\r\n",
    "row07-long-addr": b"EHLO x\r\nMAIL FROM:<" + b"l" * 65 + b"@b>\r\n"
                       b"RCPT TO:<a@" + b"d" * 256 + b">\r\n",
    "row08-ctl-addr": b"EHLO x\r\nMAIL FROM:<a\x00b@c>\r\n"
                      b"MAIL FROM:<\"a\r\nb\"@c>\r\n",
    "row09-many-rcpts": b"EHLO x\r\nMAIL FROM:<a@b>\r\n" +
                        b"".join(b"RCPT TO:<r%d@d>\r\n" % i
                                 for i in range(105)) + b"DATA\r\nx" + END,
    "row10-no-valid": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<xa@b>\r\n"
                      b"DATA\r\n",
    "row11-size": b"EHLO x\r\nMAIL FROM:<a@b> SIZE=999999999\r\n"
                  b"MAIL FROM:<a@b> SIZE=abc\r\n",
    "row12-big-body": OK + b"y" * 900 + b"\r\n" + b"z\r\n" * 200 + b".\r\n",
    "row13-big-header": OK + b"X-H: v\r\n" * 1100 + b"\r\nb" + END,
    "row14-bare-lf": b"EHLO x\r\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\r\n",
    "row15-smuggle-lf": OK + b"a\n.\nMAIL FROM:<e@f>\r\n" + b"b" + END,
    "row15-smuggle-lfcrlf": OK + b"a\n.\r\nMAIL FROM:<e@f>\r\nb" + END,
    "row15-smuggle-crlflf": OK + b"a\r\n.\nMAIL FROM:<e@f>\r\nb" + END,
    "row15-smuggle-cr": OK + b"a\r.\r\nMAIL FROM:<e@f>\r\nb" + END,
    "row16-cr-nul": OK + b"a\rb\x00c" + END + b"NOOP\r\n",
    "row17-dots": OK + b"..foo\r\na . b\r\n.\r\r\n...\r\n" + END[2:],
    "row18-starttls": b"EHLO x\r\nSTARTTLS\r\nRSET\r\n",
    "row24-quit-mid": b"EHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
    "row25-helo-rset-noop": b"EHLO\r\nHELO\r\nHELO x\r\nRSET\r\nNOOP\r\n",
    "row26-8bit": b"EHLO x\r\nNOOP \xc3\xa9\r\nMAIL FROM:<\xe9@b>\r\n",
    "lmtp": b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<c@d>\r\n"
            b"DATA\r\nMessage-ID: <m@x>\r\n\r\nb" + END,
    "vrfy-help": b"HELO x\r\nVRFY a\r\nHELP\r\nEXPN a\r\nAUTH PLAIN\r\n",
}
for i, (name, s) in enumerate(sorted(SESSIONS.items())):
    # Options: LMTP for the lmtp seed; small limits, a refusing store,
    # rcpt_ok and a timeout while storing in turn over the seeds.
    opt = (1 if name == "lmtp" else 0) | ((i % 4) << 2) | \
        (2 if i % 3 == 0 else 0) | (16 if "no-valid" in name else 0) | \
        (64 if i % 5 == 4 else 0) | (128 if i % 7 == 3 else 0)
    put("smtp", name, bytes([opt, i % 4, i, 7 * i & 255]) + s)

# --- outbound: sender NUL rcpts NUL NUL body.
put("outbound", "plain", b"a@b\x00c@d\x00e@f\x00\x00Subject: x\r\n\r\n.b\r\n")
put("outbound", "inject", b"a@b\r\nRCPT TO:<x@y>\x00c>@d\x00\x00"
    b"a\n.\nMAIL FROM:<e@f>\r\n.\r.\r\n")
put("outbound", "null-sender", b"\x00\x00..\r\n.\r\n")

# --- store: byte 0 picks the decoder (0 rcpt, 1 msg, 2 ledger, 3 history).
def s16(b):
    return struct.pack(">H", len(b)) + b


put("store", "rcpt", b"\x00" + bytes([1, 1, 0, 0]) +
    struct.pack(">IQQQIQ", 2, 10, 3, 4, 5, 6) + s16(b"r@d") + s16(b"451 x"))
put("store", "msg", b"\x01" + b"\x01" + struct.pack(">QIII", 1, 2, 2, 300) +
    s16(b"s@d") + s16(b"<m@x>"))
put("store", "ledger", b"\x02" + bytes([1, 1]) +
    struct.pack(">QIQQ", 7, 0, 1, 2) + b"\x11" * 32 + b"\x22" * 32 +
    s16(b"r@d") + s16(b"<m@x>") + s16(b"250 ok"))
# record version 2 (since schema 4): the received digest at the end;
# ledger kind 5 is a resubmission
put("store", "msg-v2", b"\x01" + b"\x02" + struct.pack(">QIII", 1, 2, 2, 300) +
    s16(b"s@d") + s16(b"<m@x>") + b"\x33" * 32)
put("store", "ledger-v2", b"\x02" + bytes([2, 5]) +
    struct.pack(">QIQQ", 7, 0, 1, 2) + b"\x00" * 32 + b"\x22" * 32 +
    s16(b"r@d") + s16(b"<m@x>") + s16(b"resubmission") + b"\x44" * 32)
put("store", "history", b"\x03" + bytes([1, 1, 4]) + s16(b"451 4.3.0 later"))
put("store", "short-string", b"\x03" + bytes([1, 1, 4]) + b"\x02\x00x")

# --- config: the sample configuration and small pieces.
with open(os.path.join(SRC, "contrib", "postern.conf"), "rb") as f:
    put("config", "sample", f.read())
put("config", "small", b"[store]\npath = /tmp/x\n[ingress]\nlisten = "
    b"127.0.0.1:2525\n[workers]\ncount = 2\n")
put("config", "bad", b"[ingress]\nlisten = [::1\nmax_message_size = 1x\n"
    b"[nope]\nkey\n")

# --- ccmail: byte 0: bit 1 import file mode, bit 0 UTF-8 document.
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable,
                    os.path.join(SRC, "tests", "ccmail_corpus.py"), tmp],
                   check=True, stdout=subprocess.DEVNULL)
    for n, fn in enumerate(sorted(os.listdir(tmp))):
        if not fn.endswith(".eml"):
            continue
        with open(os.path.join(tmp, fn), "rb") as f:
            data = f.read()
        if len(data) <= 4096:
            put("ccmail", fn[:-4], bytes([n & 1]) + data)
put("ccmail", "import", b"\x02Message-Id: <m@x>\r\nFrom: a at b\r\n"
    b"To: c at d\r\nSubject: s\r\nContents: 1\r\nText item: 1\r\nhi\r\n")
