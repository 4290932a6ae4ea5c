#!/usr/bin/env python3
"""powercut_apply.py - leave the files as a power cut may (powercut.sh).

  powercut_apply.py --journal FILE --roots DIR[:DIR...] --seed S [--all-lost]

Reads the undo journal that powercut.so wrote while the process ran (it
was killed at a sync point, or stopped) and turns the files below ROOTS
into one state that a crash may leave, chosen with the seed S:

  data   every write made durable (an fsync or fdatasync of its file
         after it, or a write through an O_DSYNC/O_SYNC descriptor) is
         kept; every other write is kept, dropped (its pre-image put
         back) or torn (kept up to a 512-byte boundary inside it, dropped
         after), a third each; the file's size is the size at its last
         sync, or more where a kept write ends past it.
  names  a directory entry made, moved or removed (create, mkdir, link,
         rename, unlink) is durable once its directory (for a rename or a
         link, the directory of the new name) was fsynced after it; of
         the other ones, each directory keeps a prefix of its own, in the
         order they happened, and the rest are undone, newest first.
With --all-lost every write and entry that is not durable is lost: the
harshest state, used by the test variant that must show a loss.

Prints one summary line: the counts of kept, dropped and torn writes and
of undone entries. Exit 0, or 2 on a journal it cannot read.
"""
import argparse
import os
import random
import shutil
import sys


def parse(path):
    """The journal's records, in order: (type, fields, pre-image)."""
    recs = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break      # a record cut short by the kill: never happened
        fields = data[pos:nl].decode("utf-8", "surrogateescape").split("\t")
        pos = nl + 1
        pre = b""
        if fields[0] in ("W", "T"):
            n = int(fields[7])
            pre = data[pos:pos + n]
            if len(pre) < n:
                break
            pos += n
        recs.append((fields[0], fields, pre))
    return recs


class Ranges:
    """A set of byte ranges [a, b), for the bytes later kept writes hold."""

    def __init__(self):
        self.r = []

    def add(self, a, b):
        if a < b:
            self.r.append((a, b))

    def holes(self, a, b):
        """The parts of [a, b) no range covers."""
        out = [(a, b)]
        for (x, y) in self.r:
            nxt = []
            for (p, q) in out:
                if y <= p or x >= q:
                    nxt.append((p, q))
                    continue
                if p < x:
                    nxt.append((p, x))
                if y < q:
                    nxt.append((y, q))
            out = nxt
        return out


