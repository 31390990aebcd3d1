"""How fast `alex` answers: `alex --help`, `alex runs` on a small store (10 runs) and `alex show RUN`, each a
fresh process, beside a bare `python -c 'import sqlite3'` (the interpreter's own start: the limit) measured
in the same rounds, order rotated; `python -c 'import sqlalchemy'` beside them, the floor of any command that
reads the database. The children compile their bytecode once into a cache of their own, as an installed
package has it (PYTHONDONTWRITEBYTECODE would make every start compile the project's sources)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .common import Result, command_medians_ms

#: The store `alex runs` lists: 10 runs of a few parameters and 100 points each.
_SMALL_STORE = (
    "import sys, alexandria\n"
    "for i in range(10):\n"
    "    with alexandria.start_run(experiment='startup', store=sys.argv[1], capture=False,"
    " system_metrics=False) as run:\n"
    "        run.log_params({'lr': 0.1 / (i + 1), 'seed': i})\n"
    "        for step in range(100): run.log_metric('loss', 1 / (step + 1), step)\n"
    "print(run.id)\n"
)


def child_env(tmp: Path) -> dict[str, str]:
    """The environment the measured processes start in: bytecode cached under `tmp`, not beside the sources."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bench_startup(quick: bool, tmp: Path) -> list[Result]:
    rounds = 7 if quick else 21
    env = child_env(tmp)
    store = tmp / "small"
    made = subprocess.run(
        [sys.executable, "-c", _SMALL_STORE, str(store)], env=env, check=True, capture_output=True, text=True
    )
    run_id = made.stdout.split()[-1]
    alex = [sys.executable, "-m", "alexandria.cli", "--store", str(store)]
    commands = {
        "bare": [sys.executable, "-c", "import sqlite3"],
        "sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],  # what `runs` and `show` cannot go below
        "help": [*alex, "--help"],
        "runs": [*alex, "runs"],
        "show": [*alex, "show", run_id[:8]],
    }
    ms = command_medians_ms(commands, env, rounds)
    bare = ms["bare"]
    targets = {"help": 3, "runs": 8, "show": 8}
    labels = {"help": "alex --help", "runs": "alex runs (10 runs)", "show": "alex show RUN"}
    return [
        Result(
            f"start-up: {labels[name]}",
            1000 / ms[name],
            "starts/s",
            limit=1000 / bare,
            limit_name="python -c 'import sqlite3'",
            target=f"within {targets[name]}x a bare start (ratio >= {100 / targets[name]:.0f}%)",
            extra={
                "ms": ms[name],
                "bare_start_ms": bare,
                "times_bare_start": ms[name] / bare,
                **({} if name == "help" else {"import_sqlalchemy_alone_times_bare_start": ms["sqlalchemy"] / bare}),
            },
        )
        for name in ("help", "runs", "show")
    ]
