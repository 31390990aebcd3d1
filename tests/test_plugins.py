"""The extension point: a plug-in's hooks reach the command line, the schema, the store and the dashboard;
the quantum plug-in comes from the installed entry point; training code never loads any of it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

import alexandria
from alexandria import plugins
from alexandria.backends import backend_of
from alexandria.cli_base import ErrorsAsMessages
from alexandria.errors import InvalidInputError
from alexandria.hookspecs import hookimpl
from alexandria.store import Store
from tests.conftest import alex, child_env, run_python


class Throwaway:
    """A plug-in implementing every hook, registered only for one test."""

    @hookimpl
    def register_commands(self, cli: Any) -> None:
        @cli.command("hello")
        @click.argument("name")
        def hello(name: str) -> None:
            """Greet NAME."""
            if not name.isalpha():
                raise InvalidInputError(f"{name!r} is not a name")
            click.echo(f"hello {name}")

    @hookimpl
    def sql_views(self) -> dict[str, str]:
        return {"points_per_run": "SELECT run_id, COUNT(*) AS points FROM metric GROUP BY run_id"}

    @hookimpl
    def database_names(self) -> list[str]:
        return ["throwaway.db"]

    @hookimpl
    def embedded_artifacts(self) -> dict[str, str]:
        return {"notes_page": "Field notes"}


@pytest.fixture
def throwaway() -> Iterator[Throwaway]:
    plugin = Throwaway()
    plugins.manager().register(plugin, name="throwaway")
    try:
        yield plugin
    finally:
        plugins.manager().unregister(plugin)


def test_a_plugin_adds_a_command_and_its_errors_print_as_errors(throwaway: Throwaway) -> None:
    @click.group(cls=ErrorsAsMessages)
    def group() -> None:
        """A freshly built command line."""

    plugins.register_commands(group)
    assert "hello" in group.commands
    result = CliRunner().invoke(group, ["hello", "ada"])
    assert (result.exit_code, result.stdout) == (0, "hello ada\n")
    result = CliRunner().invoke(group, ["hello", "4da"])
    assert (result.exit_code, result.stderr) == (1, "Error: '4da' is not a name\n")


def test_a_plugins_view_is_created_with_the_schema(throwaway: Throwaway, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'projection.db'}")
    try:
        backend_of(engine).create_schema(engine)
        with engine.connect() as conn:
            views = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'view'").scalars().all()
            assert "points_per_run" in views
            assert conn.exec_driver_sql("SELECT * FROM points_per_run").all() == []
    finally:
        engine.dispose()


def test_a_store_projects_into_a_database_a_plugin_names(throwaway: Throwaway, tmp_path: Path) -> None:
    from alexandria.db import open_database

    root = tmp_path / "store"
    root.mkdir()
    (root / "throwaway.db").touch()  # a store of the plug-in's: its database file is there, no alexandria.db
    store = Store.open(root)
    assert store.db_path == root / "throwaway.db"
    with alexandria.start_run(experiment="e", store=store) as run:
        run.log_metric("loss", 0.5, step=0)
        run.log_metric("loss", 0.25, step=1)
    engine = open_database(store)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT run_id, points FROM points_per_run").all() == [(run.id, 2)]
    finally:
        engine.dispose()
    assert not (root / "alexandria.db").exists()


def test_a_plugins_artifact_is_a_dashboard_panel(throwaway: Throwaway, tmp_path: Path) -> None:
    from alexandria.db import open_database
    from alexandria.ui import BackgroundServer

    page = tmp_path / "notes.html"
    page.write_text("<p>notes</p>")
    store = Store.open(tmp_path / "store")
    with alexandria.start_run(experiment="e", store=store) as run:
        run.log_artifact(page, name="notes_page")
        run.log_artifact(page, name="other_page")
    open_database(store).dispose()  # folded before the dashboard reads (it does not fold itself here)
    with BackgroundServer(store, fold=False) as server, urllib.request.urlopen(f"{server.url}run/{run.id}") as response:
        html = response.read().decode()
    assert "<h2>Field notes</h2>" in html
    assert f'src="/artifact/{run.id}/notes_page"' in html and f'src="/artifact/{run.id}/other_page"' not in html


def test_the_quantum_plugin_comes_from_the_installed_entry_point() -> None:
    [entry] = [e for e in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP) if e.name == "qex"]
    assert entry.value == "alexandria.qex.plugin"
    from alexandria.qex import plugin as qex_plugin

    assert plugins.manager().get_plugin("qex") is qex_plugin
    assert {"runs", "artifacts"} <= set(plugins.sql_views())
    assert "qex.db" in plugins.database_names()
    assert plugins.embedded_artifacts()["bloch_sphere"] == "Bloch spheres"
    from alexandria.cli import cli

    assert "qex" in cli.commands


def test_training_code_never_loads_the_plugin_machinery() -> None:
    out = run_python(
        """
        import json, sys
        import alexandria
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pluggy", "click", "sqlalchemy"))))
        print(json.dumps([m for m in sys.modules if m.startswith(("alexandria.plugins", "alexandria.qex"))]))
        """
    )
    heavy, loaded = (json.loads(line) for line in out.splitlines())
    assert heavy == [] and loaded == []


def test_a_plugin_that_fails_to_load_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """An installed package announcing a plug-in that cannot be imported: every command still works, the
    other plug-ins too, and stderr names the broken one."""
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[alexandria]\nbroken = no_such_module_for_alexandria\n")
    env = child_env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    result = alex("--help", env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  qex\s", result.stdout, re.M), result.stdout
    assert "plug-in 'broken' (no_such_module_for_alexandria) could not be loaded and is left out" in result.stderr
