#!/bin/bash
# grafana_metrics.sh - contrib/grafana/postern.json queries only what
# posternd's /metrics exposes: every postern_* name in every panel's
# expr is a series there (a histogram by its _bucket, _sum or _count
# series, a _bucket only of a histogram), and every exact label value it
# matches (state="in-doubt", and each word of state=~"a|b") occurs. The
# JSON parses, uses the ${DS_PROMETHEUS} variable, and every panel has
# a datasource and a title. Uses curl as the HTTP client.
. "$(dirname "$0")/common.sh"
command -v curl >/dev/null 2>&1 || skip "curl not found (Debian package curl)"
command -v swaks >/dev/null 2>&1 || skip "swaks not found (Debian package swaks)"
dashboard=$HERE/../../contrib/grafana/postern.json
[ -f "$dashboard" ] || fail "no dashboard at $dashboard"

start_admin_daemon

# One delivered message, so that every series has been through a change.
swaks --server "127.0.0.1:$port" -f a@home.example -t r1@foreign.example \
	>/dev/null || fail "swaks failed"
for i in $(seq 1 50); do
	[ "$(maildir_count "$WORK/maildir")" -ge 1 ] && break
	sleep 0.1
done
[ "$(maildir_count "$WORK/maildir")" -ge 1 ] || fail "message not delivered"

curl -sf "http://127.0.0.1:$aport/metrics" >"$WORK/metrics" ||
	fail "GET /metrics failed"

"$PYTHON" - "$dashboard" "$WORK/metrics" <<'PY' || fail "dashboard and /metrics disagree"
import json, re, sys

try:
    dash = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit("%s: not JSON: %s" % (sys.argv[1], e))

# /metrics: sample names, their label pairs, and the # TYPE of families.
types, series, pairs = {}, set(), set()
for line in open(sys.argv[2]):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        types[m.group(1)] = m.group(2)
        continue
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
    series.add(m.group(1))
    for k, v in re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""):
        pairs.add((m.group(1), k, v))

problems = []
ds_var = [v for v in dash.get("templating", {}).get("list", [])
          if v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource"]
if not ds_var:
    problems.append("no templating variable DS_PROMETHEUS of type datasource")

def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))

exprs = 0
for p in all_panels(dash.get("panels", [])):
    name = "panel %s %r" % (p.get("id"), p.get("title"))
    if not p.get("title"):
        problems.append("%s: no title" % name)
    ds = p.get("datasource")
    if not ds or (isinstance(ds, dict) and not ds.get("uid")):
        problems.append("%s: no datasource" % name)
    elif isinstance(ds, dict) and ds.get("uid") != "${DS_PROMETHEUS}":
        problems.append("%s: datasource %r, not ${DS_PROMETHEUS}"
                        % (name, ds.get("uid")))
    for t in p.get("targets", []):
        expr = t.get("expr", "")
        exprs += 1
        for metric in sorted(set(re.findall(r"postern_[a-z0-9_]+", expr))):
            if metric not in series:
                why = ("a histogram is queried by its _bucket, _sum or "
                       "_count series" if types.get(metric) == "histogram"
                       else "not in /metrics")
                problems.append("%s: %s: %s" % (name, metric, why))
            elif metric.endswith("_bucket") and \
                    types.get(metric[:-7]) != "histogram":
                problems.append("%s: %s: %s is not a histogram"
                                % (name, metric, metric[:-7]))
        # exact and alternation matchers on postern_ series
        for metric, labels in re.findall(r"(postern_[a-z0-9_]+)\s*\{([^}]*)\}",
                                         expr):
            for k, op, v in re.findall(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"',
                                       labels):
                if k in ("instance", "job") or "$" in v:
                    continue
                if op == "=":
                    values = [v]
                elif op == "=~" and re.fullmatch(r"[\w+.-]+(\|[\w+.-]+)*", v):
                    values = v.split("|")
                else:
                    continue
                for value in values:
                    if (metric, k, value) not in pairs:
                        problems.append('%s: %s{%s="%s"} not in /metrics'
                                        % (name, metric, k, value))
if exprs == 0:
    problems.append("no panel queries anything")
for pr in problems:
    print("FAIL:", pr)
if problems:
    sys.exit(1)
print("dashboard ok: %d panels, %d queries, all series exposed"
      % (len(list(all_panels(dash["panels"]))), exprs))
PY

stop_daemon "$DAEMON_PID"
[ "$STOP_RC" = 0 ] || fail "posternd exited $STOP_RC"
echo "PASS: contrib/grafana/postern.json queries only what /metrics exposes"