def inode_paths(roots, extra):
    """(dev, ino) -> a path of it, below roots and in extra dirs."""
    m = {}
    for top in list(roots) + list(extra):
        for d, _dirs, files in os.walk(top):
            for name in files:
                p = os.path.join(d, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                m.setdefault((st.st_dev, st.st_ino), p)
    return m


def undo_entries(recs, rng, all_lost, stats):
    synced_after = {}     # dir -> seq of its last fsync
    for seq, (t, f, _pre) in enumerate(recs):
        if t == "D":
            synced_after[f[1]] = seq
    pending = {}          # dir -> [(seq, rec)] not durable
    for seq, (t, f, _pre) in enumerate(recs):
        if t not in ("C", "M", "U", "R", "L"):
            continue
        name = f[2] if t in ("R", "L") else f[1]
        d = os.path.dirname(name)
        if synced_after.get(d, -1) > seq:
            continue
        pending.setdefault(d, []).append((seq, t, f))
    undo = []
    for d, ops in pending.items():
        keep = 0 if all_lost else rng.randint(0, len(ops))
        undo.extend(ops[keep:])
    undo.sort(reverse=True)
    for _seq, t, f in undo:
        stats["undone"] += 1
        try:
            if t == "C":
                p = f[1]
                st = os.lstat(p)
                if (st.st_dev, st.st_ino) == (int(f[2]), int(f[3])):
                    os.unlink(p)
            elif t == "M":
                if os.path.isdir(f[1]):
                    shutil.rmtree(f[1])
            elif t == "L":
                if os.path.lexists(f[2]):
                    os.unlink(f[2])
            elif t == "R":
                if os.path.lexists(f[2]):
                    os.rename(f[2], f[1])
                if len(f) > 3 and f[3]:
                    os.link(f[3], f[2])
            elif t == "U":
                if not os.path.lexists(f[1]) and f[2]:
                    os.link(f[2], f[1])
        except FileNotFoundError:
            stats["undo_moot"] += 1


def undo_data(recs, rng, all_lost, roots, extra, stats):
    last_sync = {}        # inode -> (seq, size)
    for seq, (t, f, _pre) in enumerate(recs):
        if t == "S":
            last_sync[(int(f[1]), int(f[2]))] = (seq, int(f[3]))
    writes = {}           # inode -> [(seq, rec)] after its last sync
    first_size = {}       # inode -> size before its first unsynced write
    for seq, (t, f, pre) in enumerate(recs):
        if t not in ("W", "T"):
            continue
        ino = (int(f[1]), int(f[2]))
        if seq < last_sync.get(ino, (-1, 0))[0]:
            continue
        if t == "W" and f[6] == "1":
            stats["kept"] += 1          # an O_DSYNC write: durable
            continue
        writes.setdefault(ino, []).append((seq, t, f, pre))
        first_size.setdefault(ino, int(f[5]))
    if not writes:
        return
    paths = inode_paths(roots, extra)
    for ino, ws in writes.items():
        p = paths.get(ino)
        if p is None:
            stats["gone"] += 1
            continue
        base = last_sync[ino][1] if ino in last_sync else first_size[ino]
        size = base
        kept = Ranges()
        # (offset, bytes) to put back, newest first: an older write's
        # pre-image is older still, so it wins where both were lost; no
        # pre-image goes over bytes a newer write kept.
        fixes = []
        for _seq, t, f, pre in reversed(ws):
            off, n = int(f[3]), int(f[4])
            if t == "T":
                # a truncate: lost, the cut bytes come back
                if all_lost or rng.random() < 0.5:
                    stats["dropped"] += 1
                    size = max(size, int(f[5]))
                    end = off + len(pre)
                    for (a, b) in kept.holes(off, end):
                        fixes.append((a, pre[a - off:b - off]))
                else:
                    stats["kept"] += 1
                continue
            fate = "drop" if all_lost else rng.choice(
                ("keep", "drop", "tear"))
            if fate == "keep":
                keep_to = off + n
                stats["kept"] += 1
            elif fate == "drop":
                keep_to = off
                stats["dropped"] += 1
            else:
                bounds = [off] + [b for b in range((off // 512 + 1) * 512,
                                                   off + n, 512)]
                keep_to = rng.choice(bounds)
                stats["torn"] += 1
            kept.add(off, keep_to)
            if keep_to > off:
                size = max(size, keep_to)
            for (a, b) in kept.holes(keep_to, off + n):
                old = pre[a - off:b - off] if a - off < len(pre) else b""
                fixes.append((a, old + bytes((b - a) - len(old))))
        with open(p, "r+b") as fh:
            for a, data in fixes:
                fh.seek(a)
                fh.write(data)
            cur = os.fstat(fh.fileno()).st_size
            if cur > size:
                fh.truncate(size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--journal", required=True)
    ap.add_argument("--roots", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-lost", action="store_true")
    a = ap.parse_args()
    try:
        recs = parse(a.journal)
    except (OSError, ValueError, IndexError) as e:
        print("powercut_apply: cannot read %s: %s" % (a.journal, e))
        return 2
    rng = random.Random(a.seed)
    roots = [r for r in a.roots.split(":") if r]
    shadow = a.journal + ".shadow"
    stats = dict(kept=0, dropped=0, torn=0, undone=0, undo_moot=0, gone=0)
    cut = [f for (t, f, _p) in recs if t == "X"]
    undo_entries(recs, rng, a.all_lost, stats)
    undo_data(recs, rng, a.all_lost, roots, [shadow], stats)
    if os.path.isdir(shadow):
        shutil.rmtree(shadow)
    print("powercut: %s; writes kept %d dropped %d torn %d; entries "
          "undone %d (moot %d); files gone %d" % (
              "cut at %s %s of %s" % (cut[0][1], cut[0][2], cut[0][3])
              if cut else "no cut", stats["kept"], stats["dropped"],
              stats["torn"], stats["undone"], stats["undo_moot"],
              stats["gone"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
