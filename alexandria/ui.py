"""`alex ui`: a live local dashboard over a store, in the browser.

Framework: Starlette, served by uvicorn. Starlette is small (routing, responses, static files, a
test client; nothing else), typed, and well kept; it runs plain `def` endpoints in a thread pool,
which is what blocking SQLite reads need, while uvicorn gives a real HTTP/1.1 server that shuts
down gracefully on Ctrl-C and SIGTERM. Flask's development server would do for one user too, but
it is documented as not meant for anything else and stops by killing the process; a dashboard
left open in a tab polls every second, which an async server handles without a thread per tab.

What it serves (every page is rendered on the server with Jinja2, autoescaping on, so whatever a
user logged is shown as text; `static/ui.js` then polls the JSON endpoints and updates in place):

* ``/``: the runs, children under their parent, filtered and sorted by the query string
  (``experiment``, ``status``, ``tag=k=v``, ``param=k=v``, ``q`` (text), ``sort``, ``desc``);
* ``/run/<id>``: one run, with a plotly chart per metric (min/max envelope and last value per
  bucket, from `query.downsample`), refreshed every ``interval`` while the run is running;
  artifacts a plug-in names (`embedded_artifacts`, qex's Bloch spheres) are embedded;
* ``/compare?run=<id>&run=<id>``: parameters side by side, one chart per metric with the runs
  overlaid;
* ``/api/runs``, ``/api/run/<id>/status``, ``/api/run/<id>/metric/<key>``: what the pages poll;
* ``/artifact/<run_id>/<name>``: an artifact's file, found in the ``artifact`` table and served
  only if its recorded path, resolved (symlinks included), lies inside the store; a directory
  artifact is not served (404): zipping a large folder on request is not a dashboard's job;
* ``/static/plotly.min.js``: plotly.js from the installed plotly package (no CDN, works offline).

Requests read through `reader_engine` (SQLite refuses writes on it) and every route is GET (HEAD)
only. The server folds new log lines itself in a background thread (`watch.watch`: at once on a
file notification, and every ``interval`` seconds), unless ``fold=False``.
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import os
import re
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import numpy as np
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import reader_engine
from .errors import AlexandriaError, RunNotFoundError, StoreError
from .plugins import embedded_artifacts
from .query import downsample, duration_text, list_runs, resolve_run_id, run_details, run_tree, when_text
from .report import PLOTLYJS_NAME
from .schema import artifact, metric, run
from .store import Store

log = logging.getLogger("alexandria.ui")

HERE = Path(__file__).resolve().parent
STATUSES = ("running", "finished", "failed", "killed", "crashed")
MAX_BUCKETS = 20_000
SORT_KEYS = ("id", "experiment", "status", "start", "duration", "parent", "params", "metrics")
PAGE_LIMIT = 1000

# Pages load scripts from this server only (plotly needs inline styles); an artifact's own page runs
# sandboxed (an opaque origin: it cannot read the dashboard), see `_artifact`.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
ARTIFACT_CSP = "sandbox allow-scripts"
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+$")


# -- formatting helpers, also used by the templates ------------------------------------------------


def duration_seconds(r: Mapping[str, Any], now: float | None = None) -> float | None:
    start = r.get("timestamp_start")
    if not start:
        return None
    end = r.get("timestamp_end") or (now or time.time())
    return float(end - start)


def fmt_duration(r: Mapping[str, Any]) -> str:
    return duration_text(r.get("timestamp_start"), r.get("timestamp_end"))


def fmt_num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def url_part(text: str) -> str:
    """One path segment of a URL: every reserved character (a slash too) percent-encoded."""
    return quote(str(text), safe="")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; a chart draws None (null) as a gap."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _floats(a: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in a.tolist()]


def json_response(data: Any, status_code: int = 200) -> Response:
    body = json.dumps(_finite(data), allow_nan=False, separators=(",", ":"), default=str)
    return Response(body, status_code=status_code, media_type="application/json")


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped: run names, keys, values, errors are text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt_time=when_text,
        fmt_duration=fmt_duration,
        fmt_num=fmt_num,
        fmt_size=fmt_size,
        url_part=url_part,
        statuses=STATUSES,
    )
    return env


# -- the runs table: filters and sorting from the query string --------------------------------------


@dataclass
class RunFilter:
    experiment: str | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""
    sort: str = "start"
    desc: bool = True
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, qp: QueryParams) -> RunFilter:
        f = cls(experiment=qp.get("experiment") or None, status=qp.get("status") or None, text=qp.get("q", ""))
        if f.status is not None and f.status not in STATUSES:
            f.errors.append(f"unknown status {f.status!r}: one of {', '.join(STATUSES)}")
            f.status = None
        for name, target in (("tag", f.tags), ("param", f.params)):
            for item in qp.getlist(name):
                if not item.strip():
                    continue
                key, sep, value = item.partition("=")
                if not sep or not key.strip():
                    f.errors.append(f"{name} filter {item!r} is not key=value; ignored")
                    continue
                target[key.strip()] = value.strip()
        sort = qp.get("sort")
        if sort is not None:
            if sort in SORT_KEYS:
                f.sort = sort
                f.desc = qp.get("desc", "0") not in ("", "0", "false")
            else:
                f.errors.append(f"cannot sort by {sort!r}: one of {', '.join(SORT_KEYS)}")
        return f

    def items(self, **override: Any) -> list[tuple[str, str]]:
        """The query string that gives this filter (with `override`s)."""
        values: dict[str, Any] = {
            "experiment": self.experiment,
            "status": self.status,
            "q": self.text,
            "sort": self.sort,
            "desc": self.desc,
        }
        values.update(override)
        out: list[tuple[str, str]] = []
        for key in ("experiment", "status", "q"):
            if values[key]:
                out.append((key, str(values[key])))
        out += [("tag", f"{k}={v}") for k, v in self.tags.items()]
        out += [("param", f"{k}={v}") for k, v in self.params.items()]
        out += [("sort", values["sort"]), ("desc", "1" if values["desc"] else "0")]
        return out

    def sort_url(self, column: str) -> str:
        # Clicking the sorted column flips its order; another column starts ascending (start: newest first).
        desc = (not self.desc) if column == self.sort else column == "start"
        return "/?" + urlencode(self.items(sort=column, desc=desc))


def _sort_value(r: Mapping[str, Any], key: str) -> Any:
    if key == "id":
        return r["id"]
    if key == "experiment":
        return r["experiment_name"]
    if key == "status":
        return r["status"]
    if key == "start":
        return r["timestamp_start"]
    if key == "duration":
        return duration_seconds(r)
    if key == "parent":
        return r["parent_id"]
    if key == "params":
        return r["num_params"]
    return r["num_metric_keys"]


def _matches(r: Mapping[str, Any], text: str) -> bool:
    hay = [r["id"], r["experiment_name"], r["status"], r["error"], r["parent_id"]]
    hay += [f"{k}={v}" for k, v in (r["tags"] or {}).items()]
    return any(text in str(h).lower() for h in hay if h)


def select_runs(engine: Engine, f: RunFilter) -> list[tuple[int, dict[str, Any]]]:
    """The runs the filter keeps, sorted, each child right under its parent: (depth, row)."""
    rows = list_runs(engine, experiment=f.experiment, status=f.status, tags=f.tags, params=f.params)
    if f.text:
        needle = f.text.lower()
        rows = [r for r in rows if _matches(r, needle)]
    known = [r for r in rows if _sort_value(r, f.sort) is not None]
    unknown = [r for r in rows if _sort_value(r, f.sort) is None]  # missing values last, either way
    known.sort(key=lambda r: (_sort_value(r, f.sort), r["id"]), reverse=f.desc)
    return run_tree(known + unknown)


def run_summary(r: Mapping[str, Any]) -> dict[str, Any]:
    """A run row as the pages' JSON has it."""
    return {
        "id": r["id"],
        "experiment": r["experiment_name"],
        "status": r["status"],
        "attempt": r["attempt"] or 0,
        "error": r["error"],
        "parent_id": r["parent_id"],
        "tags": r["tags"] or {},
        "timestamp_start": r["timestamp_start"],
        "timestamp_end": r["timestamp_end"],
        "start": when_text(r["timestamp_start"]),
        "end": when_text(r["timestamp_end"]),
        "duration": fmt_duration(r),
    }


