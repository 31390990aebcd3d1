"""`alex` answers at once: `alex --help` loads neither the database layer nor the logging path, `alex runs`
loads SQLAlchemy but no numpy, plotly or pandas. Checked by what a child process imports (its
`python -X importtime` report), never by timing it: a failure names the module and who imported it. And a
first read of a large backlog says how far its fold has come, on a terminal only."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import alexandria
from alexandria import plugins
from alexandria.cli import cli
from tests.conftest import alex, child_env, run_python

#: What no `alex` command loads before it has work that needs it.
NEVER = ("numpy", "plotly", "pandas", "pyarrow", "PIL", "matplotlib", "jinja2", "uvicorn", "starlette")
#: Besides those, what `alex --help` must not load: the database layer, the console's renderer, the
#: logging path and its encoder, the whole of importlib.metadata (the plug-ins are found without it).
NOT_FOR_HELP = (
    *NEVER,
    "sqlalchemy",
    "rich",
    "msgspec",
    "importlib.metadata",
    "alexandria.tracking",
    "alexandria.db",
    "alexandria.query",
)

_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$")


def imports_of(*args: str) -> dict[str, list[str]]:
    """Every module `python -X importtime -m alexandria.cli ARGS` imported, with the chain of modules that
    imported it (innermost first). importtime prints a module after those it imported, indented one level
    deeper, so read backwards: a module's importer is the last one seen one level up."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "alexandria.cli", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    importer: dict[str, str | None] = {}
    last_at: dict[int, str] = {}
    for line in reversed(done.stderr.splitlines()):
        m = _LINE.match(line)
        if m is None:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        last_at[depth] = name
        importer.setdefault(name, last_at.get(depth - 1) if depth else None)
    chains: dict[str, list[str]] = {}
    for name in importer:
        chain, up = [], importer[name]
        while up is not None and len(chain) < 50:
            chain.append(up)
            up = importer.get(up)
        chains[name] = chain
    return chains


