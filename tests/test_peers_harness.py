"""The peer benchmark's harness, run for real with Alexandria alone (the peers' venvs are not needed): its
rounds, its JSON and the multi-process table, where every point of 4 writers into one run must land."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, child_env


def test_run_py_quick_measures_alexandria_and_counts_every_point_of_four_writers() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "peers" / "run.py"), "--quick", "--peers", "--table"]
        + ["--alexandria-python", sys.executable],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    document, _, tables = proc.stdout.partition("\n\n")
    report = json.loads(document)
    assert report["machine"]["cpus"] >= 1
    assert report["versions"] == {"alexandria": report["versions"]["alexandria"]}
    by_mode = {m["mode"]: m for m in report["measurements"]}
    assert set(by_mode) == {"log", "read", "multi"}
    assert all(m["peer"] == "alexandria" and "error" not in m for m in report["measurements"])
    assert by_mode["log"]["points"] == by_mode["read"]["points"] == 2000
    assert by_mode["log"]["rate"] > 0 and by_mode["read"]["rate"] > 0
    assert by_mode["log"]["module"] == str(REPO / "alexandria")  # the project's alexandria, not an installed one
    multi = by_mode["multi"]
    assert (multi["processes"], multi["logged"], multi["landed"], multi["writer_errors"]) == (4, 800, 800, [])
    assert report["summary"]["multi"][0]["lost"] == 0
    assert "| alexandria " in tables and "| 800/800 | 0 of 1 | nothing |" in tables
