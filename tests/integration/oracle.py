#!/usr/bin/env python3
"""oracle.py - the delivery oracle of the reliability tests (RELIABILITY.md 4).

  send --port P --msgs N --threads T --states FILE --progress FILE
       [--id-base B] [--rcpts K] [--connect-retry S] [--append]
       [--pad BYTES] [--replies FILE]
      T threads send N small messages over raw sockets, one transaction
      each (connections are reused). Message i (ids B .. B+N-1) has
      "X-Test-Id: i", "Message-ID: <oracle.i@home.example>" and
      "Subject: kill-restart i", and 1 + i % K recipients (rcpts_of()).
      Each transaction is recorded as
        ok       250 after the dot
        failed   4xx/5xx, or the connection failed before the dot went
        unknown  the connection broke after the dot was sent, before the
                 reply
      After a failure the thread reconnects (retrying for up to 10 s) and
      goes on with the next message; nothing is resent. FILE gets one line
      "ID STATE" per message (--append: added to FILE); the progress file
      the number done so far.

  check --states FILE (--maildir ROOT | --sink DIR | --ccmail DIR)
        [--rcpts K] [--store DIR [--config FILE]] [--log FILE]
        [--allow-dups N] [--name NAME]
      Reconciles the client's record with the foreign side and, with
      --store, with the store (`postern audit --verify`, the ledger and
      the queue). Every (id, recipient) pair is counted at the target:
      Maildir files under ROOT/*/{new,cur}; smtp-sink -d dump files under
      DIR (X-Rcpt-Args lines); ccmail import files DIR/*.ccm. Invariants:
        I1 no loss     every pair of an ok id is at the target, or (with
                       --store) still in the queue; with --store, every
                       pair at the target is a delivered ledger record or
                       still queued (in-doubt), and the ledger verifies
        I2 no dup      no pair twice at the target ...
        I3             ... except, on smtp, at most --allow-dups extra
                       copies (the in-doubt events the log shows; with
                       --log the count is taken from it)
        I4 no phantom  nothing of a failed id at the target; unknown
                       ids at most once (I3 applies to them too)
      and every file's content matches its id. Prints a RESULT line;
      exit 0 when all hold.
"""
import json
import subprocess

import argparse
import os
import re
import socket
import sys
import threading
import time

RCPTS = [b"kr%d@foreign.example" % i for i in range(4)]


def rcpts_of(i, k):
    """The recipients of message i when messages have 1..k recipients."""
    pool = max(4, k)
    return [b"kr%d@foreign.example" % ((i + j) % pool)
            for j in range(1 + i % k)]
CONNECT_RETRY = 10.0
IO_TIMEOUT = 30.0


class Broken(Exception):
    pass


