"""The reading API: run filters, downsampled histories that keep what matters, the tidy table."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import alexandria
from alexandria.store import Store
from tests.conftest import every_backend

#: Reading is the backends' own SQL (history and bucket queries): every test runs on each.
pytestmark = every_backend


@pytest.fixture
def sweep(store: Store) -> dict[str, str]:
    """A parent and three children with known parameters, tags and final accuracies."""
    ids = {}
    with alexandria.start_run(experiment="sweep", store=store, capture=False) as parent:
        ids["parent"] = parent.id
        for lr, acc, team in ((0.1, 0.70, "a"), (0.01, 0.90, "b"), (0.001, 0.95, "b")):
            with alexandria.start_run(
                experiment="sweep", store=store, parent=parent, tags={"team": team}, capture=False
            ) as run:
                run.log_params({"lr": lr, "opt": "sgd"})
                for step in range(5):
                    run.log_metric("val/acc", acc * (step + 1) / 5, step=step)
                ids[str(lr)] = run.id
    with alexandria.start_run(experiment="other", store=store, capture=False) as run:
        ids["other"] = run.id
    return ids


def test_runs_are_filtered_by_experiment_tag_param_metric_time_and_parent(store: Store, sweep: dict[str, str]) -> None:
    with alexandria.Reader(store) as r:

        def ids(**filters: object) -> set[str]:
            return {row["id"] for row in r.runs(**filters)}

        assert ids(experiment="other") == {sweep["other"]}
        assert ids(tags={"team": "b"}) == {sweep["0.01"], sweep["0.001"]}
        assert ids(params={"lr": 0.01}) == {sweep["0.01"]}  # the same text conversion as logging
        assert ids(params={"opt": "sgd"}, tags={"team": "a"}) == {sweep["0.1"]}
        assert ids(metric_filter=("val/acc", ">=", 0.9)) == {sweep["0.01"], sweep["0.001"]}  # the LAST value
        assert ids(metric_filter=("val/acc", "<", 0.8)) == {sweep["0.1"]}
        assert ids(parent_id=sweep["parent"]) == {sweep["0.1"], sweep["0.01"], sweep["0.001"]}
        assert ids(since=time.time() + 60) == set()
        assert len(ids(until=time.time() + 60)) == 5
        with pytest.raises(alexandria.QueryError, match="operator '~'"):
            r.runs(metric_filter=("val/acc", "~", 1.0))


def test_the_tidy_table_has_a_row_per_run_with_params_and_metric_summaries(store: Store, sweep: dict[str, str]) -> None:
    import pandas as pd

    with alexandria.Reader(store) as r:
        table = r.table([sweep["0.1"], sweep["0.001"][:10]], metrics=["val/acc"])
    assert isinstance(table, pd.DataFrame)
    assert list(table["run_id"]) == [sweep["0.1"], sweep["0.001"]]
    assert list(table["param.lr"]) == ["0.1", "0.001"]
    assert table["val/acc.last"].tolist() == pytest.approx([0.70, 0.95])
    assert table["val/acc.min"].tolist() == pytest.approx([0.14, 0.19])


def test_downsampling_keeps_a_one_step_spike_among_many_points(store: Store) -> None:
    n, spike_at = 300_000, 123_457
    values = np.sin(np.arange(n) / 5000.0)
    values[spike_at] = 50.0
    values[7] = math.nan
    with alexandria.start_run(experiment="long", store=store, capture=False) as run:
        for step, v in enumerate(values.tolist()):
            run.log_metric("loss", v, step=step)
    with alexandria.Reader(store) as r:
        d = r.downsample(run.id, "loss", buckets=500)
        assert len(d.x) == 500 and d.total == n and int(d.count.sum()) == n and not d.exact
        assert np.nanmax(d.max) == 50.0  # the spike survives in its bucket's max
        spiked = int(np.nanargmax(d.max))
        assert d.x[spiked - 1] < spike_at <= d.x[spiked]
        assert np.nanmin(d.min) == pytest.approx(-1.0, abs=1e-6)
        assert d.x[-1] == n - 1 and d.last[-1] == pytest.approx(values[-1])  # last = value at the bucket's last x
        # the buckets agree with a direct computation over the full history
        full = r.history(run.id, "loss")
        edges = np.searchsorted(full.steps, d.x, side="right")
        starts = np.concatenate([[0], edges[:-1]])
        for i in (0, 1, spiked, 499):
            chunk = full.values[starts[i] : edges[i]]
            assert d.max[i] == np.nanmax(chunk) and d.min[i] == np.nanmin(chunk)
        # zooming reads only the range shown, exactly when it holds fewer points than buckets
        zoom = r.downsample(run.id, "loss", buckets=1000, start=spike_at - 10, end=spike_at + 10)
        assert zoom.total == 21 and zoom.exact and 50.0 in zoom.last.tolist()
        # by wall-clock time too
        by_time = r.downsample(run.id, "loss", buckets=100, x="time")
        assert by_time.total == n and np.nanmax(by_time.max) == 50.0
        with pytest.raises(alexandria.QueryError, match="x must be 'step' or 'time'"):
            r.downsample(run.id, "loss", x="epoch")
        assert r.downsample(run.id, "missing").total == 0
