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

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import (
    AlexandriaError,
    ForeignDatabaseError,
    InvalidInputError,
    NotRegularFileError,
    RecordedFileError,
    RunNotFoundError,
    StoreError,
)
from ..pages import PLOTLYJS_NAME
from ..query import (
    Reader,
    artifact_record,
    experiment_note,
    experiments,
    media_record,
    resolve_run_id,
    resolve_run_ids,
)
from ..store import Store
from ..verify import FileHashes
from . import data
from . import media as media_data
from .data import RunFilter, runs_view
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
            Route("/api/run/{run_id}/media/{media_id:int}/table", self.api_media_table),
            Route("/api/run/{run_id}/histogram/{key:path}", self.api_histogram),
            Route("/media/{run_id}/{media_id:int}", self.media_file),
            Route("/api/compare/metric", self.api_compare_metric),
            Route("/artifact/{run_id}/{name:path}", self.artifact_file),
            Route(f"/static/{PLOTLYJS_NAME}", self.plotlyjs),
            Mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static"),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={
                RunNotFoundError: self._not_found,
                AlexandriaError: self._bad_request,
                DBAPIError: self._database_error,
            },
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

    async def _database_error(self, request: Request, exc: Exception) -> Response:
        """A read that found the database without Alexandria's tables (deleted or emptied under the dashboard:
        the fold thread rebuilds it from the logs) is a 503 saying so, not a traceback; any other database
        failure is a bug, and stays a 500 with its traceback."""
        from ..backends import backend_for
        from ..schema import SCHEMA_VERSION

        backend = backend_for(self.store.database)
        try:
            version = backend.schema_version(self.engine)
        except (DBAPIError, AlexandriaError):
            version = SCHEMA_VERSION  # not a missing table (a lock, a lost server): the original failure is shown
        if version == SCHEMA_VERSION:
            raise exc
        then = "the dashboard is rebuilding it from the logs" if self.folder else "run `alex rebuild`"
        what = "has no tables: it was deleted or emptied" if version is None else f"is of schema version {version}"
        return await self._bad_request(request, StoreError(f"database {backend.describe()} {what}; {then}"))

    def _run_id(self, text: str) -> str:
        return resolve_run_id(self.engine, text)

    # -- pages

    def runs_page(self, request: Request) -> Response:
        f = RunFilter.from_query(request.query_params)
        v = runs_view(self.engine, f)
        headers = [
            {
                "key": c.name,
                "label": c.name,
                "kind": c.kind,
                "url": f.sort_url(c.name) if c.name != "tags" else "",
                "arrow": ("▼" if f.desc else "▲") if f.sort == c.name else "",
            }
            for c in v["columns"]
        ]
        api = "/api/runs?" + urlencode(f.items())
        return self._render(
            "runs.html",
            title="Runs",
            filt=f,
            view=v,
            table=v["table"],
            columns=v["columns"],
            experiments=experiments(self.engine),
            experiment_note=experiment_note(self.engine, f.experiment) if f.experiment else None,
            headers=headers,
            labels=v["labels"],
            page_data={
                "page": "runs",
                "api": api,
                "ids": v["ids"],
                "count": v["table"].runs,
                "interval": max(self.interval, 2.0),
            },
        )

    def run_page(self, request: Request) -> Response:
        asked = request.path_params["run_id"]
        run_id = self._run_id(asked)
        if run_id != asked:
            return RedirectResponse(f"/run/{run_id}", status_code=302)
        context = data.run_page(self.engine, self.store, run_id, self.interval, self.hashes)
        return self._render("run.html", **data.with_chart_view(context, request.query_params))

    def _compared(self, request: Request, errors: list[str] | None) -> list[str]:
        """The runs a compare URL names (`run=A,B&run=C`, ids or prefixes), each once, in order."""
        asked: list[str] = []
        for value in request.query_params.getlist("run"):
            asked += [v.strip() for v in value.split(",") if v.strip()]
        return list(dict.fromkeys(resolve_run_ids(self.engine, asked, errors=errors)))

    def compare_page(self, request: Request) -> Response:
        errors: list[str] = []
        ids = self._compared(request, errors)
        context = data.compare_page(self.engine, ids, errors, self.interval)
        return self._render("compare.html", **data.with_chart_view(context, request.query_params))

    def api_compare_metric(self, request: Request) -> Response:
        """The compare page's parallel coordinates colour: ?run=...&key=K&agg=last|min|max."""
        key = request.query_params.get("key")
        if not key:
            return json_response({"error": "key is missing: /api/compare/metric?run=ID,ID&key=KEY&agg=last"}, 400)
        ids = self._compared(request, None)
        return json_response(data.metric_values(self.engine, ids, key, request.query_params.get("agg", "last")))

    # -- JSON

    def api_runs(self, request: Request) -> Response:
        return json_response(data.api_runs(self.engine, RunFilter.from_query(request.query_params)))

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

    def api_media_table(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        record = media_record(self.engine, run_id, request.path_params["media_id"])
        if record is None or record["kind"] != "table":
            return json_response({"error": f"run {run_id} has no table {request.path_params['media_id']}"}, 404)
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            return json_response({"error": "page must be a whole number (1 is the first page)"}, 400)
        try:
            found = media_data.table_page(self.store, run_id, record, page)
        except RecordedFileError as exc:
            return json_response({"error": str(exc)}, 404)
        return json_response(found.__dict__)

    def api_histogram(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        key = request.path_params["key"]
        found = media_data.histogram_grid(self.engine, run_id, key)
        if found is None:
            return json_response({"error": f"run {run_id} has no histogram {key!r}"}, 404)
        return json_response(found)

    # -- files

    def _serve(
        self, request: Request, fd: int, real: Any, record: dict[str, Any] | None, kind: str | None, name: str
    ) -> Response:
        """An open recorded file as the response: its type, nosniff (the middleware), the sandbox CSP (its
        page, if it is one, runs in an opaque origin), and when `record` is given the integrity header if
        it no longer matches its log. `fd` is closed once sent."""
        info = os.fstat(fd)
        headers = {"content-length": str(info.st_size), "content-security-policy": ARTIFACT_CSP}
        warning = self.hashes.warning(fd, record, full=False) if record is not None else None
        if warning is not None:  # served all the same, as it is now: the header (and the run page) say so
            headers[INTEGRITY_HEADER] = warning
        if request.query_params.get("download"):
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{url_part(name)}"
        if request.method == "HEAD":
            os.close(fd)
            return Response(b"", headers=headers, media_type=content_type(real, kind))
        return StreamingResponse(file_chunks(fd), headers=headers, media_type=content_type(real, kind))

    def artifact_file(self, request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        row = artifact_record(self.engine, run_id, name)
        if row is None:
            if name == PLOTLYJS_NAME:  # plug-ins' pages load the library beside them: the bundled copy, no store file
                return self.plotlyjs(request)
            return self._in_directory(request, run_id, name)
        try:  # only regular files inside the store: not a directory artifact, a FIFO, a device, a path out
            fd, real = self.store.open_recorded(row["path"], f"run {run_id} artifact {name!r}")
        except NotRegularFileError as exc:
            if exc.reason == "is a directory":  # a directory artifact: its listing
                return RedirectResponse(f"/artifact/{run_id}/{url_part(name)}/", status_code=302)
            return PlainTextResponse("Not Found", status_code=404)
        except RecordedFileError:
            return PlainTextResponse("Not Found", status_code=404)
        return self._serve(request, fd, real, row, row["type"], name)

    def _in_directory(self, request: Request, run_id: str, name: str) -> Response:
        """`/artifact/<run>/<dir>/` lists a directory artifact, `.../<dir>/<sub>/` a folder in it, and
        `.../<dir>/<file>` serves a regular file in it (no link followed: `media.open_in_directory`)."""
        parts = name.split("/")
        for cut in range(len(parts) - 1, 0, -1):
            artifact_name, rest = "/".join(parts[:cut]), "/".join(parts[cut:])
            row = artifact_record(self.engine, run_id, artifact_name)
            if row is not None:
                break
        else:
            return PlainTextResponse("Not Found", status_code=404)
        try:
            if rest == "" or rest.endswith("/"):
                entries = media_data.directory_listing(self.store, run_id, artifact_name, row["path"], rest)
                return self._render(
                    "artifact_dir.html",
                    title=f"{artifact_name}/{rest}",
                    run_id=run_id,
                    name=artifact_name,
                    rest=rest,
                    parent=f"/artifact/{run_id}/{url_part(artifact_name)}/"
                    + "".join(f"{url_part(p)}/" for p in rest.split("/")[:-2] if p)
                    if rest
                    else None,
                    entries=entries,
                )
            fd, real = media_data.open_in_directory(self.store, run_id, artifact_name, row["path"], rest)
        except (RecordedFileError, InvalidInputError):
            return PlainTextResponse("Not Found", status_code=404)
        return self._serve(request, fd, real, None, None, rest.rsplit("/", 1)[-1])

    def media_file(self, request: Request) -> Response:
        run_id = self._run_id(request.path_params["run_id"])
        record = media_record(self.engine, run_id, request.path_params["media_id"])
        if record is None:
            return PlainTextResponse("Not Found", status_code=404)
        try:
            recorded, logged = media_data.media_file(self.store, run_id, record, request.query_params.get("file"))
            fd, real = self.store.open_recorded(recorded, f"run {run_id} media {record['key']!r}")
        except (RecordedFileError, InvalidInputError):
            return PlainTextResponse("Not Found", status_code=404)
        # a plotly figure's JSON is data the page draws: served as JSON (its name ends .plotly.json)
        return self._serve(request, fd, real, logged, None, real.name)

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
