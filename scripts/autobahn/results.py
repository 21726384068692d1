#!/usr/bin/env python3
"""JSON work for scripts/autobahn.sh (Python 3, standard library only).

  results.py spec  --template T --out SPEC --url URL --outdir DIR [--cases P,...] [--quick]
      Writes the fuzzingclient spec for one run.

  results.py check --index INDEX --planned PLANNED --expected EXPECTED --driver NAME
                   [--update] [--report-html PATH]
      Normalizes the wstest report, enforces the conformance policy, diffs against (or, with
      --update, rewrites) the expected-results file and prints the one-line summary last.
      Exit status 0 when everything passes, 1 otherwise.
"""

import argparse
import json
import os
import re
import sys
import tempfile

PREFIX = "autobahn:"

# Cases whose `behavior` may be INFORMATIONAL: they only record what the server did
# (7.1.6: close frame queued behind a large message; 7.13.x: reserved / unknown close codes).
ALLOWED_INFORMATIONAL = frozenset({"7.1.6", "7.13.1", "7.13.2"})
CLOSE_ALLOWED = frozenset({"OK", "INFORMATIONAL"})
SUMMARY_ORDER = ("OK", "NON-STRICT", "FAILED", "INFORMATIONAL")
PATTERN_RE = re.compile(r"^[0-9*]+(\.[0-9*]+)*$")


def case_key(case_id):
    try:
        return (0, tuple(int(part) for part in case_id.split(".")))
    except ValueError:
        return (1, case_id)


def sorted_cases(ids):
    return sorted(ids, key=case_key)


def fail_usage(message):
    print(f"{PREFIX} error: {message}", file=sys.stderr)
    sys.exit(2)


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{PREFIX} error: cannot read {what} {path}: {e}", file=sys.stderr)
        sys.exit(1)


def write_json(path, data):
    """Pretty-printed, sorted keys, trailing newline, written atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# spec


def cmd_spec(args):
    spec = load_json(args.template, "spec template")
    if args.cases is not None:
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        if not cases:
            fail_usage("--cases needs at least one pattern, e.g. --cases '5.*,7.1.6'")
        spec["cases"] = cases
    for pattern in spec["cases"] + spec.get("exclude-cases", []):
        if not PATTERN_RE.match(pattern):
            fail_usage(f"invalid case pattern {pattern!r} (expected e.g. '6.*', '7.1.6' or '*')")
    if args.quick:
        excluded = spec.setdefault("exclude-cases", [])
        if "9.*" not in excluded:
            excluded.append("9.*")
    spec["outdir"] = args.outdir
    if len(spec.get("servers", [])) != 1:
        fail_usage(f"{args.template}: expected exactly one entry in \"servers\"")
    spec["servers"][0]["url"] = args.url
    write_json(args.out, spec)


# ---------------------------------------------------------------------------------------------
# check


def normalize(index):
    """{agent: {case: {behavior, behaviorClose, duration, ...}}} -> {case: {behavior, behaviorClose}}"""
    if not isinstance(index, dict) or len(index) != 1:
        agents = sorted(index) if isinstance(index, dict) else index
        print(f"{PREFIX} error: expected exactly one agent in the report, got {agents!r}",
              file=sys.stderr)
        sys.exit(1)
    (results,) = index.values()
    return {
        case_id: {"behavior": r.get("behavior"), "behaviorClose": r.get("behaviorClose")}
        for case_id, r in results.items()
    }


def fmt(result):
    if result is None:
        return "<absent>"
    return f"behavior={result['behavior']} behaviorClose={result['behaviorClose']}"


def policy_violations(got):
    problems = []
    for case_id in sorted_cases(got):
        r = got[case_id]
        behavior, close = r["behavior"], r["behaviorClose"]
        allowed = {"OK", "INFORMATIONAL"} if case_id in ALLOWED_INFORMATIONAL else {"OK"}
        if behavior not in allowed or close not in CLOSE_ALLOWED:
            problems.append(f"  {case_id}: {fmt(r)}")
    return problems


def summary_line(got, driver):
    counts = {}
    for r in got.values():
        counts[r["behavior"]] = counts.get(r["behavior"], 0) + 1
    parts = [f"{len(got)} cases"]
    parts += [f"{counts.pop(b, 0)} {b}" for b in SUMMARY_ORDER]
    parts += [f"{n} {b}" for b, n in sorted(counts.items(), key=lambda kv: str(kv[0]))]
    return f"{PREFIX} {', '.join(parts)} (driver: {driver})"


def cmd_check(args):
    got = normalize(load_json(args.index, "wstest report"))
    planned = load_json(args.planned, "planned case list")
    ok = True

    missing = [c for c in planned if c not in got]
    if missing:
        ok = False
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        print(f"{PREFIX} {len(missing)} of {len(planned)} selected cases produced no result "
              f"(did the server crash or refuse connections?): {shown}")

    violations = policy_violations(got)
    if violations:
        ok = False
        print(f"{PREFIX} policy violations ({len(violations)}): every case must have behavior OK "
              f"(INFORMATIONAL allowed only for {', '.join(sorted_cases(ALLOWED_INFORMATIONAL))}) "
              f"and behaviorClose OK or INFORMATIONAL:")
        print("\n".join(violations))

    compared = sorted_cases(set(planned) | set(got))
    if args.update:
        if missing:
            print(f"{PREFIX} not updating {args.expected}: the run is incomplete")
        else:
            expected = {}
            if os.path.exists(args.expected):
                expected = load_json(args.expected, "expected results")
            # Replace the entries of the selected cases, keep the others (e.g. 9.* after --quick).
            for case_id in compared:
                expected.pop(case_id, None)
                if case_id in got:
                    expected[case_id] = got[case_id]
            ordered = {c: expected[c] for c in sorted_cases(expected)}
            write_json(args.expected, ordered)
            print(f"{PREFIX} updated {args.expected} ({len(got)} cases from this run, "
                  f"{len(ordered)} in total)")
    elif not os.path.exists(args.expected):
        ok = False
        print(f"{PREFIX} no expected results file {args.expected}; "
              f"run scripts/autobahn.sh --update to create it from this run")
    else:
        expected = load_json(args.expected, "expected results")
        diffs = []
        for case_id in compared:
            exp, cur = expected.get(case_id), got.get(case_id)
            if exp != cur:
                diffs.append(f"  {case_id}: expected {fmt(exp)}, got {fmt(cur)}")
        if diffs:
            ok = False
            print(f"{PREFIX} {len(diffs)} case(s) differ from {args.expected}:")
            print("\n".join(diffs))
            print(f"{PREFIX} either fix the regression or, if the change is intended, "
                  f"run scripts/autobahn.sh --update")

    if args.report_html:
        print(f"{PREFIX} per-case reports: {args.report_html}")
    print(summary_line(got, args.driver))
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("spec")
    p.add_argument("--template", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--outdir", required=True)
    p.add_argument("--cases")
    p.add_argument("--quick", action="store_true")

    p = sub.add_parser("check")
    p.add_argument("--index", required=True)
    p.add_argument("--planned", required=True)
    p.add_argument("--expected", required=True)
    p.add_argument("--driver", required=True)
    p.add_argument("--update", action="store_true")
    p.add_argument("--report-html")

    args = parser.parse_args()
    if args.command == "spec":
        cmd_spec(args)
        return 0
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
