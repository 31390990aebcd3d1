"""Run Alexandria and the peer trackers through the same workloads (workload.py) in the same rounds.

    python3 benchmarks/peers/run.py --repeat 3 --table     # 3 rounds, then the markdown tables
    python3 benchmarks/peers/run.py --quick --table        # a smoke run: tiny N, one round
    python3 benchmarks/peers/run.py --peers mlflow wandb --points 50000

Each round runs every tracker's cases once, the trackers in an order rotated by one from the round before
(so that no tracker always runs first, or right after the heaviest one). Every ratio compares two figures of
the same round at the same N: Alexandria's workload runs at every N a peer uses. The table reports the median
over rounds of those per-round ratios, beside the median rates.

Prints a JSON object (the machine, the settings, every measurement); with --table, then the markdown tables.
Standard library only. Alexandria's workload runs with `--alexandria-python` (default: the python running
this script), with the project's root first on PYTHONPATH; each peer runs with the python of its venv
(setup.sh). A peer without a venv is listed as not installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload  # noqa: E402  (standard library only at import)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENVS = HERE / ".venvs"
WORKLOAD = HERE / "workload.py"
NOT_INSTALLED = "not installed (run benchmarks/peers/setup.sh)"

# What each tracker runs in a round: (mode, which N). "n" is --points, "slow" --points-slow (mlflow's per-call
# modes: ~240 points/s), "multi" --multi-points per process, "multi_slow" --multi-points-slow per process.
CASES: dict[str, tuple[tuple[str, str], ...]] = {
    "alexandria": (("log", "n"), ("log", "slow"), ("read", "n"), ("multi", "multi")),
    "mlflow": (("log", "slow"), ("async", "slow"), ("batch", "n"), ("read", "n"), ("multi", "multi_slow")),
    "tensorboardX": (("log", "n"), ("read", "n"), ("multi", "multi")),
    "aim": (("log", "n"), ("read", "n"), ("multi", "multi")),
    "trackio": (("log", "n"), ("read", "n"), ("multi", "multi")),
    "wandb": (("log", "n"), ("read", "n"), ("multi", "multi")),
}
TRACKERS = tuple(CASES)
PEERS = TRACKERS[1:]
# How each peer case is described in the table, and which Alexandria workload it is compared with.
DESCRIBE = {
    ("mlflow", "log"): ("MLflow {v}, SQLite store, `log_metric` per point", "log"),
    ("mlflow", "async"): ("MLflow {v}, `log_metric(synchronous=False)`", "log"),
    ("mlflow", "batch"): ("MLflow {v}, `log_batch` of 1,000", "log"),
    ("mlflow", "read"): ("MLflow {v}, `get_metric_history`", "read"),
    ("tensorboardX", "log"): ("tensorboardX {v}, `add_scalar`", "log"),
    ("tensorboardX", "read"): ("tensorboardX {v}, event files decoded with its protobufs", "read"),
    ("aim", "log"): ("Aim {v}, `Run.track`", "log"),
    ("aim", "read"): ("Aim {v}, the run's RocksDB scanned (its read API finds nothing)", "read"),
    ("trackio", "log"): ("trackio {v}, `trackio.log`", "log"),
    ("trackio", "read"): ("trackio {v}, `SQLiteStorage.get_logs`", "read"),
    ("wandb", "log"): ("wandb {v} offline, `run.log`", "log"),
    ("wandb", "read"): ("wandb {v} offline, the run's .wandb file decoded with its protobufs", "read"),
}
OFFLINE_ENV = workload.OFFLINE_ENV


def python_of(tracker: str, args: argparse.Namespace) -> Path:
    return Path(args.alexandria_python) if tracker == "alexandria" else VENVS / tracker / "bin" / "python"


def run_once(tracker: str, mode: str, points: int, args: argparse.Namespace) -> dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix=f"peer-{tracker}-{mode}-", dir=args.tmp_root)
    env = dict(os.environ, **OFFLINE_ENV)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
    if tracker == "alexandria":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("ALEXANDRIA_STORE", None)
        env.pop("ALEXANDRIA_DB", None)
    command = [str(python_of(tracker, args)), str(WORKLOAD), tracker, "--points", str(points), "--mode", mode]
    command += ["--dir", scratch]
    failed = {"peer": tracker, "mode": mode, "points": points}
    try:
        proc = subprocess.run(
            command,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        return dict(failed, error=f"timed out after {args.timeout:g} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            if proc.returncode == 0 and isinstance(result, dict) and ("rate" in result or "landed" in result):
                return result
    lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
    return dict(failed, error=f"exit code {proc.returncode}: {lines[-1][:300]}")


def imports_project(python: str) -> bool:
    """Whether `python` imports the project's alexandria (and what it needs) from the project's root."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import alexandria, msgspec, sqlalchemy, numpy; print(alexandria.__file__)"
    try:
        probe = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    except OSError:
        return False
    return probe.returncode == 0 and Path(probe.stdout.strip()).resolve().is_relative_to(ROOT)


