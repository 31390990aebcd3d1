"""A W&B-compatible API: `import alexandria.wandb as wandb` runs an ordinary W&B (or trackio) script unchanged,
logging into the Alexandria store (`$ALEXANDRIA_STORE`); nothing leaves the machine.

How W&B's concepts land (README "W&B and trackio scripts", docs/migrating.md "From W&B"):

* project -> experiment (default `$WANDB_PROJECT`, else "uncategorized", as W&B says), name -> run name,
  notes -> the run's note; each tag `t` -> tag `wandb.tag.<t>` = "1"; group, job_type -> tags `wandb.group`,
  `wandb.job_type`; the W&B id -> tag `wandb.id`.
* A W&B id (`id=`, or 8 random characters as W&B makes them) becomes the run id `run_id_for(project, id)`:
  a uuid5 of both, so `init(id=..., resume="allow")` finds the same run again, and `run.id` stays W&B's id.
* config -> parameters; nested dicts flattened with dotted keys ({"opt": {"lr": 1}} -> "opt.lr"). Parameters
  are fixed inputs: changing a key's value raises ParamConflictError, as W&B refuses it without
  allow_val_change (which Alexandria cannot honour either).
* `log` keeps W&B's step numbering exactly (`_History`); every key of a committed row is a metric point at
  that step, nested dicts flattened with dots.
* summary: its defaults are each metric's last value, which Alexandria derives already; a key set explicitly
  is stored as tag `summary.<k>` when it is set.
* finish(exit_code=0) -> finished, any other code -> failed. Files written into `run.dir` are copied in as
  artifacts when the run finishes.
* Media: `wandb.Image`, `wandb.Table` and `wandb.Histogram` in `log` are logged at the row's step
  (`log_image`, `log_table`, `log_histogram`: the `media` and `histogram` tables); a list of images is each
  logged under its key. The others (Audio, Video, Html, ...) are accepted by their constructors and refused
  by `log` with UnsupportedError naming the type: nothing of that call is logged, nothing dropped silently.
* define_metric, watch, unwatch, alert, log_code, login, setup: accepted, they do nothing here and warn once.
  use_artifact and Artifact objects raise UnsupportedError; resume="auto" (or True) without an id starts a new
  run with a warning (W&B finds the directory's last crashed run: not supported).

Only the standard library and the core's writing side are imported: no heavier than `import alexandria`.
"""

from __future__ import annotations

import atexit
import glob as _glob
import logging
import os
import random
import shutil
import string
import tempfile
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import InvalidInputError, NoActiveRunError, UnsupportedError
from .events import RunEdited
from .store import Store
from .tracking import Run as _AlexRun
from .tracking import _ordered_time, start_run
from .values import check_key, flatten, metric_value

__all__ = [
    "Artifact",
    "Audio",
    "Histogram",
    "Html",
    "Image",
    "Object3D",
    "Plotly",
    "Run",
    "Settings",
    "Table",
    "Video",
    "alert",
    "config",
    "define_metric",
    "finish",
    "init",
    "log",
    "log_artifact",
    "log_code",
    "login",
    "run",
    "run_id_for",
    "save",
    "setup",
    "summary",
    "unwatch",
    "use_artifact",
    "watch",
]

_log = logging.getLogger(__name__)

#: The namespace of `run_id_for`'s uuid5: fixed forever, or resumed runs would no longer be found.
WANDB_NAMESPACE = uuid.UUID("6f1c2a4e-9b7d-5c3e-8a1f-0d2b4c6e8a10")
DEFAULT_PROJECT = "uncategorized"


def run_id_for(project: str, wandb_id: str) -> str:
    """The Alexandria run id of W&B run `wandb_id` in `project`: stable (uuid5), so a W&B id resumes the same
    run; a W&B id is unique within its project, as here."""
    return uuid.uuid5(WANDB_NAMESPACE, f"{project}/{wandb_id}").hex


