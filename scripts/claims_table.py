"""Print every reproduction's claims as one markdown table: experiment, claim, paper, ours (mean and 90% interval
over seeds where there are several), passed m/N, wall time. Reads $LAB_RUNS/reproduce-*-SCALE/result.json.

    .venv/bin/python scripts/claims_table.py [--scale quick] [--runs DIR]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def rows(res: dict) -> list[str]:
    out = []
    for c in res["claims"]:
        if "passed_seeds" in c:
            ours = fmt(c["ours"]) + (f" [{fmt(c['ours_lo'])}, {fmt(c['ours_hi'])}]" if c.get("ours_mean") is not None
                                     else "")
            passed = f"{c['passed_seeds']}/{c['seeds']}"
        else:
            ours, passed = fmt(c["ours"]), "1/1" if c["passed"] else "0/1"
        ours, claim = str(ours).replace(" | ", "; "), c["claim"].replace("|", "/")  # results written before "; "
        out.append(f"| {res['name']} | {claim} | {fmt(c['paper'])} | {ours} | {passed} | {res['wall_s']:.0f} s |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--runs", default=os.environ.get("LAB_RUNS", "runs"))
    args = ap.parse_args()
    print("| experiment | claim | paper | ours | passed | wall |")
    print("|---|---|---|---|---|---|")
    for path in sorted(Path(args.runs).glob(f"reproduce-*-{args.scale}/result.json")):
        print("\n".join(rows(json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
