"""`alex ui`: the dashboard as a real child process over a store real writer processes log to, driven by
a real headless Chromium (Debian's, through Playwright), plus the security properties over plain HTTP.

Under CI=true the browser test must run: a missing Chromium or Playwright fails it with a message saying
how to install them. Elsewhere they skip it with the reason.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from alexandria.store import Store
from tests.conftest import child_env, python, query, run_python, wait_until

IN_CI = os.environ.get("CI") == "true"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS_TAG = "<script>alert(1)</script>"
XSS_ERROR = "<img src=x onerror=alert(2)>"

# Two experiments: a sweep (a parent and two children) and a failed run whose experiment name, tag,
# parameter and error are markup, with a file artifact and a directory artifact.
SEED = """
import json, math, pathlib, sys, alexandria
store, scratch = sys.argv[1], pathlib.Path(sys.argv[2])
ids = {}
with alexandria.start_run(experiment="mnist", store=store, capture=False, tags={"team": "vision"}) as parent:
    ids["parent"] = parent.id
    for i, lr in enumerate((0.1, 0.01)):
        with alexandria.start_run(experiment="mnist", store=store, parent=parent, capture=False) as r:
            ids[f"child{i}"] = r.id
            r.log_params({"lr": lr, "batch": 64})
            for step in range(200):
                r.log_metrics({"train/loss": math.exp(-lr * step), "val/acc": 1 - math.exp(-lr * step)}, step=step)
try:
    with alexandria.start_run(experiment="cifar <b>bold</b>", store=store, capture=False,
                              tags={"xss": "<script>alert(1)</script>"}) as r:
        ids["xss"] = r.id
        r.log_param("<i>key</i>", "<u>value</u>")
        r.log_metric("loss", 1.0, step=0)
        (scratch / "model.txt").write_text("weights")
        r.log_artifact(scratch / "model.txt", type="model")
        (scratch / "ckpt").mkdir()
        (scratch / "ckpt" / "a.bin").write_bytes(b"x")
        r.log_artifact(scratch / "ckpt", type="checkpoint")
        raise ValueError("<img src=x onerror=alert(2)>")
except ValueError:
    pass
print(json.dumps(ids))
"""

# A run that keeps logging until the file named by argv[2] exists (at most 60 s).
LIVE = """
import math, os, sys, time, alexandria
run = alexandria.start_run(experiment="live", store=sys.argv[1], capture=False, tags={"kind": "live"})
run.log_param("lr", 0.003)
print(run.id, flush=True)
deadline = time.time() + 60
step = 0
while not os.path.exists(sys.argv[2]) and time.time() < deadline:
    run.log_metric("loss", math.exp(-step / 300), step=step)
    step += 1
    time.sleep(0.01)
run.end()
"""


@dataclass
class Client:
    """Plain HTTP requests to a dashboard at `url`."""

    url: str

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request: the path is sent exactly as given (no normalisation of dots or escapes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", path)
        return status, body

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@dataclass
class Server(Client):
    """`alex ui` as a child process."""

    proc: subprocess.Popen[bytes]
    store: Path


def start_ui(store: Path, *args: str) -> Server:
    """`alex ui` as a child process on a free port; returns once it printed its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "--store", str(store), "ui", "--port", "0", *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = _read_line(proc, timeout=60)
    if "http://" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"alex ui did not start: {line!r}\n{err.decode()}")
    return Server(url=line[line.index("http://") :].split()[0], proc=proc, store=store)


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's next line of output, or "" if it printed none within `timeout` seconds."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        return ""
    return proc.stdout.readline().decode()


