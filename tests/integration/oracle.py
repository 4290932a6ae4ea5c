#!/usr/bin/env python3
"""oracle.py - the delivery oracle of kill_restart.sh (RELIABILITY.md 4).

  send --port P --msgs N --threads T --states FILE --progress FILE
      T threads send N small messages over raw sockets, one transaction
      each (connections are reused). Message i has "X-Test-Id: i" and
      "Subject: kill-restart i". Each transaction is recorded as
        ok       250 after the dot
        failed   4xx/5xx, or the connection failed before the dot went
        unknown  the connection broke after the dot was sent, before the
                 reply
      After a failure the thread reconnects (retrying for up to 10 s) and
      goes on with the next message; nothing is resent. FILE gets one line
      "ID STATE" per message; the progress file the number done so far.

  check --states FILE --maildir ROOT
      Reads every delivered file under ROOT/*/{new,cur} and checks:
      each ok id delivered exactly once, no id twice, no failed id, no
      unknown id twice, no stray id, and each file's Subject and body
      match its X-Test-Id. Prints a RESULT line; exit 0 when all hold.
"""

import argparse
import os
import re
import socket
import sys
import threading
import time

RCPTS = [b"kr%d@foreign.example" % i for i in range(4)]
CONNECT_RETRY = 10.0
IO_TIMEOUT = 30.0


class Broken(Exception):
    pass


class Client:
    def __init__(self, port):
        self.port = port
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
        self.s.sendall(data)
        r = self.reply()
        if not r.startswith(want):
            raise Broken(r.decode("latin-1"))
        return r

    def connect(self):
        """Connect and greet, retrying for CONNECT_RETRY seconds."""
        end = time.time() + CONNECT_RETRY
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
            except (OSError, Broken):
                self.close()
                if time.time() >= end:
                    return False
                time.sleep(0.1)

    def send(self, i):
        """One transaction: 'ok', 'failed' or 'unknown'."""
        if self.s is None and not self.connect():
            return "failed"
        rcpt = RCPTS[i % len(RCPTS)]
        dot_sent = False
        try:
            self.cmd(b"MAIL FROM:<oracle@home.example>\r\n", b"250")
            self.cmd(b"RCPT TO:<" + rcpt + b">\r\n", b"250")
            self.cmd(b"DATA\r\n", b"354")
            body = (b"From: <oracle@home.example>\r\n"
                    b"To: <" + rcpt + b">\r\n"
                    b"Subject: kill-restart %d\r\n"
                    b"X-Test-Id: %d\r\n"
                    b"\r\n"
                    b"body line %d\r\n"
                    b".\r\n" % (i, i, i))
            # From here on the server may have the whole message.
            dot_sent = True
            self.s.sendall(body)
            r = self.reply()
        except (OSError, Broken):
            self.close()
            return "unknown" if dot_sent else "failed"
        if r.startswith(b"250"):
            return "ok"
        # 4xx/5xx after the dot: the transaction failed; the session may
        # or may not go on, start afresh.
        self.close()
        return "failed"


def cmd_send(a):
    states = [None] * a.msgs
    lock = threading.Lock()
    nxt = [0]
    done = [0]

    def worker():
        c = Client(a.port)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.msgs:
                break
            st = c.send(i)
            states[i] = st
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
    with open(a.states, "w") as f:
        for i, st in enumerate(states):
            f.write("%d %s\n" % (i, st))
    print("oracle send: %d messages in %.1f s: ok=%d failed=%d unknown=%d" %
          (a.msgs, time.time() - t0, states.count("ok"),
           states.count("failed"), states.count("unknown")))
    return 0


ID_RE = re.compile(rb"^X-Test-Id: (\d+)$", re.M)


def cmd_check(a):
    states = {}
    with open(a.states) as f:
        for line in f:
            i, st = line.split()
            states[int(i)] = st
    seen = {}
    bad_content = []
    nfiles = 0
    for rcpt in sorted(os.listdir(a.maildir)):
        for sub in ("new", "cur"):
            d = os.path.join(a.maildir, rcpt, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                nfiles += 1
                with open(os.path.join(d, name), "rb") as f:
                    data = f.read()
                m = ID_RE.search(data)
                if m is None:
                    bad_content.append(name)
                    continue
                i = int(m.group(1))
                seen[i] = seen.get(i, 0) + 1
                want_rcpt = RCPTS[i % len(RCPTS)].decode()
                if (b"\nSubject: kill-restart %d\n" % i not in data or
                        not data.endswith(b"\n\nbody line %d\n" % i) or
                        rcpt != want_rcpt):
                    bad_content.append(name)
    cnt = {"ok": 0, "failed": 0, "unknown": 0}
    for st in states.values():
        cnt[st] = cnt.get(st, 0) + 1
    lost = [i for i, st in states.items() if st == "ok" and i not in seen]
    dups = [i for i, n in seen.items() if n > 1]
    phantom = [i for i, st in states.items()
               if st == "failed" and i in seen]
    stray = [i for i in seen if i not in states]
    unk_delivered = sum(1 for i, st in states.items()
                        if st == "unknown" and i in seen)
    print("RESULT kill_restart ok=%d failed=%d unknown=%d delivered=%d "
          "duplicates=%d lost=%d phantom=%d unknown_delivered=%d files=%d" %
          (cnt["ok"], cnt["failed"], cnt["unknown"], len(seen), len(dups),
           len(lost), len(phantom), unk_delivered, nfiles))
    ok = True
    for what, lst in (("lost (ok but not delivered)", lost),
                      ("duplicated", dups),
                      ("phantom (failed but delivered)", phantom),
                      ("stray ids", stray),
                      ("bad content or wrong maildir", bad_content)):
        if lst:
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
    c = sub.add_parser("check")
    c.add_argument("--states", required=True)
    c.add_argument("--maildir", required=True)
    a = p.parse_args()
    return cmd_send(a) if a.cmd == "send" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
