"""`alex import wandb DIR`: W&B's runs kept on disk (offline runs, and online runs' local copies) into runs.

DIR is a `wandb/` folder (its `offline-run-*/` and `run-*/` folders), the folder that holds it (`$WANDB_DIR`),
or one run folder. Each run folder's transaction log (`run-<id>.wandb`) is read with W&B's own reader: the
`wandb-core` program that ships in the `wandb` package, through `wandb-core leet inspect --json` (the W&B
command `wandb leet inspect --json`), which prints each record of the log as one JSON object. The `wandb`
package has no Python reader of its own any more: its record framing is read by wandb-core, never here.

How W&B's run lands (docs/migrating.md "From W&B", the same mapping as `alexandria.wandb`):

* project -> experiment ("uncategorized" without one), display name -> run name, notes -> the run's note,
  each tag `t` -> tag `wandb.tag.<t>` = "1", group and job type -> tags `wandb.group`, `wandb.job_type`, the
  W&B id -> tag `wandb.id`; the run id is `stable_run_id("wandb", project, id)`.
* config (folded over its updates, nested dicts dotted, W&B's own `_wandb` left out) -> parameters.
* every history row -> a point per numeric key at W&B's `_step`, with the row's `_timestamp` as its time; NaN
  and infinities come along; keys W&B adds itself (`_step`, `_runtime`, ...) are not metrics; strings,
  booleans, lists and media (`wandb.Image`, tables, ...) are counted as skipped.
* system metrics (W&B's "stats" records) -> `system/<W&B's name>` at steps 0, 1, 2, ... with their times.
* a summary value that no history row explains (set with `run.summary[...]`, or a key whose summary differs
  from its last logged value) -> tag `summary.<key>`.
* the files of the run's `files/` folder -> artifacts, each top-level entry one (a file, or a folder with
  its tree; links inside a folder are recorded, not followed). A top-level link (what `wandb.save` makes for
  a file outside the run folder) is followed only when a "files" record of the log names it, as W&B
  uploads it. Left out: W&B's own files (those the log marks as W&B's, and `wandb-metadata.json`,
  `wandb-summary.json`, `config.yaml`, `requirements.txt`, `conda-environment.yaml`, `diff.patch`,
  `upstream_diff_*.patch`, `wandb-job.json`: what the import already carries, or W&B's record of the
  environment), and `media/` (W&B's copies of logged media, counted as skipped until media exist here).
  `output.log`, the run's console, is kept.
* the run record's start time -> the run's start; its end is the latest of the start plus W&B's runtime
  and the last record's time; the exit record's code -> finished (0) or failed (any other). A log without an
  exit record (the process was killed before `finish`: W&B writes the log in blocks, so a killed run keeps
  only what was flushed) -> killed, with a warning line.

A run resumed offline (`init(id=..., resume=...)`) has one folder per process: its folders are one run here,
read in the order they started, each row at its own `_step`; tag `wandb.folders` counts them, so that a
folder resumed after the import is reported by the next one (an ended run is not appended to).

A log cut short, or with a damaged block, is what wandb-core reads past: the complete records are imported
and its warning is printed (as a truncated TensorBoard record is); a file that is no W&B log at all raises
ImportSourceError before anything of that run is written.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import os
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImportSourceError, InvalidInputError, RunNotFoundError
from ..life import ENDED
from ..rebuild import ProgressFactory
from ..store import Store
from ..values import flatten
from . import ImportSummary, already_imported, require_module, stable_run_id, start_imported_run

_log = logging.getLogger(__name__)

TRACKER = "wandb"
#: W&B's own files in a run's `files/` folder: not the run's data (see the module's docstring).
BOOKKEEPING = frozenset(
    {
        "wandb-metadata.json",
        "wandb-summary.json",
        "config.yaml",
        "requirements.txt",
        "conda-environment.yaml",
        "diff.patch",
        "wandb-job.json",
    }
)
MEDIA_REASON = "the import of W&B's media files is not built yet (the W&B adapter logs them as media)"
#: How W&B's JSON spells the non-finite floats.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass
class _Part:
    """One run folder's log, gathered before anything is written."""

    folder: Path
    wandb_id: str | None = None
    project: str | None = None
    start: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # display_name, notes, tags, run_group, job_type
    config: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)  # step, time, row
    stats: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path in files/ -> W&B's type ("WANDB", "") of it
    exit_code: int | None = None
    runtime: float = 0.0
    last_time: float | None = None

    def saw(self, when: float) -> None:
        self.last_time = when if self.last_time is None else max(self.last_time, when)