def stop_ui(server: Server) -> tuple[int, str]:
    server.proc.send_signal(signal.SIGTERM)
    out, err = server.proc.communicate(timeout=20)
    return server.proc.returncode, out.decode() + err.decode()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A store with a sweep and a run full of markup (logged by a real writer process), and `alex ui` over it."""
    root = tmp_path_factory.mktemp("ui")
    store = root / "store"
    scratch = root / "scratch"
    scratch.mkdir()
    ids = json.loads(run_python(SEED, str(store), str(scratch)).strip().splitlines()[-1])
    yield from serving(store, ids, runs=4)


def serving(store: Path, ids: dict[str, str], runs: int) -> Iterator[tuple[Server, dict[str, str]]]:
    """`alex ui` over `store` once it lists its `runs` runs, with the ids the seeding script printed; stopped
    after the tests."""
    server = start_ui(store, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == runs, timeout=30, what=f"{runs} runs in /api/runs")
        yield server, ids
    finally:
        if server.proc.poll() is None:
            stop_ui(server)


# -- security -------------------------------------------------------------------------------------------


def _add_artifact_row(store: Path, run_id: str, name: str, path: str) -> None:
    """An artifact row as a tampered or foreign log could leave it (written straight into the projection)."""
    db = sqlite3.connect(store / "alexandria.db", timeout=60)
    try:
        with db:
            db.execute(
                "INSERT INTO artifact (run_id, name, type, path, size, sha256, timestamp) "
                "VALUES (?, ?, ?, ?, 1, '', 0)",
                (run_id, name, "model", path),
            )
    finally:
        db.close()


def test_artifacts_only_files_inside_the_store(seeded: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, ids = seeded
    rid = ids["xss"]
    status, headers, body = server.request("GET", f"/artifact/{rid}/model.txt")
    assert (status, body) == (200, b"weights")
    assert headers["content-security-policy"] == "sandbox allow-scripts"  # its own opaque origin
    status, headers, _ = server.request("GET", f"/artifact/{rid}/model.txt?download=1")
    assert status == 200 and headers["content-disposition"].startswith("attachment")

    secret = tmp_path / "secret.txt"
    secret.write_text("outside the store")
    link_dir = server.store / "artifacts" / rid
    (link_dir / "escape").symlink_to(secret)
    (link_dir / "escape_dir").symlink_to(tmp_path, target_is_directory=True)
    relative_secret = os.path.relpath(secret, server.store)
    for name, path in {
        "absolute": str(secret),
        "etc_passwd": "/etc/passwd",
        "dotdot": relative_secret,  # ../../...: resolves outside the store
        "dotdot_inside": f"artifacts/{rid}/../{rid}/model.txt",  # stays inside, but `..` is refused outright
        "symlink": f"artifacts/{rid}/escape",
        "symlink_dir": f"artifacts/{rid}/escape_dir/secret.txt",
        "the_root": ".",
    }.items():
        _add_artifact_row(server.store, rid, name, path)
        status, body = server.get(f"/artifact/{rid}/{name}")
        assert status == 404 and b"outside" not in body, (name, path, status)

    for path in (
        f"/artifact/{rid}/..%2F..%2Fetc%2Fpasswd",
        f"/artifact/{rid}/../../etc/passwd",
        f"/artifact/{rid}/%2Fetc%2Fpasswd",
        f"/artifact/{rid}/ckpt/escape",  # no such file in the directory artifact
        f"/artifact/{'0' * 32}/model.txt",
        "/artifact/..%2F..%2F..%2Fetc/passwd",
        "/static/..%2F..%2Fui.py",
        "/static/../ui.py",
    ):
        status, body = server.get(path)
        assert status == 404, (path, status, body[:200])
        assert b"root:" not in body
    # a directory artifact is its listing (tests/test_ui_media.py), its regular files served
    status, headers, _ = server.request("GET", f"/artifact/{rid}/ckpt")
    assert status == 302 and headers["location"] == f"/artifact/{rid}/ckpt/"
    assert server.get(f"/artifact/{rid}/ckpt/a.bin") == (200, b"x")


def test_a_fifo_artifact_never_blocks_a_request(store: Store) -> None:
    """Artifact records naming FIFOs inside the store (more of them than the server has threads): each is a
    404 at once, not a request waiting forever for a writer; the other endpoints answer and the server stops."""
    from concurrent.futures import ThreadPoolExecutor

    import alexandria
    from alexandria.ui import BackgroundServer

    fifos = []
    with alexandria.start_run(experiment="pipes", capture=False) as run:
        folder = store.artifact_dir(run.id)
        folder.mkdir(parents=True)
        for i in range(45):
            fifo = folder / f"pipe{i}"
            os.mkfifo(fifo)
            fifos.append(fifo)
            run.record_artifact(fifo, size=0, sha256="0" * 64)
    assert query(store, "SELECT count(*) FROM artifact") == [(45,)]  # folded
    try:
        with BackgroundServer(store, fold=False) as server:
            url = Client(server.url)
            with ThreadPoolExecutor(len(fifos)) as pool:
                statuses = list(pool.map(lambda f: url.request("GET", f"/artifact/{run.id}/{f.name}")[0], fifos))
            assert statuses == [404] * len(fifos)
            assert url.request("HEAD", f"/artifact/{run.id}/pipe0")[0] == 404
            assert url.json("/api/runs")["count"] == 1
            status, body = url.get(f"/run/{run.id}")
            assert status == 200 and b"not a regular file" in body
            assert f'href="/artifact/{run.id}/pipe0"'.encode() not in body
    finally:  # on code that blocks: let every waiting open return, so the test process can end
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting: nothing to release
                pass


LOG_ONE = """
import sys, alexandria
with alexandria.start_run(experiment=sys.argv[2], store=sys.argv[1]) as run:
    run.log_metric("loss", 0.5, 0)