def _new_wandb_id() -> str:
    """An id as W&B makes them: 8 lowercase letters and digits."""
    return "".join(random.SystemRandom().choices(string.ascii_lowercase + string.digits, k=8))


_warned: set[str] = set()


def _warn_once(what: str, why: str) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.warning("alexandria.wandb: %s %s", what, why)


def _as_mapping(data: Any, what: str) -> dict[str, Any]:
    """A config as W&B takes it: a mapping, an argparse Namespace or any object with attributes."""
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    if isinstance(data, str):
        raise UnsupportedError(f"{what}: a config file path ({data!r}) is not supported; load it and pass the dict")
    if hasattr(data, "__dict__"):
        return {k: v for k, v in vars(data).items() if not k.startswith("_")}
    raise InvalidInputError(f"{what} must be a dict or an argparse Namespace, got {type(data).__name__}")


# -- media --------------------------------------------------------------------------------------------------------
class _Media:
    """A W&B media object: built as scripts build them. Image, Table and Histogram are logged by `log` at the
    row's step (`Run.log_image`, `log_table`, `log_histogram`); the others are refused by `log`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class Image(_Media):
    """`wandb.Image(data_or_path, mode=None, caption=None)`: an array (W&B's scaling: shifted to start at 0,
    times 255 when at most 1, clipped to 0..255; a channels-first array or torch tensor transposed), a PIL
    image or an image file; `mode` converts a PIL image."""

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None, **kwargs: Any) -> None:
        super().__init__(data_or_path, mode=mode, caption=caption, **kwargs)
        self.data, self.mode, self.caption = data_or_path, mode, caption

    def _log(self, run: _AlexRun, key: str, step: int) -> None:
        data = self.data
        if isinstance(data, str | os.PathLike):
            pass
        elif hasattr(data, "convert") and hasattr(data, "save"):  # a PIL image
            if self.mode is not None:
                data = data.convert(self.mode)
        else:
            data = _wandb_pixels(data)
        run.log_image(key, data, step, self.caption)


def _wandb_pixels(data: Any) -> Any:
    """An image array scaled as W&B scales one (see `Image`)."""
    import numpy as np

    if type(data).__module__.partition(".")[0] == "torch":
        data = data.detach().cpu().numpy()
    try:
        a = np.asarray(data)
    except (TypeError, ValueError):
        return data  # log_image says what it cannot use
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.dtype == np.bool_ or a.dtype == np.uint8 or not np.issubdtype(a.dtype, np.number) or a.size == 0:
        return a
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        return a  # refused by log_image, naming the NaN
    if a.min() < 0:
        a = a - a.min()
    if a.max() <= 1.0:
        a = a * 255.0
    return np.clip(a, 0, 255).astype(np.uint8)


class Table(_Media):
    """`wandb.Table(columns=, data=)` (rows as lists; `add_data(*row)` adds one) or `wandb.Table(dataframe=)`.
    Without `columns`, they are named Column_1, Column_2, ... Media inside a table are refused."""

    def __init__(
        self,
        columns: Sequence[Any] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(columns=columns, data=data, rows=rows, dataframe=dataframe, **kwargs)
        self.columns = None if columns is None else [str(c) for c in columns]
        self.data: list[list[Any]] = [list(r) for r in (data if data is not None else rows or [])]
        self.dataframe = dataframe

    def add_data(self, *row: Any) -> None:
        self.data.append(list(row))

    def _columns(self, key: str) -> list[str]:
        """The column names, once the rows are checked (before anything of the log call is logged)."""
        width = max((len(r) for r in self.data), default=0)
        columns = self.columns or [f"Column_{i + 1}" for i in range(width)]
        if any(len(r) != len(columns) for r in self.data):
            raise InvalidInputError(f"wandb.Table {key!r}: every row must have one value per column {columns}")
        for r in self.data:
            for cell in r:
                if isinstance(cell, _Media) or type(cell).__module__.partition(".")[0] == "wandb":
                    raise UnsupportedError(
                        f"wandb.log: table {key!r} holds a {type(cell).__name__}; media inside a table are not "
                        "supported, nothing of this log call was logged (log the images with wandb.Image)"
                    )
        return columns

    def _log(self, run: _AlexRun, key: str, step: int) -> None:
        if self.dataframe is not None:
            run.log_table(key, self.dataframe, step)
            return
        columns = self._columns(key)
        run.log_table(key, {c: [r[i] for r in self.data] for i, c in enumerate(columns)}, step)


class Histogram(_Media):
    """`wandb.Histogram(sequence, num_bins=64)` or `wandb.Histogram(np_histogram=(counts, edges))`."""

    def __init__(self, sequence: Any = None, np_histogram: Any = None, num_bins: int = 64, **kwargs: Any) -> None:
        super().__init__(sequence, np_histogram=np_histogram, num_bins=num_bins, **kwargs)
        self.sequence, self.np_histogram, self.num_bins = sequence, np_histogram, num_bins

    def _log(self, run: _AlexRun, key: str, step: int) -> None:
        if self.np_histogram is not None:
            run.log_histogram(key, step=step, np_histogram=tuple(self.np_histogram))  # type: ignore[arg-type]
        else:
            run.log_histogram(key, self.sequence, step, bins=self.num_bins)


_LOGGED_MEDIA = (Image, Table, Histogram)


class Audio(_Media):
    pass


class Video(_Media):
    pass


class Html(_Media):
    pass


class Object3D(_Media):
    pass


class Plotly(_Media):
    pass


class Settings:
    """`wandb.Settings(...)`, accepted by `init(settings=)`: none of W&B's settings means anything here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs


