"""Media a run logs to look at: images, figures, tables, texts and histograms, as files in the store, events in
the log and rows of the `media` and `histogram` tables (equal after a rebuild), checked by `alex verify`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import alexandria
from alexandria.db import open_database
from alexandria.errors import InvalidInputError, NoActiveRunError
from alexandria.store import Store
from alexandria.verify import verify_files
from tests.conftest import alex, make_seed, query, rebuilt_snapshot, run_python, skip_outside_ci, snapshot

MEDIA_COLUMNS = "key, step, kind, path, format, size, sha256, width, height, caption, n_rows, n_cols, columns"


def media_rows(store: Store, where: str = "1 = 1") -> list[dict[str, Any]]:
    cols = [c.strip() for c in MEDIA_COLUMNS.split(",")]
    found = query(store, f"SELECT {MEDIA_COLUMNS} FROM media WHERE {where} ORDER BY key, step, id")
    return [dict(zip(cols, r, strict=True)) for r in found]


def file_of(store: Store, row: dict[str, Any]) -> bytes:
    data = (store.root / row["path"]).read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (row["size"], row["sha256"])
    return data


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return np.asarray(img)


def test_images_from_arrays_pil_images_and_files_are_pngs_with_their_pixels(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(make_seed())
    grey = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    rgb = rng.random((4, 6, 3))
    rgba = rng.integers(0, 256, (3, 2, 4), dtype=np.uint8)
    mask = rng.random((5, 5)) > 0.5
    pil = Image.fromarray(rng.integers(0, 256, (8, 9, 3), dtype=np.uint8))
    on_disk = tmp_path / "photo.png"
    Image.fromarray(grey).save(on_disk)
    with alexandria.start_run(experiment="media", store=store) as run:
        run.log_image("grey", grey, step=0, caption="a grey one")
        run.log_image("rgb", rgb, step=1)
        run.log_image("rgba", rgba)
        run.log_image("mask", mask, step=2)
        run.log_image("pil", pil, step=3)
        returned = run.log_image("file", on_disk, step=4)
    rows = {r["key"]: r for r in media_rows(store)}
    assert returned == rows["file"]["path"]
    assert {k: (r["kind"], r["format"], r["width"], r["height"], r["step"]) for k, r in rows.items()} == {
        "grey": ("image", "png", 5, 7, 0),
        "rgb": ("image", "png", 6, 4, 1),
        "rgba": ("image", "png", 2, 3, None),
        "mask": ("image", "png", 5, 5, 2),
        "pil": ("image", "png", 9, 8, 3),
        "file": ("image", "png", 5, 7, 4),
    }
    assert rows["grey"]["caption"] == "a grey one" and rows["rgb"]["caption"] is None
    np.testing.assert_array_equal(pixels(file_of(store, rows["grey"])), grey)
    np.testing.assert_array_equal(pixels(file_of(store, rows["rgb"])), np.round(rgb * 255).astype(np.uint8))
    np.testing.assert_array_equal(pixels(file_of(store, rows["rgba"])), rgba)
    np.testing.assert_array_equal(pixels(file_of(store, rows["mask"])), mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(pixels(file_of(store, rows["pil"])), np.asarray(pil))
    np.testing.assert_array_equal(pixels(file_of(store, rows["file"])), grey)
    for r in rows.values():
        assert r["path"].startswith(f"artifacts/{run.id}/.media/")


def test_a_key_with_slashes_and_dots_stays_inside_the_runs_media_folder(store: Store) -> None:
    img = np.zeros((2, 2), dtype=np.uint8)
    keys = ["../../../escape", "a/../../b", "..", ".", "train/samples", "/abs", "x" * 250]
    with alexandria.start_run(experiment="media", store=store) as run:
        for key in keys:
            run.log_image(key, img, step=1)
    folder = (store.artifact_dir(run.id) / ".media").resolve()
    rows = media_rows(store)
    assert sorted(r["key"] for r in rows) == sorted(keys)
    for r in rows:
        real = (store.root / r["path"]).resolve()
        assert real.parent.parent == folder, r
        assert real.is_file()
    assert len({(store.root / r["path"]).parent for r in rows}) == len(keys)  # one folder per key
    outside = [p for p in store.root.rglob("*") if p.is_file() and folder not in p.resolve().parents]
    assert not [p for p in outside if p.suffix == ".png"], outside


def test_figures_plotly_as_json_and_matplotlib_as_png_and_svg(store: Store) -> None:
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[3, 1, 2], name="loss"))
    with alexandria.start_run(experiment="media", store=store) as run:
        run.log_figure("curves", fig, step=5)
    (row,) = media_rows(store)
    assert (row["kind"], row["format"], row["step"]) == ("figure", "plotly.json", 5)
    assert json.loads(file_of(store, row)) == json.loads(fig.to_json())

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        skip_outside_ci("matplotlib is not installed: its figures' PNG and SVG are not tested")
    mfig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [1, 0])
    with alexandria.start_run(experiment="media", store=store) as run2:
        run2.log_figure("mpl", mfig)
    plt.close(mfig)
    (mrow,) = media_rows(store, f"run_id = '{run2.id}'")
    assert (mrow["kind"], mrow["format"], mrow["width"], mrow["height"]) == ("figure", "png", 100, 50)
    assert pixels(file_of(store, mrow)).shape[:2] == (50, 100)
    (files,) = query(store, f"SELECT files FROM media WHERE run_id = '{run2.id}'")[0]
    (svg,) = json.loads(files)
    data = (store.root / svg["path"]).read_bytes()
    assert svg["format"] == "svg" and data.lstrip().startswith(b"<?xml") and b"<svg" in data
    assert (svg["size"], svg["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    (store.root / svg["path"]).write_bytes(data + b"<!-- changed -->")
    (problem,) = verify_files(store, [run2.id]).problems  # the record's second file is checked too
    assert (problem.kind, problem.name, problem.status) == ("media", "mpl (svg)", "changed")


def test_tables_of_every_kind_are_parquet_with_their_shape_and_columns(store: Store) -> None:
    frame = pd.DataFrame({"epoch": [1, 2, 3], "acc": [0.5, 0.7, 0.9], "split": ["a", "b", "c"]})
    with alexandria.start_run(experiment="media", store=store) as run:
        run.log_table("frame", frame, step=0)
        run.log_table("dicts", [{"x": 1, "y": "one"}, {"x": 2, "z": 2.5}])
        run.log_table("columns", {"a": [1, 2], "b": [True, False]})
        run.log_table("arrow", pa.table({"k": ["p", "q", "r", "s"]}))
    rows = {r["key"]: r for r in media_rows(store)}
    shapes = {k: (r["kind"], r["format"], r["n_rows"], r["n_cols"], json.loads(r["columns"])) for k, r in rows.items()}
    assert shapes == {
        "frame": ("table", "parquet", 3, 3, ["epoch", "acc", "split"]),
        "dicts": ("table", "parquet", 2, 3, ["x", "y", "z"]),
        "columns": ("table", "parquet", 2, 2, ["a", "b"]),
        "arrow": ("table", "parquet", 4, 1, ["k"]),
    }
    read = {k: pq.read_table(io.BytesIO(file_of(store, r))).to_pylist() for k, r in rows.items()}
    assert read["frame"] == frame.to_dict("records")
    assert read["dicts"] == [{"x": 1, "y": "one", "z": None}, {"x": 2, "y": None, "z": 2.5}]
    assert read["columns"] == [{"a": 1, "b": True}, {"a": 2, "b": False}]
    assert read["arrow"] == [{"k": k} for k in "pqrs"]


CSV_CHILD = """
import sys
sys.modules["pyarrow"] = None  # as if pyarrow were not installed
import alexandria, pandas as pd
with alexandria.start_run(experiment="media") as run:
    run.log_table("dicts", [{"x": 1, "y": "one"}, {"x": 2}])
    run.log_table("frame", pd.DataFrame({"a": [1.5, 2.0]}))
