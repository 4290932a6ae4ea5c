#!/usr/bin/env python3
"""ccmail_corpus.py OUTDIR - write the MIME corpus of test_ccmail_convert.

Python's email package builds the messages, so the C converter is checked
against an independent MIME writer. For each message NAME it writes
OUTDIR/NAME.eml (CRLF line ends) and OUTDIR/NAME.expect, whose lines are:

    subject <UTF-8 subject>
    subject_latin1 <the subject as ISO-8859-1 can hold it, '?' for the rest>
    from <address>
    text <path of a file with the expected text, UTF-8, LF line ends>
    file <path of the original attachment bytes> <title or *>
    prefix <path of the original>   (truncated input: a prefix of it)
    permfail                        (must be refused with 5.6.0)

Items are listed in the order the import file must hold them. A title of
"*" is hostile input: the test checks it is safe, not what it is.
"""
import os
import random
import sys
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

OUT = sys.argv[1]
RND = random.Random(20261122)
LINES = []


def norm_text(s):
    s = s.replace("\r\n", "\n")
    if s and not s.endswith("\n"):
        s += "\n"
    return "".join(c if c in "\t\n" or (ord(c) >= 0x20 and ord(c) != 0x7f)
                   else "?" for c in s)


def latin1(s):
    return "".join(c if ord(c) < 256 else "?" for c in s)


class Case:
    def __init__(self, name):
        self.name = name
        self.lines = []
        self.n = 0

    def expect(self, line):
        self.lines.append(line)

    def subject(self, s):
        self.expect("subject " + s)
        self.expect("subject_latin1 " + latin1(s))

    def text(self, s):
        self.n += 1
        path = os.path.join(OUT, "%s.text%d" % (self.name, self.n))
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(norm_text(s))
        self.expect("text " + path)

    def orig(self, data, kind="file", title=None):
        self.n += 1
        path = os.path.join(OUT, "%s.orig%d" % (self.name, self.n))
        with open(path, "wb") as f:
            f.write(data)
        self.expect("%s %s%s" % (kind, path,
                                 "" if title is None else " " + title))

    def write(self, raw):
        if not isinstance(raw, bytes):
            raw = raw.as_bytes()
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with open(os.path.join(OUT, self.name + ".eml"), "wb") as f:
            f.write(raw)
        with open(os.path.join(OUT, self.name + ".expect"), "w",
                  encoding="utf-8") as f:
            f.write("\n".join(self.lines) + "\n")


def simple():
    c = Case("simple")
    body = ("Hello.\nFrom: this line is text, not a field\n"
            "Contents: 3\n\\starts with a backslash\nFile item: x 1 y\n"
            "Text item: 9\n\n  indented: fine\nlast line without newline")
    m = MIMEText(body, "plain", "us-ascii")
    subj = "Grüße aus Köln"
    m["Subject"] = Header(subj, "iso-8859-1").encode()
    m["From"] = Header("Jörg Müller", "iso-8859-1").encode() + \
        " <joerg@home.example>"
    m["To"] = "b@foreign.example"
    m["Date"] = "Sun, 22 Nov 2026 14:05:00 +0100"
    m["Message-ID"] = "<simple@home.example>"
    c.subject(subj)
    c.expect("from joerg@home.example")
    c.text(body)
    c.write(m)


def koi8():
    c = Case("koi8")
    subj = "Привет, мир"
    body = "Добрый день!\nЭто письмо в KOI8-R.\n"
    m = MIMEText(body.encode("koi8-r"), "plain", "koi8-r")
    del m["Content-Transfer-Encoding"]
    m.set_payload(body.encode("koi8-r"))
    m["Content-Transfer-Encoding"] = "8bit"
    m["Subject"] = Header(subj, "koi8-r").encode()
    m["From"] = "ivan@home.example"
    m["To"] = "b@foreign.example"
    c.subject(subj)
    c.expect("from ivan@home.example")
    c.text(body)
    c.write(m.as_bytes())


def japanese():
    c = Case("jis")
    subj = "日本語の件名です"
    body = "こんにちは。\n添付ファイルを送ります。\n"
    outer = MIMEMultipart("mixed")
    outer["Subject"] = Header(subj, "iso-2022-jp").encode()
    outer["From"] = "taro@home.example"
    outer["To"] = "b@foreign.example"
    t = MIMEText(body, "plain", "iso-2022-jp")
    outer.attach(t)
    sj = "報告書の本文\r\n二行目\r\n".encode("shift_jis")
    a = MIMEApplication(sj, "octet-stream")
    a.replace_header("Content-Type", "text/plain; charset=Shift_JIS")
    a.add_header("Content-Disposition", "attachment",
                 filename=("utf-8", "", "報告書.txt"))
    outer.attach(a)
    c.subject(subj)
    c.expect("from taro@home.example")
    c.text(body)
    c.orig(sj, title="報告書.txt")
    c.write(outer.as_bytes())


