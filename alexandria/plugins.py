"""Plug-ins: found through the `alexandria` entry-point group, loaded once, on first use only.

Training code never loads them (nothing on the logging path asks); the CLI, the schema's creation and
the dashboard do. The hooks a plug-in may implement are in hookspecs.py.
"""

from __future__ import annotations

from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "alexandria"

_manager: pluggy.PluginManager | None = None


def manager() -> pluggy.PluginManager:
    """The process's plug-in manager, with every installed plug-in registered."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        _manager = pm
    return _manager


def register_commands(cli: Any) -> None:
    manager().hook.register_commands(cli=cli)


def sql_views() -> dict[str, str]:
    """Every plug-in's views, by name (a name two plug-ins both define is an error of theirs: last wins)."""
    views: dict[str, str] = {}
    for found in reversed(manager().hook.sql_views()):
        views.update(found)
    return views


def database_names() -> list[str]:
    return [name for found in manager().hook.database_names() for name in found]


def embedded_artifacts() -> dict[str, str]:
    panels: dict[str, str] = {}
    for found in reversed(manager().hook.embedded_artifacts()):
        panels.update(found)
    return panels