"""


def test_without_pyarrow_a_table_is_csv(store: Store) -> None:
    run_python(CSV_CHILD)
    rows = {r["key"]: r for r in media_rows(store)}
    assert {k: (r["format"], r["n_rows"], r["n_cols"]) for k, r in rows.items()} == {
        "dicts": ("csv", 2, 2),
        "frame": ("csv", 2, 1),
    }
    assert file_of(store, rows["dicts"]) == b"x,y\n1,one\n2,\n"
    assert file_of(store, rows["frame"]).decode().splitlines() == ["a", "1.5", "2.0"]


def test_texts_and_histograms_and_the_readmes_queries(store: Store) -> None:
    rng = np.random.default_rng(make_seed())
    values = [rng.normal(size=1000) + step for step in range(3)]
    values[1][:7] = np.nan
    values[1][7] = np.inf
    with alexandria.start_run(experiment="media", store=store) as run:
        run.log_text("notes", "first line\nsecond ünïcode line", step=0)
        for step, v in enumerate(values):
            run.log_histogram("weights", v, step=step, bins=16)
        run.log_histogram("given", np_histogram=([1, 2, 3], [0.0, 0.5, 1.0, 2.0]))
    (text,) = media_rows(store, "kind = 'text'")
    assert file_of(store, text).decode("utf-8") == "first line\nsecond ünïcode line"
    assert (text["format"], text["n_rows"], text["step"]) == ("txt", 2, 0)
    summary = query(
        store,
        f"SELECT step, value_min, value_max, value_count, nonfinite, n_rows FROM media "
        f"WHERE run_id = '{run.id}' AND key = 'weights' ORDER BY step",
    )
    for (_step, low, high, count, nonfinite, bins), v in zip(summary, values, strict=True):
        finite = v[np.isfinite(v)]
        assert (low, high, count, nonfinite, bins) == (
            finite.min(),
            finite.max(),
            finite.size,
            v.size - finite.size,
            16,
        )
    bins = query(
        store,
        f"SELECT step, lower, upper, count FROM histogram WHERE run_id = '{run.id}' AND key = 'weights' "
        "ORDER BY step, bin",
    )
    for step, v in enumerate(values):
        counts, edges = np.histogram(v[np.isfinite(v)], bins=16)
        got = [b for b in bins if b[0] == step]
        assert [b[3] for b in got] == counts.tolist()
        assert [b[1] for b in got] + [got[-1][2]] == edges.tolist()
    assert query(store, "SELECT bin, lower, upper, count FROM histogram WHERE key = 'given' ORDER BY bin") == [
        (0, 0.0, 0.5, 1),
        (1, 0.5, 1.0, 2),
        (2, 1.0, 2.0, 3),
    ]
    assert query(store, "SELECT path, step, value_count FROM media WHERE key = 'given'") == [(None, None, 6)]


def test_module_level_calls_log_into_the_active_run(store: Store) -> None:
    with pytest.raises(NoActiveRunError):
        alexandria.log_text("t", "no run")
    with alexandria.start_run(experiment="media", store=store) as run:
        alexandria.log_image("img", np.ones((2, 3), dtype=np.uint8), step=1, caption="c")
        alexandria.log_figure("fig", go.Figure(), step=1)
        alexandria.log_table("tab", {"a": [1]}, step=1)
        alexandria.log_text("txt", "hello", step=1)
        alexandria.log_histogram("hist", [1, 2, 3], step=1, bins=3)
    assert query(store, f"SELECT key, kind, step FROM media WHERE run_id = '{run.id}' ORDER BY key") == [
        ("fig", "figure", 1),
        ("hist", "histogram", 1),
        ("img", "image", 1),
        ("tab", "table", 1),
        ("txt", "text", 1),
    ]


def test_a_rebuild_gives_the_rows_the_live_projection_gave(backend_store: Store) -> None:
    store = backend_store
    rng = random.Random(make_seed())
    with alexandria.start_run(experiment="media", store=store) as run:
        for step in range(rng.randint(2, 5)):
            run.log_image("img", np.full((3, 4), step, dtype=np.uint8), step=step, caption=f"step {step}")
            run.log_histogram("h", [rng.gauss(0, 1) for _ in range(50)] + [float("nan")], step=step, bins=8)
            run.log_text("t", f"text {step}", step=step)
        run.log_figure("f", go.Figure(go.Bar(y=[1, 2])))
        run.log_table("tab", [{"a": 1}, {"a": 2}])
        run.log_metric("loss", 0.5, step=0)
    engine = open_database(store)
    try:
        live = snapshot(engine)
    finally:
        engine.dispose()
    assert live["media"] and live["histogram"]
    assert rebuilt_snapshot(store) == live


BAD = [
    ("log_image", ("", np.zeros((2, 2))), {}, "media key must be a non-empty string, got ''"),
    (
        "log_image",
        ("img", np.zeros((2, 2, 2))),
        {},
        "log_image('img'): an image array must be HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA); got shape (2, 2, 2)",
    ),
    (
        "log_image",
        ("img", np.zeros((3, 4, 5))),
        {},
        "log_image('img'): an image array must be HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA); got shape (3, 4, 5); "
        "a channels-first array becomes one with array.transpose(1, 2, 0)",
    ),
    ("log_image", ("img", np.zeros((0, 4))), {}, "log_image('img'): the image array is empty (shape (0, 4))"),
    (
        "log_image",
        ("img", np.array([[0.5, np.nan]])),
        {},
        "log_image('img'): the image holds NaN or infinite values; pass finite floats in [0, 1]",
    ),
    (
        "log_image",
        ("img", np.array([[0.0, 2.0]])),
        {},
        "log_image('img'): float image values must lie in [0, 1]; found 0..2; scale them (for example array / 255) "
        "or pass uint8",
    ),
    (
        "log_image",
        ("img", np.array([[-1, 300]])),
        {},
        "log_image('img'): integer image values must lie in 0..255; found -1..300; pass uint8, or floats in [0, 1]",
    ),
    (
        "log_image",
        ("img", np.array([["a", "b"]])),
        {},
        "log_image('img'): image arrays of dtype <U1 are not supported; pass uint8, float in [0, 1] or bool",
    ),
    (
        "log_image",
        ("img", 42),
        {},
        "log_image('img'): cannot make an image of a int; pass a numpy array, a PIL image or a file path",
    ),
    (
        "log_image",
        ("img", "/no/such/file.png"),
        {},
        "log_image('img'): '/no/such/file.png' is not a file; pass an image file's path, an array or a PIL image",
    ),
    (
        "log_image",
        ("img", np.zeros((2, 2))),
        {"caption": 3},
        "log_image('img'): caption must be a str or None, got int",
    ),
    ("log_image", ("img", np.zeros((2, 2))), {"step": 1.5}, "step must be an integer or None, got 1.5"),
    (
        "log_figure",
        ("fig", "not a figure"),
        {},
        "log_figure('fig'): cannot log a str; pass a plotly figure or a matplotlib figure",
    ),
    (
        "log_table",
        ("tab", 3),
        {},
        "log_table('tab'): cannot make a table of a int; pass a pandas DataFrame, a pyarrow Table, a list of dicts "
        "(one per row) or a dict of columns",
    ),
    (
        "log_table",
        ("tab", {"a": [1, 2], "b": [1]}),
        {},
        "log_table('tab'): the columns have different lengths ({'a': 2, 'b': 1}); give each as many values",
    ),
    ("log_table", ("tab", []), {}, "log_table('tab'): the table has no columns"),
    (
        "log_table",
        ("tab", [{"a": 1}, {"a": "x"}]),
        {},
        None,  # pyarrow's own words follow the prefix
    ),
    ("log_text", ("txt", b"bytes"), {}, "log_text('txt'): text must be a str, got bytes"),
    (
        "log_histogram",
        ("h", [np.nan, np.inf]),
        {},
        "log_histogram('h'): no finite values to count (2 given, 2 NaN or infinite); pass at least one",
    ),
    ("log_histogram", ("h", [1.0]), {"bins": 0}, "log_histogram('h'): bins must be an integer from 1 to 10000, got 0"),
    (
        "log_histogram",
        ("h", "123"),
        {},
        "log_histogram('h'): values must be numbers (a list or an array), got a str",
    ),
    (
        "log_histogram",
        ("h",),
        {"np_histogram": ([1, 2], [0.0, 1.0])},
        "log_histogram('h'): np_histogram needs one more edge than counts and at least one bin; got 2 counts, 2 edges",
    ),
    (
        "log_histogram",
        ("h",),
        {},
        "log_histogram('h'): pass values, or np_histogram=(counts, edges), not both",
    ),
]


@pytest.mark.parametrize(("call", "args", "kwargs", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_media_are_refused_with_what_was_wrong_and_nothing_is_written(
    store: Store, call: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str | None
) -> None:
    with alexandria.start_run(experiment="media", store=store) as run:
        with pytest.raises(InvalidInputError) as caught:
            getattr(run, call)(*args, **kwargs)
        run.log_text("fine", "the run goes on")
    if message is None:
        assert str(caught.value).startswith("log_table('tab'): pyarrow cannot store these values as a table (")
    else:
        assert str(caught.value) == message
    assert query(store, "SELECT key FROM media") == [("fine",)]
    written = [p for p in (store.artifact_dir(run.id) / ".media").rglob("*") if p.is_file()]
    assert len(written) == 1  # the one text: nothing of the refused call


PILLOW_CHILD = """
import sys
sys.modules["PIL"] = None  # as if Pillow were not installed
import alexandria, numpy as np
from alexandria.errors import MissingExtraError
with alexandria.start_run(experiment="media") as run:
    try:
        run.log_image("img", np.zeros((2, 2), dtype=np.uint8))
    except MissingExtraError as exc:
        print(exc)
