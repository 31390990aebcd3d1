"""Run the peer workloads (workload.py) in each peer's venv and collect their results.

    python3 benchmarks/peers/run.py                         # every installed peer, every mode
    python3 benchmarks/peers/run.py --repeat 3 --table      # median of 3 runs, plus a text table
    python3 benchmarks/peers/run.py --peers mlflow --modes batch read --points 50000

Prints a JSON list: one object per (peer, mode) as workload.py printed it (with --repeat > 1,
the run with the median rate, plus "rates": every run's rate), an object with "error" for a
workload that failed, and one with "status" for a peer whose venv is missing. Standard library
only: run it with any python 3.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload  # noqa: E402  (standard library only at import)

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
WORKLOAD = HERE / "workload.py"
NOT_INSTALLED = "not installed (run benchmarks/peers/setup.sh)"

# Peer -> its modes, in order; modes in SLOW log --points-slow points instead of --points.
PEERS: dict[str, tuple[str, ...]] = {
    "mlflow": ("per_call", "async", "batch", "read"),
    "tensorboardX": ("per_call",),
    "aim": ("per_call",),
}
SLOW = {("mlflow", "per_call"), ("mlflow", "async")}

# Keep every peer off the network: the same switches workload.py sets before importing a peer.
OFFLINE_ENV = workload.OFFLINE_ENV


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def run_once(peer: str, mode: str, points: int, tmp_root: str | None, timeout: float) -> dict:
    scratch = tempfile.mkdtemp(prefix=f"peer-{peer}-{mode}-", dir=tmp_root)
    env = dict(os.environ, **OFFLINE_ENV)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
    command = [str(venv_python(peer)), str(WORKLOAD), peer, "--points", str(points), "--mode", mode, "--dir", scratch]
    try:
        proc = subprocess.run(
            command, cwd=scratch, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"peer": peer, "mode": mode, "points": points, "error": f"timed out after {timeout:g} s"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if proc.returncode == 0 and isinstance(result, dict) and "rate" in result:
                return result
    lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
    return {"peer": peer, "mode": mode, "points": points, "error": f"exit code {proc.returncode}: {lines[-1]}"}


def run_mode(peer: str, mode: str, points: int, args: argparse.Namespace) -> dict:
    results = []
    for i in range(args.repeat):
        result = run_once(peer, mode, points, args.tmp_root, args.timeout)
        note = f"{result['rate']:,.0f} points/s" if "rate" in result else result["error"]
        print(f"{peer} {mode} ({points} points) run {i + 1}/{args.repeat}: {note}", file=sys.stderr, flush=True)
        if "error" in result:
            return result
        results.append(result)
    if len(results) == 1:
        return results[0]
    rates = [r["rate"] for r in results]
    median = statistics.median_low(rates)  # a measured run, not an average of two
    return dict(next(r for r in results if r["rate"] == median), rates=rates)


def table(results: list[dict]) -> str:
    rows = [("peer", "version", "mode", "points", "seconds", "points/s")]
    for r in results:
        if "status" in r:
            rows.append((r["peer"], "", "", "", "", r["status"]))
        elif "error" in r:
            rows.append((r["peer"], "", r["mode"], str(r["points"]), "", "error: " + r["error"]))
        else:
            rows.append(
                (r["peer"], r["version"], r["mode"], str(r["points"]), f"{r['seconds']:.3f}", f"{r['rate']:,.0f}")
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(row[i].ljust(width) for i, width in enumerate(widths)) + "  " + row[-1] for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20000, help="points per workload (default 20000)")
    parser.add_argument(
        "--points-slow",
        type=int,
        default=2000,
        help="points for the slow modes, mlflow per_call and async (default 2000)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; reports the median rate (default 1)")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=list(PEERS), help="default: all")
    modes = sorted({m for ms in PEERS.values() for m in ms})
    parser.add_argument("--modes", nargs="+", choices=modes, help="only these modes (default: every applicable one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per workload run (default 120)")
    parser.add_argument("--tmp-root", help="where the scratch directories go (default: the system temp dir)")
    parser.add_argument("--table", action="store_true", help="also print a text table (after the JSON)")
    parser.add_argument("--save", action="store_true", help="also write the JSON to benchmarks/peers/results/")
    args = parser.parse_args(argv)
    if min(args.points, args.points_slow, args.repeat) < 1:
        parser.error("--points, --points-slow and --repeat must be at least 1")

    results: list[dict] = []
    for peer in args.peers:
        if not venv_python(peer).exists():
            print(f"{peer}: {NOT_INSTALLED}", file=sys.stderr)
            results.append({"peer": peer, "status": NOT_INSTALLED})
            continue
        for mode in PEERS[peer]:
            if args.modes and mode not in args.modes:
                continue
            points = args.points_slow if (peer, mode) in SLOW else args.points
            results.append(run_mode(peer, mode, points, args))

    output = json.dumps(results, indent=2)
    print(output)
    if args.table:
        print()
        print(table(results))
    if args.save:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"peers-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
        path.write_text(output + "\n")
        print(f"saved {path}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