"""


def test_the_dashboards_folding_rebuilds_a_deleted_database(store: Store) -> None:
    """`rm alexandria.db` under `alex ui`: its fold thread notices, rebuilds from the logs (one warning) and
    the pages show every run again, the ones logged before and after."""
    run_python(LOG_ONE, str(store.root), "before")
    server = start_ui(store.root, "--interval", "0.2")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 1, timeout=60, what="the first run folded")
        for name in ("alexandria.db", "alexandria.db-wal", "alexandria.db-shm"):
            (store.root / name).unlink(missing_ok=True)
        run_python(LOG_ONE, str(store.root), "after")
        wait_until(lambda: _ui_count(server) == 2, timeout=60, what="both runs after the rebuild")
        assert server.proc.poll() is None
    finally:
        code, output = stop_ui(server)
    assert code == 0, output
    assert f"database {store.db_path} was deleted or emptied" in output
    assert output.count("rebuilt it from the logs") == 1, output
    assert "Traceback" not in output


def test_a_read_of_an_emptied_database_is_a_503_that_says_so(store: Store) -> None:
    """A database emptied under a dashboard that only reads: every request says what happened and what to do,
    as a 503 (the pages and the API), and nothing is logged as a crash. (With folding on, the same answer is
    what a request gets in the moment before the fold thread has rebuilt it.)"""
    run_python(LOG_ONE, str(store.root), "before")
    query(store, "SELECT count(*) FROM run")  # folded
    for name in ("alexandria.db", "alexandria.db-wal", "alexandria.db-shm"):
        (store.root / name).unlink(missing_ok=True)
    store.db_path.write_bytes(b"")  # what a truncation, or another program's empty database, leaves
    server = start_ui(store.root, "--no-fold")
    try:
        said = f"database {store.db_path} has no tables: it was deleted or emptied; run `alex rebuild`"
        status, body = server.get("/api/runs")
        assert (status, json.loads(body)) == (503, {"error": said})
        status, body = server.get("/")
        assert status == 503 and said in re.sub(r"<[^>]+>", "", body.decode())
        assert server.get("/api/run/0123/status")[0] == 503
    finally:
        code, output = stop_ui(server)
    assert code == 0, output
    assert "Traceback" not in output and store.db_path.read_bytes() == b""  # a reader never writes it


def _ui_count(server: Server) -> int | None:
    """The dashboard's run count, or None while the database it reads is missing (an error page)."""
    status, body = server.get("/api/runs")
    return json.loads(body)["count"] if status == 200 else None


