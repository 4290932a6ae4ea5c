#!/usr/bin/env python3
"""fleet_check.py - reconcile a fleet run (fleet.sh): what the home MTA
accepted against what the foreign side holds, fleet-wide; explain every
duplicate or fail; say how the fleet absorbed each kill and stop.

  fleet_check.py --states FILE --rcpts K --maildir ROOT [--maildir ROOT...]
      --instance NAME=STORE,ADDR:PORT,HOSTNAME,LOG [--instance ...]
      --postfix-log FILE --events FILE [--lost-reply-window S]

--states is oracle.py's record of the transactions with Postfix (ID STATE
per line: ok = Postfix answered 250). --events has one line per event of
the run: EPOCH EVENT NAME, EVENT one of kill9, term, start, each written
just before the signal or the start. LOG is the instance's posternd -f log (text format).

Each Maildir file is named STOREID.QID.IDX.postern by the instance that
wrote it and carries that instance's Received: field ("by HOSTNAME
(postern) ... id QID"), so every copy is tied to one instance and one
queue id. Checked (any failure: exit 1):
  - every file is whole (X-Test-Id, Subject and the last body line
    agree); each instance writes under one store id, its own;
  - per instance, files and ledger agree: every file is a delivered
    ledger record of the instance that wrote it, every delivered record
    of a test message has its file; nothing bounced or was deleted;
  - every (message, recipient) that Postfix accepted is at the foreign
    side (lost: none), nothing of a message it refused (phantom: none);
  - a (message, recipient) at the foreign side twice is a duplicate. It
    is EXPLAINED, and passes, only if it is the one a fleet cannot avoid,
    with all of this evidence: the copies are on different instances;
    Postfix logged one 250 for it, naming the queue id of one copy; for
    each other copy, Postfix logged the connection to that copy's
    instance lost "while sending end of data", the instance never logged
    the copy queued (posternd logs that line just before it writes the
    250) and was SIGKILLed within --lost-reply-window seconds (default 2)
    after it queued it (or up to 0.5 s before: the kill is stamped just
    before it is sent). That is: the instance committed the message and
    died before its 250 went out, and Postfix sent the message again, to
    another instance, whose resubmission index cannot know it. Anything
    else fails: two copies on one instance, a copy that its instance did
    log as queued (its 250 was due), a copy on an instance that was only
    stopped (SIGTERM: posternd answers every commit before it exits).
Printed: accepted / delivered / duplicates / lost fleet-wide; per
instance; for each SIGKILL, how the survivors absorbed the traffic (the
deliveries that met the dead instance, refused, and went on at once; the
ones cut in flight, and when the last of them was queued again), and how
the killed instance's own queue drained after its restart; for each
SIGTERM, what its closed sessions cost.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ID_RE = re.compile(rb"^X-Test-Id: (\d+)$", re.M)
RECV_RE = re.compile(rb"^Received: from [^\n]*\n\tby (\S+) \(postern\) with "
                     rb"\S+ id ([0-9A-F]{16})", re.M)
NAME_RE = re.compile(r"^([0-9a-f]{16})\.([0-9a-f]{16})\.(\d+)\.postern")
MSGID_RE = re.compile(r"^<?oracle\.(\d+)@home\.example>?$")
QUEUED_RE = re.compile(r"^postern: info: ([0-9A-F]{16}): from=<.*"
                       r"\(queue active\)$")
# Postfix's log (maillog_file)
PF_LINE = re.compile(r"^(\w{3} +\d+ [\d:]+) \S+ postfix/(\w+)\[(\d+)\]: (.*)$")
PF_CLEANUP = re.compile(r"^([0-9A-F]+): message-id=<oracle\.(\d+)@home\.example>")
PF_STATUS = re.compile(r"^([0-9A-F]+): to=<([^>]+)>, relay=([^,]+), .*"
                       r"status=(\w+) \((.*)\)$")
PF_QUEUED_AS = re.compile(r"queued as ([0-9A-F]{16})")
# failures on one instance, before the request's status lines: a refused
# connection (no queue id), a connection lost or timed out, a 4xx
PF_REFUSED = re.compile(r"^connect to \S+\[([\d.]+)\]:(\d+): (.*)$")
PF_FAILED = re.compile(r"^([0-9A-F]+): (lost connection with|conversation "
                       r"with|host) \S+\[([\d.]+)\](.*)$")
TERMINAL = ("delivered", "bounced", "deleted")


def rcpts_of(i, k):
    """oracle.py's recipients of message i (1 + i % k of them)."""
    pool = max(4, k)
    return ["kr%d@foreign.example" % ((i + j) % pool) for j in range(1 + i % k)]


