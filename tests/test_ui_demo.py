"""`alex demo` end to end in the dashboard, in Debian's Chromium (through Playwright), as a new user meets it:
the runs table shows the sweep's values, a run's page draws its charts and the media the demo logged (the
weights as an image and a histogram, the ROC curve, the per-class table), and the compare page of the sweep
draws its parallel coordinates."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import alex, wait_until
from tests.test_ui import _save_artifact, chromium_context, start_ui, stop_ui


def test_the_demo_in_the_dashboard(tmp_path: Path) -> None:
    store = tmp_path / "store"
    demo = alex("--store", str(store), "demo", "--steps", "300", timeout=300)
    assert demo.returncode == 0, demo.stderr
    server = start_ui(store, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 5, timeout=60, what="the demo's 5 runs")
        children = [r for r in server.json("/api/runs")["runs"] if r["parent_id"]]
        assert len(children) == 4
        with chromium_context(tmp_path, width=1400) as (context, problems):
            page = context.new_page()

            page.goto(server.url)
            headers = page.locator("#runs-table thead th").all_inner_texts()
            assert any("params.lr" in h for h in headers), headers  # values that tell runs apart, not counts
            assert page.locator("#runs-table tbody tr[data-run-id]").count() == 5

            page.goto(f"{server.url}run/{children[0]['id']}")
            page.wait_for_selector("#charts .chart[data-drawn]")
            for key in ("weights", "weights/histogram", "val/roc", "val/per_class"):
                box = page.locator(f".media-box[data-key='{key}']")
                box.scroll_into_view_if_needed()
                page.wait_for_selector(f".media-box[data-key='{key}'][data-drawn='1']")
            image = page.locator(".media-box[data-key='weights'] img.media-image")
            assert image.evaluate("img => img.complete && img.naturalWidth") > 0
            page.locator(".media-box[data-key='val/roc'] svg.main-svg").first.wait_for()
            page.locator(".media-box[data-key='weights/histogram'] svg.main-svg").first.wait_for()
            assert page.locator(".media-box[data-key='val/per_class'] tbody tr").count() >= 2
            shot = tmp_path / "ui-demo-run.png"
            page.screenshot(path=str(shot), full_page=True)
            _save_artifact(shot)

            page.goto(f"{server.url}compare?run={','.join(c['id'] for c in children)}")
            page.locator("#parallel").scroll_into_view_if_needed()
            page.wait_for_selector("#parallel[data-drawn]")
            shot = tmp_path / "ui-demo-compare.png"
            page.screenshot(path=str(shot), full_page=True)
            _save_artifact(shot)
            assert problems == []
    finally:
        stop_ui(server)