def find_logs(directory: Path) -> list[Path]:
    """The transaction logs under `directory`: its own (a run folder), else those of its `offline-run-*/`
    and `run-*/` folders, else those of its `wandb/` folder; `latest-run` (a link W&B keeps) is skipped."""
    own = sorted(directory.glob("run-*.wandb"))
    if own:
        return own
    for root in (directory, directory / "wandb"):
        if not root.is_dir():
            continue
        logs = [
            log
            for sub in sorted(root.iterdir())
            if sub.name.startswith(("offline-run-", "run-")) and sub.is_dir() and not sub.is_symlink()
            for log in sorted(sub.glob("run-*.wandb"))
        ]
        if logs:
            return logs
    return []


def import_wandb(
    directory: str | os.PathLike[str], store: Store, progress: ProgressFactory | None = None
) -> ImportSummary:
    """Import every W&B run under `directory` (see the module's docstring); runs an earlier import wrote are
    skipped whole."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ImportSourceError(f"{str(directory)!r} is not a folder; give a wandb/ folder or one run folder")
    root = root.resolve()
    logs = find_logs(root)
    if not logs:
        raise ImportSourceError(
            f"{str(root)!r} is not a W&B folder: no offline-run-*/ or run-*/ folder with a run-*.wandb log in it; "
            "give the wandb/ folder W&B wrote (in $WANDB_DIR) or one of its run folders"
        )
    core = _core_path()
    summary = ImportSummary()
    advance = progress(len(logs)) if progress else None
    # The logs of one W&B id (run-<id>.wandb: a run and its resumed lives) are read and written together, one
    # id at a time, so that only one run's records are held at once.
    by_id: dict[str, list[Path]] = defaultdict(list)
    for log in logs:
        by_id[log.stem.removeprefix("run-")].append(log)
    there: dict[str, tuple[str, int]] = {}  # run id -> (label, its folders now): runs an earlier import wrote
    for _, group in sorted(by_id.items()):
        runs: dict[tuple[str, str], list[_Part]] = defaultdict(list)
        for log in group:
            part = _read_log(core, log, summary)
            if advance:
                advance(1)
            if part.wandb_id is None:
                summary.warnings.append(f"{log}: no run record in the log (the process ended first); not imported")
                continue
            runs[(part.project or _default_project(), part.wandb_id)].append(part)
        for (project, wandb_id), parts in sorted(runs.items()):
            parts.sort(key=lambda p: (p.start or 0.0, str(p.folder)))
            label = _label(project, wandb_id, parts)
            imported = _import_run(store, project, wandb_id, parts, summary)
            if not imported and summary.already_there[label] == "finished":
                there[stable_run_id(TRACKER, project, wandb_id)] = (label, len(parts))
    _report_new_folders(store, there, summary)
    return summary


def _label(project: str, wandb_id: str, parts: list[_Part]) -> str:
    """How the summary names a run: project/name, else project/W&B id."""
    name = next((p.fields["display_name"] for p in parts if p.fields.get("display_name")), None)
    return f"{project}/{name or wandb_id}"


def _report_new_folders(store: Store, there: dict[str, tuple[str, int]], summary: ImportSummary) -> None:
    """A run resumed after its import has more folders now than the import saw (tag `wandb.folders`):
    they are not appended to an ended run, so the summary says how to bring them."""
    if not there:
        return
    from ..query import Reader

    with Reader(store) as reader:
        for run_id, (label, now) in sorted(there.items()):
            try:
                before = int((reader.run(run_id)["run"]["tags"] or {}).get("wandb.folders", now))
            except (RunNotFoundError, ValueError):  # not folded yet, or a tag edited by hand: nothing to compare
                continue
            if now > before:
                summary.warnings.append(
                    f"{label}: {now - before} folder(s) of it (resumed since it was imported) are not in it; "
                    "delete it (alex delete, then alex gc --older-than 0) and import again to bring them"
                )


def _default_project() -> str:
    from ..wandb import DEFAULT_PROJECT

    return DEFAULT_PROJECT


def _core_path() -> str:
    util = require_module("wandb.util", "wandb")
    try:
        return str(util.get_core_path())
    except Exception as exc:  # WandbCoreNotAvailableError: no wandb-core built for this platform
        raise ImportSourceError(f"W&B's reader (wandb-core) is not available: {exc}") from exc


def _records(core: str, log: Path, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """The log's records as wandb-core prints them, one JSON object a line; what it reports on stderr
    (a log cut short, a damaged block skipped) goes to `warnings`."""
    args = [core, "leet", "inspect", "--no-observability", "--json", "--run-file", str(log), str(log.parent.parent)]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ImportSourceError(f"cannot run W&B's reader {core}: {exc.strerror or exc}") from exc
        assert proc.stdout is not None
        with proc:
            for number, line in enumerate(proc.stdout, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:  # a wandb-core whose output this importer does not know
                    raise ImportSourceError(
                        f"W&B's reader printed line {number} for {log} that is no JSON record ({exc}); "
                        "this wandb's output is not the one the import reads: pip install 'alexandria[wandb]'"
                    ) from exc
                if isinstance(record, dict):
                    yield record
        err.seek(0)
        messages = [m.strip() for m in err.read().decode("utf-8", "replace").splitlines() if m.strip()]
    if proc.returncode != 0:
        if any("unknown command" in m or "flag provided but not defined" in m for m in messages):
            raise ImportSourceError(
                f"this wandb's reader cannot print a log's records ({'; '.join(messages)}); "
                "upgrade it: pip install 'alexandria[wandb]'"
            )
        why = "; ".join(m.removeprefix("Error: ") for m in messages) or f"exit code {proc.returncode}"
        raise ImportSourceError(f"{log} is not a readable W&B transaction log: {why}")
    warnings.extend(f"{log}: {m.removeprefix('wandb leet inspect: ')}" for m in messages)


def _read_log(core: str, log: Path, summary: ImportSummary) -> _Part:
    part = _Part(folder=log.parent)
    notes: list[str] = []
    for record in _records(core, log, notes):
        kind = record.get("type")
        body = record.get(kind) if isinstance(kind, str) else None
        if not isinstance(body, dict):
            continue
        if kind == "run":
            _add_run_record(part, body)
        elif kind == "config":
            _add_config(part, body)
        elif kind == "history":
            item = body.get("item") or {}
            step = item.get("_step", (body.get("step") or {}).get("num", 0))
            when = item.get("_timestamp")
            if isinstance(step, int) and isinstance(when, (int, float)):
                part.history.append((step, float(when), item))
                part.saw(float(when))
        elif kind == "stats":
            when = _iso_seconds(body.get("timestamp"))
            if when is not None:
                part.stats.append((when, body.get("item") or {}))
                part.saw(when)
        elif kind == "summary":
            part.summary.update(body.get("update") or {})
            for key in body.get("remove") or ():
                part.summary.pop(key if isinstance(key, str) else ".".join(key.get("nested_key", ())), None)
        elif kind == "files":
            for entry in body.get("files") or ():
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    part.files[entry["path"]] = str(entry.get("type", ""))
        elif kind == "exit":
            part.exit_code = int(body.get("exit_code", 0))
            part.runtime = float(body.get("runtime", 0))
    summary.warnings.extend(notes)
    return part


def _add_run_record(part: _Part, body: dict[str, Any]) -> None:
    if part.wandb_id is None:
        part.wandb_id = str(body.get("run_id") or "") or None
        part.project = str(body.get("project") or "") or None
        part.start = _iso_seconds(body.get("start_time"))
        if part.start is not None:
            part.saw(part.start)
    for key in ("display_name", "notes", "tags", "run_group", "job_type"):
        if body.get(key):
            part.fields[key] = body[key]
    _add_config(part, body.get("config") or {})


def _add_config(part: _Part, body: dict[str, Any]) -> None:

    update = {k: v for k, v in (body.get("update") or {}).items() if not k.startswith("_wandb")}
    part.config.update(flatten(update))
    for key in body.get("remove") or ():
        part.config.pop(key if isinstance(key, str) else ".".join(key.get("nested_key", ())), None)


def _iso_seconds(text: Any) -> float | None:
    """Unix seconds of an RFC 3339 time as wandb-core prints it ("2026-12-02T03:10:12.396148030Z"), every
    digit of its fraction kept (datetime stops at microseconds)."""
    if not isinstance(text, str) or not text.endswith("Z") or "T" not in text:
        return None
    whole, _, fraction = text[:-1].partition(".")
    try:
        date, clock = whole.split("T")
        year, month, day = (int(x) for x in date.split("-"))
        hour, minute, second = (int(x) for x in clock.split(":"))
        frac = int(fraction) / 10 ** len(fraction) if fraction else 0.0
    except ValueError:
        return None
    return calendar.timegm((year, month, day, hour, minute, second)) + frac


def _number(value: Any) -> float | int | None:
    """A history value as a metric value, or None when it is none (text, a boolean, a list, media)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return None