def postern(store, *args):
    cmd = [os.environ.get("POSTERN", "postern"), "-s", store] + list(args)
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def scan(roots, host2inst, problems):
    """Every delivered file: {(i, rcpt): [copy]}, a copy being a dict of
    inst, qid, path; and {inst: store id}."""
    copies, sids = {}, {}
    for root in roots:
        for rcpt in sorted(os.listdir(root)):
            for sub in ("new", "cur"):
                d = os.path.join(root, rcpt, sub)
                if not os.path.isdir(d):
                    continue
                for name in os.listdir(d):
                    path = os.path.join(d, name)
                    with open(path, "rb") as f:
                        data = f.read()
                    m, r = ID_RE.search(data), RECV_RE.search(data)
                    n = NAME_RE.match(name)
                    if m is None or r is None or n is None:
                        problems.append("unreadable file %s" % path)
                        continue
                    i = int(m.group(1))
                    if (b"\nSubject: kill-restart %d\n" % i not in data or
                            not data.endswith(b"\nbody line %d\n" % i)):
                        problems.append("bad content: %s" % path)
                    inst = host2inst.get(r.group(1).decode())
                    if inst is None:
                        problems.append("file %s from unknown host %s" %
                                        (path, r.group(1).decode()))
                        continue
                    qid = r.group(2).decode()
                    if n.group(2).upper() != qid:
                        problems.append("file %s: its name says queue id %s, "
                                        "its Received: %s" %
                                        (path, n.group(2).upper(), qid))
                    sids.setdefault(inst, set()).add(n.group(1))
                    copies.setdefault((i, rcpt), []).append(
                        {"inst": inst, "qid": qid, "path": path})
    owner = {}
    for inst, s in sorted(sids.items()):
        if len(s) != 1:
            problems.append("%s wrote files under %d store ids: %s" %
                            (inst, len(s), sorted(s)))
        for sid in s:
            if owner.setdefault(sid, inst) != inst:
                problems.append("store id %s used by %s and %s" %
                                (sid, owner[sid], inst))
    return copies, {k: sorted(v)[0] for k, v in sids.items()}


def ledgers(insts, problems):
    """{inst: {(i, rcpt): [ledger record]}} of the test's messages, and
    {inst: {(i, rcpt): state}} of what is still queued."""
    led, queued = {}, {}
    for name, spec in insts.items():
        led[name], queued[name] = {}, {}
        r = postern(spec["store"], "audit", "--json")
        if r.returncode != 0:
            problems.append("%s: audit --json failed: %s" %
                            (name, r.stdout[-300:]))
            continue
        for line in r.stdout.splitlines():
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            m = MSGID_RE.match(rec.get("message_id") or "")
            if m is not None:
                led[name].setdefault((int(m.group(1)), rec["recipient"]),
                                     []).append(rec)
        q = postern(spec["store"], "queue", "--json")
        for line in q.stdout.splitlines():
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            m = MSGID_RE.match(msg.get("message_id") or "")
            if m is None:
                continue
            for rc in msg.get("recipients", []):
                queued[name][(int(m.group(1)), rc["address"])] = rc["state"]
    return led, queued


def logged_queued(path):
    """The queue ids posternd logged as queued. on_done() logs that line
    just before it writes the 250: a queue id without it was never
    answered."""
    qids = set()
    with open(path, errors="replace") as f:
        for line in f:
            m = QUEUED_RE.match(line.rstrip("\n"))
            if m:
                qids.add(m.group(1))
    return qids


def pf_epoch(stamp, year):
    """Postfix's "Mmm dd hh:mm:ss" (local time, whole seconds), as epoch."""
    return time.mktime(time.strptime("%d %s" % (year, " ".join(
        stamp.split())), "%Y %b %d %H:%M:%S"))


