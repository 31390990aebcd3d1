"""`python -m benchmarks [--quick] [--json] [--only NAME ...]`: Alexandria's speed beside the raw limits."""

from __future__ import annotations

import argparse
import json
import os
import platform

from .core import ALL, run_all


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI runs this)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", nargs="+", choices=sorted(ALL), help="run only these benchmarks")
    args = parser.parse_args()
    results = run_all(args.only or list(ALL), args.quick)
    if args.json:
        machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
        print(json.dumps({"machine": machine, "quick": args.quick, "results": [r.as_dict() for r in results]}))
        return
    print(f"{'benchmark':<28} {'rate':>14} {'unit':<10} {'raw limit':>14} {'ratio':>7}  target")
    for r in results:
        limit = f"{r.limit:,.0f}" if r.limit else "-"
        ratio = f"{r.ratio:.0%}" if r.ratio else "-"
        print(f"{r.name:<28} {r.rate:>14,.1f} {r.unit:<10} {limit:>14} {ratio:>7}  {r.target}")
        for k, v in r.extra.items():
            print(f"{'':<30}{k} = {v:,.2f}" if isinstance(v, float) else f"{'':<30}{k} = {v}")


if __name__ == "__main__":
    main()
