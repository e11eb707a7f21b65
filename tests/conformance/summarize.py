#!/usr/bin/env python3
"""Summarize an Autobahn|Testsuite run (Python 3, stdlib only).

    summarize.py --index REPORTS/index.json --agent AGENT --mode server|client
                 [--expected CASES.txt] [--label quick] --results RESULTS.md

Reads wstest's index.json ({agent: {case_id: {behavior, behaviorClose, ...}}}),
counts outcomes per section (first number of the case id), appends a Markdown
section to RESULTS.md and prints `conformance-<mode>: N passed, M failed`.

Outcome of one case:
  - behavior FAILED, or behaviorClose FAILED / UNCLEAN -> FAILED
    (wstest's own HTML report paints those close results red too);
  - behavior OK / NON-STRICT / INFORMATIONAL -> that; an OK whose close was
    merely "WRONG CODE" or "FAILED BY CLIENT" is shown as NON-STRICT;
  - behavior UNIMPLEMENTED -> UNIMPLEMENTED, counted as failed: turbo_ws
    speaks permessage-deflate, so a case it did not take up is a regression;
  - anything else, and every case listed in --expected without a result
    -> MISSING (counted as failed: a crashed run must not look green).
passed = OK + NON-STRICT + INFORMATIONAL; failed = UNIMPLEMENTED + FAILED + MISSING.
Exit status 0 when failed == 0, else 1.
"""
import argparse
import datetime
import json
import os
import sys

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
COLUMNS = PASSING + ("UNIMPLEMENTED", "FAILED", "MISSING")
CLOSE_FAILED = ("FAILED", "UNCLEAN")
CLOSE_LENIENT = ("WRONG CODE", "FAILED BY CLIENT")
CLOSE_KNOWN = ("OK", "INFORMATIONAL") + CLOSE_FAILED + CLOSE_LENIENT


def outcome(result):
    behavior = result.get("behavior")
    close = result.get("behaviorClose")
    if behavior == "FAILED" or close in CLOSE_FAILED:
        return "FAILED"
    if close not in CLOSE_KNOWN:
        return "MISSING"  # unknown close outcome: do not trust the case
    if behavior == "OK" and close in CLOSE_LENIENT:
        return "NON-STRICT"
    if behavior in PASSING or behavior == "UNIMPLEMENTED":
        return behavior
    return "MISSING"


def case_key(case_id):
    try:
        return tuple(int(x) for x in case_id.split("."))
    except ValueError:
        return (999, case_id)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", required=True, help="wstest report index.json")
    ap.add_argument("--agent", required=True)
    ap.add_argument("--mode", required=True, help="server or client")
    ap.add_argument("--label", default="", help="e.g. quick or full")
    ap.add_argument("--expected", help="file with the case ids that must have a result")
    ap.add_argument("--results", required=True, help="Markdown file to append to")
    args = ap.parse_args()

    notes = []
    results = {}
    if os.path.exists(args.index):
        with open(args.index) as f:
            index = json.load(f)
        results = index.get(args.agent, {})
        if not results:
            notes.append("no results for agent %r in %s (agents there: %s)"
                         % (args.agent, args.index, ", ".join(sorted(index)) or "none"))
    else:
        notes.append("no report: %s does not exist" % args.index)

    expected = []
    if args.expected:
        with open(args.expected) as f:
            expected = [line.strip() for line in f if line.strip()]
    if not expected and not results:
        notes.append("no expected case list and no results: counting the run as one failure")

    outcomes = {cid: outcome(r) for cid, r in results.items()}
    for cid in expected:
        outcomes.setdefault(cid, "MISSING")

    table = {}  # section -> column -> [case ids]
    for cid in sorted(outcomes, key=case_key):
        section = cid.split(".")[0]
        table.setdefault(section, {c: [] for c in COLUMNS})[outcomes[cid]].append(cid)

    def total(col):
        return sum(len(cols[col]) for cols in table.values())

    passed = sum(total(c) for c in PASSING)
    failed = total("UNIMPLEMENTED") + total("FAILED") + total("MISSING")
    if not outcomes:
        failed = 1
    unimplemented = total("UNIMPLEMENTED")

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    label = " %s" % args.label if args.label else ""
    out = ["", "## conformance-%s%s — %s" % (args.mode, label, now), "",
           "Agent `%s`: **%d passed, %d failed** (%d of them unimplemented), of %d cases."
           % (args.agent, passed, failed, unimplemented, len(outcomes)), "",
           "| section | " + " | ".join(COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 1) + "|"]
    for section in sorted(table, key=case_key):
        cols = table[section]
        out.append("| %s | " % section + " | ".join(str(len(cols[c])) for c in COLUMNS) + " |")
    out.append("| all | " + " | ".join(str(total(c)) for c in COLUMNS) + " |")
    for col, what in (("FAILED", "Failed"), ("MISSING", "Missing or unknown outcome"),
                      ("UNIMPLEMENTED", "Unimplemented")):
        detail = []
        for section in sorted(table, key=case_key):
            ids = table[section][col]
            if len(ids) > 1 and len(ids) == sum(len(v) for v in table[section].values()):
                detail.append("%s.* (all %d)" % (section, len(ids)))  # keep it short
                continue
            for cid in ids:
                r = results.get(cid)
                detail.append("%s (%s/%s)" % (cid, r.get("behavior"), r.get("behaviorClose"))
                              if r and col != "UNIMPLEMENTED" else cid)
        if detail:
            out += ["", "%s: %s" % (what, ", ".join(detail))]
    for note in notes:
        out += ["", "Note: " + note]
    with open(args.results, "a") as f:
        f.write("\n".join(out) + "\n")

    for note in notes:
        print("conformance-%s: %s" % (args.mode, note), file=sys.stderr)
    bad = [cid for cid in sorted(outcomes, key=case_key) if outcomes[cid] in ("FAILED", "MISSING")]
    if bad:
        more = " ..." if len(bad) > 20 else ""
        print("conformance-%s: failing cases: %s%s" % (args.mode, " ".join(bad[:20]), more),
              file=sys.stderr)
    if unimplemented:
        sections = sorted({cid.split(".")[0] for cid, o in outcomes.items() if o == "UNIMPLEMENTED"},
                          key=int)
        print("conformance-%s: %d unimplemented (sections %s), counted as failed"
              % (args.mode, unimplemented, ", ".join(sections)))
    print("conformance-%s: %d passed, %d failed" % (args.mode, passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
