#!/usr/bin/env python3
"""cut_proxy.py - a TCP proxy that loses a reply: it forwards bytes both
ways, but the first CUTS times the server's reply that decides a delivery
arrives, it drops that reply and closes both connections, so the client
cannot know whether the server has the message.

  cut_proxy.py MODE LISTEN_PORT SERVER_PORT CUTS [nolitplus | hold=FILE
               [gate=FILE2]]

MODE imap: the reply is the tagged OK to an APPEND.
MODE lmtp: the reply is the first 2xx line after the final dot.
MODE smtp: the reply is the one to the final dot of DATA (the first
complete reply after CRLF.CRLF), dropped if it is a 2xx; any other
reply to it passes and the next message's is the next candidate.
MODE jmap: the reply is the HTTP response to a POST that calls
Email/import (the first bytes from the server after that request: HTTP/1.1
without pipelining, as libcurl sends).
nolitplus (imap): hide LITERAL+ from the capabilities, so the client
must send each literal after the server's "+".
hold=FILE (jmap): instead, the first CUTS Email/import requests are held
(not passed on) until FILE exists; then each goes on to the server, and
its reply is dropped and both connections closed, as above.
gate=FILE2 (with hold): once FILE exists, the bytes a client sends on
any other connection are held until FILE2 exists too, so that a client
restarted after the held request cannot ask the server anything before
the test lets it.

Prints "ready" once listening, one line "cut N" per cut, "held N" per
held request, "gated N" per connection held at the gate and, with
nolitplus, "continuation" per "+" the server
sends, on stdout.
"""
import os
import re
import socket
import sys
import threading
import time

MODE, LPORT, SPORT, CUTS = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                            int(sys.argv[4]))
OPTS = sys.argv[5:]
NOLITPLUS = "nolitplus" in OPTS
HOLD = next((o[5:] for o in OPTS if o.startswith("hold=")), None)
GATE = next((o[5:] for o in OPTS if o.startswith("gate=")), None)
IMPORT = b'"Email/import"'
if MODE not in ("imap", "lmtp", "smtp", "jmap"):
    sys.exit("cut_proxy.py: MODE is imap, lmtp, smtp or jmap")
lock = threading.Lock()
out_lock = threading.Lock()
cuts = 0
gated = 0


def say(line):
    """One line on stdout, whole: print() writes the text and its newline
    in two writes, and another thread's line can come in between
    ("continuationcut 3"), which a test counting "^cut" then misses."""
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def take_cut():
    global cuts
    with lock:
        if cuts >= CUTS:
            return 0
        cuts += 1
        return cuts


class Session:
    def __init__(self, client):
        self.c = client
        self.s = socket.create_connection(("127.0.0.1", SPORT))
        self.tags = set()      # imap: tags of APPENDs sent
        self.after_dot = 0     # lmtp, smtp: final replies expected
        self.tail = b""        # client bytes not yet scanned
        self.drop = False      # jmap, hold: drop the next reply
        self.held = False      # hold: this connection's request was held
        self.dead = False

    def close(self):
        self.dead = True
        for sk in (self.c, self.s):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sk.close()

    def wait_gate(self):
        global gated
        if (not GATE or self.held or not os.path.exists(HOLD) or
                os.path.exists(GATE)):
            return
        with lock:
            gated += 1
            say("gated %d" % gated)
        while not os.path.exists(GATE):
            time.sleep(0.05)

    def upstream(self):
        try:
            while True:
                data = self.c.recv(65536)
                if not data:
                    break
                self.wait_gate()
                scan = self.tail + data
                if MODE == "imap":
                    for m in re.finditer(rb"(?:^|\n)(\S+) APPEND ", scan):
                        self.tags.add(m.group(1))
                    self.tail = scan[-200:]
                elif MODE == "jmap":
                    self.tail = scan[-(len(IMPORT) - 1):]
                    if IMPORT in scan and HOLD and (n := take_cut()):
                        say("held %d" % n)
                        self.held = True
                        while not os.path.exists(HOLD):
                            time.sleep(0.05)
                        self.drop = True
                    elif IMPORT in scan and not HOLD:
                        self.after_dot += 1
                else:
                    self.after_dot += scan.count(b"\r\n.\r\n")
                    self.tail = scan[-4:]
                    if b"\r\n.\r\n" in self.tail:
                        self.tail = b""
                self.s.sendall(data)
        except OSError:
            pass
        if not self.dead:
            try:
                self.s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def decides(self, line):
        if MODE == "imap":
            parts = line.split(b" ", 2)
            return (len(parts) >= 2 and parts[0] in self.tags and
                    parts[1].upper() == b"OK")
        if MODE == "smtp":
            # the last line of a reply ("250 ..." or a bare "250")
            if self.after_dot > 0 and line[3:4] != b"-":
                self.after_dot -= 1
                return line[:1] == b"2"
            return False
        if self.after_dot > 0 and line[:1] == b"2" and line[3:4] == b" ":
            self.after_dot -= 1
            return True
        return False

    def downstream(self):
        buf = b""
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    break
                if MODE == "jmap":
                    if self.drop or (self.after_dot > 0 and
                                     (n := take_cut())):
                        if not self.drop:
                            say("cut %d" % n)
                        self.close()
                        return
                    self.after_dot = 0
                    self.c.sendall(data)
                    continue
                buf += data
                out = b""
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if self.decides(line) and (n := take_cut()):
                        self.c.sendall(out)
                        say("cut %d" % n)
                        self.close()
                        return
                    if NOLITPLUS:
                        line = re.sub(rb" LITERAL[+-]", b"", line)
                        if line.startswith(b"+ "):
                            say("continuation")
                    out += line + b"\n"
                if out:
                    self.c.sendall(out)
        except OSError:
            pass
        if not self.dead:
            self.close()


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", LPORT))
    ls.listen(16)
    say("ready")
    while True:
        c, _ = ls.accept()
        try:
            s = Session(c)
        except OSError:
            c.close()
            continue
        threading.Thread(target=s.upstream, daemon=True).start()
        threading.Thread(target=s.downstream, daemon=True).start()


main()
