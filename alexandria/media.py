"""What a run logs to look at: images, figures, tables, texts and histograms (`Run.log_image`, ...).

Each input is checked and turned into the bytes of its file(s) here, before anything is written; tracking.py
writes the files into the run's artifact folder (`media_dir`) and then queues one event (`MediaLogged`, or
`HistogramLogged`, whose bins go into SQL and have no file). numpy, Pillow, pandas, pyarrow and matplotlib are
imported only when a call needs them: `import alexandria` stays cheap.

Files: an image is PNG (Pillow, the `media` extra); a plotly figure its `to_json()` (the dashboard draws it with
its own plotly.js: an HTML copy would carry 3.5 MB of plotly.js per figure, or load it from a CDN); a matplotlib
figure PNG and SVG; a table Parquet when pyarrow is installed, else CSV; a text UTF-8 .txt.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInputError, MissingExtraError

#: The folder, inside a run's artifact folder, that its media files go to (`log_artifact` refuses the name).
MEDIA_DIR = ".media"
#: Most bins a histogram may have (each is a row of the `histogram` table).
MAX_BINS = 10_000
#: Longest folder name a key becomes before it is cut and given its hash (file systems allow 255 bytes).
_NAME_MAX = 120


@dataclass
class Encoded:
    """A media input made ready: its files' (format, extension, bytes), the first the record's own, and what
    the event says of it."""

    kind: str
    files: list[tuple[str, str, bytes]]
    width: int | None = None
    height: int | None = None
    n_rows: int | None = None
    n_cols: int | None = None
    columns: list[str] = field(default_factory=list)


@dataclass
class Histogram:
    """A histogram made ready: finite edges, counts, and what was dropped."""

    edges: list[float]
    counts: list[int]
    min: float | None
    max: float | None
    count: int
    nonfinite: int


def key_folder(key: str) -> str:
    """A file name for a media key: percent-encoded so that no '/', '.' or '..' survives (a key never names a
    folder outside the run's media folder), cut and suffixed with a hash of the key when long."""
    from urllib.parse import quote

    name = quote(key, safe="-_").replace(".", "%2E")
    if len(name) > _NAME_MAX:
        name = f"{name[:80]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return name


def require_pillow(what: str) -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise MissingExtraError(
            f"{what} needs Pillow, which is not installed: pip install 'alexandria[media]'"
        ) from None
    return PIL.Image


def _pyarrow() -> Any:
    """pyarrow and its Parquet writer, or None when pyarrow is not installed (a table is then CSV)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        return None
    return pyarrow


# -- images -------------------------------------------------------------------------------------------------------
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def encode_image(key: str, image: Any) -> Encoded:
    """An image as PNG: a numpy array (HxW grey, HxWx3 RGB, HxWx4 RGBA; uint8, integers in 0..255, floats in
    [0, 1], or bool), a PIL image, or the path of an image file Pillow reads."""
    what = f"log_image({key!r})"
    pil = require_pillow(what)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InvalidInputError(
                f"{what}: {str(path)!r} is not a file; pass an image file's path, an array or a PIL image"
            )
        try:
            with pil.open(path) as opened:
                opened.load()
                img = opened.copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInputError(f"{what}: {str(path)!r} is not an image Pillow can read ({exc})") from None
    elif isinstance(image, pil.Image):
        img = image
    else:
        img = pil.fromarray(_image_array(what, image))
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Encoded("image", [("png", "png", buf.getvalue())], width=img.width, height=img.height)


def _image_array(what: str, image: Any) -> Any:
    """The uint8 array Pillow makes the image of, or InvalidInputError saying what was wrong."""
    import numpy as np

    if isinstance(image, (bytes, bytearray, memoryview)) or not (
        isinstance(image, np.ndarray) or hasattr(image, "__array__")
    ):
        raise InvalidInputError(
            f"{what}: cannot make an image of a {type(image).__name__}; pass a numpy array, a PIL image or a file path"
        )
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        channels_first = a.ndim == 3 and a.shape[0] in (1, 3, 4)
        hint = "; a channels-first array becomes one with array.transpose(1, 2, 0)" if channels_first else ""
        raise InvalidInputError(
            f"{what}: an image array must be HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA); got shape {a.shape}{hint}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InvalidInputError(f"{what}: the image array is empty (shape {a.shape})")
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.integer):
        low, high = int(a.min()), int(a.max())
        if low < 0 or high > 255:
            raise InvalidInputError(
                f"{what}: integer image values must lie in 0..255; found {low}..{high}; pass uint8, or floats in [0, 1]"
            )
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidInputError(f"{what}: the image holds NaN or infinite values; pass finite floats in [0, 1]")
        fmin, fmax = float(a.min()), float(a.max())
        if fmin < 0.0 or fmax > 1.0:
            raise InvalidInputError(
                f"{what}: float image values must lie in [0, 1]; found {fmin:g}..{fmax:g}; "
                "scale them (for example array / 255) or pass uint8"
            )
        return np.round(a * 255.0).astype(np.uint8)
    raise InvalidInputError(
        f"{what}: image arrays of dtype {a.dtype} are not supported; pass uint8, float in [0, 1] or bool"
    )


def _package(obj: Any) -> str:
    """The top-level package an object's class comes from ("pandas", "plotly", ...), told without importing it."""
    return (type(obj).__module__ or "").partition(".")[0]


# -- figures ------------------------------------------------------------------------------------------------------
def encode_figure(key: str, fig: Any) -> Encoded:
    """A plotly figure as its JSON; a matplotlib figure as PNG and SVG."""
    module = _package(fig)
    if module == "plotly" and hasattr(fig, "to_json"):
        return Encoded("figure", [("plotly.json", "plotly.json", fig.to_json().encode("utf-8"))])
    if module == "matplotlib" and hasattr(fig, "savefig"):
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png")
        fig.savefig(svg, format="svg")
        width, height = _png_size(png.getvalue())
        return Encoded("figure", [("png", "png", png.getvalue()), ("svg", "svg", svg.getvalue())], width, height)
    raise InvalidInputError(
        f"log_figure({key!r}): cannot log a {type(fig).__name__}; pass a plotly figure or a matplotlib figure"
    )


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk)."""
    import struct

    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- tables -------------------------------------------------------------------------------------------------------
def encode_table(key: str, data: Any) -> Encoded:
    """A table as Parquet (pyarrow installed) or CSV: a pandas DataFrame, a pyarrow Table, a list of dicts
    (one per row) or a dict of columns (equal lengths)."""
    what = f"log_table({key!r})"
    module = _package(data)
    frame = table = None
    if module == "pandas" and hasattr(data, "columns"):
        frame = data
        columns = [str(c) for c in data.columns]
        n_rows = len(data)
    elif module == "pyarrow" and hasattr(data, "column_names"):
        table = data
        columns, n_rows = [str(c) for c in data.column_names], data.num_rows
    elif isinstance(data, Mapping):
        columns = [str(c) for c in data]
        lengths = {str(c): len(v) for c, v in data.items() if isinstance(v, Sequence) and not isinstance(v, str)}
        if len(lengths) != len(columns):
            raise InvalidInputError(f"{what}: a dict of columns maps each column name to a list of its values")
        if len(set(lengths.values())) > 1:
            raise InvalidInputError(f"{what}: the columns have different lengths ({lengths}); give each as many values")
        n_rows = next(iter(lengths.values()), 0)
        rows = [{c: data[c][i] for c in data} for i in range(n_rows)]
        data = {str(c): list(v) for c, v in data.items()}
    elif (
        isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and all(isinstance(r, Mapping) for r in data)
    ):
        seen: dict[str, None] = {}
        for r in data:
            seen.update(dict.fromkeys(str(c) for c in r))
        columns, n_rows = list(seen), len(data)
        rows = [{c: r.get(c) for c in columns} for r in ({str(k): v for k, v in r.items()} for r in data)]
        data = {c: [r[c] for r in rows] for c in columns}
    else:
        raise InvalidInputError(
            f"{what}: cannot make a table of a {type(data).__name__}; pass a pandas DataFrame, a pyarrow Table, "
            "a list of dicts (one per row) or a dict of columns"
        )
    if not columns:
        raise InvalidInputError(f"{what}: the table has no columns")
    if len(set(columns)) != len(columns):
        raise InvalidInputError(f"{what}: column names repeat ({columns}); give each column its own name")
    shape = {"n_rows": n_rows, "n_cols": len(columns), "columns": columns}
    pa = _pyarrow()
    if pa is not None:
        try:
            if frame is not None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
            elif table is None:
                table = pa.table(data)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{what}: pyarrow cannot store these values as a table ({exc})") from None
        buf = io.BytesIO()
        pa.parquet.write_table(table, buf)
        return Encoded("table", [("parquet", "parquet", buf.getvalue())], **shape)  # type: ignore[arg-type]
    import csv

    text = io.StringIO()
    if frame is not None:
        frame.to_csv(text, index=False)
    else:
        if table is not None:
            rows = table.to_pylist()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return Encoded("table", [("csv", "csv", text.getvalue().encode("utf-8"))], **shape)  # type: ignore[arg-type]


# -- text ---------------------------------------------------------------------------------------------------------
def encode_text(key: str, text: Any) -> Encoded:
    if not isinstance(text, str):
        raise InvalidInputError(f"log_text({key!r}): text must be a str, got {type(text).__name__}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"log_text({key!r}): the text holds a lone surrogate; clean it with .encode('utf-8', 'replace').decode()"
        ) from None
    return Encoded(
        "text", [("txt", "txt", data)], n_rows=text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    )


# -- histograms ---------------------------------------------------------------------------------------------------
def histogram_of(key: str, values: Any, bins: Any) -> Histogram:
    """numpy's histogram of the finite values, with how many NaN and +-inf were dropped."""
    import numpy as np

    what = f"log_histogram({key!r})"
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise InvalidInputError(f"{what}: bins must be an integer from 1 to {MAX_BINS}, got {bins!r}")
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{what}: values must be numbers (a list or an array), got a {type(values).__name__}")
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: values must be numbers (a list or an array) ({exc})") from None
    finite = a[np.isfinite(a)]
    dropped = int(a.size - finite.size)
    if finite.size == 0:
        raise InvalidInputError(
            f"{what}: no finite values to count ({a.size} given, {dropped} NaN or infinite); pass at least one"
        )
    counts, edges = np.histogram(finite, bins=bins)
    return Histogram(
        [float(e) for e in edges], [int(c) for c in counts], float(finite.min()), float(finite.max()),
        int(finite.size), dropped,
    )  # fmt: skip