def test_logged_text_is_escaped(seeded: tuple[Server, dict[str, str]]) -> None:
    server, ids = seeded
    status, body = server.get(f"/run/{ids['xss']}")
    page = body.decode()
    assert status == 200
    for raw in (XSS_TAG, XSS_ERROR, "<b>bold</b>", "<i>key</i>", "<u>value</u>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "cifar &lt;b&gt;bold&lt;/b&gt;" in page
    runs_page = server.get("/")[1].decode()
    assert XSS_TAG not in runs_page and "xss=&lt;script&gt;alert(1)&lt;/script&gt;" in runs_page
    compare = server.get(f"/compare?run={ids['xss']}&run={ids['child0']}")[1].decode()
    assert XSS_TAG not in compare and "<i>key</i>" not in compare
    _, headers, _ = server.request("GET", "/")
    assert "script-src 'self'" in headers["content-security-policy"]  # and no inline script would run anyway


def test_no_endpoint_accepts_writes(seeded: tuple[Server, dict[str, str]]) -> None:
    server, ids = seeded
    rid = ids["child0"]
    paths = [
        "/",
        f"/run/{rid}",
        f"/compare?run={rid}",
        "/api/runs",
        f"/api/run/{rid}/status",
        f"/api/run/{rid}/metric/train%2Floss",
        f"/artifact/{ids['xss']}/model.txt",
        "/static/plotly.min.js",
        "/static/ui.js",
    ]
    for path in paths:
        assert server.request("GET", path)[0] == 200, path
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert server.request(method, path)[0] == 405, (method, path)


def test_other_hosts_are_refused(seeded: tuple[Server, dict[str, str]]) -> None:
    """A page on another site that rebinds its name to 127.0.0.1 still sends its own name as Host."""
    server, _ = seeded
    assert server.request("GET", "/api/runs", {"Host": "evil.example"})[0] == 400
    assert server.request("GET", "/api/runs", {"Host": f"evil.example:{server.port}"})[0] == 400
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost", f"[::1]:{server.port}"):
        assert server.request("GET", "/api/runs", {"Host": host})[0] == 200, host


def test_requests_read_through_a_read_only_connection(seeded: tuple[Server, dict[str, str]]) -> None:
    from sqlalchemy.exc import DatabaseError

    from alexandria.ui import Dashboard

    server, _ = seeded
    dashboard = Dashboard(server.store, fold=False)
    try:  # the reader's authorizer refuses it before SQLite's query_only would
        with pytest.raises(DatabaseError, match="not authorized"), dashboard.engine.connect() as conn:
            conn.exec_driver_sql("DELETE FROM run")
    finally:
        dashboard.engine.dispose()


def test_json_endpoints(seeded: tuple[Server, dict[str, str]]) -> None:
    server, ids = seeded
    rid = ids["child0"]
    d = server.json(f"/api/run/{rid}/metric/{quote('train/loss', safe='')}?buckets=10")
    assert d["total"] == 200 and len(d["x"]) <= 10 and sum(d["count"]) == 200 and d["x_kind"] == "step"
    assert d["x"][-1] == 199 and d["last"][-1] == pytest.approx(math.exp(-0.1 * 199))
    d = server.json(f"/api/run/{rid}/metric/train%2Floss?after=150")
    assert d["x"] == list(range(151, 200)) and d["exact"]
    assert server.get(f"/api/run/{rid}/metric/nope")[0] == 404
    assert server.get(f"/api/run/{rid}/metric/loss?buckets=0")[0] == 400
    status = server.json(f"/api/run/{rid}/status")
    assert status["status"] == "finished" and status["metrics"]["val/acc"]["count"] == 200
    assert status["metrics"]["train/loss"]["last_step"] == 199
    assert server.get(f"/api/run/{'f' * 32}/status")[0] == 404
    runs = server.json("/api/runs?experiment=mnist&param=lr=0.1")["runs"]
    assert [r["id"] for r in runs] == [rid]
    assert {r["id"] for r in server.json("/api/runs?tag=team=vision&q=MNIST")["runs"]} == {ids["parent"]}
    tree = server.json("/api/runs?experiment=mnist&sort=id&desc=0")["runs"]
    assert [r["depth"] for r in tree] == [0, 1, 1]  # the children stay under their parent, whatever the sort
    plotly = server.request("GET", "/static/plotly.min.js")
    assert plotly[0] == 200 and b"plotly" in plotly[2][:2000].lower() and len(plotly[2]) > 1_000_000


def test_binds_loopback_by_default_and_stops_cleanly(tmp_path: Path) -> None:
    from alexandria.cli import ui

    assert {p.name: p.default for p in ui.params}["host"] == "127.0.0.1"
    run_python("import alexandria, sys; alexandria.start_run(experiment='e', store=sys.argv[1]).end()", str(tmp_path))
    server = start_ui(tmp_path)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        listening = _listening_addresses(server.port)
        assert listening == {"127.0.0.1"}, listening
        assert server.get("/")[0] == 200
    finally:
        code, output = stop_ui(server)
    assert code == 0, output
    assert "dashboard stopped" in output and "Traceback" not in output


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, from the kernel's own tables."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                address, hexport = fields[1].split(":")
                if int(hexport, 16) == port and fields[3] == "0A":  # LISTEN
                    if width == 8:
                        found.add(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
                    else:
                        found.add("ipv6:" + address)
    return found


# -- the browser --------------------------------------------------------------------------------------------


def _browser_or_skip() -> tuple[Any, str]:
    """Playwright's sync API and Debian's Chromium; under CI a missing one is a failure, elsewhere a skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "Playwright is not installed: pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if chromium is None:
        message = "no chromium: apt-get install -y chromium (Debian's package; Playwright never downloads one here)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright, chromium


@contextmanager
def chromium_context(
    tmp_path: Path, *, width: int = 1280, height: int = 900, console: bool = False
) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium context in a fresh profile (Playwright's persistent context, Debian's browser), and the list of
    the script errors its pages report (with `console`, the console's errors too): a test asserts it stays
    empty. Its default timeout is 30 s."""
    sync_playwright, chromium = _browser_or_skip()
    problems: list[str] = []

    def watch(page: Any) -> None:
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        if console:
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        context.on("page", watch)
        context.set_default_timeout(30_000)
        try:
            yield context, problems
        finally:
            context.close()


def _save_artifact(source: Path) -> Path:
    target_dir = os.environ.get("ALEXANDRIA_TEST_ARTIFACTS")
    if target_dir:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, Path(target_dir) / source.name)
    return source


def test_dashboard_in_a_real_browser(seeded: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    sync_playwright, chromium = _browser_or_skip()
    server, ids = seeded
    stop_file = tmp_path / "stop"
    writer = python(LIVE, str(server.store), str(stop_file))
    try:
        live_id = _read_line(writer, timeout=60).strip()
        assert len(live_id) == 32, writer.stderr.read().decode() if writer.stderr else ""
        wait_until(
            lambda: any(r["id"] == live_id for r in server.json("/api/runs")["runs"]),
            timeout=30,
            what="the live run in /api/runs",
        )
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),  # a fresh profile
                executable_path=chromium,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                _drive(context, server, ids, live_id, stop_file, tmp_path)
            finally:
                context.close()
    finally:
        stop_file.touch()
        try:
            writer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()


def _drive(context: Any, server: Server, ids: dict[str, str], live_id: str, stop_file: Path, tmp_path: Path) -> None:
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.set_default_timeout(20_000)

    # The runs page: every run, then only one experiment's.
    page.goto(server.url)
    rows = page.locator("#runs-table tbody tr[data-run-id]")
    assert rows.count() == 5
    assert page.locator(f'tr[data-run-id="{ids["xss"]}"] .tags').inner_text() == f"xss={XSS_TAG}"  # shown as text
    page.select_option("#f-experiment", "mnist")
    page.click("#f-apply")
    page.wait_for_url("**experiment=mnist**")
    assert rows.count() == 3
    assert set(page.locator("#runs-table td.experiment").all_inner_texts()) == {"mnist"}

    # Compare the two children: the differing parameter is highlighted, one chart per metric, a trace per run.
    for key in ("child0", "child1"):
        page.check(f'tr[data-run-id="{ids[key]}"] input[type=checkbox]')
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    assert page.locator('#compare-params tr.differs[data-key="lr"]').count() == 1
    assert page.locator('#compare-params tr.same[data-key="batch"]').count() == 1
    loss = "document.querySelector('.chart[data-key=\"train/loss\"]')"
    page.wait_for_function(f"() => {{ const d = {loss}; return d && d.data && d.data.length === 2; }}")
    # Zooming in re-reads only the range shown.
    page.evaluate(f"() => Plotly.relayout({loss}, {{'xaxis.range': [50, 80]}})")
    page.wait_for_function(
        f"() => {loss}.data.every(t => t.x.length === 31 && t.x[0] === 50 && t.x[t.x.length - 1] === 80)"
    )

    # The live run: its chart draws, then grows while the writer logs, without a reload.
    page.goto(server.url)
    page.click(f'a[href="/run/{live_id}"]')
    page.wait_for_url(f"**/run/{live_id}")
    chart = "document.querySelector('#charts .chart[data-key=\"loss\"]')"
    page.wait_for_function(f"() => {{ const d = {chart}; return d && d.data && d.data.length === 3; }}")
    page.evaluate("() => { window.notReloaded = true; }")
    first = page.evaluate(f"() => {{ const x = {chart}.data[2].x; return x[x.length - 1]; }}")
    first_points = int(page.locator('.points[data-key="loss"]').inner_text().split()[0])
    page.wait_for_function(
        f"last => {{ const x = {chart}.data[2].x; return x[x.length - 1] > last; }}", arg=first, timeout=20_000
    )
    page.wait_for_function(
        "n => parseInt(document.querySelector('.points[data-key=\"loss\"]').textContent) > n", arg=first_points
    )
    assert page.evaluate("() => window.notReloaded === true")
    assert page.locator("#run-status").inner_text() == "running"
    shot = tmp_path / "ui-run.png"
    page.screenshot(path=str(shot), full_page=True)
    _save_artifact(shot)
    assert shot.stat().st_size > 10_000

    # The run ends: the page says so, still without a reload.
    stop_file.touch()
    page.wait_for_function("() => document.querySelector('#run-status').textContent === 'finished'")
    assert page.evaluate("() => window.notReloaded === true")

    # The run with markup: nothing it logged ran as script.
    page.goto(f"{server.url}run/{ids['xss']}")
    assert XSS_TAG in page.locator("#tags").inner_text()
    assert XSS_ERROR in page.locator("#run-error").inner_text()
    assert not problems, problems


def test_compare_legend_shows_run_names_as_text(store: Store, tmp_path: Path) -> None:
    """Plotly renders trace names as pseudo-HTML: a run named `<a href=...>` is shown as its text in the
    compare page's legend, never as a link, with its id prefix and experiment (markup too) in the hover
    text (nor is a metric key markup in a run page's trace)."""
    sync_playwright, chromium = _browser_or_skip()
    import alexandria
    from alexandria.pages import plotly_text
    from alexandria.ui import BackgroundServer

    name = '<a href="https://example.com/">x</a> & <b>y</b>'
    ids = []
    for i in range(2):
        with alexandria.start_run(experiment=f"<b>{name}</b>", name=f"{name} {i}", capture=False) as run:
            for step in range(2):  # two points: a chart (one point would be shown as a value)
                run.log_metric("loss", 1.0 / (i + step + 1), step=step)
                run.log_metric("<i>k</i>", 1.0, step=step)
            ids.append(run.id)
    assert query(store, "SELECT count(*) FROM run") == [(2,)]  # folded
    with BackgroundServer(store, fold=False) as server, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS
        )
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}compare?run={ids[0]},{ids[1]}")
            page.wait_for_selector('.chart[data-key="loss"] .legendtext')
            legend = page.locator('.chart[data-key="loss"] .legend')
            assert legend.locator("a").count() == 0 and legend.locator("b").count() == 0
            texts = page.locator('.chart[data-key="loss"] .legendtext').all_text_contents()
            # a long name keeps its start and end in the legend (32 characters), all of it in the hover text
            assert sorted(texts) == [f"{name[:16]}…{name[-13:]} {i}" for i in range(2)], texts
            loss = "document.querySelector('.chart[data-key=\"loss\"]')"
            hovers = page.evaluate(f"() => {loss}.data.map(t => t.meta[0])")
            assert sorted(hovers) == sorted(plotly_text(f"{i[:8]} <b>{name}</b>") for i in ids), hovers
            full = page.evaluate(f"() => {loss}.data.map(t => t.meta[3])")
            assert sorted(full) == [plotly_text(f"{name} {i}") for i in range(2)], full
            page.goto(f"{server.url}run/{ids[0]}")
            chart = "document.querySelector('#charts .chart[data-key=\"<i>k</i>\"]')"
            page.wait_for_function(f"() => {{ const d = {chart}; return d && d.data && d.data.length === 3; }}")
            assert page.evaluate(f"() => {chart}.data[2].name") == "&lt;i&gt;k&lt;/i&gt;"
        finally:
            context.close()