def _is_key(key: str) -> bool:
    """Whether `key` may be a metric or tag key (W&B allows longer ones)."""
    from ..values import check_key

    try:
        check_key(key, "key")
    except InvalidInputError:
        return False
    return True


def _skipped_kind(value: Any) -> tuple[str, str | None]:
    if isinstance(value, dict) and isinstance(value.get("_type"), str):  # a media value left whole
        return f"{value['_type']} series", MEDIA_REASON
    return "non-numeric history series", "only numbers are metrics"


def _import_run(store: Store, project: str, wandb_id: str, parts: list[_Part], summary: ImportSummary) -> bool:
    """Import one W&B run from its folders; False if an earlier import wrote it."""
    from ..events import RunEdited
    from ..names import check_name

    fields: dict[str, Any] = {}
    config: dict[str, Any] = {}
    final: dict[str, Any] = {}
    for part in parts:
        fields.update(part.fields)
        config.update(part.config)
        final.update(part.summary)
    name = fields.get("display_name")
    label = _label(project, wandb_id, parts)
    run_id = stable_run_id(TRACKER, project, wandb_id)
    previous = already_imported(store, run_id)
    if previous is not None:
        # The end is written last: any end means the earlier import completed.
        summary.already_there[label] = "finished" if previous in ENDED else previous
        return False
    tags: dict[str, Any] = {
        "imported_from": f"wandb:{parts[0].folder}",
        "wandb.id": wandb_id,
        "wandb.folders": len(parts),
    }
    tags.update({f"wandb.tag.{t}": "1" for t in fields.get("tags") or () if _is_key(f"wandb.tag.{t}")})
    if fields.get("run_group"):
        tags["wandb.group"] = fields["run_group"]
    if fields.get("job_type"):
        tags["wandb.job_type"] = fields["job_type"]
    try:
        name = check_name(name) if name else None
    except InvalidInputError:
        tags["wandb.name"] = name
        name = None

    points: list[tuple[str, float | int, int, float]] = []
    last_logged: dict[str, Any] = {}
    skipped: dict[str, set[str]] = defaultdict(set)
    reasons: dict[str, str | None] = {}
    for part in parts:
        for step, when, row in part.history:
            # A media value (wandb.Image, Table, ...) arrives as dotted keys beside its "<key>._type".
            media = {k[: -len("._type")]: v for k, v in row.items() if k.endswith("._type") and isinstance(v, str)}
            for key, value in row.items():
                if key.startswith("_"):
                    continue  # _step, _timestamp, _runtime: W&B's own columns
                last_logged[key] = value
                owner = next((m for m in media if key.startswith(m + ".")), None)
                if owner is not None:
                    skipped[f"{media[owner]} series"].add(owner)
                    reasons[f"{media[owner]} series"] = MEDIA_REASON
                    continue
                number = _number(value)
                if number is None or not _is_key(key):
                    kind, why = _skipped_kind(value) if number is None else ("history series (no metric key)", None)
                    skipped[kind].add(key)
                    reasons[kind] = why
                    continue
                points.append((key, number, step, when))
    sample = 0
    for part in parts:
        for when, item in part.stats:
            for key, value in sorted(item.items()):
                number = _number(value)
                if number is not None and _is_key(f"system/{key}"):
                    points.append((f"system/{key}", number, sample, when))
            sample += 1
    for key, value in flatten({k: v for k, v in final.items() if not k.startswith("_")}).items():
        if (key not in last_logged or last_logged[key] != value) and _is_key(f"summary.{key}"):
            tags[f"summary.{key}"] = value

    run = start_imported_run(store, run_id, project, name=name, start_time=parts[0].start, tags=tags)
    if run is None:  # another import of the same run, under way
        summary.already_there[label] = "running"
        return True
    last = parts[-1]
    end = max((p.last_time for p in parts if p.last_time is not None), default=None)
    if last.start is not None and last.exit_code is not None:
        end = max(end or last.start, last.start + last.runtime)
    try:
        if fields.get("notes"):
            run._put(RunEdited(note=str(fields["notes"]), time=parts[0].start or 0.0))
        run.log_params(config)
        for key, value, step, when in points:
            run.log_metric(key, value, step, timestamp=when)
        artifacts = sum(_copy_files(run, part, summary) for part in parts)
    except BaseException:
        run.end("failed", error="the import stopped", end_time=end)
        raise
    if last.exit_code is None:
        summary.warnings.append(
            f"{label}: its log has no exit record (the process was killed, or still runs); imported as killed"
        )
        run.end("killed", error="the W&B log has no exit record", end_time=end)
    elif last.exit_code == 0:
        run.end("finished", end_time=end)
    else:
        run.end("failed", error=f"W&B exit code {last.exit_code}", end_time=end)
    summary.imported.append(label)
    summary.points += len(points)
    summary.params += len(config)
    summary.tags += len(tags)
    summary.artifacts += artifacts
    for kind, keys in sorted(skipped.items()):
        summary.skip(kind, len(keys), reasons.get(kind))
    return True


def _copy_files(run: Any, part: _Part, summary: ImportSummary) -> int:
    """Log the run folder's `files/` entries as artifacts (see the module's docstring); how many files."""
    files = part.folder / "files"
    if not files.is_dir() or files.is_symlink():
        return 0
    count = 0
    for entry in sorted(files.iterdir()):
        rel = entry.name
        if rel in BOOKKEEPING or rel.startswith("upstream_diff_") or part.files.get(rel) == "WANDB":
            continue
        if rel == "media" and entry.is_dir():
            summary.skip("media file", sum(len(f) for _, _, f in os.walk(entry)), MEDIA_REASON)
            continue
        if entry.is_symlink():
            if rel not in part.files:
                summary.warnings.append(f"{entry}: a link no files record of the log names; not imported")
                continue
            if not entry.is_file():
                summary.warnings.append(f"{entry}: saved with wandb.save, but its file is gone; not imported")
                continue
        run.log_artifact(entry, name=rel)
        count += 1 if not entry.is_dir() else sum(len(f) for _, _, f in os.walk(entry))
    return count
