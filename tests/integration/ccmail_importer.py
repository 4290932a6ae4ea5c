#!/usr/bin/env python3
"""ccmail_importer.py - a stand-in for the cc:Mail import program.

run DROP OUT STOP: until the file STOP exists (then one last sweep), take
    every DROP/*.ccm with its attachments and move them to OUT/, the way
    an import program consumes its drop directory. A name seen twice is a
    duplicate import: it is recorded in OUT/DUPLICATES.
check OUT N: exactly N import files, no duplicate, every file well formed
    (postern-ccmail(5)), X-Postern-Id equal to its name, every attachment
    there with the size its File item: line gives.
"""
import os
import sys
import time


def sweep(drop, out):
    for name in sorted(os.listdir(drop)):
        if not name.endswith(".ccm"):
            continue
        src = os.path.join(drop, name)
        with open(src, "rb") as f:
            data = f.read()
        for line in data.split(b"\r\n"):
            if line.startswith(b"File item: "):
                att = line.split(b" ")[2].decode()
                os.replace(os.path.join(drop, att), os.path.join(out, att))
        dst = os.path.join(out, name)
        if os.path.exists(dst):
            with open(os.path.join(out, "DUPLICATES"), "a") as f:
                f.write(name + "\n")
        with open(dst + ".part", "wb") as f:
            f.write(data)
        os.rename(dst + ".part", dst)
        os.unlink(src)


def run(drop, out, stop):
    os.makedirs(out, exist_ok=True)
    while not os.path.exists(stop):
        sweep(drop, out)
        time.sleep(0.05)
    sweep(drop, out)


def parse(path, out):
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\r\n"), "no CRLF at the end"
    lines = data[:-2].decode("iso-8859-1").split("\r\n")
    assert lines[0] == "Message:", "first line"
    fields, i = {}, 1
    while not lines[i].startswith("Contents: "):
        k, _, v = lines[i].partition(": ")
        fields[k.rstrip(":")] = v
        i += 1
    n = int(lines[i][10:])
    i += 1
    for _ in range(n):
        if lines[i].startswith("Text item: "):
            i += 1 + int(lines[i][11:])
        else:
            _, _, att, size, _ = lines[i].split(" ", 4)
            st = os.stat(os.path.join(out, att))
            assert st.st_size == int(size), "attachment size " + att
            i += 1
    assert i == len(lines), "bytes after the last item"
    return fields


def check(out, n):
    bad = 0
    if os.path.exists(os.path.join(out, "DUPLICATES")):
        print("FAIL duplicates:", open(os.path.join(out, "DUPLICATES")).read())
        bad = 1
    names = [x for x in os.listdir(out) if x.endswith(".ccm")]
    for name in names:
        try:
            fields = parse(os.path.join(out, name), out)
            assert fields["X-Postern-Id"] + ".ccm" == name, "X-Postern-Id"
            assert fields["To"].endswith(" at FOREIGN"), "To"
        except (AssertionError, KeyError, ValueError, IndexError) as e:
            print("FAIL %s: %s" % (name, e))
            bad = 1
    if len(names) != n:
        print("FAIL %d import files, expected %d" % (len(names), n))
        bad = 1
    return bad


if sys.argv[1] == "run":
    run(*sys.argv[2:5])
else:
    sys.exit(check(sys.argv[2], int(sys.argv[3])))
