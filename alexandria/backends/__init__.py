"""The database backends, chosen by URL scheme: the one place that knows which databases there are.

A target is the path of an SQLite file or a database URL (`postgresql://...`, `sqlite:///path`). Each
backend is one module implementing `base.Backend`; adding a database means adding its module and one
line to `_SCHEMES`. A backend's module (and its driver) is imported only when a target of it is opened.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url

from ..errors import StoreError
from .base import Backend

#: A database: the path of an SQLite file, or a URL (postgresql://..., sqlite:///path).
Target = Path | str

#: URL scheme (SQLAlchemy's backend name) -> the backend's module and class.
_SCHEMES = {
    "sqlite": ("sqlite", "SQLiteBackend"),
    "postgresql": ("postgres", "PostgresBackend"),
    "postgres": ("postgres", "PostgresBackend"),
}


def _is_url(target: Target) -> bool:
    return isinstance(target, str) and "://" in target


def _backend_class(scheme: str) -> type[Backend] | None:
    found = _SCHEMES.get(scheme)
    if found is None:
        return None
    module, name = found
    cls: type[Backend] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return cls


def backend_for(target: Target) -> Backend:
    """The backend of a target, by its URL scheme (a plain path is an SQLite file)."""
    url = make_url(str(target)) if _is_url(target) else URL.create("sqlite", database=str(target))
    cls = _backend_class(url.get_backend_name())
    if cls is None:
        raise StoreError(f"unsupported database URL {safe_target(target)}: use postgresql://... or an SQLite file")
    return cls(url)


def backend_of(bind: Engine | Connection) -> Backend:
    """The backend an engine (or a connection of it) talks to."""
    cls = _backend_class(bind.dialect.name)
    if cls is None:
        raise StoreError(f"no Alexandria backend for the {bind.dialect.name} dialect")
    return cls(bind.engine.url)


def safe_target(target: Target) -> str:
    """A target as it may be printed: a URL without its password."""
    if _is_url(target):
        return make_url(str(target)).render_as_string(hide_password=True)
    return str(target)