def histogram_from_counts(key: str, counts: Any, edges: Any) -> Histogram:
    """A histogram already counted (numpy's `(counts, edges)`, W&B's `np_histogram`, TensorBoard's buckets)."""
    what = f"log_histogram({key!r})"
    try:
        c = [int(x) for x in counts]
        e = [float(x) for x in edges]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: np_histogram must be (counts, edges), numbers both ({exc})") from None
    if not c or len(e) != len(c) + 1:
        raise InvalidInputError(
            f"{what}: np_histogram needs one more edge than counts and at least one bin; "
            f"got {len(c)} counts, {len(e)} edges"
        )
    if len(c) > MAX_BINS:
        raise InvalidInputError(f"{what}: {len(c)} bins; the limit is {MAX_BINS}")
    if any(x < 0 for x in c):
        raise InvalidInputError(f"{what}: counts must not be negative")
    if not all(math.isfinite(x) for x in e) or any(b < a for a, b in zip(e, e[1:], strict=False)):
        raise InvalidInputError(f"{what}: edges must be finite and in increasing order")
    return Histogram(e, c, e[0], e[-1], sum(c), 0)


def rebin(
    lower: list[list[float]], upper: list[list[float]], counts: list[list[int]], n: int
) -> tuple[list[float], list[list[float]]]:
    """Histograms with bins of their own spread onto `n` common equal bins spanning them all (a bin's count
    shared in proportion to its overlap with each common bin): what a step x bin heatmap draws. Returns the
    common edges and, per histogram, its `n` counts."""
    import numpy as np

    lo = min(row[0] for row in lower)
    hi = max(row[-1] for row in upper)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, n + 1)
    out = []
    for low, up, cnt in zip(lower, upper, counts, strict=True):
        a, b, c = np.asarray(low), np.asarray(up), np.asarray(cnt, dtype=np.float64)
        width = np.where(b > a, b - a, 1.0)
        # overlap of every own bin (rows) with every common bin (columns)
        left = np.maximum(a[:, None], edges[None, :-1])
        right = np.minimum(b[:, None], edges[None, 1:])
        share = np.clip(right - left, 0.0, None) / width[:, None]
        point = b <= a  # a bin of no width (all values equal): its count in the common bin holding it
        if point.any():
            idx = np.clip(np.searchsorted(edges, a[point], side="right") - 1, 0, n - 1)
            share[point] = 0.0
            share[np.nonzero(point)[0], idx] = 1.0
        out.append((c @ share).tolist())
    return edges.tolist(), out
