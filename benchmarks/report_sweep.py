"""`alex report --sweep` at scale: a sweep of many runs, each with thousands of points of a few metrics.

The report runs as the command a user types (a subprocess): its wall time and peak memory, the page's size,
and how long headless Chromium takes from loading the page to plotly's first drawing of every figure. The
limits, measured in the same run: for the report, the same points read with bare sqlite3 and written as one
JSON document (what a page holding the full-resolution data would cost at the least); for the first draw, the
same page with its figures' traces left out (the browser's own cost of the page and plotly.js).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import alexandria
from alexandria.db import open_database
from alexandria.store import Store

from .common import PEAK_MB, Result

METRICS = ("loss", "val/loss", "val/acc")


def build_sweep(root: Path, runs: int, points: int, seed: int = 0) -> str:
    """A store with a parent run and `runs` child runs, each logging `points` steps of `METRICS` and a few
    parameters (three that differ, two equal); folded into the database. Returns the parent's id."""
    rng = random.Random(seed)
    store = Store.open(root)
    with alexandria.start_run(experiment="sweep", name="sweep-parent", store=store, capture=False) as parent:
        for i in range(runs):
            lr = 10 ** rng.uniform(-4, -1)
            batch = rng.choice([16, 32, 64, 128])
            opt = rng.choice(["adam", "sgd", "adamw"])
            with alexandria.start_run(experiment="sweep", store=store, capture=False, parent=parent) as child:
                child.log_params({"lr": lr, "batch": batch, "opt": opt, "seed": 0, "layers": 4})
                rate = 1 + 20 * lr * (1 + i % 7)
                for step in range(points):
                    decay = math.exp(-rate * step / points)
                    noise = rng.random() * 0.05
                    child.log_metrics(
                        {"loss": decay + noise, "val/loss": decay * 1.1 + noise, "val/acc": 1 - decay * 0.9 - noise},
                        step=step,
                    )
    open_database(store).dispose()
    return parent.id


def _report(root: Path, parent: str, page: Path) -> tuple[float, float]:
    """`alex report --sweep PARENT -o PAGE` as a child process: its wall time and its own peak memory (the
    kernel's high-water mark of the child's address space, read as it exits: see core.PEAK_MB)."""
    code = (
        PEAK_MB + "import sys\n"
        "from alexandria.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print(f'peak_mb={peak_mb()}', file=sys.stderr)\n"
    )
    argv = ["alex", "--store", str(root), "report", "--sweep", parent, "-o", str(page)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv[1:]], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"alex report failed ({done.returncode}):\n{done.stderr}")
    peak = next(float(line.split("=")[1]) for line in done.stderr.splitlines() if line.startswith("peak_mb="))
    return wall, peak


def _raw_limit(root: Path, parent: str) -> tuple[float, int]:
    """The same points read with bare sqlite3 and written as one JSON document: the least a page holding
    them at full resolution would cost. Returns the seconds and the JSON's size."""
    t0 = time.perf_counter()
    con = sqlite3.connect(f"file:{root / 'alexandria.db'}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT m.run_id, m.key, m.step, m.value FROM metric m JOIN run r ON r.id = m.run_id "
        "WHERE r.parent_id = ? ORDER BY m.run_id, m.key, m.step",
        (parent,),
    ).fetchall()
    con.close()
    text = json.dumps(rows)
    return time.perf_counter() - t0, len(text)


def _without_traces(page: Path, name: str, *, only: str | None = None) -> Path:
    """The same page with every figure's data emptied, or only figure `only`'s (same tables, layouts,
    plotly.js): with all emptied, what opening the page costs the browser before any trace is drawn, the
    first draw's floor on this machine now."""
    text = page.read_text("utf-8")
    decoder = json.JSONDecoder()
    parts, pos = [], 0
    for m in re.finditer(r'Plotly\.newPlot\("([^"]+)", ', text):
        _data, end = decoder.raw_decode(text, m.end())
        if only is None or m.group(1) == only:
            parts += [text[pos : m.end()], "[]"]
            pos = end
    floor = page.with_name(name)
    floor.write_text("".join(parts) + text[pos:], "utf-8")
    return floor


def _first_draw(pages: list[Path], tmp: Path) -> list[tuple[float, float]] | str:
    """Per page: the seconds from asking headless Chromium for it to plotly having drawn every curves figure
    (the parallel view is drawn when scrolled to, see `pages.figure_html`), then the seconds from scrolling
    to the parallel view to its drawing (0 when the page has none). A note instead when Playwright or
    Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: Playwright is not installed (pip install -e '.[test]')"
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        return "skipped: no /usr/bin/chromium"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    drawn = (
        "(sel) => { const divs = [...document.querySelectorAll(sel)];"
        " return divs.every((d) => d._fullLayout && d.querySelector('.main-svg')); }"
    )
    out = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=chromium, args=args, viewport={"width": 1280, "height": 900}
        )
        try:
            tab = context.new_page()
            tab.set_default_timeout(120_000)
            for page in pages:
                tab.goto("about:blank")
                t0 = time.perf_counter()
                tab.goto(page.as_uri())
                tab.wait_for_function(drawn, arg="div.curves")
                first = time.perf_counter() - t0
                parallel = 0.0
                if tab.locator("#parallel").count():
                    t0 = time.perf_counter()
                    tab.locator("#parallel").scroll_into_view_if_needed()
                    tab.wait_for_function(drawn, arg="div.parallel")
                    parallel = time.perf_counter() - t0
                out.append((first, parallel))
        finally:
            context.close()
    return out


def bench_report_sweep(quick: bool, tmp: Path) -> list[Result]:
    """A sweep of 200 runs x 6,000 steps x 3 metrics (quick: 40 x 1,000): `alex report --sweep` as a command."""
    runs, points = (40, 1000) if quick else (200, 6000)
    root = tmp / "store"
    parent = build_sweep(root, runs, points)
    total = runs * points * len(METRICS)
    page = tmp / "out" / "sweep.html"
    page.parent.mkdir()
    wall, peak = _report(root, parent, page)
    raw_s, raw_bytes = _raw_limit(root, parent)
    size_mb = page.stat().st_size / 1e6
    draw = _first_draw([page, _without_traces(page, "floor.html")], tmp)
    shape = f"{runs} runs x {points:,} steps x {len(METRICS)} metrics"
    results = [
        Result(
            f"report --sweep ({shape})",
            total / wall,
            "points/s",
            total / raw_s,
            "sqlite3 read + json.dumps of the points",
            "< 10 s wall",
            extra={"wall_s": wall, "raw_read_and_json_s": raw_s, "full_resolution_json_mb": raw_bytes / 1e6},
        ),
        Result("report --sweep peak memory", peak, "MB", target="< 300 MB"),
        Result("report --sweep page size", size_mb, "MB", target="< 10 MB"),
    ]
    if isinstance(draw, str):
        results.append(Result("report --sweep first draw", 0.0, "s", target=f"< 3 s; {draw}"))
    else:
        # as rates (pages per second): the ratio is the page's speed beside the same page without its traces
        (first, parallel), (floor, _) = draw
        results.append(
            Result(
                "report --sweep first draw",
                1 / first,
                "pages/s",
                1 / floor,
                "the same page, no traces",
                "< 3 s (headless Chromium)",
                # parcoords draws through WebGL: headless Chromium without a GPU renders it in software
                extra={"curves_drawn_s": first, "without_traces_s": floor, "parallel_view_when_scrolled_s": parallel},
            )
        )
    return results