# -- names, notes, deleted runs --------------------------------------------------------------------------------

# Four runs: one named, one named with markup (its child), one with a generated name, and one as a version from before
# run names wrote it (its run_started line has no name: the run's name is NULL).
TIDY = """
import json, pathlib, sys, alexandria
store = sys.argv[1]
ids = {}
for key, exp, name in (("named", "tidy", "bs64-lr0.01"), ("markup", "tidy", "<b>fat</b>"),
                       ("generated", "tidy", None), ("legacy", "old", None)):
    parent = ids["named"] if key == "markup" else None  # a child run, to show its parent by name
    with alexandria.start_run(experiment=exp, name=name, parent=parent, store=store, capture=False) as r:
        r.log_param("lr", 0.01)
        r.log_metric("loss", 1.0, step=0)
        ids[key] = r.id
(segment,) = (pathlib.Path(store) / "runs" / ids["legacy"]).glob("*.jsonl")
lines = segment.read_text().splitlines(keepends=True)
started = json.loads(lines[1])
assert started["event"] == "run_started"
del started["name"]
lines[1] = json.dumps(started) + "\\n"
segment.write_text("".join(lines))
print(json.dumps(ids))
"""

NOTE = (
    "**bold** <script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3)) "
    "[docs](https://example.com/a?b=1&c=2)"
)
NOTE_HTML = (
    "<p><strong>bold</strong> &lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt; "
    '[click](javascript:alert(3)) <a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener noreferrer">'
    "docs</a></p>"
)