def loaded(chains: dict[str, list[str]], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden modules (or their submodules) among those imported, each with who imported it."""
    return [
        f"{name} (imported by {' <- '.join(chain) or 'the command itself'})"
        for name, chain in chains.items()
        if any(name == f or name.startswith(f + ".") for f in forbidden)
        and not any(c == f or c.startswith(f + ".") for c in chain for f in forbidden)  # the first of a package
    ]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("startup") / "store"
    out = run_python(
        """
        import sys, alexandria
        for i in range(3):
            with alexandria.start_run(experiment="e", store=sys.argv[1], capture=False) as run:
                run.log_param("lr", i)
                for step in range(20): run.log_metric("loss", 1 / (step + 1), step)
        print(run.id)
        """,
        str(root),
    )
    return root, out.split()[-1]


def test_help_loads_no_database_layer_nor_logging_path() -> None:
    chains = imports_of("--help")
    assert "click" in chains and "alexandria.cli_base" in chains  # the report was read
    assert loaded(chains, NOT_FOR_HELP) == []


def test_help_still_lists_plugin_commands_found_without_importlib_metadata() -> None:
    assert "alexandria.qex.cli" in imports_of("--help")  # the plug-in's commands were loaded
    result = alex("--help")
    assert re.search(r"^  qex\s+Quantum experiments", result.stdout, re.M), result.stdout


def test_runs_loads_sqlalchemy_but_no_numpy(small_store: tuple[Path, str]) -> None:
    root, _ = small_store
    chains = imports_of("--store", str(root), "runs")
    assert "sqlalchemy" in chains  # it did read the store
    assert loaded(chains, (*NEVER, "alexandria.tracking")) == []


def test_show_loads_no_numpy(small_store: tuple[Path, str]) -> None:
    root, run_id = small_store
    chains = imports_of("--store", str(root), "show", run_id[:8])
    assert "sqlalchemy" in chains
    assert loaded(chains, (*NEVER, "alexandria.tracking")) == []


def test_import_alexandria_loads_only_the_errors_until_a_name_is_used() -> None:
    out = run_python(
        """
        import json, sys, alexandria
        before = sorted(m for m in sys.modules if m.startswith("alexandria."))
        start = alexandria.start_run
        print(json.dumps([before, start.__module__, sorted(m for m in sys.modules if m == "alexandria.tracking")]))
        """
    )
    assert json.loads(out) == [["alexandria.errors"], "alexandria.tracking", ["alexandria.tracking"]]
    for name in alexandria.__all__:  # every public name still resolves, each from its module
        assert getattr(alexandria, name) is not None, name
    from alexandria.tracking import start_run

    assert alexandria.start_run is start_run


def test_the_plugin_scan_finds_what_importlib_metadata_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap scan of `*.dist-info/entry_points.txt` answers as the standard library does, for every entry
    point group installed (console scripts, pytest's plug-ins, ... and Alexandria's)."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not os.path.isfile(p)])  # no zip: the scan itself
    every = importlib.metadata.entry_points()
    assert plugins.ENTRY_POINT_GROUP in every.groups and len(every.groups) > 1
    for group in every.groups:
        expected = sorted((e.name, e.value) for e in every.select(group=group))
        assert sorted(plugins.entry_points(group)) == expected, group


def test_the_plugin_scan_reads_a_distribution_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "some_plugin-2.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text(
        "# a comment\n[console_scripts]\nsome = some.cli:main\n\n"
        "[alexandria]\n; another comment\nsome = some.plugin:hooks.impl\n"
    )
    shadowed = tmp_path / "later" / "some_plugin-1.0.dist-info"  # the same distribution later on the path
    shadowed.mkdir(parents=True)
    (shadowed / "entry_points.txt").write_text("[alexandria]\nold = some.old\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "later"), *sys.path])
    assert ("some", "some.plugin:hooks.impl") in plugins.entry_points()
    assert ("old", "some.old") not in plugins.entry_points()
    assert plugins._load("alexandria.qex:plugin") is plugins._load("alexandria.qex.plugin")
    assert plugins._load("alexandria.plugins:entry_points") is plugins.entry_points


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_still_has_its_help() -> None:
    commands = _commands(cli)
    assert {("runs",), ("show",), ("import", "mlflow"), ("qex", "run")} <= set(commands)
    for path in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and result.output.startswith("Usage: "), (path, result.output)


_BACKLOG = """
import sys, alexandria
for i in range(4):  # four runs of 80,000 points: a segment each, ~30 MB of log together
    with alexandria.start_run(experiment="backlog", store=sys.argv[1], capture=False) as run:
        log = run.log_metric
        for step in range(80_000): log("loss", 1 / (step + 1), step)
"""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _on_a_terminal(*args: str) -> tuple[str, str]:
    """Run `alex ARGS` with stderr on a pseudo-terminal (stdout a pipe): (stdout, what the terminal showed)."""
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=child_env(TERM="xterm"),
    )
    os.close(slave)
    shown = bytearray()
    try:
        while True:  # until the child's end closes the terminal (EIO), reading as it draws
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, "the command showed nothing for 120 s"
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(master)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, shown.decode(errors="replace")
    return out.decode(), _ANSI.sub("", shown.decode(errors="replace"))


def test_a_first_read_with_a_backlog_shows_progress_on_a_terminal_and_nothing_on_a_pipe(tmp_path: Path) -> None:
    import shutil

    from alexandria.projector import TRANSACTION_BYTES

    root = tmp_path / "store"
    run_python(_BACKLOG, str(root), timeout=300)
    segments = list((root / "runs").rglob("*.jsonl"))
    assert len(segments) == 4 and sum(p.stat().st_size for p in segments) > 1.5 * TRANSACTION_BYTES
    shutil.copytree(root, tmp_path / "copy")  # the same backlog, for the pipe

    out, shown = _on_a_terminal("--store", str(root), "runs", "--format", "csv")
    assert len(out.splitlines()) == 5  # the header and the four runs: the read itself is unchanged
    assert "folding new log lines" in shown, shown
    assert re.search(r"\d+(\.\d+)?/\d+(\.\d+)? MB", shown), shown  # done of the total, in bytes

    out, shown = _on_a_terminal("--store", str(root), "runs", "--format", "csv")
    assert len(out.splitlines()) == 5 and shown == ""  # nothing left to fold: no bar

    piped = alex("--store", str(tmp_path / "copy"), "runs", "--format", "csv")
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 5
    assert piped.stderr == ""