def available(tracker: str, args: argparse.Namespace) -> str | None:
    """Why `tracker` cannot run here, or None. Alexandria's python: --alexandria-python, else the one running
    this script, else the project's .venv."""
    if tracker != "alexandria":
        return None if python_of(tracker, args).exists() else NOT_INSTALLED
    tried = [args.alexandria_python] if args.alexandria_python else [sys.executable, str(ROOT / ".venv/bin/python")]
    for python in tried:
        if imports_project(python):
            args.alexandria_python = python
            return None
    return f"the project's alexandria does not import with {' nor '.join(tried)} (pass --alexandria-python)"


def rounds(trackers: list[str], sizes: dict[str, int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every case of every tracker once a round (multi `--multi-tries` times), trackers rotated each round."""
    measurements = []
    for r in range(args.repeat):
        order = trackers[r % len(trackers) :] + trackers[: r % len(trackers)]
        for tracker in order:
            for mode, size in CASES[tracker]:
                if args.cases and mode not in args.cases:
                    continue
                for _ in range(args.multi_tries if mode == "multi" else 1):
                    result = run_once(tracker, mode, sizes[size], args)
                    result["round"] = r
                    result["load_average"] = round(os.getloadavg()[0], 2)
                    measurements.append(result)
                    print(
                        f"round {r + 1}/{args.repeat} {tracker} {mode} N={sizes[size]}: {note(result)}", file=sys.stderr
                    )
    return measurements


def note(result: dict[str, Any]) -> str:
    if "error" in result:
        return "error: " + result["error"]
    if "landed" in result:
        return f"{result['landed']}/{result['logged']} points landed" + (
            f" ({'; '.join(result['writer_errors'])})" if result["writer_errors"] else ""
        )
    return f"{result['rate']:,.0f} points/s"


def summarize(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Per peer case: median rate, Alexandria's median rate at the same N, the median of per-round ratios."""
    ok = [m for m in measurements if "rate" in m]

    def rates(tracker: str, mode: str, points: int) -> dict[int, float]:
        return {m["round"]: m["rate"] for m in ok if (m["peer"], m["mode"], m["points"]) == (tracker, mode, points)}

    rows = []
    seen = set()
    for m in measurements:
        key = (m["peer"], m["mode"], m["points"])
        if m["peer"] == "alexandria" or m["mode"] == "multi" or key in seen:
            continue
        seen.add(key)
        theirs = rates(*key)
        ours = rates("alexandria", DESCRIBE[key[:2]][1], m["points"])
        pairs = [ours[r] / theirs[r] for r in theirs if r in ours]
        same = [x for x in measurements if (x["peer"], x["mode"], x["points"]) == key]
        errors = [x["error"] for x in same if "error" in x]
        late = [x["readable_after_close_s"] for x in same if "readable_after_close_s" in x]
        rows.append(
            {
                "peer": m["peer"],
                "mode": m["mode"],
                "points": m["points"],
                "version": next((x["version"] for x in ok if x["peer"] == m["peer"]), ""),
                "rate": statistics.median(theirs.values()) if theirs else None,
                "alexandria_rate": statistics.median(ours.values()) if ours else None,
                "ratio": statistics.median(pairs) if pairs else None,
                "rounds": len(pairs),
                "errors": errors,
                "late": late,
            }
        )
    multi = []
    for tracker in dict.fromkeys(m["peer"] for m in measurements if m["mode"] == "multi"):
        tries = [m for m in measurements if m["peer"] == tracker and m["mode"] == "multi"]
        done = [m for m in tries if "landed" in m]
        multi.append(
            {
                "peer": tracker,
                "version": next((x["version"] for x in ok + done if x["peer"] == tracker), ""),
                "points": tries[0]["points"],
                "landed": [f"{m['landed']}/{m['logged']}" for m in done],
                "tries": len(tries),
                "lost": sum(1 for m in done if m["landed"] < m["logged"]),
                "failed": [m["error"] for m in tries if "error" in m],
                "writer_errors": [
                    f"{count}× {error}" if count > 1 else error
                    for error, count in Counter(e for m in done for e in m["writer_errors"]).items()
                ],
            }
        )
    return {"ratios": rows, "multi": multi}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20)
    except (OSError, ValueError, IndexError):
        pass
    return info


def number(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def tables(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [
        f"Measured {report['date']} by `python3 benchmarks/peers/run.py --repeat {s['repeat']} --table` on a "
        f"{m['cpus']}-CPU {m['system']} machine ({m.get('memory_gib', '?')} GiB, Python {m['python']}; load average "
        f"{m['load_average'][0]:g} at the start, {m['load_range'][0]:g}–{m['load_range'][1]:g} during the run, "
        f"{m['load_average_end'][0]:g} at the end). Versions: {versions}. "
        f"{s['repeat']} round{'s' if s['repeat'] > 1 else ''}, the trackers' order rotated each round; "
        "each ratio is the median over rounds of "
        "Alexandria's rate divided by the peer's, both measured in the same round at the same N; rates are medians.",
        "",
        "| tracker, one run, one metric | N | points/s | Alexandria at the same N | Alexandria is |",
        "|---|---|---|---|---|",
    ]
    for row in report["summary"]["ratios"]:
        name = DESCRIBE[(row["peer"], row["mode"])][0].format(v=row["version"] or "?")
        verb = "reads" if row["mode"] == "read" else "logs"
        if not row["ratio"]:
            ratio = "error: " + "; ".join(row["errors"])
        elif row["ratio"] >= 1:
            ratio = f"{verb} {number(row['ratio'])}× faster"
        else:
            ratio = f"{verb} {number(1 / row['ratio'])}× slower"
        if row["late"]:
            name += f" (its points readable only up to {max(row['late']):g} s after it returned, {len(row['late'])}×)"
        lines.append(
            f"| {name} | {row['points']:,} | {number(row['rate'])} | {number(row['alexandria_rate'])} | {ratio} |"
        )
    if report["summary"]["multi"]:
        lines += [
            "",
            f"{workload.PROCESSES} processes logging into one run at once, each its own N points; the points that "
            "landed counted through each tracker's own reader:",
            "",
            "| tracker | N per process | points landed / logged, each try | tries that lost points "
            "| what the writers said |",
            "|---|---|---|---|---|",
        ]
        for row in report["summary"]["multi"]:
            said = "; ".join(row["writer_errors"] + row["failed"]) or "nothing"
            lines.append(
                f"| {row['peer']} {row['version']} | {row['points']:,} | {', '.join(row['landed']) or 'none'} | "
                f"{row['lost'] + len(row['failed'])} of {row['tries']} | {said.replace('|', '/')[:300]} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000, help="N of the log and read cases (default 20000)")
    parser.add_argument("--points-slow", type=int, default=1000, help="N of mlflow's per-call modes (default 1000)")
    parser.add_argument("--multi-points", type=int, default=2000, help="N per process, multi case (default 2000)")
    parser.add_argument(
        "--multi-points-slow", type=int, default=200, help="N per process, mlflow's multi case (default 200)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--multi-tries", type=int, default=2, help="tries of the multi case per round (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, one round, one multi try")
    parser.add_argument(
        "--peers", nargs="*", choices=PEERS, default=list(PEERS), help="default: all; none: Alexandria alone"
    )
    parser.add_argument("--cases", nargs="+", choices=workload.MODES, help="only these modes (default: all)")
    parser.add_argument(
        "--alexandria-python", help="python that imports the project (default: this one, else .venv/bin/python)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per workload run (default 300)")
    parser.add_argument("--tmp-root", help="where the scratch directories go (default: the system temp dir)")
    parser.add_argument("--table", action="store_true", help="also print the markdown tables (after the JSON)")
    parser.add_argument("--save", action="store_true", help="also write the JSON to benchmarks/peers/results/")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.points_slow, args.multi_points, args.multi_points_slow = 2000, 200, 200, 50
        args.repeat, args.multi_tries = 1, 1
    if min(args.points, args.points_slow, args.multi_points, args.multi_points_slow, args.repeat) < 1:
        parser.error("sizes and --repeat must be at least 1")

    missing = {t: why for t in ("alexandria", *args.peers) if (why := available(t, args))}
    for tracker, why in missing.items():
        print(f"{tracker}: {why}", file=sys.stderr)
    if "alexandria" in missing:
        return 1
    trackers = ["alexandria", *(p for p in args.peers if p not in missing)]
    sizes = {"n": args.points, "multi": args.multi_points}
    if "mlflow" in trackers:
        sizes.update(slow=args.points_slow, multi_slow=args.multi_points_slow)
    else:
        CASES["alexandria"] = tuple(c for c in CASES["alexandria"] if c[1] != "slow")

    start = datetime.datetime.now(datetime.UTC)
    info = machine()
    measurements = rounds(trackers, sizes, args)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    loads = [m["load_average"] for m in measurements] or info["load_average_end"][:1]
    info["load_range"] = [min(loads), max(loads)]
    versions = {}
    for tracker in trackers:
        versions[tracker] = next((m["version"] for m in measurements if m["peer"] == tracker and "version" in m), "?")
    report = {
        "date": f"{start:%Y-%m-%d %H:%M} UTC",
        "machine": info,
        "settings": {k: getattr(args, k) for k in ("points", "points_slow", "multi_points", "repeat", "multi_tries")},
        "versions": versions,
        "not_run": missing,
        "summary": summarize(measurements),
        "measurements": measurements,
    }
    report["settings"]["multi_points_slow"] = args.multi_points_slow
    output = json.dumps(report, indent=2)
    print(output)
    if args.table:
        print()
        print(tables(report))
    if args.save:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        path = out_dir / f"peers-{start:%Y%m%d-%H%M%S}.json"
        path.write_text(output + "\n")
        print(f"saved {path}", file=sys.stderr)
    return 1 if any("error" in m for m in measurements if m["mode"] != "multi") else 0


if __name__ == "__main__":
    sys.exit(main())