def _edit(store: Path, code: str, *args: str) -> None:
    """A change made by another process, through the library (`alexandria.edit_run` and the others)."""
    run_python("import sys, alexandria\nstore = sys.argv[1]\n" + code, str(store), *args)


def _section(page: str, dom_id: str) -> str:
    """The inner HTML of the element with id `dom_id` (a section or div, not nested in its own kind)."""
    m = re.search(rf'<(section|div|p|pre)[^>]*\bid="{dom_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert m is not None, f"no #{dom_id} in the page"
    return m.group(2).strip()


def _name_cells(page: str) -> dict[str, str]:
    """The runs table's name column: run id -> the text shown (still escaped)."""
    return dict(
        re.findall(r'<td class="name"><a href="/run/([0-9a-f]{32})" title="[0-9a-f]{32}">([^<]*)</a></td>', page)
    )


@pytest.fixture
def tidy(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    store = tmp_path / "store"
    ids = json.loads(run_python(TIDY, str(store)).strip().splitlines()[-1])
    yield from serving(store, ids, runs=4)


def test_run_names_in_every_listing(tidy: tuple[Server, dict[str, str]]) -> None:
    server, ids = tidy
    api = {r["id"]: r for r in server.json("/api/runs")["runs"]}
    generated = api[ids["generated"]]["name"]
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d+", generated), generated
    assert api[ids["named"]]["name"] == api[ids["named"]]["label"] == "bs64-lr0.01"
    assert api[ids["legacy"]]["name"] is None and api[ids["legacy"]]["label"] == ids["legacy"][:8]

    status, body = server.get("/")
    runs_page = body.decode()
    assert status == 200 and "<b>fat</b>" not in runs_page
    assert _name_cells(runs_page) == {
        ids["named"]: "bs64-lr0.01",
        ids["markup"]: "&lt;b&gt;fat&lt;/b&gt;",
        ids["generated"]: generated,
        ids["legacy"]: ids["legacy"][:8],
    }
    assert [r["name"] for r in server.json("/api/runs?q=LR0.01")["runs"]] == ["bs64-lr0.01"]  # searched too
    parent_cell = f'<td class="parent"><a href="/run/{ids["named"]}" title="{ids["named"]}">bs64-lr0.01</a></td>'
    assert runs_page.count(parent_cell) == 1  # the child's parent, by name

    page = server.get(f"/run/{ids['named']}")[1].decode()
    assert "<title>Run bs64-lr0.01 · Alexandria</title>" in page and '<span id="run-name">bs64-lr0.01</span>' in page
    assert "<title>Run &lt;b&gt;fat&lt;/b&gt; · Alexandria</title>" in server.get(f"/run/{ids['markup']}")[1].decode()
    assert f"<title>Run {ids['legacy'][:8]} · Alexandria</title>" in server.get(f"/run/{ids['legacy']}")[1].decode()
    assert server.request("GET", "/run/bs64-lr0.01")[1]["location"] == f"/run/{ids['named']}"  # a name names it

    order = [ids["named"], ids["markup"], ids["legacy"]]
    compare = server.get("/compare?" + "&".join(f"run={rid}" for rid in order))[1].decode()
    headers = re.findall(r'<a class="run-name" href="/run/([0-9a-f]{32})" title="[0-9a-f]{32}">([^<]*)</a>', compare)
    assert headers == [(order[0], "bs64-lr0.01"), (order[1], "&lt;b&gt;fat&lt;/b&gt;"), (order[2], order[2][:8])]
    data = json.loads(_section_script(compare))
    assert (
        [(r["label"], r["hover"]) for r in data["runs"]]
        == [
            ("bs64-lr0.01", f"{order[0][:8]} tidy"),
            ("<b>fat</b>", f"{order[1][:8]} tidy"),  # escaped by ui.js's plotlyText when drawn
            (order[2][:8], f"{order[2][:8]} old"),
        ]
    )


def _section_script(page: str) -> str:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S)
    assert m is not None
    return m.group(1)


def test_notes_render_markdown_and_nothing_live(tidy: tuple[Server, dict[str, str]]) -> None:
    server, ids = tidy
    rid = ids["named"]
    _edit(server.store, "alexandria.edit_run(sys.argv[2], note=sys.argv[3], store=store)", rid, NOTE)
    _edit(server.store, "alexandria.edit_experiment('tidy', note='A sweep of *batch sizes*', store=store)")

    def run_page() -> str:
        return server.get(f"/run/{rid}")[1].decode()

    page = wait_until(lambda: p if 'id="run-note"' in (p := run_page()) else None, timeout=30, what="the note")
    assert _section(page, "run-note") == NOTE_HTML
    for live in ("<script>alert", "<img", 'href="javascript', "javascript:alert(3)</a>", "onerror=alert(2)>"):
        assert live not in page, live
    experiment_note = "<p>A sweep of <em>batch sizes</em></p>"
    wait_until(lambda: 'id="experiment-note"' in run_page(), timeout=30, what="the experiment's note")
    assert _section(run_page(), "experiment-note") == experiment_note
    assert _section(server.get("/?experiment=tidy")[1].decode(), "experiment-note") == experiment_note
    assert 'id="experiment-note"' not in server.get("/?experiment=old")[1].decode()
    _, headers, _ = server.request("GET", f"/run/{rid}")
    assert "script-src 'self';" in headers["content-security-policy"]  # no inline script, as before

    # read-only: the page says what to run instead of offering buttons
    commands = _section(page, "edit-commands")
    assert f"alex edit {rid} --name NEW-NAME --note &#34;Markdown text&#34;" in commands
    assert f"alex delete {rid}" in commands
    assert "<form" not in page and "<button" not in page


def test_deleted_runs_vanish_and_come_back(tidy: tuple[Server, dict[str, str]]) -> None:
    server, ids = tidy
    gone = [ids["generated"], ids["legacy"]]
    _edit(server.store, "alexandria.delete_runs(sys.argv[2:], store=store)", *gone)
    wait_until(lambda: server.json("/api/runs")["count"] == 2, timeout=30, what="the deleted runs gone")
    assert {r["id"] for r in server.json("/api/runs")["runs"]} == {ids["named"], ids["markup"]}
    runs_page = server.get("/")[1].decode()
    assert not any(rid in runs_page for rid in gone)
    assert '<option value="old"' not in runs_page and '<option value="tidy"' in runs_page  # its only run is gone
    compare = server.get(f"/compare?run={ids['named']}&run={gone[0]}")[1].decode()
    assert f"run {gone[0]} is deleted: `alex restore {gone[0][:8]}` brings it back" in compare
    assert json.loads(_section_script(compare))["runs"][0]["id"] == ids["named"]
    assert len(json.loads(_section_script(compare))["runs"]) == 1

    status, body = server.get(f"/run/{gone[0]}")  # its own page still answers, and says so
    page = body.decode()
    assert status == 200 and "This run is deleted." in _section(page, "deleted-banner")
    assert f"<code>alex restore {gone[0]}</code>" in _section(page, "deleted-banner")
    assert _section(page, "edit-commands") == f"alex restore {gone[0]}"
    assert server.json(f"/api/run/{gone[0]}/status")["deleted"] is True
    assert 'id="deleted-banner"' not in server.get(f"/run/{ids['named']}")[1].decode()

    _edit(server.store, "alexandria.restore_runs(sys.argv[2:], store=store)", *gone)
    wait_until(lambda: server.json("/api/runs")["count"] == 4, timeout=30, what="the restored runs back")
    runs_page = server.get("/")[1].decode()
    assert all(rid in _name_cells(runs_page) for rid in gone) and '<option value="old"' in runs_page
    assert 'id="deleted-banner"' not in server.get(f"/run/{gone[0]}")[1].decode()


def test_a_note_in_a_real_browser_runs_nothing(tidy: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    """The note's markup reaches the browser as text: no dialog opens, no script or image element exists,
    the `javascript:` link is no link; the bold text is bold and the https link a link."""
    sync_playwright, chromium = _browser_or_skip()
    server, ids = tidy
    rid = ids["named"]
    _edit(server.store, "alexandria.edit_run(sys.argv[2], note=sys.argv[3], store=store)", rid, NOTE)
    wait_until(lambda: 'id="run-note"' in server.get(f"/run/{rid}")[1].decode(), timeout=30, what="the note")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS
        )
        try:
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}run/{rid}")
            note = page.locator("#run-note")
            assert note.locator("strong").all_inner_texts() == ["bold"]
            assert note.locator("script, img, [onerror]").count() == 0
            assert [a.get_attribute("href") for a in note.locator("a").all()] == ["https://example.com/a?b=1&c=2"]
            assert "[click](javascript:alert(3))" in note.inner_text()
            assert (
                "<script>alert(1)</script>" in note.inner_text() and "<img src=x onerror=alert(2)>" in note.inner_text()
            )
            assert not problems, problems
        finally:
            context.close()
