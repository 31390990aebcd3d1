"""Plug-ins: found through the `alexandria` entry-point group, loaded once, on first use only.

Training code never loads them (nothing on the logging path asks); the CLI, the schema's creation and
the dashboard do. The hooks a plug-in may implement are in hookspecs.py. A plug-in that fails to load
is left out with a warning naming it: one broken package never takes every `alex` command down with it.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "alexandria"

log = logging.getLogger("alexandria.plugins")

_manager: pluggy.PluginManager | None = None


def manager() -> pluggy.PluginManager:
    """The process's plug-in manager, with every installed plug-in registered."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(entry.name) is not None:
                continue  # the same plug-in seen twice on the path (an editable install and a copy)
            try:
                pm.register(entry.load(), name=entry.name)
            except Exception as exc:  # whatever a broken plug-in raises: it is skipped, the rest go on
                log.warning("plug-in %r (%s) could not be loaded and is left out: %s", entry.name, entry.value, exc)
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
