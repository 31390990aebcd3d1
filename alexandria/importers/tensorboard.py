"""`alex import tensorboard LOGDIR`: TensorBoard event files into runs, read with TensorBoard's own loader.

Every directory under LOGDIR holding event files is one run, named by its path relative to LOGDIR. Its
event files are read in name order (their names start with the time they were opened) by TensorBoard's
`RawEventFileLoader`, each record parsed as an `Event` and each summary value brought to its current form
by TensorBoard's `data_compat` (tensorboardX's and PyTorch's `simple_value` scalars, histograms and images
become tensors with their plugin's name), so every writer's files read the same way.

What a run gets: every scalar point with its step and the wall time the writer recorded; the first event's
wall time as the run's start and the last one's as its end; the HParams plugin's hyperparameters
(`add_hparams`) as params; text summaries as tags (one short line) or as sections of the run's note; images
(`add_image`, `add_images`: TensorBoard keeps them as encoded PNGs) as `log_image` media and histograms
(`add_histogram`: bucket limits and counts) as `log_histogram` ones, at their steps and wall times. Audio and
the other plugins' data are counted and reported, not imported.

A record cut short at the end of a file (a file still being written, or truncated) is what TensorBoard calls
"not written yet": the complete records before it are imported and the rest is reported, never a crash.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImportSourceError, InvalidInputError
from ..rebuild import ProgressFactory
from ..store import Store
from . import ImportSummary, already_imported, require_module, stable_run_id, start_imported_run

_log = logging.getLogger(__name__)

TRACKER = "tensorboard"
#: A text summary becomes a tag when it is one value of one line up to this length; else part of the note.
TAG_TEXT_MAX = 250
#: The most characters of text summaries a run's note takes; text past it is counted as skipped.
NOTE_MAX = 100_000
MEDIA_REASON = "Alexandria logs images, figures, tables, texts and histograms only"
#: What a plugin's series is called in the summary.
_SKIPPED_KINDS = {"audio": "audio series"}


@dataclass
class _RunData:
    """One run's contents, gathered before anything is written (so a run with nothing readable is not
    created at all)."""

    points: list[tuple[str, float, int, float]] = field(default_factory=list)  # key, value, step, wall time
    params: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    images: list[tuple[str, int, float, bytes]] = field(default_factory=list)  # tag, step, wall time, PNG bytes
    #: tag, step, wall time, bucket edges, counts
    histograms: list[tuple[str, int, float, list[float], list[int]]] = field(default_factory=list)
    skipped: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # kind -> tags
    first_time: float | None = None
    last_time: float | None = None
    events: int = 0


def find_runs(logdir: Path) -> list[tuple[str, list[Path]]]:
    """Every run under logdir, as (relative path, its event files in name order), sorted by path."""
    io_wrapper = require_module("tensorboard.backend.event_processing.io_wrapper", "tensorboard")
    runs = []
    for directory in io_wrapper.GetLogdirSubdirectories(str(logdir)):
        files = sorted(
            Path(directory) / n
            for n in os.listdir(directory)
            if io_wrapper.IsSummaryEventsFile(os.path.join(directory, n))
        )
        files = [f for f in files if not f.is_dir()]  # a link that leads nowhere is kept: reading it says so
        if files:
            runs.append((Path(os.path.relpath(directory, logdir)).as_posix(), files))
    return sorted(runs)


def import_tensorboard(
    logdir: str | os.PathLike[str],
    store: Store,
    experiment: str | None = None,
    progress: ProgressFactory | None = None,
) -> ImportSummary:
    """Import every run of a TensorBoard logdir into the store (see the module's docstring); runs an earlier
    import wrote are skipped whole. `experiment` defaults to the logdir's folder name."""
    root = Path(logdir).expanduser()
    if not root.is_dir():
        raise ImportSourceError(f"{str(logdir)!r} is not a folder; give the logdir TensorBoard was pointed at")
    root = root.resolve()
    experiment = experiment or root.name or "tensorboard"
    if not isinstance(experiment, str) or not experiment.strip():
        raise InvalidInputError(f"the experiment must be a non-empty name, got {experiment!r}")
    runs = find_runs(root)
    if not runs:
        raise ImportSourceError(f"no TensorBoard event files (*tfevents*) under {str(root)!r}")
    summary = ImportSummary()
    total = sum(_size(f) for _, files in runs for f in files)
    advance = progress(total) if progress else None
    for rel, files in runs:
        name = rel if rel != "." else root.name
        # The run's own folder names it: importing LOGDIR's parent later finds the same runs already there.
        run_id = stable_run_id(TRACKER, str(root / rel))
        status = already_imported(store, run_id)
        if status is not None:
            summary.already_there[name] = status
            if advance:
                advance(sum(_size(f) for f in files))
            continue
        data = _RunData()
        for path in files:
            try:
                _read_file(path, data, summary, advance)
            except OSError as exc:  # nothing of this run is written yet: the runs before it stay imported
                raise ImportSourceError(
                    f"cannot read {path} ({exc.strerror or exc}); the runs before {name!r} were imported, "
                    "run the same import again once the file can be read"
                ) from exc
        if data.first_time is None:
            summary.warnings.append(f"{name}: no complete event in its files; not imported")
            continue
        _write_run(store, run_id, experiment, name, root / rel, data, summary)
    return summary


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # unreadable: _read_file says why


def _read_file(path: Path, data: _RunData, summary: ImportSummary, advance: Any) -> None:
    loader_module = require_module("tensorboard.backend.event_processing.event_file_loader", "tensorboard")
    from tensorboard import data_compat
    from tensorboard.compat.proto import event_pb2

    size = path.stat().st_size
    done = 0
    for record in loader_module.RawEventFileLoader(str(path)).Load():
        length = len(record) + 16  # the length (8 bytes) and its CRC (4), the data, and the data's CRC (4)
        done += length
        if advance:
            advance(length)
        try:
            event = event_pb2.Event.FromString(record)
        except Exception as exc:  # a record whose CRCs hold but whose bytes are no Event: say so, go on
            summary.warnings.append(f"{path}: a record at byte {done - length} is not an event ({exc}); skipped")
            continue
        _add_event(event, data, data_compat)
    if done < size:
        if advance:
            advance(size - done)
        summary.warnings.append(
            f"{path}: the last {size - done} byte(s) are not a complete record (a file still being written, "
            "or cut short); the complete records before them were imported"
        )


def _add_event(event: Any, data: _RunData, data_compat: Any) -> None:
    wall = float(event.wall_time)
    data.events += 1
    data.first_time = wall if data.first_time is None else min(data.first_time, wall)
    data.last_time = wall if data.last_time is None else max(data.last_time, wall)
    which = event.WhichOneof("what")
    if which in ("graph_def", "meta_graph_def", "tagged_run_metadata"):
        data.skipped["graphs"].add(which)
        return
    if which != "summary":
        return  # file_version, log_message, session_log: the run's times only
    for value in event.summary.value:
        if value.WhichOneof("value") == "simple_value":
            # The legacy scalar (tensorboardX, PyTorch): its float32 as it is, the value data_compat would put
            # in a scalar tensor, without building that tensor per point (two thirds of the reading time).
            data.points.append((value.tag, value.simple_value, int(event.step), wall))
            continue
        value = data_compat.migrate_value(value)
        plugin = value.metadata.plugin_data.plugin_name
        if plugin == "scalars":
            _add_scalar(value, event.step, wall, data)
        elif plugin == "hparams":
            _add_hparams(value, data)
        elif plugin == "text":
            _add_text(value, event.step, data)
        elif plugin == "images":
            _add_images(value, event.step, wall, data)
        elif plugin == "histograms":
            _add_histogram(value, event.step, wall, data)
        else:
            data.skipped[plugin or "untyped"].add(value.tag)


def _add_scalar(value: Any, step: int, wall: float, data: _RunData) -> None:
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(value.tensor)
    if array.size != 1:
        data.skipped["scalars"].add(value.tag)
        return
    data.points.append((value.tag, float(array.reshape(()).item()), int(step), wall))


def _add_hparams(value: Any, data: _RunData) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    if info.WhichOneof("data") != "session_start_info":
        return  # the experiment's description and the session's end: nothing a run keeps
    for key, v in info.session_start_info.hparams.items():
        kind = v.WhichOneof("kind")
        if kind == "number_value":
            number = v.number_value
            data.params[key] = int(number) if number.is_integer() else number
        elif kind == "bool_value":
            data.params[key] = v.bool_value
        elif kind == "string_value":
            data.params[key] = v.string_value


def _add_text(value: Any, step: int, data: _RunData) -> None:
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(value.tensor)
    parts = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    data.texts[value.tag].append((int(step), "\n".join(parts)))


def _add_images(value: Any, step: int, wall: float, data: _RunData) -> None:
    """An image summary's tensor: [width, height, encoded image, ...] (several for `add_images`)."""
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(value.tensor).reshape(-1)
    for encoded in array[2:]:
        data.images.append((value.tag, int(step), wall, bytes(encoded)))


def _add_histogram(value: Any, step: int, wall: float, data: _RunData) -> None:
    """A histogram summary's tensor: one [left edge, right edge, count] row per bucket."""
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(value.tensor)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        data.skipped["histograms"].add(value.tag)  # an empty histogram
        return
    edges = [float(x) for x in array[:, 0]] + [float(array[-1, 1])]
    data.histograms.append((value.tag, int(step), wall, edges, [round(float(c)) for c in array[:, 2]]))


def _write_media(run: Any, data: _RunData, summary: ImportSummary) -> None:
    """The images and histograms, each at its step and wall time; one the run API refuses (an image Pillow
    cannot decode, a histogram whose edges are out of order) is counted as skipped, with the reason logged."""
    from ..errors import MissingExtraError
    from ..media import require_pillow
    from ..values import MAX_KEY_LENGTH

    images = data.images
    if images:
        try:
            require_pillow("importing TensorBoard images")
        except MissingExtraError as exc:
            summary.skip("image series", len({tag for tag, *_ in images}), str(exc))
            images = []
    for tag, step, wall, png in images:
        try:
            if not 0 < len(tag) <= MAX_KEY_LENGTH:
                raise InvalidInputError(f"image tag {tag[:60]!r} is no media key")
            run.log_image(tag, _decoded(png), step, timestamp=wall)
            summary.media += 1
        except InvalidInputError as exc:
            summary.skip("images (unreadable)", 1)
            _log.warning("tensorboard import: image %r at step %d skipped: %s", tag[:60], step, exc)
    for tag, step, wall, edges, counts in data.histograms:
        try:
            if not 0 < len(tag) <= MAX_KEY_LENGTH:
                raise InvalidInputError(f"histogram tag {tag[:60]!r} is no media key")
            run.log_histogram(tag, step=step, np_histogram=(counts, edges), timestamp=wall)
            summary.media += 1
        except InvalidInputError as exc:
            summary.skip("histograms (unreadable)", 1)
            _log.warning("tensorboard import: histogram %r at step %d skipped: %s", tag[:60], step, exc)


def _decoded(png: bytes) -> Any:
    """The PIL image of an encoded image summary (InvalidInputError if Pillow cannot read it)."""
    import io

    from ..media import require_pillow

    pil = require_pillow("importing TensorBoard images")
    try:
        with pil.open(io.BytesIO(png)) as img:
            img.load()
            return img.copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(f"not an image Pillow can read ({exc})") from None


def _write_run(
    store: Store, run_id: str, experiment: str, name: str, source: Path, data: _RunData, summary: ImportSummary
) -> None:
    from ..events import RunEdited
    from ..tracking import _ordered_time
    from ..values import MAX_KEY_LENGTH

    tags: dict[str, str] = {"imported_from": f"tensorboard:{source}"}
    note_parts: list[str] = []
    note_size = 0
    for tag, texts in sorted(data.texts.items()):
        if (
            len(texts) == 1
            and len(texts[0][1]) <= TAG_TEXT_MAX
            and "\n" not in texts[0][1]
            and 0 < len(tag) <= MAX_KEY_LENGTH
        ):
            tags[tag] = texts[0][1]
            continue
        section = f"### {tag}\n\n" + "\n\n".join(f"step {step}:\n\n{text}" for step, text in texts)
        if note_size + len(section) > NOTE_MAX:
            summary.skip("text series (past the note's size)", 1)
            continue
        note_parts.append(section)
        note_size += len(section)
    points = [p for p in data.points if 0 < len(p[0]) <= MAX_KEY_LENGTH]
    for key in {p[0] for p in data.points} - {p[0] for p in points}:
        summary.skip("scalar series (tag too long for a metric key)", 1)
        _log.warning("tensorboard import: scalar tag %r of %s is no metric key; skipped", key[:60], name)
    run = start_imported_run(store, run_id, experiment, name=name, start_time=data.first_time, tags=tags)
    if run is None:
        summary.already_there[name] = "running"  # another import of the same run, under way
        return
    try:
        if data.params:
            run.log_params(data.params)
        if note_parts:
            run._put(RunEdited(note="\n\n".join(note_parts), time=_ordered_time()))
        for key, value, step, wall in points:
            run.log_metric(key, value, step, timestamp=wall)
        _write_media(run, data, summary)
    except BaseException:
        run.end("failed", error="the import stopped", end_time=data.last_time)
        raise
    run.end("finished", end_time=data.last_time)
    summary.imported.append(name)
    summary.points += len(points)
    summary.params += len(data.params)
    summary.tags += len(tags)
    for plugin, series in sorted(data.skipped.items()):
        kind = _SKIPPED_KINDS.get(plugin, f"{plugin} series")
        reason = MEDIA_REASON if plugin in _SKIPPED_KINDS else None
        summary.skip(kind, len(series), reason)
