"""Importers: runs of other trackers (TensorBoard, MLflow, ...) copied into a store with their own times.

What every importer shares lives here: the run id derived from the source (so a second import finds what the
first one wrote), the check that a run is already there, and the summary a command prints. Each tracker's
reader is a module of its own (`importers/tensorboard.py`), and imports its third-party package only when
called: `import alexandria` never loads them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ImportSourceError
from ..life import run_state
from ..store import Store

if TYPE_CHECKING:
    from ..tracking import Run

#: The namespace of every imported run's id: uuid5(IMPORT_NAMESPACE, "<tracker>\0<source>\0<part>...").
IMPORT_NAMESPACE = uuid.UUID("6b1f3c1e-2f4d-5a8e-9c3b-7d0e4a5f8b21")


def stable_run_id(tracker: str, *source: str) -> str:
    """The id an imported run gets: the same source gives the same id on every import and every machine that
    names the source the same way (a TensorBoard run: the absolute path of its folder, the logdir's joined with
    the run's relative path; an MLflow run: its store and its run id). 32 lowercase hex characters, as every run id."""
    return uuid.uuid5(IMPORT_NAMESPACE, "\0".join((tracker, *source))).hex


def already_imported(store: Store, run_id: str) -> str | None:
    """The status of the run with this id if an earlier import wrote it ("finished" for a complete import;
    "crashed" or "running" for one that was stopped or is under way), else None: the importer skips it."""
    if not store.run_exists(run_id):
        return None
    return run_state(store, run_id).status


def start_imported_run(
    store: Store,
    run_id: str,
    experiment: str,
    *,
    name: str | None,
    start_time: float | None,
    tags: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
) -> Run | None:
    """A new run with the given id and start time, not made the active run of this process (an import
    must not change where the caller's own logging goes); `parent_id` makes it a child of that run. End it
    with `run.end(end_time=...)`. None if the run's folder is there already: another import made it since
    `already_imported` looked (the folder is claimed with one exclusive mkdir, so two imports at once never
    both write the same run)."""
    from ..tracking import new_run

    if not store.claim_run_dir(run_id, "import into a store this process may write (--store, or $ALEXANDRIA_STORE)"):
        return None
    return new_run(store, run_id, experiment, tags, parent_id=parent_id, name=name, start_time=start_time)


@dataclass
class ImportSummary:
    """What an import did, for the command's summary: runs imported and skipped, points, and what the
    importer does not bring along yet, counted by kind ("histogram series")."""

    imported: list[str] = field(default_factory=list)
    #: Runs an earlier import wrote (name -> its status there): skipped whole, nothing is appended.
    already_there: dict[str, str] = field(default_factory=dict)
    points: int = 0
    params: int = 0
    tags: int = 0
    artifacts: int = 0
    #: Images, histograms, ... imported as media (`log_image`, `log_histogram`).
    media: int = 0
    #: What was not imported, by kind: {"histogram series": 3, "image series": 1}.
    skipped: Counter[str] = field(default_factory=Counter)
    #: Why a kind is skipped, printed once after the counts ("not built yet").
    skipped_reasons: dict[str, str] = field(default_factory=dict)
    #: Files read only in part (a truncated or still-written file), with what was left.
    warnings: list[str] = field(default_factory=list)

    def skip(self, kind: str, count: int = 1, reason: str | None = None) -> None:
        self.skipped[kind] += count
        if reason:
            self.skipped_reasons.setdefault(kind, reason)

    def lines(self) -> list[str]:
        """The summary as lines of text, for a command line to print."""
        out = [
            f"imported {len(self.imported)} run(s): {self.points} point(s), {self.params} param(s), "
            f"{self.tags} tag(s)"
            + (f", {self.artifacts} artifact(s)" if self.artifacts else "")
            + (f", {self.media} media" if self.media else "")
        ]
        if self.already_there:
            out.append(f"already imported, skipped: {len(self.already_there)} run(s)")
            unfinished = {n: s for n, s in self.already_there.items() if s != "finished"}
            for run_name, status in sorted(unfinished.items()):
                out.append(
                    f"  {run_name}: an earlier import of it did not finish ({status}); delete it "
                    "(alex delete, then alex gc --older-than 0) to import it again"
                )
        if self.skipped:
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.skipped.items()))
            reasons = sorted(set(self.skipped_reasons.values()))
            out.append(f"skipped: {counts}" + (f": {'; '.join(reasons)}" if reasons else ""))
        out += self.warnings
        return out


def require_module(module: str, extra: str) -> Any:
    """Import a reader's third-party package, or ImportSourceError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportSourceError(
            f"reading this needs the {module.split('.')[0]!r} package ({exc}); "
            f"install it with: pip install 'alexandria[{extra}]'"
        ) from exc
