"""The run page shows what a run logged to look at, in a real `alex ui` driven by Debian's Chromium (through
Playwright): images and texts by step (a slider), a plotly figure drawn, a table paged by the server, a
histogram as a step x bin heatmap; artifacts previewed, a directory artifact browsable; and nothing a user
logged (an HTML page, an SVG) runs in the dashboard's origin, nor is anything served through a link."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import every_backend, run_python, wait_until
from tests.test_ui import CHROMIUM_ARGS, Server, _browser_or_skip, _save_artifact, serving

# A run logging media of every kind, a matplotlib figure, and artifacts (an HTML page whose script tries to reach
# the dashboard, an image, a directory); printed: the run's id. Widths tell the image steps apart.
SEED = """
import json, pathlib, sys
import numpy as np, alexandria
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import plotly.graph_objects as go
from PIL import Image
store, scratch = sys.argv[1], pathlib.Path(sys.argv[2])
rng = np.random.default_rng(7)
with alexandria.start_run(experiment="media", store=store, capture=False) as r:
    for i, step in enumerate((0, 10, 20)):
        r.log_image("samples", rng.random((6, 4 * (i + 1))), step=step, caption=f"<b>caption {step}</b>")
    r.log_figure("roc", go.Figure(go.Scatter(x=[0, 0.2, 1], y=[0, 0.8, 1], name="<b>roc</b>")), step=3)
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1], [1, 0])
    r.log_figure("curve", fig, step=3)
    r.log_table("predictions", [{"row": i, "score": i / 4, "label": f"<i>{i}</i>"} for i in range(1, 121)], step=3)
    for step in range(6):
        r.log_histogram("weights", rng.normal(step, 1.0, 400), step=step, bins=16)
    r.log_text("notes", "first <script>document.title='pwned'</script>", step=0)
    r.log_text("notes", "second", step=1)
    (scratch / "page.html").write_text(
        "<!doctype html><body><script>"
        "let out = {origin: self.origin};"
        "try { window.top.document.title = 'pwned'; out.top = 'reached'; } catch (e) { out.top = 'blocked'; }"
        "fetch('/api/runs').then(r => r.text()).then(() => { out.fetch = 'read'; })"
        ".catch(() => { out.fetch = 'blocked'; }).then(() => { document.body.textContent = JSON.stringify(out); });"
        "</script></body>"
    )
    r.log_artifact(scratch / "page.html")
    Image.new("RGB", (30, 20), (200, 10, 10)).save(scratch / "red.png")
    r.log_artifact(scratch / "red.png")
    (scratch / "ckpt" / "sub").mkdir(parents=True)
    (scratch / "ckpt" / "weights.bin").write_bytes(b"0123456789")
    (scratch / "ckpt" / "sub" / "readme.txt").write_text("inside")
    r.log_artifact(scratch / "ckpt")
    print(json.dumps({"run": r.id}))
