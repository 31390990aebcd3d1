"""The dashboard's filter box speaks the filter language (docs/filters.md): typed into the runs page of a real
`alex ui` in Debian's Chromium (through Playwright), it keeps only the matching runs, the URL carries it (a
view to share), and a filter that does not parse is shown as its error on the page, never a 500."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from alexandria.store import Store
from tests.conftest import wait_until
from tests.test_filters import seed
from tests.test_ui import CHROMIUM_ARGS, _browser_or_skip, _save_artifact, start_ui, stop_ui

GOOD = 'metrics.val/accuracy.max > 0.9 and (tags.team = "vision" or status = "failed") and not name = "x"'
BAD = "params.lr > <b>"


def test_a_bad_filter_is_its_error_not_a_500(store: Store) -> None:
    ids = seed(store)
    server = start_ui(store.root, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 4, timeout=60, what="4 runs in /api/runs")
        got = server.json("/api/runs?q=" + quote(GOOD))
        assert sorted(r["id"] for r in got["runs"]) == sorted([ids["a"], ids["b"]]) and got["errors"] == []
        got = server.json("/api/runs?q=" + quote(BAD))
        assert got["count"] == 4  # not applied, and said
        assert got["errors"] == [
            "filter 'params.lr > <b>': expected a number at position 12, found '<' (the filter is not applied)"
        ]
        status, body = server.get("/?q=" + quote(BAD))
        assert status == 200
        assert "expected a number at position 12, found &#39;&lt;&#39;" in body.decode() and "<b>" not in body.decode()
    finally:
        stop_ui(server)


def test_the_filter_box_in_a_real_browser(store: Store, tmp_path: Path) -> None:
    sync_playwright, chromium = _browser_or_skip()
    ids = seed(store)
    server = start_ui(store.root, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 4, timeout=60, what="4 runs in /api/runs")
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=chromium,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
            )
            try:
                page = context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.set_default_timeout(20_000)
                page.goto(server.url)
                rows = page.locator("#runs-table tbody tr[data-run-id]")
                assert rows.count() == 4
                page.fill("#f-q", GOOD)
                page.click("#f-apply")
                page.wait_for_url("**q=**")
                shown = {rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())}
                assert shown == {ids["a"], ids["b"]}
                assert parse_qs(urlsplit(page.url).query)["q"] == [GOOD]  # the view is in its URL
                assert page.input_value("#f-q") == GOOD
                shot = tmp_path / "ui-filter.png"
                page.screenshot(path=str(shot), full_page=True)
                _save_artifact(shot)

                shared = context.new_page()  # the URL alone gives the same view
                shared.goto(page.url)
                assert shared.locator("#runs-table tbody tr[data-run-id]").count() == 2

                page.fill("#f-q", BAD)
                page.click("#f-apply")
                page.wait_for_selector(".filter-error")
                assert page.locator(".filter-error").inner_text() == (
                    "filter 'params.lr > <b>': expected a number at position 12, found '<' (the filter is not applied)"
                )
                assert page.locator("#filter-pointer").inner_text() == "  params.lr > <b>\n              ^"
                assert rows.count() == 4
                shot = tmp_path / "ui-filter-error.png"
                page.screenshot(path=str(shot), full_page=True)
                _save_artifact(shot)
                assert not problems, problems
            finally:
                context.close()
    finally:
        stop_ui(server)