class Client:
    def __init__(self, port, rcpts=1, connect_retry=CONNECT_RETRY, pad=0):
        self.pad = b"".join(b"%075d\r\n" % n for n in range(pad // 77))
        self.last = b""
        self.stage = b""
        self.port = port
        self.rcpts = rcpts
        self.connect_retry = connect_retry
        self.s = None
        self.buf = b""

    def close(self):
        if self.s is not None:
            try:
                self.s.close()
            except OSError:
                pass
        self.s = None
        self.buf = b""

    def reply(self):
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    raise Broken("EOF")
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            if len(line) < 4 or line[3:4] != b"-":
                return line

    def cmd(self, data, want):
        self.stage = data.split(b" ")[0].split(b":")[0].strip()
        self.s.sendall(data)
        r = self.reply()
        if not r.startswith(want):
            raise Broken(r.decode("latin-1"))
        return r

    def connect(self):
        """Connect and greet, retrying for CONNECT_RETRY seconds. On
        failure self.last is "CONNECT " and why (e.g. a 421 greeting)."""
        end = time.time() + self.connect_retry
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", self.port),
                                                  IO_TIMEOUT)
                self.s.settimeout(IO_TIMEOUT)
                r = self.reply()
                if not r.startswith(b"220"):
                    raise Broken(r.decode("latin-1"))
                self.cmd(b"EHLO oracle.example\r\n", b"250")
                return True
            except (OSError, Broken) as e:
                self.close()
                self.last = b"CONNECT " + str(e).encode()[:100]
                if time.time() >= end:
                    return False
                time.sleep(0.1)

    def send(self, i):
        """One transaction: 'ok', 'failed' or 'unknown'."""
        if self.s is None and not self.connect():
            return "failed"
        rcpts = rcpts_of(i, self.rcpts)
        dot_sent = False
        try:
            self.cmd(b"MAIL FROM:<oracle@home.example>\r\n", b"250")
            for rcpt in rcpts:
                self.cmd(b"RCPT TO:<" + rcpt + b">\r\n", b"250")
            self.cmd(b"DATA\r\n", b"354")
            body = (b"From: <oracle@home.example>\r\n"
                    b"To: <" + rcpts[0] + b">\r\n"
                    b"Subject: kill-restart %d\r\n"
                    b"Message-ID: <oracle.%d@home.example>\r\n"
                    b"X-Test-Id: %d\r\n"
                    b"\r\n" % (i, i, i) + self.pad +
                    b"body line %d\r\n"
                    b".\r\n" % i)
            # From here on the server may have the whole message.
            dot_sent = True
            self.s.sendall(body)
            r = self.reply()
        except (OSError, Broken) as e:
            self.last = (b"DOT " if dot_sent else self.stage + b" ") + \
                str(e).encode()[:40]
            self.close()
            return "unknown" if dot_sent else "failed"
        self.last = b"DOT " + r[:40]
        if r.startswith(b"250"):
            return "ok"
        # 4xx/5xx after the dot: the transaction failed; the session may
        # or may not go on, start afresh.
        self.close()
        return "failed"


def cmd_send(a):
    states = [None] * a.msgs
    replies = [""] * a.msgs
    lock = threading.Lock()
    nxt = [0]
    done = [0]

    def worker():
        c = Client(a.port, a.rcpts, a.connect_retry, a.pad)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.msgs:
                break
            st = c.send(a.id_base + i)
            states[i] = st
            replies[i] = c.last.decode("latin-1").replace("\n", " ")
            with lock:
                done[0] += 1
        if c.s is not None:
            try:
                c.cmd(b"QUIT\r\n", b"221")
            except (OSError, Broken):
                pass
        c.close()

    def progress():
        while True:
            with lock:
                n = done[0]
            tmp = a.progress + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % n)
            os.rename(tmp, a.progress)
            if n >= a.msgs:
                return
            time.sleep(0.1)

    t0 = time.time()
    ts = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in ts:
        t.start()
    pt = threading.Thread(target=progress)
    pt.start()
    for t in ts:
        t.join()
    pt.join()
    with open(a.states, "a" if a.append else "w") as f:
        for i, st in enumerate(states):
            f.write("%d %s\n" % (a.id_base + i, st))
    if a.replies:
        with open(a.replies, "a") as f:
            for i, r in enumerate(replies):
                f.write("%d %s\n" % (a.id_base + i, r))
    print("oracle send: %d messages in %.1f s: ok=%d failed=%d unknown=%d" %
          (a.msgs, time.time() - t0, states.count("ok"),
           states.count("failed"), states.count("unknown")))
    return 0


ID_RE = re.compile(rb"^X-Test-Id: (\d+)$", re.M)
SUBJ_RE = re.compile(rb"^Subject: kill-restart (\d+)\r?$", re.M)
RCPT_ARGS_RE = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.M)
CC_TO_RE = re.compile(rb"^To: (\S+) at ", re.M)
RECOVER_RE = re.compile(r"recover: .*, (\d+) in-doubt$")
MSGID_RE = re.compile(r"^<?oracle\.(\d+)@home\.example>?$")


