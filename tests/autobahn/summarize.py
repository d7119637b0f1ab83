"""Reads Autobahn|Testsuite's index.json and fails unless every case is OK or INFORMATIONAL.

Usage: python summarize.py (Python 2.7 or 3) REPORT_DIR/index.json AGENT
Prints one line per case that is not clean, then `autobahn: N passed, M failed`.
"""
import json
import sys

CLEAN = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def main():
    path, agent = sys.argv[1], sys.argv[2]
    with open(path) as handle:
        index = json.load(handle)
    cases = index.get(agent)
    if not cases:
        print("autobahn: no results for agent %r in %s" % (agent, path))
        print("autobahn: 0 passed, 1 failed")
        return 1
    passed = failed = 0
    behaviors = {}
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        behavior = result.get("behavior")
        closing = result.get("behaviorClose")
        behaviors[behavior] = behaviors.get(behavior, 0) + 1
        if behavior in CLEAN and closing in CLEAN:
            passed += 1
        else:
            failed += 1
            print("autobahn: case %s: behavior %s, close %s (%s)" % (case_id, behavior, closing, result.get("reportfile")))
    print("autobahn: by behavior: " + ", ".join("%s %d" % item for item in sorted(behaviors.items())))
    groups = {}
    for case_id, result in cases.items():
        counts = groups.setdefault(int(case_id.split(".")[0]), {})
        behavior = result.get("behavior")
        counts[behavior] = counts.get(behavior, 0) + 1
    for group in sorted(groups):
        print("autobahn: group %d: %s" % (group, ", ".join("%s %d" % item for item in sorted(groups[group].items()))))
    print("autobahn: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
