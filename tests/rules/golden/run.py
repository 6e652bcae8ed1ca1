#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Golden verdict tests: run `vpsctl run --json` on test messages and compare.

run.py VPSCTL CASEDIR — every CASEDIR/*.json case is one TAP test:

  {
    "config":  "example.conf",            vps.conf for vpsctl -c (relative to CASEDIR)
    "rules":   "../example/rules.vsl",    optional: vpsctl run --rules
    "message": "../../data/spam.eml",     relative to CASEDIR
    "args":    ["--client-ip", "192.0.2.1", "--rcpt", "bob@example.org"],
    "expect":  { ... a partial report ... }
  }

`expect` matches the report partially: every key of an expected object must
be present with a matching value; an expected list matches when each of its
elements matches some element of the actual list (order-free), except that
"exact:" before a key ("exact:rules") demands equality.  "absent:KEY": true
demands that KEY be missing or null.
"""
import json, os, subprocess, sys

def match(exp, act, path):
    if isinstance(exp, dict):
        if not isinstance(act, dict):
            return f"{path}: expected an object, got {act!r}"
        for k, v in exp.items():
            if k.startswith("absent:"):
                key = k[len("absent:"):]
                if act.get(key) not in (None, [], ""):
                    return f"{path}.{key}: expected absent, got {act.get(key)!r}"
                continue
            if k.startswith("exact:"):
                key = k[len("exact:"):]
                if act.get(key) != v:
                    return f"{path}.{key}: expected exactly {v!r}, got {act.get(key)!r}"
                continue
            if k not in act:
                return f"{path}.{k}: missing (have {sorted(act)})"
            err = match(v, act[k], f"{path}.{k}")
            if err:
                return err
        return None
    if isinstance(exp, list):
        if not isinstance(act, list):
            return f"{path}: expected a list, got {act!r}"
        for i, e in enumerate(exp):
            if all(match(e, a, f"{path}[{i}]") for a in act):
                return f"{path}: no element matches {e!r} in {act!r}"
        return None
    if exp != act:
        return f"{path}: expected {exp!r}, got {act!r}"
    return None

def main():
    vpsctl, casedir = sys.argv[1], sys.argv[2]
    cases = sorted(f for f in os.listdir(casedir) if f.endswith(".json"))
    print(f"1..{len(cases)}")
    failed = 0
    for n, name in enumerate(cases, 1):
        with open(os.path.join(casedir, name)) as f:
            case = json.load(f)
        cmd = [vpsctl]
        if "config" in case:
            cmd += ["-c", os.path.join(casedir, case["config"])]
        cmd += ["run", os.path.join(casedir, case["message"]), "--json"]
        if "rules" in case:
            cmd += ["--rules", os.path.join(casedir, case["rules"])]
        cmd += case.get("args", [])
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        err = None
        if p.returncode != 0:
            err = f"vpsctl exited {p.returncode}: {p.stderr.strip()}"
        else:
            try:
                report = json.loads(p.stdout)
            except ValueError as e:
                err = f"not JSON ({e}): {p.stdout[:200]!r}"
            else:
                err = match(case["expect"], report, "report")
        if err:
            failed += 1
            print(f"not ok {n} {name}")
            print(f"# {err}")
            print("# command: " + " ".join(cmd))
            for line in p.stdout.splitlines()[:80]:
                print("#   " + line)
        else:
            print(f"ok {n} {name}")
    return 1 if failed else 0

sys.exit(main())