def parse_postfix(path, addr2inst, year):
    """{(i, rcpt): [status record]}: each status line of Postfix's smtp
    client for the test's mail, with the failures ("met": (inst, what,
    epoch)) that the same delivery request met before it, and the number
    of deferred lines."""
    pf_ids = {}             # Postfix queue id -> test id
    status = {}
    pending = {}            # smtp pid -> failures since its last status
    current = {}            # smtp pid -> (Postfix queue id, failures) of
                            # the request it logs status lines for
    deferred = 0
    with open(path, errors="replace") as f:
        for line in f:
            m = PF_LINE.match(line.rstrip("\n"))
            if m is None:
                continue
            stamp, prog, pid, text = m.groups()
            if prog == "cleanup":
                c = PF_CLEANUP.match(text)
                if c:
                    pf_ids[c.group(1)] = int(c.group(2))
                continue
            if prog != "smtp":
                continue
            r = PF_REFUSED.match(text)
            if r:
                pending.setdefault(pid, []).append(
                    (addr2inst.get(r.group(1)), "refused",
                     pf_epoch(stamp, year), text))
                continue
            fl = PF_FAILED.match(text)
            if fl:
                what = "lost" if fl.group(2).startswith("lost") else "failed"
                pending.setdefault(pid, []).append(
                    (addr2inst.get(fl.group(3)), what, pf_epoch(stamp, year),
                     text))
                continue
            s = PF_STATUS.match(text)
            if not s:
                continue
            pfqid, rcpt, _relay, st, why = s.groups()
            # A request's failures come before its first status line; an
            # smtp process serves one request at a time.
            if current.get(pid, (None,))[0] != pfqid or pending.get(pid):
                current[pid] = (pfqid, pending.get(pid, []))
                pending[pid] = []
            deferred += st == "deferred"
            q = PF_QUEUED_AS.search(why)
            if pfqid in pf_ids:
                status.setdefault((pf_ids[pfqid], rcpt), []).append({
                    "pfqid": pfqid, "status": st, "stamp": stamp,
                    "epoch": pf_epoch(stamp, year), "why": why,
                    "qid": q.group(1) if q else None,
                    "met": current[pid][1]})
    return status, deferred


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--states", required=True)
    p.add_argument("--rcpts", type=int, default=1)
    p.add_argument("--maildir", action="append", required=True)
    p.add_argument("--instance", action="append", required=True,
                   help="NAME=STORE,ADDR:PORT,HOSTNAME,LOG")
    p.add_argument("--postfix-log", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--lost-reply-window", type=float, default=2.0)
    a = p.parse_args()

    insts, host2inst, addr2inst = {}, {}, {}
    for spec in a.instance:
        name, rest = spec.split("=", 1)
        store, hop, host, log = rest.split(",")
        addr, port = hop.rsplit(":", 1)
        insts[name] = {"store": store, "addr": addr, "port": int(port),
                       "log": log}
        host2inst[host] = name
        addr2inst[addr] = name
    events = []
    with open(a.events) as f:
        for line in f:
            t, ev, inst = line.split()
            events.append((float(t), ev, inst))
    states = {}
    with open(a.states) as f:
        for line in f:
            i, st = line.split()
            states[int(i)] = st
    year = time.localtime(events[0][0] if events else time.time()).tm_year

    problems = []
    copies, sids = scan(a.maildir, host2inst, problems)
    led, queued = ledgers(insts, problems)
    status, pf_deferred = parse_postfix(a.postfix_log, addr2inst, year)

    def acc_of(c, key):
        """When c's instance queued it (ledger accepted_us), in s."""
        for rec in led.get(c["inst"], {}).get(key, []):
            if rec["queue_id"] == c["qid"]:
                return rec["accepted_us"] / 1e6
        return None

    def landed(key, s):
        """The copy that Postfix's 250 s names ("queued as QID": Postfix's
        relay= names the next hop it chose, not the instance a cached
        fall-back connection led to), or None."""
        got = [c for c in copies.get(key, []) if c["qid"] == s["qid"]]
        return got[0] if len(got) == 1 else None

    want = {}
    for i, st in states.items():
        for r in rcpts_of(i, a.rcpts):
            want[(i, r)] = st
    cnt = {}
    for st in states.values():
        cnt[st] = cnt.get(st, 0) + 1

    # files <-> ledgers, per instance
    for key, cs in copies.items():
        for c in cs:
            c["acc"] = acc_of(c, key)
            if not any(r["kind"] == "delivered" and r["queue_id"] == c["qid"]
                       for r in led[c["inst"]].get(key, [])):
                problems.append("%s %s: file of %s, queue id %s: no "
                                "delivered record in its ledger" %
                                (key[0], key[1], c["inst"], c["qid"]))
    for inst, recs in led.items():
        for key, rs in recs.items():
            for r in rs:
                if r["kind"] == "delivered" and not any(
                        c["inst"] == inst and c["qid"] == r["queue_id"]
                        for c in copies.get(key, [])):
                    problems.append("%s %s: delivered in the ledger of %s "
                                    "(queue id %s), no file" %
                                    (key[0], key[1], inst, r["queue_id"]))
                elif r["kind"] in ("bounced", "deleted"):
                    problems.append("%s %s: %s in %s (queue id %s): %s" %
                                    (key[0], key[1], r["kind"], inst,
                                     r["queue_id"], r.get("reply")))
            tq = [r["queue_id"] for r in rs if r["kind"] in TERMINAL]
            if len(tq) != len(set(tq)):
                problems.append("%s %s: two terminal records for one queue "
                                "id in %s" % (key[0], key[1], inst))

    lost = [k for k, st in want.items() if st == "ok" and k not in copies]
    phantom = [k for k, st in want.items() if st == "failed" and k in copies]
    stray = [k for k in copies if k not in want]

    kills = [(t, inst) for t, ev, inst in events if ev == "kill9"]
    terms = [(t, inst) for t, ev, inst in events if ev == "term"]

    # Duplicates: explained (the lost 250 of a SIGKILL) or a fault.
    dups = {k: cs for k, cs in copies.items() if len(cs) > 1}
    logged = {n: logged_queued(s["log"]) for n, s in insts.items()} \
        if dups else {}
    explained, unexplained = [], []
    for key, cs in sorted(dups.items()):
        sent = [s for s in status.get(key, []) if s["status"] == "sent"]
        lostdot = [m for s in status.get(key, []) for m in s["met"]
                   if m[1] == "lost" and "while sending end of data" in m[3]]
        lines = []
        for c in cs:
            c["acked"] = any(s["qid"] == c["qid"] for s in sent)
            c["logged"] = c["qid"] in logged[c["inst"]]
            lines.append("    copy on %s, queue id %s, queued at %s; %s; %s" % (
                c["inst"], c["qid"], "%.3f" % c["acc"] if c["acc"] else "?",
                "Postfix saw its 250" if c["acked"] else
                "Postfix never saw a 250 for it",
                "%s logged it queued" % c["inst"] if c["logged"] else
                "%s never logged it queued, never answered it" % c["inst"]))
        for s in status.get(key, []):
            for m in s["met"]:
                if m[1] != "refused":
                    lines.append("    postfix %s: %s" % (s["pfqid"], m[3]))
            lines.append("    postfix %s: %s: %s (%s)" % (
                s["stamp"], s["pfqid"], s["status"], s["why"]))
        why = None
        insts_of = [c["inst"] for c in cs]
        if len(set(insts_of)) != len(insts_of):
            why = "two copies on ONE instance (%s): posternd queued or " \
                  "delivered it twice" % insts_of
        elif len(sent) != 1 or sum(c["acked"] for c in cs) != 1:
            # two copies under one queue id on two instances land here
            # too: ambiguous, so not explained
            why = "Postfix logged %d sent lines for it, naming %d of the " \
                  "copies" % (len(sent), sum(c["acked"] for c in cs))
        else:
            acked = [c for c in cs if c["acked"]][0]
            for c in cs:
                if c["acked"]:
                    continue
                k = [t for t, inst in kills if inst == c["inst"] and
                     c["acc"] is not None and
                     -0.5 <= t - c["acc"] <= a.lost_reply_window]
                tm = [t for t, inst in terms if inst == c["inst"] and
                      c["acc"] is not None and
                      -0.5 <= t - c["acc"] <= a.lost_reply_window]
                stop = ("; %s was stopped (SIGTERM) %.3f s after it queued "
                        "it: the stop closed the session without the 250" %
                        (c["inst"], tm[0] - c["acc"])) if tm else ""
                if c["logged"]:
                    why = "%s logged its copy (queue id %s) queued: its 250 " \
                          "was due, Postfix never saw one%s" % (
                              c["inst"], c["qid"], stop)
                elif not k:
                    why = "%s never answered its copy (queue id %s) and was " \
                          "not SIGKILLed within %.1f s after it queued it%s" \
                          % (c["inst"], c["qid"], a.lost_reply_window, stop)
                elif not any(m[0] == c["inst"] for m in lostdot):
                    why = "Postfix logged no connection to %s lost while " \
                          "sending end of data for it" % c["inst"]
                elif acked["acc"] is not None and acked["acc"] < c["acc"]:
                    why = "the acknowledged copy was queued before the " \
                          "unacknowledged one"
                else:
                    c["kill_after"] = max(0.0, k[0] - c["acc"])
                    continue
                break
        (unexplained if why else explained).append((key, cs, lines, why))

    # Per instance.
    starts = {}
    for t, ev, inst in events:
        if ev == "start":
            starts.setdefault(inst, []).append(t)
    print("FLEET per instance (delivered: its ledger records = the files it "
          "wrote):")
    for inst in sorted(insts):
        recs = [r for rs in led[inst].values() for r in rs]
        last = max(starts.get(inst, [0]))
        print("  %s %s:%d, store id %s: delivered %d (files %d), %d queued "
              "since its last start; resubmissions recognised %d" % (
                  inst, insts[inst]["addr"], insts[inst]["port"],
                  sids.get(inst, "?"),
                  sum(1 for r in recs if r["kind"] == "delivered"),
                  sum(1 for cs in copies.values() for c in cs
                      if c["inst"] == inst),
                  sum(1 for r in recs if r["kind"] == "delivered" and
                      r["accepted_us"] / 1e6 >= last),
                  sum(1 for r in recs if r["kind"] == "resubmission")))

    def cut_by(t, inst):
        """Deliveries whose connection to inst was lost (or timed out, or
        got a 4xx) in the second of t or the next, and what became of
        them: [(time queued again, instance, deferred first?)]."""
        out, lo = [], int(t)
        for key, ss in status.items():
            hit = [i for i, s in enumerate(ss)
                   if any(m[0] == inst and m[1] != "refused" and
                          lo <= m[2] <= lo + 1 for m in s["met"])]
            if not hit:
                continue
            later = [s for s in ss[hit[0]:] if s["status"] == "sent"]
            c = landed(key, later[0]) if later else None
            if c is not None and c["acc"] is not None:
                out.append((c["acc"], c["inst"], any(
                    s["status"] == "deferred" for s in ss[hit[0]:])))
        return sorted(out)

    def spread(xs):
        where = {}
        for x in xs:
            where[x[1]] = where.get(x[1], 0) + 1
        return ", ".join("%s %d" % kv for kv in sorted(where.items())) or \
            "none"

    absorb = []
    for t, inst in kills:
        tr = min([e[0] for e in events if e[2] == inst and
                  e[1] == "start" and e[0] > t] or [float("inf")])
        # deliveries that met it dead (refused) and went on at once
        moved = []
        for key, ss in status.items():
            for s in ss:
                if s["status"] == "sent" and any(
                        m[0] == inst and m[1] == "refused" for m in s["met"]):
                    c = landed(key, s)
                    if c and c["inst"] != inst and c["acc"] and \
                            t <= c["acc"] <= tr:
                        moved.append((c["acc"], c["inst"]))
        moved.sort()
        cut = cut_by(t, inst)
        first = moved[0][0] - t if moved else 0.0
        done = max([x[0] - t for x in cut] + [first])
        absorb.append(done)
        print("ABSORB %s SIGKILLed, down %.1f s: %d deliveries met it dead "
              "(refused) and went on at once to %s, the first queued +%.3f "
              "s after the kill; %d cut in flight (%d of them deferred by "
              "Postfix), queued again on %s, the last +%.3f s; absorbed in "
              "%.3f s" % (inst, tr - t, len(moved), spread(moved), first,
                          len(cut), sum(1 for x in cut if x[2]), spread(cut),
                          max([x[0] - t for x in cut] or [0]), done))
        # its own queue, drained after the restart
        after = [r for rs in led[inst].values() for r in rs
                 if r["kind"] == "delivered" and
                 r["accepted_us"] / 1e6 < t < r["done_us"] / 1e6]
        if after:
            print("DRAIN %s: %d entries it had queued before the kill were "
                  "delivered after its restart (%d found already in the "
                  "Maildir: the dead process had written them), the last "
                  "+%.3f s after the restart" % (
                      inst, len(after),
                      sum(1 for r in after
                          if r.get("reply") == "already in maildir"),
                      max(r["done_us"] / 1e6 for r in after) - tr))
        else:
            print("DRAIN %s: nothing it had queued before the kill was left "
                  "to deliver at its restart" % inst)
    for t, inst in terms:
        cut = cut_by(t, inst)
        print("STOP %s (SIGTERM, then started again): %d deliveries cut in "
              "its closed sessions (%d of them deferred by Postfix), queued "
              "again on %s, the last +%.3f s after the stop" % (
                  inst, len(cut), sum(1 for x in cut if x[2]), spread(cut),
                  max([x[0] - t for x in cut] or [0])))

    print("RESULT fleet accepted=%d (messages %d, failed %d, unknown %d) "
          "delivered=%d duplicates=%d (explained %d, unexplained %d) "
          "lost=%d phantom=%d postfix_deferred=%d absorb_s=%s" % (
              sum(1 for st in want.values() if st == "ok"), cnt.get("ok", 0),
              cnt.get("failed", 0), cnt.get("unknown", 0), len(copies),
              sum(len(cs) - 1 for cs in dups.values()), len(explained),
              len(unexplained), len(lost), len(phantom), pf_deferred,
              ",".join("%.3f" % x for x in absorb) or "-"))
    for key, cs, lines, why in explained:
        dead = [c for c in cs if not c["acked"]]
        print("DUPLICATE %s to %s, explained: %s committed it and was "
              "SIGKILLed %.3f s later, before its 250 went out; Postfix sent "
              "it again, to %s, whose resubmission index cannot know it:" % (
                  key[0], key[1], "+".join(c["inst"] for c in dead),
                  max(c["kill_after"] for c in dead),
                  [c for c in cs if c["acked"]][0]["inst"]))
        print("\n".join(lines))
    ok = True
    for key, cs, lines, why in unexplained:
        ok = False
        print("FAIL DUPLICATE %s to %s: %s" % (key[0], key[1], why))
        print("\n".join(lines))
    if lost:
        ok = False
        print("FAIL %d lost (Postfix accepted, not at the foreign side), "
              "e.g. %s" % (len(lost), sorted(lost)[:10]))
        for k in sorted(lost)[:10]:
            for inst, q in sorted(queued.items()):
                if k in q:
                    print("    %s %s: still queued on %s (%s)" %
                          (k[0], k[1], inst, q[k]))
            for s in status.get(k, []):
                print("    postfix %s: %s: %s (%s)" % (
                    s["stamp"], s["pfqid"], s["status"], s["why"]))
    for what, lst in (("phantom (Postfix refused, delivered)", phantom),
                      ("stray (not sent by the test)", stray)):
        if lst:
            ok = False
            print("FAIL %d %s, e.g. %s" % (len(lst), what, sorted(lst)[:10]))
    if cnt.get("ok", 0) != len(states):
        ok = False
        print("FAIL Postfix did not accept every message: %s" % cnt)
    for pr in problems[:20]:
        ok = False
        print("FAIL %s" % pr)
    if len(problems) > 20:
        print("FAIL ... and %d more problems" % (len(problems) - 20))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