def utf8_nested():
    c = Case("nested")
    subj = "Ünïcödé ✓ 😀 nested"
    outer = MIMEMultipart("mixed")
    outer["Subject"] = Header(subj, "utf-8").encode()
    outer["From"] = Header("Zoë", "utf-8").encode() + " <zoe@home.example>"
    outer["To"] = "b@foreign.example, c@foreign.example"
    outer["Cc"] = "d@foreign.example"
    alt = MIMEMultipart("alternative")
    plain = "Grüße — quoted-printable text with a long line " + "x" * 120 + "\n"
    p = MIMEText(plain, "plain", "utf-8")
    del p["Content-Transfer-Encoding"]
    import quopri
    p.set_payload(quopri.encodestring(plain.encode("utf-8")).decode("ascii"))
    p["Content-Transfer-Encoding"] = "quoted-printable"
    alt.attach(p)
    alt.attach(MIMEText("<p>Grüße</p>", "html", "utf-8"))
    outer.attach(alt)
    img = bytes(RND.getrandbits(8) for _ in range(5000))
    a1 = MIMEApplication(img, "octet-stream")
    a1.add_header("Content-Disposition", "attachment", filename="image.bin")
    outer.attach(a1)
    # QP line breaks are CRLF once decoded (RFC 2045 6.7 canonical form)
    qp_lf = ("line one = équals\n" * 40).encode("latin-1")
    qp = qp_lf.replace(b"\n", b"\r\n")
    a2 = MIMEApplication(qp, "octet-stream")
    del a2["Content-Transfer-Encoding"]
    a2.set_payload(quopri.encodestring(qp_lf).decode("ascii"))
    a2["Content-Transfer-Encoding"] = "quoted-printable"
    a2.replace_header("Content-Type", "text/plain; charset=iso-8859-1")
    a2.add_header("Content-Disposition", "attachment", filename="notes.txt")
    outer.attach(a2)
    inner = MIMEMultipart("mixed")
    inner.attach(MIMEText("second text part\n", "plain", "utf-8"))
    deep = MIMEMultipart("mixed")
    blob = bytes(RND.getrandbits(8) for _ in range(777))
    a3 = MIMEApplication(blob, "pdf")
    a3.add_header("Content-Disposition", "attachment",
                  filename=("utf-8", "", "résumé final.pdf"))
    deep.attach(a3)
    inner.attach(deep)
    outer.attach(inner)
    c.subject(subj)
    c.expect("from zoe@home.example")
    c.text(plain)
    c.orig(img, title="image.bin")
    c.orig(qp, title="notes.txt")
    c.text("second text part\n")
    c.orig(blob, title="résumé final.pdf")
    c.write(outer.as_bytes())


def no_body():
    c = Case("nobody")
    raw = (b"From: nb@home.example\r\nTo: b@foreign.example\r\n"
           b"Subject: nothing inside\r\n\r\n")
    c.subject("nothing inside")
    c.expect("from nb@home.example")
    c.write(raw)
    c = Case("noblank")
    c.subject("headers only")
    c.expect("from nb@home.example")
    c.write(b"From: nb@home.example\r\nSubject: headers only\r\n")


def big():
    c = Case("big")
    data = RND.randbytes(20 * 1024 * 1024)
    outer = MIMEMultipart("mixed")
    outer["Subject"] = "20 MiB"
    outer["From"] = "big@home.example"
    outer["To"] = "b@foreign.example"
    outer.attach(MIMEText("see attachment\n", "plain", "us-ascii"))
    a = MIMEApplication(data, "octet-stream")
    a.add_header("Content-Disposition", "attachment", filename="random.bin")
    outer.attach(a)
    c.subject("20 MiB")
    c.expect("from big@home.example")
    c.text("see attachment\n")
    c.orig(data, title="random.bin")
    c.write(outer.as_bytes())


def hostile():
    c = Case("hostile")
    outer = MIMEMultipart("mixed")
    outer["Subject"] = "hostile names"
    outer["From"] = "h@home.example"
    names = [("../../etc/passwd", "passwd"),
             ("C:\\evil\\run.exe", "run.exe"),
             (".hidden", "_hidden"),
             ("a" * 500 + ".txt", "*"),
             ("bad\x01name\x7f.txt", "*")]
    c.subject("hostile names")
    c.expect("from h@home.example")
    for name, title in names:
        data = name.encode("utf-8", "replace")
        a = MIMEApplication(data, "octet-stream")
        a.add_header("Content-Disposition", "attachment", filename=name)
        outer.attach(a)
        c.orig(data, title=title)
    raw = outer.as_bytes()
    # A NUL in an RFC 2231 file name, which the email package won't write.
    nul = (b"--" + outer.get_boundary().encode() + b"\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename*=UTF-8''x%00y.txt\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nTlVM\r\n")
    end = b"--" + outer.get_boundary().encode() + b"--"
    raw = raw.replace(end, nul + end)
    c.orig(b"NUL", title="*")
    c.write(raw)


def bad():
    c = Case("truncated")
    data = RND.randbytes(30000)
    outer = MIMEMultipart("mixed")
    outer["Subject"] = "cut off"
    outer["From"] = "t@home.example"
    a = MIMEApplication(data, "octet-stream")
    a.add_header("Content-Disposition", "attachment", filename="cut.bin")
    outer.attach(a)
    raw = outer.as_bytes()
    raw = raw[:len(raw) // 2]
    raw = raw[:raw.rfind(b"\n") + 1]
    c.subject("cut off")
    c.expect("from t@home.example")
    c.orig(data, kind="prefix")
    c.write(raw)
    c = Case("noboundary")
    c.expect("permfail")
    c.write(b"From: nb@home.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed\r\n\r\n--zzz\r\n"
            b"Content-Type: text/plain\r\n\r\nlost\r\n--zzz--\r\n")


os.makedirs(OUT, exist_ok=True)
for f in (simple, koi8, japanese, utf8_nested, no_body, big, hostile, bad):
    f()