"""

# What the SVG of the matplotlib figure is made to carry (a user's SVG may): a script reaching for the dashboard.
SVG_SCRIPT = (
    "<script>fetch('/api/runs').then(() => document.documentElement.setAttribute('data-fetch', 'read'))"
    ".catch(() => document.documentElement.setAttribute('data-fetch', 'blocked'));"
    "try { window.top.document.title = 'pwned'; } catch (e) {}</script></svg>"
)


@pytest.fixture(scope="module")
def media_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("ui-media")
    store, scratch, outside = root / "store", root / "scratch", root / "outside.txt"
    scratch.mkdir()
    outside.write_text("a secret outside the store")
    ids = json.loads(run_python(SEED, str(store), str(scratch)).strip().splitlines()[-1])
    stored = store / "artifacts" / ids["run"] / "ckpt"
    os.symlink(outside, stored / "escape")  # links put into the copy afterwards: never followed
    os.symlink(stored / "weights.bin", stored / "inside-link")
    svg = next((store / "artifacts" / ids["run"] / ".media").rglob("*.svg"))
    svg.write_text(svg.read_text().replace("</svg>", SVG_SCRIPT))
    yield from serving(store, ids, runs=1)


def _chromium(pw: Any, chromium: str, tmp_path: Path) -> Any:
    return pw.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}
    )


def _box(page: Any, key: str) -> Any:
    box = page.locator(f".media-box[data-key='{key}']")
    box.scroll_into_view_if_needed()
    page.wait_for_selector(f".media-box[data-key='{key}'][data-drawn='1']")
    return box


def _natural_width(page: Any, selector: str) -> int:
    return int(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth ? img.naturalWidth : 0"))


def test_the_run_page_shows_media_by_step(media_run: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    sync_playwright, chromium = _browser_or_skip()
    server, ids = media_run
    with sync_playwright() as pw:
        context = _chromium(pw, chromium, tmp_path)
        try:
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}run/{ids['run']}")
            title = page.title()

            # images: the slider picks the step; the image, its step and caption follow (the last step first)
            box = _box(page, "samples")
            img = ".media-box[data-key='samples'] img.media-image"
            wait_until(lambda: _natural_width(page, img) == 12, timeout=30, what="the last step's image")
            info = box.locator(".media-info")
            assert "step 20" in info.inner_text() and "<b>caption 20</b>" in info.inner_text()
            slider = box.locator("input.media-step")
            for index, (step, width) in enumerate(((0, 4), (10, 8))):
                slider.fill(str(index))
                wait_until(lambda w=width: _natural_width(page, img) == w, timeout=30, what=f"the image of step {step}")
                assert f"step {step}" in info.inner_text() and f"caption {step}" in info.inner_text()
            assert box.locator("b").count() == 0  # the caption is text

            # a plotly figure drawn from its JSON by the page's plotly.js; a matplotlib figure as its PNG
            roc = _box(page, "roc")
            roc.locator(".media-plot svg.main-svg").first.wait_for()
            assert roc.locator(".scatterlayer .trace").count() == 1
            assert page.eval_on_selector(".media-box[data-key='roc'] .media-plot", "d => d.data[0].x") == [0, 0.2, 1]
            curve = _box(page, "curve")
            png = curve.locator("img.media-image")
            assert "file=" not in (png.get_attribute("src") or "")
            wait_until(lambda: _natural_width(page, ".media-box[data-key='curve'] img") > 0, timeout=30, what="PNG")
            svg_link = curve.locator("a[href*='file=svg']")
            assert svg_link.count() == 1 and curve.locator("svg, object, embed, iframe").count() == 0

            # a table paged by the server: page 2 starts at row 51
            table = _box(page, "predictions")
            first_cell = table.locator("table.media-table tbody tr").first.locator("td").nth(1)
            assert first_cell.inner_text() == "1"
            assert "rows 1–50 of 120" in table.locator(".media-page").inner_text()
            table.locator("button.media-next").click()
            wait_until(lambda: first_cell.inner_text() == "51", timeout=30, what="page 2 of the table")
            assert "rows 51–100 of 120 · page 2 of 3" in table.locator(".media-page").inner_text()
            assert table.locator("tbody tr").first.locator("td").nth(3).inner_text() == "<i>51</i>"
            table.locator("button.media-next").click()
            wait_until(lambda: first_cell.inner_text() == "101", timeout=30, what="page 3 of the table")
            assert table.locator("tbody tr").count() == 20 and table.locator("button.media-next").is_disabled()

            # a histogram over steps: a heatmap, one column per step
            hist = _box(page, "weights")
            hist.locator(".media-heatmap svg.main-svg").first.wait_for()
            drawn = page.eval_on_selector(
                ".media-box[data-key='weights'] .media-heatmap",
                "d => ({type: d.data[0].type, steps: d.data[0].x, rows: d.data[0].z.length})",
            )
            assert drawn == {"type": "heatmap", "steps": [0, 1, 2, 3, 4, 5], "rows": 64}
            assert hist.locator(".heatmaplayer image, .heatmaplayer .hm").count() >= 1

            # texts by step, as text
            notes = _box(page, "notes")
            text = notes.locator("pre.media-text")
            wait_until(lambda: text.count() == 1 and text.inner_text() == "second", timeout=30, what="the last text")
            notes.locator("input.media-step").fill("0")
            wait_until(lambda: "first <script>" in text.inner_text(), timeout=30, what="the first step's text")
            assert page.title() == title  # no logged markup ran

            page.screenshot(path=str(tmp_path / "ui-media.png"), full_page=True)
            _save_artifact(tmp_path / "ui-media.png")
            assert problems == []
        finally:
            context.close()


def test_artifacts_previewed_and_nothing_logged_runs_in_the_dashboard(
    media_run: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    sync_playwright, chromium = _browser_or_skip()
    server, ids = media_run
    run = ids["run"]
    with sync_playwright() as pw:
        context = _chromium(pw, chromium, tmp_path)
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}run/{run}")
            title = page.title()

            # an image artifact is shown
            image = page.locator("tr.preview[data-name='red.png'] img.artifact-image")
            image.scroll_into_view_if_needed()
            wait_until(
                lambda: _natural_width(page, "tr.preview[data-name='red.png'] img") == 30, timeout=30, what="preview"
            )

            # the HTML artifact runs sandboxed: its script runs, but reaches neither the page nor the API
            frame_el = page.locator("tr.preview[data-name='page.html'] iframe")
            assert frame_el.get_attribute("sandbox") == "allow-scripts"
            frame_el.scroll_into_view_if_needed()
            frame = page.frame_locator("tr.preview[data-name='page.html'] iframe")
            frame.locator("body:has-text('fetch')").wait_for()
            got = json.loads(frame.locator("body").inner_text())
            assert got == {"origin": "null", "top": "blocked", "fetch": "blocked"}
            assert page.title() == title

            # opened by itself it is sandboxed too (the response's CSP): an opaque origin, the API out of reach
            page.goto(f"{server.url}artifact/{run}/page.html")
            page.wait_for_selector("body:has-text('fetch')")
            got = json.loads(page.locator("body").inner_text())
            assert got["origin"] == "null" and got["fetch"] == "blocked"

            # the SVG a figure carries, opened by itself: its script cannot read the dashboard
            page.goto(f"{server.url}run/{run}")
            href = _box(page, "curve").locator("a[href*='file=svg']").get_attribute("href")
            page.goto(server.url.rstrip("/") + str(href))
            wait_until(
                lambda: page.evaluate("document.documentElement.getAttribute('data-fetch')"),
                timeout=30,
                what="the SVG's script to finish",
            )
            assert page.evaluate("document.documentElement.getAttribute('data-fetch')") == "blocked"

            # a directory artifact is listed; a file in it is served, a link in it is not followed
            page.goto(f"{server.url}run/{run}")
            page.click("#artifacts a.browse")
            page.wait_for_selector("#dir-listing")
            rows = {
                r.get_attribute("data-name"): r.get_attribute("data-kind")
                for r in page.locator("#dir-listing tbody tr").all()
            }
            assert rows == {
                "escape": "link",
                "inside-link": "link",
                "sub": "directory",
                "weights.bin": "file",
            }
            assert page.locator("#dir-listing tr[data-name='escape'] a").count() == 0
            page.screenshot(path=str(tmp_path / "ui-artifact-dir.png"), full_page=True)
            _save_artifact(tmp_path / "ui-artifact-dir.png")
            page.click("#dir-listing a:text('sub/')")
            page.wait_for_selector("#dir-listing tr[data-name='readme.txt']")
            readme = page.locator("#dir-listing tr[data-name='readme.txt'] a").first.get_attribute("href")
            assert server.get(str(readme)) == (200, b"inside")
        finally:
            context.close()
    status, headers, body = server.request("GET", f"/artifact/{run}/ckpt/weights.bin")
    assert (status, body) == (200, b"0123456789")
    assert headers["content-security-policy"] == "sandbox allow-scripts"
    assert headers["x-content-type-options"] == "nosniff"
    for name in ("escape", "inside-link", "%2E%2E/page.html", "sub/%2E%2E/%2E%2E/page.html", "nothing"):
        status, body = server.get(f"/artifact/{run}/ckpt/{name}")
        assert status == 404 and b"secret" not in body, name


def test_media_gone_or_changed_is_said_not_a_500(media_run: tuple[Server, dict[str, str]]) -> None:
    server, ids = media_run
    run = ids["run"]
    page_data = _page_data(server, run)
    texts = next(g for g in page_data["media"] if g["key"] == "notes")["records"]
    table = next(g for g in page_data["media"] if g["key"] == "predictions")["records"][0]
    files = sorted((server.store / "artifacts" / run / ".media").rglob("*.txt"))
    assert len(files) == 2
    files[0].unlink()
    files[1].write_text("changed!")
    try:
        notes = next(g for g in _page_data(server, run)["media"] if g["key"] == "notes")
        problems = [r["problem"] for r in notes["records"]]
        assert problems[0] == "missing from the store" and problems[1].startswith("changed since it was logged")
        assert server.get(texts[0]["url"])[0] == 404
        status, headers, _ = server.request("GET", texts[1]["url"])
        assert status == 200 and headers["x-alexandria-integrity"].startswith("changed since it was logged")
    finally:
        files[0].write_text("first <script>document.title='pwned'</script>")
        files[1].write_text("second")
    # bad values are errors saying what to do, never a 500
    status, body = server.get(f"/api/run/{run}/media/{table['id']}/table?page=two")
    assert status == 400 and b"page must be a whole number" in body
    status, body = server.get(f"/api/run/{run}/media/{table['id']}/table?page=0")
    assert status == 400 and b"page must be 1 or more" in body
    assert server.get(f"/api/run/{run}/histogram/nope")[0] == 404
    assert server.get(f"/media/{run}/999999")[0] == 404
    assert server.get(f"/media/{run}/{table['id']}?file=svg")[0] == 404


def _page_data(server: Server, run: str) -> Any:
    import re

    status, body = server.get(f"/run/{run}")
    assert status == 200
    found = re.search(rb'<script type="application/json" id="page-data">(.*?)</script>', body, re.S)
    assert found is not None
    return json.loads(found.group(1))


# -- the data behind the page, without a browser ----------------------------------------------------------------


def _records(store: Any, run_id: str) -> dict[str, list[dict[str, Any]]]:
    from alexandria.query import Reader, media_records

    with Reader(store) as reader:
        found: dict[str, list[dict[str, Any]]] = {}
        for r in media_records(reader.engine, run_id):
            found.setdefault(r["key"], []).append(r)
        return found


@every_backend
def test_table_pages_from_csv_and_parquet_and_without_pyarrow(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import alexandria
    from alexandria import media as media_module
    from alexandria.ui.media import table_page

    rows = [{"n": i, "name": f"row {i}"} for i in range(1, 121)]
    with alexandria.start_run(experiment="media", store=store, capture=False) as run:
        run.log_table("parquet", rows)
        with monkeypatch.context() as m:
            m.setattr(media_module, "_pyarrow", lambda: None)  # no pyarrow when logging: CSV
            run.log_table("csv", rows)
    found = _records(store, run.id)
    assert found["csv"][0]["format"] == "csv" and found["parquet"][0]["format"] == "parquet"
    csv_page = table_page(store, run.id, found["csv"][0], 2)
    assert (csv_page.first, csv_page.pages, csv_page.total, csv_page.columns) == (51, 3, 120, ["n", "name"])
    assert csv_page.rows[0] == ["51", "row 51"] and len(csv_page.rows) == 50
    pq_page = table_page(store, run.id, found["parquet"][0], 3)
    assert pq_page.rows[0] == [101, "row 101"] and len(pq_page.rows) == 20 and pq_page.error is None
    beyond = table_page(store, run.id, found["parquet"][0], 9)
    assert beyond.rows == [] and beyond.error is None
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # pyarrow not installed where the dashboard runs
    said = table_page(store, run.id, found["parquet"][0], 1)
    assert said.rows == [] and said.error == (
        "this table is Parquet and pyarrow is not installed: pip install 'alexandria[media]'"
    )
    assert table_page(store, run.id, found["csv"][0], 1).rows[0] == ["1", "row 1"]  # CSV needs no pyarrow


@every_backend
def test_histogram_grid_keeps_every_count(store: Any) -> None:
    import alexandria
    from alexandria.query import Reader
    from alexandria.ui.media import HEATMAP_BINS, histogram_grid

    rng = __import__("numpy").random.default_rng(11)
    with alexandria.start_run(experiment="media", store=store, capture=False) as run:
        for step in range(4):
            run.log_histogram("w", rng.normal(step * 3, 1.0, 500), step=step, bins=10)
        run.log_histogram("w", [2.0] * 7, step=4, bins=3)  # every value equal: bins of no width
        run.log_histogram("w", [1.0, 2.0], step=4, bins=2)  # a second record at one step stays its own
    with Reader(store) as reader:
        grid = histogram_grid(reader.engine, run.id, "w")
        assert histogram_grid(reader.engine, run.id, "nope") is None
    assert grid is not None
    assert grid["steps"] == [0, 1, 2, 3, 4, 4]
    assert len(grid["z"]) == HEATMAP_BINS and len(grid["edges"]) == HEATMAP_BINS + 1
    totals = [sum(row[i] for row in grid["z"]) for i in range(6)]
    assert totals == pytest.approx([500, 500, 500, 500, 7, 2], abs=HEATMAP_BINS * 0.0005)  # cells: 3 decimals


def test_artifact_previews_are_capped(tmp_path: Path) -> None:
    from alexandria.ui.media import PREVIEW_BYTES, PREVIEW_LINES, artifact_preview

    def preview(name: str, data: bytes, kind: str | None = None) -> Any:
        path = tmp_path / name
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            return artifact_preview(fd, path, {"type": kind}, f"/artifact/x/{name}")
        finally:
            os.close(fd)

    big = b"".join(b"line %d <b>\n" % i for i in range(1_000_000))  # ~13 MB: only the head is read
    got = preview("log.txt", big)
    assert got["kind"] == "text" and got["more"] and len(got["text"].splitlines()) == PREVIEW_LINES
    assert got["text"].startswith("line 0 <b>\nline 1 <b>")
    assert preview("notes.md", b"# title\n")["text"] == "# title"
    table = preview("m.csv", b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(100)))
    assert table["header"] == ["a", "b"] and table["rows"][:2] == [["0", "0"], ["1", "1"]] and table["more"]
    assert len(table["rows"]) == 20
    assert preview("p.html", b"<script></script>") == {"kind": "html", "url": "/artifact/x/p.html"}
    assert preview("i.png", b"\x89PNG") == {"kind": "image", "url": "/artifact/x/i.png"}
    assert preview("weights.npy", b"\x93NUMPY") is None
    assert preview("huge.bin", b"\0" * (PREVIEW_BYTES + 1)) is None
