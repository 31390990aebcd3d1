"""The dashboard's routes: a Starlette app whose endpoints read through one `Reader(store, fold=False)` (a
read-only connection) and render the data of data.py; every route is GET (HEAD) only. With `fold` the app
folds new log lines itself in a background thread for as long as it runs (see `_Folder`)."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import AlexandriaError, ForeignDatabaseError, RecordedFileError, RunNotFoundError, StoreError
from ..formatting import run_label
from ..pages import PLOTLYJS_NAME
from ..query import Reader, artifact_record, experiment_note, experiments, resolve_run_id, resolve_run_ids
from ..store import Store
from ..verify import FileHashes
from . import data
from .data import PAGE_LIMIT, RunFilter, run_summary, runs_tree
from .render import PACKAGE, json_response, templates, url_part
from .security import (
    ARTIFACT_CSP,
    LocalHostOnly,
    SecurityHeaders,
    allowed_hosts,
    content_type,
    file_chunks,
)

log = logging.getLogger("alexandria.ui")

MAX_BUCKETS = 20_000
#: Set on an artifact response whose file no longer matches its log (see `verify.FileHashes`).
INTEGRITY_HEADER = "x-alexandria-integrity"


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
        from ..db import open_database
        from ..watch import watch

        while not self.stop_event.is_set():
            try:
                engine = open_database(self.store, catch_up=False)
                try:
                    watch(self.store, engine, interval=self.interval, stop=self.stop_event)
                finally:
                    engine.dispose()
            except ForeignDatabaseError as exc:  # never written over: the dashboard only reads from now on
                log.error("folding stopped: %s", exc)
                return
            except Exception:  # a locked or full disk: say so, and try again
                log.exception("folding new log lines failed; retrying in %.1fs", self.interval)
                self.stop_event.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


class Dashboard:
    """The dashboard's state and endpoints; `app` is the ASGI application, `reader` its read model."""

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
            from ..db import open_database

            # the schema must exist before the first read; folding itself happens in the background
            open_database(self.store, catch_up=False).dispose()
        # the projection's database: the store's SQLite file, or a database server where the store names one
        self.reader = Reader(self.store, fold=False)
        self.engine = self.reader.engine
        self.folder = _Folder(self.store, self.interval) if fold else None
        self.templates = templates()
        self._plotlyjs: bytes | None = None
        self.hashes = FileHashes()  # artifacts hashed once per version of their file (the run page checks them)
        routes = [
            Route("/", self.runs_page),
            Route("/run/{run_id}", self.run_page),
            Route("/compare", self.compare_page),
            Route("/api/runs", self.api_runs),
            Route("/api/run/{run_id}/status", self.api_status),
            Route("/api/run/{run_id}/metric/{key:path}", self.api_metric),
            Route("/api/compare/metric", self.api_compare_metric),
            Route("/artifact/{run_id}/{name:path}", self.artifact_file),
            Route(f"/static/{PLOTLYJS_NAME}", self.plotlyjs),
            Mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static"),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={RunNotFoundError: self._not_found, AlexandriaError: self._bad_request},
        )
        self.app.add_middleware(LocalHostOnly, allowed=allowed_hosts(host))
        self.app.add_middleware(SecurityHeaders)  # the outermost: every response gets the headers

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if self.folder is not None:
            self.folder.start()
        try:
            yield
        finally:
            if self.folder is not None:
                self.folder.stop()
            self.reader.close()

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
        tree = runs_tree(self.engine, f)
        shown = tree[:PAGE_LIMIT]
        columns = [
            ("id", "id"),
            ("name", "name"),
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
            experiments=experiments(self.engine),
            experiment_note=experiment_note(self.engine, f.experiment) if f.experiment else None,
            headers=headers,
            labels={r["id"]: run_label(r) for _, r in tree},  # a parent by its name, when it is listed
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
        return self._render("run.html", **data.run_page(self.engine, self.store, run_id, self.interval, self.hashes))

    def _compared(self, request: Request, errors: list[str] | None) -> list[str]:
        """The runs a compare URL names (`run=A,B&run=C`, ids or prefixes), each once, in order."""
        asked: list[str] = []
        for value in request.query_params.getlist("run"):
            asked += [v.strip() for v in value.split(",") if v.strip()]
        return list(dict.fromkeys(resolve_run_ids(self.engine, asked, errors=errors)))

    def compare_page(self, request: Request) -> Response:
        errors: list[str] = []
        ids = self._compared(request, errors)
        return self._render("compare.html", **data.compare_page(self.engine, ids, errors, self.interval))

    def api_compare_metric(self, request: Request) -> Response:
        """The compare page's parallel coordinates colour: ?run=...&key=K&agg=last|min|max."""
        key = request.query_params.get("key")
        if not key:
            return json_response({"error": "key is missing: /api/compare/metric?run=ID,ID&key=KEY&agg=last"}, 400)
        ids = self._compared(request, None)
        return json_response(data.metric_values(self.engine, ids, key, request.query_params.get("agg", "last")))

    # -- JSON

    def api_runs(self, request: Request) -> Response:
        f = RunFilter.from_query(request.query_params)
        tree = runs_tree(self.engine, f)
        return json_response(
            {
                "count": len(tree),
                "errors": f.errors,
                "runs": [{**run_summary(r), "depth": depth} for depth, r in tree[:PAGE_LIMIT]],
            }
        )

    def api_status(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        with_metrics = request.query_params.get("metrics", "1") not in ("0", "false")
        return json_response(data.run_status(self.engine, run_id, with_metrics=with_metrics))

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
        found = data.metric_buckets(self.engine, run_id, key, buckets, x, start, end)
        if found is None:
            return json_response({"error": f"run {run_id} has no metric {key!r}"}, 404)
        return json_response(found)

    # -- files

    def artifact_file(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        row = artifact_record(self.engine, run_id, name)
        if row is None:
            if name == PLOTLYJS_NAME:  # plug-ins' pages load the library beside them: the bundled copy, no store file
                return self.plotlyjs(request)
            return PlainTextResponse("Not Found", status_code=404)
        try:  # only regular files inside the store: not a directory artifact, a FIFO, a device, a path out
            fd, real = self.store.open_recorded(row["path"], f"run {run_id} artifact {name!r}")
        except RecordedFileError:
            return PlainTextResponse("Not Found", status_code=404)
        info = os.fstat(fd)
        headers = {"content-length": str(info.st_size), "content-security-policy": ARTIFACT_CSP}
        warning = self.hashes.warning(fd, row, full=False)
        if warning is not None:  # served all the same, as it is now: the header (and the run page) say so
            headers[INTEGRITY_HEADER] = warning
        if request.query_params.get("download"):
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{url_part(name)}"
        if request.method == "HEAD":
            os.close(fd)
            return Response(b"", headers=headers, media_type=content_type(real, row["type"]))
        return StreamingResponse(file_chunks(fd), headers=headers, media_type=content_type(real, row["type"]))

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