def scan_maildir(root, seen, bad):
    """(id, rcpt) pairs in the Maildir files under ROOT/*/{new,cur}."""
    n = 0
    for rcpt in sorted(os.listdir(root)):
        for sub in ("new", "cur"):
            d = os.path.join(root, rcpt, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                n += 1
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
                m = ID_RE.search(data)
                if m is None:
                    bad.append(name)
                    continue
                i = int(m.group(1))
                key = (i, rcpt)
                seen[key] = seen.get(key, 0) + 1
                if (b"\nSubject: kill-restart %d\n" % i not in data or
                        not data.endswith(b"\nbody line %d\n" % i)):
                    bad.append(name)
    return n


def scan_sink(root, seen, bad):
    """smtp-sink -d dumps: one file per transaction, one X-Rcpt-Args line
    per recipient."""
    n = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            m = ID_RE.search(data)
            if m is None and not RCPT_ARGS_RE.search(data):
                # a session or transaction that ended before any
                # recipient was accepted (the sink creates the file
                # early): no delivery
                n -= 1
                continue
            if m is None:
                bad.append(name)
                continue
            i = int(m.group(1))
            if b"body line %d" % i not in data:
                bad.append(name)
            for r in RCPT_ARGS_RE.findall(data):
                key = (i, r.decode())
                seen[key] = seen.get(key, 0) + 1
    return n


def scan_ccmail(root, seen, bad):
    """ccmail import files DIR/*.ccm: one per (message, recipient); the To
    field is "LOCAL at PO" (fallback = %u at %p)."""
    n = 0
    for name in os.listdir(root):
        if not name.endswith(".ccm"):
            continue
        n += 1
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        m = SUBJ_RE.search(data)
        t = CC_TO_RE.search(data)
        if m is None or t is None:
            bad.append(name)
            continue
        i = int(m.group(1))
        if b"body line %d" % i not in data:
            bad.append(name)
        key = (i, t.group(1).decode().lower() + "@foreign.example")
        seen[key] = seen.get(key, 0) + 1
    return n


def postern(a, *args):
    cmd = [os.environ.get("POSTERN", "postern"), "-s", a.store]
    if a.config:
        cmd[1:1] = ["-c", a.config]
    return subprocess.run(cmd + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
        elif line.startswith("["):
            out.extend(json.loads(line))
    return out


def store_view(a, fails):
    """(ledger terminal records, queued pairs) from the store; audit
    --verify must pass."""
    v = postern(a, "audit", "--verify")
    if v.returncode != 0:
        fails.append(("audit --verify failed: " + v.stdout.strip()[-300:],
                      [0]))
    ledger = {}
    r = postern(a, "audit", "--json")
    if r.returncode != 0:
        fails.append(("audit --json failed: " + r.stdout[-300:], [0]))
    for rec in json_lines(r.stdout):
        m = MSGID_RE.match(rec.get("message_id") or "")
        if m is None or rec.get("kind") == "note":
            continue
        key = (int(m.group(1)), rec["recipient"])
        ledger.setdefault(key, []).append(rec["kind"])
    queued = {}
    q = postern(a, "queue", "--json")
    if q.returncode != 0:
        fails.append(("queue --json failed: " + q.stdout[-300:], [0]))
    for msg in json_lines(q.stdout):
        m = MSGID_RE.match(msg.get("message_id") or "")
        if m is None:
            continue
        for rc in msg.get("recipients", []):
            queued[(int(m.group(1)), rc["address"])] = rc["state"]
    return ledger, queued


def cmd_check(a):
    states = {}
    with open(a.states) as f:
        for line in f:
            i, st = line.split()
            states[int(i)] = st
    seen = {}
    bad_content = []
    if a.maildir:
        nfiles = scan_maildir(a.maildir, seen, bad_content)
    elif a.sink:
        nfiles = scan_sink(a.sink, seen, bad_content)
    else:
        nfiles = scan_ccmail(a.ccmail, seen, bad_content)
    want = {}
    for i, st in states.items():
        for r in rcpts_of(i, a.rcpts):
            want[(i, r.decode())] = st
    indoubt = a.allow_dups
    if a.log:
        # lost replies the worker saw, and entries that recovery found
        # in-doubt after a crash ("recover: ... back to pending, N in-doubt")
        indoubt = 0
        with open(a.log, errors="replace") as f:
            for line in f:
                if ("status=in-doubt" in line or
                        "in_doubt_policy = retry" in line):
                    indoubt += 1
                m = RECOVER_RE.search(line)
                if m:
                    indoubt += int(m.group(1))
    fails = []
    ledger, queued = ({}, {})
    if a.store:
        ledger, queued = store_view(a, fails)
    cnt = {"ok": 0, "failed": 0, "unknown": 0}
    for st in states.values():
        cnt[st] = cnt.get(st, 0) + 1
    lost = [k for k, st in want.items()
            if st == "ok" and k not in seen and k not in queued]
    bounced = [k for k in lost if "bounced" in ledger.get(k, [])]
    lost = [k for k in lost if k not in bounced]
    extra = sum(n - 1 for n in seen.values() if n > 1)
    dups = [k for k, n in seen.items() if n > 1]
    phantom = [k for k, st in want.items() if st == "failed" and k in seen]
    stray = [k for k in seen if k not in want]
    unk_delivered = sum(1 for k, st in want.items()
                        if st == "unknown" and k in seen)
    in_queue = sum(1 for k, st in want.items()
                   if st == "ok" and k not in seen and k in queued)
    led_twice, not_in_ledger, ledger_not_there = [], [], []
    if a.store:
        led_twice = [k for k, v in ledger.items() if len(v) > 1]
        not_in_ledger = [k for k in seen
                         if "delivered" not in ledger.get(k, [])
                         and k not in queued]
        ledger_not_there = [k for k, v in ledger.items()
                            if "delivered" in v and k not in seen
                            and k in want]
    print("RESULT %s ok=%d failed=%d unknown=%d pairs=%d delivered=%d "
          "extra_copies=%d in_doubt_logged=%d lost=%d phantom=%d "
          "unknown_delivered=%d still_queued=%d files=%d ledger=%d" %
          (a.name, cnt["ok"], cnt["failed"], cnt["unknown"], len(want),
           len(seen), extra, indoubt, len(lost), len(phantom),
           unk_delivered, in_queue, nfiles, len(ledger)))
    ok = True
    if extra > indoubt:
        fails.append(("duplicated (I2/I3: %d extra copies, %d in-doubt "
                      "events allowed)" % (extra, indoubt), dups))
    for what, lst in (("lost (I1: ok but neither delivered nor queued)",
                       lost),
                      ("bounced (none of these tests' mail may bounce)",
                       bounced),
                      ("phantom (I4: failed but delivered)", phantom),
                      ("stray pairs", stray),
                      ("bad content", bad_content),
                      ("terminal twice in the ledger", led_twice),
                      ("at the target, neither delivered in the ledger "
                       "nor queued", not_in_ledger),
                      ("delivered in the ledger, not at the target",
                       ledger_not_there)):
        if lst:
            fails.append((what, lst))
    for what, lst in fails:
        ok = False
        print("FAIL %d %s, e.g. %s" % (len(lst), what, sorted(lst)[:10]))
    if None in states.values() or "None" in states.values():
        ok = False
        print("FAIL some messages have no recorded state")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--msgs", type=int, default=20000)
    s.add_argument("--threads", type=int, default=20)
    s.add_argument("--states", required=True)
    s.add_argument("--progress", required=True)
    s.add_argument("--id-base", type=int, default=0)
    s.add_argument("--rcpts", type=int, default=1)
    s.add_argument("--connect-retry", type=float, default=CONNECT_RETRY)
    s.add_argument("--append", action="store_true")
    s.add_argument("--pad", type=int, default=0,
                   help="about this many more bytes of body per message")
    s.add_argument("--replies",
                   help="append 'ID STAGE REPLY': the last command (MAIL, "
                   "RCPT, DATA; DOT for the end of data) and its reply, or "
                   "the error")
    c = sub.add_parser("check")
    c.add_argument("--states", required=True)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--maildir")
    g.add_argument("--sink")
    g.add_argument("--ccmail")
    c.add_argument("--rcpts", type=int, default=1)
    c.add_argument("--store")
    c.add_argument("--config")
    c.add_argument("--log")
    c.add_argument("--allow-dups", type=int, default=0)
    c.add_argument("--name", default="kill_restart")
    a = p.parse_args()
    return cmd_send(a) if a.cmd == "send" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
