"""Plug-ins: found through the `alexandria` entry-point group, loaded once, on first use only.

Training code never loads them (nothing on the logging path asks); the CLI, the schema's creation and
the dashboard do. The hooks a plug-in may implement are in hookspecs.py. A plug-in that fails to load
is left out with a warning naming it: one broken package never takes every `alex` command down with it.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
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
        for name, value in entry_points():
            if pm.get_plugin(name) is not None:
                continue  # the same plug-in seen twice on the path (an editable install and a copy)
            try:
                pm.register(_load(value), name=name)
            except Exception as exc:  # whatever a broken plug-in raises: it is skipped, the rest go on
                log.warning("plug-in %r (%s) could not be loaded and is left out: %s", name, value, exc)
        _manager = pm
    return _manager


def entry_points(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, str]]:
    """(name, value) of every entry point of `group` (the plug-ins' by default), as `importlib.metadata.entry_points`
    finds them (the first distribution of a name on `sys.path` wins), read from the `*.dist-info` and
    `*.egg-info` folders' `entry_points.txt`: importing importlib.metadata (email, zipfile, ...) would cost
    every `alex` command, `--help` included, more than the rest of its start. A path entry that is no folder
    (a zip archive) is left to importlib.metadata."""
    if any(entry and not os.path.isdir(entry) and os.path.exists(entry) for entry in sys.path):
        from importlib import metadata

        return [(e.name, e.value) for e in metadata.entry_points(group=group)]
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue  # a folder that is gone, or a path hook's name
        for folder in names:
            stem, ext = os.path.splitext(folder)
            if ext not in (".dist-info", ".egg-info"):
                continue
            dist = re.sub(r"[-_.]+", "_", stem.partition("-")[0]).lower()  # importlib.metadata's normalized name
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry or ".", folder, "entry_points.txt"), encoding="utf-8") as f:
                    found += _group(f.read(), group)
            except OSError:
                continue  # a distribution without entry points (or an egg-info file)
    return found


def _group(text: str, group: str) -> list[tuple[str, str]]:
    """The `name = value` lines of one `[group]` section of an entry_points.txt (an INI file)."""
    found, section = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line:
            name, _, value = line.partition("=")
            found.append((name.strip(), value.strip()))
    return found


def _load(value: str) -> Any:
    """The object an entry point's `module:attribute.path [extras]` names, its module imported."""
    module, _, attribute = value.partition("[")[0].strip().partition(":")
    target: Any = importlib.import_module(module.strip())
    for part in filter(None, attribute.strip().split(".")):
        target = getattr(target, part)
    return target


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