class Artifact(_Media):
    """W&B's Artifact: refused by `log_artifact` (log a file path instead)."""


def _media_of(key: str, value: Any) -> list[Any] | None:
    """The Image, Table and Histogram objects `value` is (a list of images is a gallery: each is logged), None
    if it is no media; UnsupportedError for other media."""
    values = value if isinstance(value, list | tuple) else (value,)
    found = []
    for item in values:
        kind = type(item)
        if isinstance(item, _LOGGED_MEDIA):
            if isinstance(item, Table) and item.dataframe is None:
                item._columns(key)
            found.append(item)
        elif isinstance(item, _Media) or kind.__module__.split(".")[0] == "wandb":
            raise UnsupportedError(
                f"wandb.log: {key!r} is a wandb.{kind.__name__}; of W&B's media only Image, Table and Histogram "
                "are supported, nothing of this log call was logged (save the file with wandb.save)"
            )
    if found and len(found) != len(values):
        raise InvalidInputError(f"wandb.log: {key!r} mixes media with other values; log them under separate keys")
    return found or None


# -- config and summary ----------------------------------------------------------------------------------------
class Config(MutableMapping[str, Any]):
    """`wandb.config`: attribute and item access; every key set is logged as a parameter (dotted if nested)."""

    def __init__(self, run: _AlexRun | None, *, live: bool = True) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_live", live)  # False: `wandb.config` before init, which keeps nothing

    def update(self, data: Any = None, allow_val_change: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several keys: all are checked and logged as parameters (ParamConflictError if one changes)."""
        if not self._live:
            raise NoActiveRunError("wandb.config: no run; call wandb.init() first (or pass config= to it)")
        items = {**_as_mapping(data, "config.update"), **kwargs}
        run: _AlexRun | None = self._run
        if run is not None:
            run.log_params(flatten(items))
        self._items.update(items)

    def setdefaults(self, data: Any) -> None:
        """Set the keys not set yet."""
        self.update({k: v for k, v in _as_mapping(data, "config.setdefaults").items() if k not in self._items})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise UnsupportedError(f"del config[{key!r}]: a logged parameter cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __repr__(self) -> str:
        return repr(self._items)


class Summary(MutableMapping[str, Any]):
    """`run.summary`: each metric's last logged value unless set explicitly; a set key is stored as tag
    `summary.<k>` at once (nested dicts dotted)."""

    def __init__(self, run: _AlexRun | None, *, live: bool = True) -> None:
        self._run = run
        self._live = live  # False: `wandb.summary` before init, which keeps nothing
        self._last: dict[str, Any] = {}
        self._set: dict[str, Any] = {}

    def update(self, data: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        if not self._live:
            raise NoActiveRunError("wandb.summary: no run; call wandb.init() first")
        items = {**_as_mapping(data, "summary.update"), **kwargs}
        if self._run is not None:
            self._run.set_tags({f"summary.{k}": v for k, v in flatten(items).items()})
        self._set.update(items)

    def _merged(self) -> dict[str, Any]:
        return {**self._last, **self._set}

    def __getitem__(self, key: str) -> Any:
        return self._merged()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise UnsupportedError(f"del summary[{key!r}]: a stored summary value cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def __repr__(self) -> str:
        return repr(self._merged())


# -- the run -------------------------------------------------------------------------------------------------------
class Run:
    """What `wandb.init` returns. `id` is the W&B id; `alexandria_run` the Alexandria run it logs to."""

    def __init__(
        self,
        alex: _AlexRun | None,
        *,
        wandb_id: str,
        project: str,
        name: str | None,
        notes: str | None,
        tags: tuple[str, ...],
        group: str | None,
        job_type: str | None,
        resumed: bool,
    ) -> None:
        self.alexandria_run = alex
        self.id = wandb_id
        self.project = project
        self.name = name if name is not None else (alex.name if alex is not None else None)
        self.notes = notes
        self.tags = tags
        self.group = group
        self.job_type = job_type
        self.resumed = resumed
        self.entity: str | None = None
        self.url: str | None = None  # nothing is served anywhere
        self.config = Config(alex)
        self.summary = Summary(alex)
        self._step = 0
        self._row: dict[str, Any] = {}
        self._finished = False
        self._dir: str | None = None

    @property
    def step(self) -> int:
        """W&B's current step: the step the next row is committed at."""
        return self._step

    @property
    def dir(self) -> str:
        """A scratch folder for files to keep, as W&B's run folder: every file in it when the run finishes
        (or the process exits) is copied into the store as an artifact, then the folder is removed."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix=f"wandb-{self.id}-")
        return self._dir

    def _keep_dir(self) -> None:
        """The files of `dir` as artifacts (named by their relative path, slashes as "__")."""
        folder, self._dir = self._dir, None
        if folder is None:
            return
        try:
            if self.alexandria_run is not None:
                for path in sorted(Path(folder).rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        name = str(path.relative_to(folder)).replace(os.sep, "__")
                        self.alexandria_run.log_artifact(path, name=name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """W&B's `log`, with its step numbering: without `step` a row is committed at the current step and the
        step advances by one (commit=False accumulates into the current row instead); a `step` above the
        current one commits the pending row first and moves to it, without committing unless commit=True;
        a `step` below the current one is ignored with a warning, as W&B does."""
        self._check_open("log")
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"wandb.log takes a dict of values, got {type(data).__name__}")
        flat = flatten(data)
        row: dict[str, Any] = {}
        media: list[tuple[str, Any]] = []
        for key, value in flat.items():
            check_key(key, "metric")
            found = _media_of(key, value)
            if found is not None:
                media.extend((key, m) for m in found)
                continue
            metric_value(key, value)  # a value that is no number fails here, before anything is logged
            row[key] = value
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int):
                try:
                    step = int(step.__index__())
                except AttributeError:
                    raise InvalidInputError(f"wandb.log: step must be an integer, got {step!r}") from None
            if step < self._step:
                _log.warning(
                    "alexandria.wandb: step %d is lower than the current step %d; steps only go forward, so this "
                    "data is ignored (as W&B does): %s",
                    step,
                    self._step,
                    sorted(row),
                )
                return
            if step > self._step:
                self._commit()
                self._step = step
        elif commit is None:
            commit = True
        if self.alexandria_run is not None:
            for key, item in media:  # at the row's step; a media object that fails raises before the row is kept
                item._log(self.alexandria_run, key, self._step)
        self._row.update(row)
        if commit:
            self._commit()

    def _commit(self) -> None:
        """Write the pending row at the current step; the step then advances by one."""
        if not self._row:
            return
        row, self._row = self._row, {}
        if self.alexandria_run is not None:
            self.alexandria_run.log_metrics(row, step=self._step)
        self.summary._last.update(row)
        self._step += 1

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Commit the pending row and end the run: finished for exit code 0 (or none), failed otherwise."""
        failed = exit_code not in (None, 0)
        self._end("failed" if failed else "finished", f"exit code {exit_code}" if failed else None)

    def _end(self, status: str, error: str | None) -> None:
        """Commit the pending row and end the run with `status`. A handle attached to a run another process
        still runs (the same id, resumed while it runs) only flushes: the run's end is its owner's."""
        if self._finished:
            return
        try:
            alex = self.alexandria_run
            if alex is not None and not alex._ended:
                self._commit()
                self._keep_dir()
                if alex.owner:
                    alex.end(status, error=error)
                else:
                    alex.end()
        finally:
            self._finished = True
            if run is self:
                _set_current(None)

    def log_artifact(
        self, artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None
    ) -> str | None:
        """A file or directory path, copied into the store as an artifact; an Artifact object is refused."""
        self._check_open("log_artifact")
        if isinstance(artifact_or_path, Artifact):
            raise UnsupportedError(
                "log_artifact(wandb.Artifact(...)) is not supported; log each file by its path: "
                "run.log_artifact('model.pt')"
            )
        if self.alexandria_run is None:
            return None
        return self.alexandria_run.log_artifact(artifact_or_path, type=type, name=name)

    def save(self, glob_str: str | os.PathLike[str], base_path: str | None = None, policy: str = "live") -> list[str]:
        """Every file matching the pattern, copied into the store as an artifact named by its relative path
        (slashes as "__"); W&B's upload policy means nothing here."""
        self._check_open("save")
        pattern = str(glob_str)
        found = sorted(p for p in _glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not found and not _glob.has_magic(pattern):
            raise InvalidInputError(f"wandb.save: no file {pattern!r}")
        saved = []
        for path in found:
            rel = os.path.relpath(path, base_path) if base_path else os.path.basename(path)
            if self.alexandria_run is not None:
                saved.append(self.alexandria_run.log_artifact(path, name=rel.replace(os.sep, "__")))
        return saved

    def define_metric(self, name: str, *args: Any, **kwargs: Any) -> None:
        _warn_once("define_metric", "is ignored: every metric is stored against W&B's own step")

    def watch(self, *args: Any, **kwargs: Any) -> None:
        _warn_once("watch", "is ignored: gradients and parameters are not logged")

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        _warn_once("unwatch", "is ignored (watch is)")

    def alert(self, title: str = "", text: str = "", *args: Any, **kwargs: Any) -> None:
        _warn_once("alert", "sends nothing (nothing leaves the machine)")
        _log.warning("alexandria.wandb alert: %s: %s", title, text)

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        _warn_once("log_code", "is ignored: Alexandria captures the code of every run itself (git state, hashes)")

    def use_artifact(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedError("use_artifact is not supported: Alexandria keeps no artifact registry to fetch from")

    def _check_open(self, call: str) -> None:
        if self._finished:
            raise NoActiveRunError(f"wandb {call}: this run has finished; call wandb.init() for a new one")

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None or (issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (None, 0)):
            self._end("finished", None)
        elif issubclass(exc_type, KeyboardInterrupt):
            self._end("killed", "KeyboardInterrupt")
        else:
            self._end("failed", f"{exc_type.__name__}: {exc}")

    def __repr__(self) -> str:
        return f"<wandb Run {self.id} project={self.project!r}>"


#: The current run (None before `init` and after `finish`), and its config and summary: module attributes as
#: in W&B, rebound by `init` and `finish`.
run: Run | None = None
config: Config = Config(None, live=False)
summary: Summary = Summary(None, live=False)

_RESUME = {None: None, False: None, True: "allow", "auto": "allow", "allow": "allow", "must": "must", "never": "never"}


def _set_current(current: Run | None) -> None:
    global run, config, summary
    run = current
    config = current.config if current is not None else Config(None, live=False)
    summary = current.summary if current is not None else Summary(None, live=False)


def _env(name: str, given: Any) -> Any:
    return given if given is not None else os.environ.get(name) or None


def init(
    project: str | None = None,
    name: str | None = None,
    config: Any = None,
    tags: Any = None,
    notes: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    reinit: bool | str | None = None,
    entity: str | None = None,
    config_exclude_keys: Any = None,
    config_include_keys: Any = None,
    **settings: Any,
) -> Run:
    """Start (or resume) a run as W&B's `init` does; see the module's docstring for where each argument goes.

    `dir` (where W&B writes its files) is not used: runs go to the Alexandria store ($ALEXANDRIA_STORE).
    `mode="disabled"` returns a run that logs nothing; "online" and "offline" both log locally. `reinit`:
    a run still open is finished first (W&B's default outside notebooks), or returned with
    reinit="return_previous".
    """
    mode = _env("WANDB_MODE", mode) or "offline"
    if mode not in ("online", "offline", "disabled", "dryrun", "run", "shared"):
        raise InvalidInputError(f"wandb.init: mode must be 'online', 'offline' or 'disabled', got {mode!r}")
    if run is not None:
        if reinit == "return_previous":
            return run
        if reinit == "create_new":
            raise UnsupportedError("wandb.init(reinit='create_new'): one run at a time is supported here")
        run.finish()
    project = _env("WANDB_PROJECT", project) or DEFAULT_PROJECT
    name = _env("WANDB_NAME", name)
    notes = _env("WANDB_NOTES", notes)
    group = _env("WANDB_RUN_GROUP", group)
    job_type = _env("WANDB_JOB_TYPE", job_type)
    wandb_id = _env("WANDB_RUN_ID", id)
    resume = _env("WANDB_RESUME", resume)
    if tags is None and os.environ.get("WANDB_TAGS"):
        tags = os.environ["WANDB_TAGS"].split(",")
    tag_list = tuple(str(t) for t in (tags or ()))
    if resume not in _RESUME:
        raise InvalidInputError(
            f"wandb.init: resume must be 'allow', 'must', 'never', 'auto' or a bool, got {resume!r}"
        )
    how = _RESUME[resume]
    if wandb_id is None and how == "must":
        raise InvalidInputError("wandb.init(resume='must') needs id= of the run to resume")
    if wandb_id is None and resume in (True, "auto"):
        _warn_once(
            f"init(resume={resume!r}) without id=",
            "starts a new run: finding the last crashed run of a directory is not supported; pass id= to resume",
        )
    items = _as_mapping(config, "wandb.init(config=...)")
    if config_include_keys:
        items = {k: v for k, v in items.items() if k in set(config_include_keys)}
    if config_exclude_keys:
        items = {k: v for k, v in items.items() if k not in set(config_exclude_keys)}
    wandb_id = str(wandb_id) if wandb_id is not None else _new_wandb_id()
    if mode == "disabled":
        current = Run(
            None, wandb_id=wandb_id, project=project, name=name, notes=notes, tags=tag_list, group=group,
            job_type=job_type, resumed=False,
        )  # fmt: skip
        current.config._items.update(items)
        _set_current(current)
        return current
    run_id = run_id_for(project, wandb_id)
    st = Store.open(None)
    exists = st.run_exists(run_id)
    if how == "must" and not exists:
        raise InvalidInputError(f"wandb.init(id={wandb_id!r}, resume='must'): project {project!r} has no such run")
    if how == "never" and exists:
        raise InvalidInputError(
            f"wandb.init(id={wandb_id!r}, resume='never'): project {project!r} has that run already; "
            "pass another id, or resume='allow'"
        )
    run_tags: dict[str, Any] = {"wandb.id": wandb_id, **{f"wandb.tag.{t}": "1" for t in tag_list}}
    if group is not None:
        run_tags["wandb.group"] = group
    if job_type is not None:
        run_tags["wandb.job_type"] = job_type
    alex = start_run(experiment=project, run_id=run_id, tags=run_tags, store=st, name=name)
    if notes is not None:
        alex._put(RunEdited(note=str(notes), time=_ordered_time()))
    current = Run(
        alex, wandb_id=wandb_id, project=project, name=name, notes=notes, tags=tag_list, group=group,
        job_type=job_type, resumed=exists,
    )  # fmt: skip
    if exists:
        current._step = _next_step(st, run_id)
    current.config.update(items)
    _set_current(current)
    global _exit_hook_installed
    if not _exit_hook_installed:
        atexit.register(_commit_at_exit)
        _exit_hook_installed = True
    return current


def _next_step(st: Store, run_id: str) -> int:
    """A resumed run goes on after its highest step, as W&B's resume does."""
    from .query import Reader  # imported only on resume: it loads SQLAlchemy

    with Reader(st) as reader:
        _, found = reader.sql(f"SELECT max(step) FROM metric WHERE run_id = '{run_id}'")  # a hex id: no quoting
    top = found[0][0] if found else None
    return 0 if top is None else int(top) + 1


def _commit_at_exit() -> None:
    """At interpreter exit, the pending row is written (as W&B does) before the core's exit hook ends the run
    with the status it saw: registered after that hook, so it runs first."""
    current = run
    if current is not None and current.alexandria_run is not None and not current.alexandria_run._ended:
        try:
            current._commit()
            current._keep_dir()
        except Exception as exc:  # an exit hook must not raise: say what was lost
            _log.warning("alexandria.wandb: the last row of run %s could not be written at exit: %s", current.id, exc)


_exit_hook_installed = False


def _current(call: str) -> Run:
    if run is None:
        raise NoActiveRunError(f"wandb.{call}: no run; call wandb.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    _current("log").log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish the current run (nothing to do without one, as in W&B)."""
    if run is not None:
        run.finish(exit_code=exit_code)


def save(glob_str: str | os.PathLike[str], base_path: str | None = None, policy: str = "live") -> list[str]:
    return _current("save").save(glob_str, base_path=base_path, policy=policy)


def log_artifact(artifact_or_path: Any, name: str | None = None, type: str | None = None, aliases: Any = None) -> Any:
    return _current("log_artifact").log_artifact(artifact_or_path, name=name, type=type)


def use_artifact(*args: Any, **kwargs: Any) -> Any:
    raise UnsupportedError("use_artifact is not supported: Alexandria keeps no artifact registry to fetch from")


def define_metric(name: str, *args: Any, **kwargs: Any) -> None:
    _warn_once("define_metric", "is ignored: every metric is stored against W&B's own step")


def watch(*args: Any, **kwargs: Any) -> None:
    _warn_once("watch", "is ignored: gradients and parameters are not logged")


def unwatch(*args: Any, **kwargs: Any) -> None:
    _warn_once("unwatch", "is ignored (watch is)")


def alert(title: str = "", text: str = "", *args: Any, **kwargs: Any) -> None:
    _current("alert").alert(title, text)


def log_code(*args: Any, **kwargs: Any) -> None:
    _warn_once("log_code", "is ignored: Alexandria captures the code of every run itself (git state, hashes)")


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to: runs stay on this machine."""
    return True


def setup(*args: Any, **kwargs: Any) -> None:
    return None
