"""need_framework at a test module's top: skipped with the reason where the framework is missing (the README's
test line collects tests/frameworks/ too), failed where $ALEXANDRIA_FRAMEWORK_TESTS=1 says it must be there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import FRAMEWORKS_ENV, child_env

MODULE = """
from tests.conftest import need_framework

missing = need_framework("alexandria_no_such_framework")


def test_uses_it() -> None:
    assert missing
"""


def collect(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on a module that starts as the framework tests do."""
    module = tmp_path / "test_probe.py"
    module.write_text(MODULE)
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(module), "-q", "-rs", "-p", "no:cacheprovider", f"--rootdir={tmp_path}"],
        cwd=tmp_path, env=child_env(**env), capture_output=True, text=True, timeout=120,
    )


def test_a_missing_framework_skips_its_module(tmp_path: Path) -> None:
    proc = collect(tmp_path, **{FRAMEWORKS_ENV: "0"})
    assert proc.returncode == 5, proc.stdout + proc.stderr  # pytest's "no test ran", not a collection error
    assert "1 skipped" in proc.stdout and "error" not in proc.stdout
    assert "alexandria_no_such_framework is not installed" in proc.stdout


def test_a_missing_framework_fails_in_the_frameworks_environment(tmp_path: Path) -> None:
    proc = collect(tmp_path, **{FRAMEWORKS_ENV: "1"})
    assert proc.returncode != 0
    assert "is not installed in the frameworks environment" in proc.stdout
