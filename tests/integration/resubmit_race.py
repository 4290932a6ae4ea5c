#!/usr/bin/env python3
"""resubmit_race.py - the race of resubmit_race.sh, over raw sockets.

  race PORT ROUNDS SESSIONS [--stop-at-dup | --count-dups]
      Each round: open SESSIONS SMTP sessions to 127.0.0.1:PORT, take
      each through EHLO and MAIL/RCPT/DATA (pipelined) and the whole body
      of the round's message but its final dot (the same sender,
      recipient and body in every session; a new body each round), then
      send the SESSIONS final dots one right after the other from this
      one thread (the barrier: the dots leave within microseconds), and
      read the SESSIONS replies.

      Without --stop-at-dup (the real posternd): every round must have
      exactly one "250 2.0.0 Ok: queued as QID" and SESSIONS-1 "250 2.0.0
      Ok: already queued as QID (resubmission, not queued again)" naming
      that QID; anything else fails at once. Prints the figures and
      "new N resub M" for the shell; exit 0 if all is well.

      With --stop-at-dup (posternd_racy): stop at the first round with
      more than one "queued as" reply; exit 0 if there was one (prints
      "doubled ROUND NEW"), 1 if every round passed (the race check
      would be too weak to see the bug).

      With --count-dups (a measurement, not used by the test): run every
      round and count those with more than one "queued as" reply.

  check ROOT ROUNDS
      The Maildir ROOT/*/new and cur: exactly one file per round
      (X-Race-Round 1..ROUNDS) and no Message-ID or body twice. Exit 0
      if so.
"""

import hashlib
import os
import re
import socket
import sys
import time

SENDER = "race@home.example"
RCPT = "race@foreign.example"
NEW_RE = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Fa-f]{16})$")
RESUB_RE = re.compile(rb"^250 2\.0\.0 Ok: already queued as ([0-9A-Fa-f]{16}) "
                      rb"\(resubmission, not queued again\)$")
TIMEOUT = 30


class Session:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """One whole reply (its last line, code and text)."""
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                d = self.sock.recv(65536)
                if not d:
                    raise RuntimeError("connection closed, got %r" % self.buf)
                self.buf += d
                continue
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            if len(line) < 4 or line[3:4] != b"-":
                return line

    def expect(self, code):
        line = self.reply()
        if not line.startswith(code):
            raise RuntimeError("expected %s, got %r" % (code.decode(), line))
        return line

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def message(rnd, token):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: resubmission race round %d\r\n"
            "Message-ID: <race-%d-%s@home.example>\r\nX-Race-Round: %d\r\n"
            "\r\nround %d of the race, token %s\r\n"
            "..a dot-stuffed line\r\n"
            % (SENDER, RCPT, rnd, rnd, token, rnd, rnd, token)).encode()


def one_round(port, rnd, sessions, token):
    ss = [Session(port) for _ in range(sessions)]
    try:
        for s in ss:
            s.expect(b"220")
        for s in ss:
            s.sock.sendall(b"EHLO race.home.example\r\n")
        for s in ss:
            s.expect(b"250")
        # PIPELINING: DATA ends the group
        for s in ss:
            s.sock.sendall(("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                            % (SENDER, RCPT)).encode())
        for s in ss:
            s.expect(b"250")
            s.expect(b"250")
            s.expect(b"354")
        body = message(rnd, token)
        for s in ss:
            s.sock.sendall(body)
        # The barrier: every body is out; now the dots, back to back.
        socks = [s.sock for s in ss]
        for k in socks:
            k.send(b".\r\n")
        return [s.reply() for s in ss]
    finally:
        for s in ss:
            s.close()


def race(port, rounds, sessions, mode):
    token = os.urandom(6).hex()
    t0 = time.monotonic()
    replies = new = resub = doubled = 0
    for rnd in range(1, rounds + 1):
        rs = one_round(port, rnd, sessions, token)
        replies += len(rs)
        news = [m.group(1) for m in map(NEW_RE.match, rs) if m]
        olds = [m.group(1) for m in map(RESUB_RE.match, rs) if m]
        new += len(news)
        resub += len(olds)
        if mode == "--count-dups":
            doubled += len(news) > 1
            continue
        if mode == "--stop-at-dup":
            if len(news) > 1:
                print("racy variant: round %d: %d replies 'queued as' "
                      "(%d distinct queue ids), %d 'already queued'"
                      % (rnd, len(news), len(set(news)), len(olds)))
                print("doubled %d %d" % (rnd, len(news)))
                return 0
            continue
        ok = (len(news) == 1 and len(olds) == sessions - 1 and
              all(q.lower() == news[0].lower() for q in olds))
        if not ok:
            print("FAIL round %d: expected 1 'queued as QID' and %d "
                  "'already queued as QID (resubmission, ...)' of the same "
                  "QID; got:" % (rnd, sessions - 1))
            for r in rs:
                print("  %s" % r.decode(errors="replace"))
            return 1
    secs = time.monotonic() - t0
    if mode == "--count-dups":
        print("%d of %d rounds doubled: %d replies, %d 'queued as', %d "
              "'already queued as' in %.1f s"
              % (doubled, rounds, replies, new, resub, secs))
        return 0
    if mode == "--stop-at-dup":
        print("racy variant: no round had more than one 'queued as' in "
              "%d rounds (%.1f s): the race check is too weak" % (rounds, secs))
        return 1
    print("race: %d rounds x %d sessions: %d replies, %d 'queued as', "
          "%d 'already queued as' (resubmission) in %.1f s"
          % (rounds, sessions, replies, new, resub, secs))
    print("new %d resub %d" % (new, resub))
    return 0


def check(root, rounds):
    files = []
    for dirpath, _, names in os.walk(root):
        if os.path.basename(dirpath) in ("new", "cur"):
            files += [os.path.join(dirpath, n) for n in names]
    per_round, msgids, bodies, bad = {}, set(), set(), []
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
        r = re.search(rb"^X-Race-Round: (\d+)$", head, re.M)
        mid = re.search(rb"^Message-ID: (\S+)$", head, re.M | re.I)
        if r is None or mid is None:
            bad.append("%s: no X-Race-Round or Message-ID" % p)
            continue
        n = int(r.group(1))
        per_round[n] = per_round.get(n, 0) + 1
        if mid.group(1) in msgids:
            bad.append("%s: Message-ID %s twice" % (p, mid.group(1).decode()))
        msgids.add(mid.group(1))
        h = hashlib.sha256(body).digest()
        if h in bodies:
            bad.append("%s: the body of round %d twice" % (p, n))
        bodies.add(h)
    twice = sorted(n for n, c in per_round.items() if c > 1)
    missing = [n for n in range(1, rounds + 1) if n not in per_round]
    print("maildir: %d file(s) for %d round(s); %d round(s) with more than "
          "one copy%s, %d missing"
          % (len(files), rounds, len(twice),
             " (first: %d, %d copies)" % (twice[0], per_round[twice[0]])
             if twice else "", len(missing)))
    for b in bad[:5]:
        print("  " + b)
    return 0 if (len(files) == rounds and not twice and not missing and
                 not bad) else 1


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "race":
        return race(int(a[1]), int(a[2]), int(a[3]),
                    a[4] if len(a) > 4 else "")
    if len(a) == 3 and a[0] == "check":
        return check(a[1], int(a[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