"""


def test_without_pillow_log_image_names_the_extra(store: Store) -> None:
    out = run_python(PILLOW_CHILD)
    assert out.strip() == "log_image('img') needs Pillow, which is not installed: pip install 'alexandria[media]'"
    assert query(store, "SELECT count(*) FROM media") == [(0,)]


def test_verify_checks_media_files_and_finds_one_changed(store: Store) -> None:
    with alexandria.start_run(experiment="media", store=store) as run:
        path = run.log_image("img", np.zeros((4, 4), dtype=np.uint8), step=3)
        run.log_text("txt", "kept")
    assert [c.name for c in verify_files(store).checks if c.kind == "media"] == ["img step 3 (png)", "txt (txt)"]
    assert not verify_files(store).problems
    (store.root / path).write_bytes(b"not the logged png")
    result = verify_files(store)
    (problem,) = result.problems
    assert (problem.kind, problem.name, problem.path, problem.status) == ("media", "img step 3 (png)", path, "changed")
    cli = alex("verify")
    assert cli.returncode == 1 and "img step 3 (png)" in cli.stdout + cli.stderr


def test_alex_show_lists_the_media_keys(store: Store) -> None:
    with alexandria.start_run(experiment="media", store=store) as run:
        for step in (0, 4, 2):
            run.log_image("samples", np.zeros((2, 2), dtype=np.uint8), step=step)
        run.log_text("readme", "hi")
    shown = alex("show", run.id, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["media"] == [
        {"key": "readme", "kind": "text", "count": 1, "last_step": None},
        {"key": "samples", "kind": "image", "count": 3, "last_step": 4},
    ]
    table = alex("show", run.id)
    assert "media" in table.stdout and "samples" in table.stdout, table.stdout


def test_an_artifact_cannot_take_the_media_folders_name(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    with (
        alexandria.start_run(experiment="media", store=store) as run,
        pytest.raises(InvalidInputError, match="is where the run's media files are kept"),
    ):
        run.log_artifact(src, name=".media")


def test_gc_purges_a_deleted_runs_media_and_keeps_the_others(store: Store) -> None:
    with alexandria.start_run(experiment="media", store=store) as gone:
        gone.log_image("img", np.zeros((2, 2), dtype=np.uint8))
    with alexandria.start_run(experiment="media", store=store) as kept:
        kept_path = kept.log_image("img", np.zeros((2, 2), dtype=np.uint8))
    assert alex("delete", gone.id).returncode == 0
    done = alex("gc", "--older-than", "0")
    assert done.returncode == 0, done.stderr
    assert not store.artifact_dir(gone.id).exists()
    assert (store.root / kept_path).is_file()
    assert query(store, "SELECT run_id FROM media") == [(kept.id,)]
    assert os.path.isdir(store.artifact_dir(kept.id) / ".media")


def test_gc_keeps_a_media_file_another_runs_event_records(store: Store) -> None:
    """A log recording a file inside another run's folder (an edited log, a copied record): purging that other
    run leaves the file, since an event still references it."""
    from alexandria.events import MediaLogged

    with alexandria.start_run(experiment="media", store=store) as gone:
        path = gone.log_image("img", np.zeros((2, 2), dtype=np.uint8))
    (size, sha) = query(store, "SELECT size, sha256 FROM media")[0]
    with alexandria.start_run(experiment="media", store=store) as other:
        event = MediaLogged(key="borrowed", kind="image", path=path, format="png", size=size, sha256=sha, time=1.0)
        other._put(event)  # type: ignore[attr-defined]
    assert alex("delete", gone.id).returncode == 0
    done = alex("gc", "--older-than", "0")
    assert done.returncode == 0, done.stderr
    assert (store.root / path).is_file()
    assert query(store, "SELECT run_id, key FROM media") == [(other.id, "borrowed")]
    assert not verify_files(store).problems