def metric_stats(engine: Engine, run_id: str) -> dict[str, dict[str, Any]]:
    """Per metric key of a run: its point count, and the last value and step (the last folded). Read from
    the (run, key, step) index alone, so a poll costs a scan of the index, not of the table; the pages
    take min and max from the chart's buckets instead."""
    per_key = (
        select(metric.c.key, func.count().label("n"), func.max(metric.c.id).label("last"))
        .where(metric.c.run_id == run_id)
        .group_by(metric.c.key)
        .subquery()
    )
    q = (
        select(per_key.c.key, per_key.c.n, metric.c.value, metric.c.step)
        .join_from(per_key, metric, metric.c.id == per_key.c.last)
        .order_by(per_key.c.key)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return {key: {"count": n, "last_value": value, "last_step": step} for key, n, value, step in rows}


def _has_points(engine: Engine, run_id: str, key: str) -> bool:
    q = select(metric.c.id).where(metric.c.run_id == run_id, metric.c.key == key).limit(1)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None


# -- artifacts: only files inside the store -------------------------------------------------------------


def store_file(root: Path, recorded: str | None) -> Path | None:
    """The real path of an artifact's recorded path if it is inside the store `root`, else None.

    The recorded path must be relative, without `..`; resolved (every symlink followed) it must still
    lie inside the store's own resolved root, and exist."""
    if not recorded or "\0" in recorded or "\\" in recorded:
        return None
    rel = PurePosixPath(recorded)
    if rel.is_absolute() or PureWindowsPath(recorded).drive or ".." in rel.parts:
        return None
    real_root = root.resolve()
    try:
        real = (real_root / rel).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if real == real_root or not real.is_relative_to(real_root):
        return None
    return real


def _content_type(real: Path, kind: str | None) -> str:
    guessed, _ = mimetypes.guess_type(real.name)
    if guessed:
        return guessed
    if kind and _MIME.match(kind):
        return kind
    return "application/octet-stream"


def _chunks(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 16):
            yield chunk


# -- the app --------------------------------------------------------------------------------------------


class _SecurityHeaders:
    """Headers every response gets unless it set its own: no sniffing, no caching, a strict CSP for pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                ):
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _LocalHostOnly:
    """Refuses requests whose Host header names another machine (400): a web page elsewhere cannot read
    the dashboard through DNS rebinding. `allowed` None: any host (the server was bound to every address)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":")[0]
            if name.lower() not in self.allowed:
                await PlainTextResponse("unexpected Host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The Host header values a server bound to `host` answers: this machine's loopback names and the host
    itself; None (any) when bound to every address, as the machine's other names are then meant too."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return frozenset({"127.0.0.1", "localhost", "[::1]", host.lower(), f"[{host.lower()}]"})


class _Folder:
    """Folds new log lines into the database in a background thread until stopped (see `watch.watch`)."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alexandria-ui-fold", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from .db import open_database
        from .watch import watch

        while not self.stop_event.is_set():
            try:
                engine = open_database(self.store, catch_up=False)
                try:
                    watch(self.store, engine, interval=self.interval, stop=self.stop_event)
                finally:
                    engine.dispose()
            except Exception:  # a locked or full disk: say so, and try again
                log.exception("folding new log lines failed; retrying in %.1fs", self.interval)
                self.stop_event.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


class Dashboard:
    """The dashboard's state and endpoints; `app` is the ASGI application."""

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None,
        *,
        fold: bool = True,
        interval: float = 1.0,
        host: str = "127.0.0.1",
    ):
        self.interval = max(0.1, float(interval))
        self.store = Store.open(store, create=fold)
        if fold:
            from .db import open_database

            # the schema must exist before the first read; folding itself happens in the background
            open_database(self.store, catch_up=False).dispose()
        # the projection's database: the store's SQLite file, or a database server where the store names one
        self.engine = reader_engine(getattr(self.store, "database", self.store.db_path))
        self.folder = _Folder(self.store, self.interval) if fold else None
        self.templates = _templates()
        self._plotlyjs: bytes | None = None
        routes = [
            Route("/", self.runs_page),
            Route("/run/{run_id}", self.run_page),
            Route("/compare", self.compare_page),
            Route("/api/runs", self.api_runs),
            Route("/api/run/{run_id}/status", self.api_status),
            Route("/api/run/{run_id}/metric/{key:path}", self.api_metric),
            Route("/artifact/{run_id}/{name:path}", self.artifact_file),
            Route(f"/static/{PLOTLYJS_NAME}", self.plotlyjs),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={RunNotFoundError: self._not_found, AlexandriaError: self._bad_request},
        )
        self.app.add_middleware(_LocalHostOnly, allowed=allowed_hosts(host))
        self.app.add_middleware(_SecurityHeaders)  # the outermost: every response gets the headers

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if self.folder is not None:
            self.folder.start()
        try:
            yield
        finally:
            if self.folder is not None:
                self.folder.stop()
            self.engine.dispose()

    # -- helpers

    def _render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("store_root", str(self.store.root))
        context.setdefault("page_data", {})
        page = self.templates.get_template(template).render(**context)
        return HTMLResponse(page, status_code=status_code)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return json_response({"error": str(exc)}, 404)
        return self._render("error.html", 404, title="Not found", message=str(exc))

    async def _bad_request(self, request: Request, exc: Exception) -> Response:
        code = 503 if isinstance(exc, StoreError) else 400
        if request.url.path.startswith("/api/"):
            return json_response({"error": str(exc)}, code)
        return self._render("error.html", code, title="Error", message=str(exc))

    def _run_id(self, text: str) -> str:
        return resolve_run_id(self.engine, text)

    # -- pages

    def runs_page(self, request: Request) -> Response:
        f = RunFilter.from_query(request.query_params)
        tree = select_runs(self.engine, f)
        with self.engine.connect() as conn:
            names = conn.execute(select(run.c.experiment_name).distinct().order_by(run.c.experiment_name))
            experiments = [e for e in names.scalars() if e is not None]
        shown = tree[:PAGE_LIMIT]
        columns = [
            ("id", "id"),
            ("experiment", "experiment"),
            ("status", "status"),
            ("start", "start"),
            ("duration", "duration"),
            ("params", "params"),
            ("metrics", "metrics"),
        ]
        headers = [
            {"key": k, "label": label, "url": f.sort_url(k), "arrow": ("▼" if f.desc else "▲") if f.sort == k else ""}
            for k, label in columns
        ]
        api = "/api/runs?" + urlencode(f.items())
        return self._render(
            "runs.html",
            title="Runs",
            filt=f,
            rows=shown,
            total=len(tree),
            limit=PAGE_LIMIT,
            experiments=experiments,
            headers=headers,
            page_data={
                "page": "runs",
                "api": api,
                "ids": [r["id"] for _, r in shown],
                "interval": max(self.interval, 2.0),
            },
        )

    def run_page(self, request: Request) -> Response:
        asked = request.path_params["run_id"]
        run_id = self._run_id(asked)
        if run_id != asked:
            return RedirectResponse(f"/run/{run_id}", status_code=302)
        d = run_details(self.engine, run_id)
        r = d["run"]
        children = list_runs(self.engine, parent_id=run_id)
        children.sort(key=lambda c: (c["timestamp_start"] or 0.0, c["id"]))
        artifacts = []
        embedded = []
        panels = embedded_artifacts()
        for a in d["artifacts"]:
            real = store_file(self.store.root, a["path"])
            kind = "missing" if real is None else "directory" if real.is_dir() else "file"
            url = f"/artifact/{run_id}/{url_part(a['name'])}"
            artifacts.append({**a, "kind": kind, "url": url})
            if kind == "file" and a["name"] in panels:
                embedded.append({"title": panels[a["name"]], "name": a["name"], "url": url})
        env = d["environment"]
        metrics = [
            {
                "key": m.key,
                "count": m.count,
                "last_value": m.last_value,
                "last_step": m.last_step,
                "min": m.min,
                "max": m.max,
                "dom": f"m{i}",
            }
            for i, m in enumerate(d["metrics"])
        ]
        return self._render(
            "run.html",
            title=f"Run {run_id[:8]}",
            r=r,
            summary=run_summary(r),
            d=d,
            children=children,
            artifacts=artifacts,
            embedded=embedded,
            metrics=metrics,
            packages=len(env["pip_freeze"] or {}) if env else 0,
            page_data={
                "page": "run",
                "run_id": run_id,
                "status": r["status"],
                "interval": self.interval,
                "metrics": [{"key": m["key"], "dom": m["dom"], "count": m["count"]} for m in metrics],
            },
        )

    def compare_page(self, request: Request) -> Response:
        asked: list[str] = []
        for value in request.query_params.getlist("run"):
            asked += [v.strip() for v in value.split(",") if v.strip()]
        errors: list[str] = []
        ids: list[str] = []
        for a in asked:
            try:
                rid = self._run_id(a)
            except RunNotFoundError as exc:
                errors.append(str(exc))
                continue
            if rid not in ids:
                ids.append(rid)
        details = [run_details(self.engine, rid) for rid in ids]
        keys = sorted({k for d in details for k in d["params"]})
        params = []
        for k in keys:
            values = [d["params"].get(k) for d in details]
            params.append({"key": k, "cells": values, "differs": len(set(values)) > 1})
        tag_keys = sorted({k for d in details for k in (d["run"]["tags"] or {})})
        tags = []
        for k in tag_keys:
            values = [(d["run"]["tags"] or {}).get(k) for d in details]
            tags.append({"key": k, "cells": values, "differs": len(set(values)) > 1})
        metric_keys = sorted({m.key for d in details for m in d["metrics"]})
        runs = [run_summary(d["run"]) for d in details]
        return self._render(
            "compare.html",
            title="Compare runs",
            runs=runs,
            params=params,
            tags=tags,
            errors=errors,
            metric_keys=[{"key": k, "dom": f"c{i}"} for i, k in enumerate(metric_keys)],
            page_data={
                "page": "compare",
                "interval": max(self.interval, 2.0),
                "runs": [
                    {
                        "id": r["id"],
                        "label": f"{r['id'][:8]} {r['experiment'] or ''}".strip(),
                        "status": r["status"],
                        "keys": [m.key for m in d["metrics"]],
                    }
                    for r, d in zip(runs, details, strict=True)
                ],
                "metrics": [{"key": k, "dom": f"c{i}"} for i, k in enumerate(metric_keys)],
            },
        )

    # -- JSON

    def api_runs(self, request: Request) -> Response:
        f = RunFilter.from_query(request.query_params)
        tree = select_runs(self.engine, f)
        return json_response(
            {
                "count": len(tree),
                "errors": f.errors,
                "runs": [{**run_summary(r), "depth": depth} for depth, r in tree[:PAGE_LIMIT]],
            }
        )

    def api_status(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        with self.engine.connect() as conn:
            row = conn.execute(select(run).where(run.c.id == run_id)).one()
        with_metrics = request.query_params.get("metrics", "1") not in ("0", "false")
        stats = metric_stats(self.engine, run_id) if with_metrics else {}
        return json_response({**run_summary(dict(row._mapping)), "metrics": stats})

    def api_metric(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        key = request.path_params["key"]
        qp = request.query_params
        try:
            buckets = int(qp.get("buckets", "1000"))
            start = float(qp["start"]) if qp.get("start") else None
            end = float(qp["end"]) if qp.get("end") else None
            after = float(qp["after"]) if qp.get("after") else None
        except ValueError as exc:
            return json_response({"error": f"bad query: {exc}"}, 400)
        if not 1 <= buckets <= MAX_BUCKETS:
            return json_response({"error": f"buckets must be between 1 and {MAX_BUCKETS}"}, 400)
        x = qp.get("x", "auto")
        if x not in ("auto", "step", "time"):
            return json_response({"error": "x must be step, time or auto"}, 400)
        if after is not None:  # strictly after: the next float up (a step compares numerically)
            above = math.nextafter(after, math.inf)
            start = above if start is None else max(start, above)
        if not _has_points(self.engine, run_id, key):
            return json_response({"error": f"run {run_id} has no metric {key!r}"}, 404)
        kind = "time" if x == "time" else "step"
        ds = downsample(self.engine, run_id, key, buckets, x=kind, start=start, end=end)
        if ds.total == 0 and x == "auto" and start is None and end is None:  # no point has a step: use time
            kind = "time"
            ds = downsample(self.engine, run_id, key, buckets, x=kind)
        return json_response(
            {
                "run_id": run_id,
                "key": key,
                "x_kind": kind,
                "x": _floats(ds.x),
                "min": _floats(ds.min),
                "max": _floats(ds.max),
                "last": _floats(ds.last),
                "count": ds.count.tolist(),
                "total": ds.total,
                "exact": ds.exact,
            }
        )

    # -- files

    def artifact_file(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(artifact.c.path, artifact.c.type).where(artifact.c.run_id == run_id, artifact.c.name == name)
            ).first()
        if row is None:
            if name == PLOTLYJS_NAME:  # plug-ins' pages load the library beside them: the bundled copy, no store file
                return self.plotlyjs(request)
            return PlainTextResponse("Not Found", status_code=404)
        real = store_file(self.store.root, row.path)
        if real is None:
            return PlainTextResponse("Not Found", status_code=404)
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # a directory on some systems, or swapped for a symlink since it was resolved
            return PlainTextResponse("Not Found", status_code=404)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a directory artifact is not served
            os.close(fd)
            return PlainTextResponse("Not Found", status_code=404)
        headers = {"content-length": str(info.st_size), "content-security-policy": ARTIFACT_CSP}
        if request.query_params.get("download"):
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{url_part(name)}"
        if request.method == "HEAD":
            os.close(fd)
            return Response(b"", headers=headers, media_type=_content_type(real, row.type))
        return StreamingResponse(_chunks(fd), headers=headers, media_type=_content_type(real, row.type))

    def plotlyjs(self, _request: Request) -> Response:
        if self._plotlyjs is None:
            from plotly.offline import get_plotlyjs

            self._plotlyjs = get_plotlyjs().encode("utf-8")
        return Response(
            self._plotlyjs,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )


def create_app(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    fold: bool = True,
    interval: float = 1.0,
    host: str = "127.0.0.1",
) -> Starlette:
    """The dashboard as an ASGI app (folding starts with the app's lifespan); `host` is the address it is
    served on, which decides the Host headers it answers (see `allowed_hosts`)."""
    return Dashboard(store, fold=fold, interval=interval, host=host).app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), IPv4 or IPv6 as the host is."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StoreError(f"cannot resolve host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StoreError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app: ASGIApp) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def serve(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    interval: float = 1.0,
    fold: bool = True,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on either)."""
    app = create_app(store, fold=fold, interval=interval, host=host)
    sock = bind(host, port)
    try:
        server = _server(app)
        if announce is not None:
            announce(url_of(sock))
        server.run(sockets=[sock])
        if not server.started:
            raise StoreError("the dashboard did not start (see the messages above)")
    finally:
        sock.close()


class BackgroundServer:
    """The dashboard served from a thread of this process (tests, benchmarks): `url`, then `stop()`."""

    def __init__(
        self, store: str | os.PathLike[str] | Store | None = None, *, fold: bool = True, interval: float = 1.0
    ):
        self.sock = bind("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.url = url_of(self.sock)
        self.server = _server(create_app(store, fold=fold, interval=interval))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StoreError("the dashboard did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
