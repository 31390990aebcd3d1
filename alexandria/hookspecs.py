"""What a plug-in may add to Alexandria: the hook specifications (pluggy), one function each.

A plug-in is a module (or object) with functions marked `@hookimpl` and named as below, announced
through the `alexandria` entry-point group of its package (`[project.entry-points.alexandria]`).
It implements only the hooks it needs; the core never names a plug-in. See docs/plugins.md.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("alexandria")
hookimpl = pluggy.HookimplMarker("alexandria")


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands or command groups to the `alex` command line (`cli` is its click group)."""


@hookspec
def sql_views() -> dict[str, str]:  # type: ignore[empty-body]
    """Views created with the schema, as {name: SELECT ...} in SQL that SQLite and PostgreSQL both run.

    They are dropped and made again whenever the schema is created or rebuilt (a plug-in installed after a
    store's database was made gets its views at the next `alex rebuild`)."""


@hookspec
def database_names() -> list[str]:  # type: ignore[empty-body]
    """Other file names a store's SQLite projection may have: a store holding one of these files and no
    `alexandria.db` projects into it (for a plug-in whose stores name their database otherwise)."""


@hookspec
def embedded_artifacts() -> dict[str, str]:  # type: ignore[empty-body]
    """Artifacts the dashboard's run page shows embedded as a panel (an HTML page in a sandboxed frame),
    as {artifact name: panel title}."""
