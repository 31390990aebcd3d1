"""`alex`: the command line, a thin adapter over the library.

Library errors (`AlexandriaError`) become one `Error: ...` line and exit code
1; usage errors are click's (exit code 2). Every read command first folds
what is new in the logs, so users never start anything to see their data,
and prints through `output.emit` (`--format table|csv|json`).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import click

from .cli_base import ErrorsAsMessages, console, progress_bar
from .errors import InvalidInputError, StoreError
from .formatting import duration_text, number_text, when_text
from .output import emit, format_option, note, print_table
from .plugins import register_commands
from .store import DB_ENV, STORE_ENV, Store, resolve_store_path

# At the top only what defining the commands needs (click, the errors, the store's paths, the output layer, the
# plug-ins): each command imports the rest (SQLAlchemy, rich's tables, ...) when it runs, so `alex --help` and
# every command's `--help` answer at once (tests/test_startup.py).


def _store(ctx: click.Context, *, create: bool = False) -> Store:
    path = resolve_store_path(ctx.obj["store"])
    if not create and not (path / "runs").is_dir():
        raise StoreError(f"no Alexandria store at {path}; log a run there first, or pass --store / set {STORE_ENV}")
    return Store.open(path, db_url=ctx.obj.get("db"))


def _fresh_reader(ctx: click.Context) -> Any:
    """The store's read-only engine, with what is new in the logs folded in first (as `Reader` does)."""
    return _reader(_store(ctx)).engine


def _reader(store: Store) -> Any:
    """A `Reader` of the store after a fold. On a terminal, a large backlog (a first read of a long run's
    logs) shows its progress on stderr while it folds; through a pipe nothing is said."""
    from .db import open_database
    from .query import Reader

    if sys.stderr.isatty():
        with progress_bar("folding new log lines") as progress:
            open_database(store, progress=progress).dispose()
    else:
        open_database(store).dispose()
    return Reader(store, fold=False)


@click.group(cls=ErrorsAsMessages)
@click.option(
    "--store",
    envvar=STORE_ENV,
    type=click.Path(file_okay=False),
    help=f"Store directory (default: ${STORE_ENV}, else ./alexandria_data).",
)
@click.option(
    "--db",
    envvar=DB_ENV,
    metavar="URL",
    help=f"Database for the projection, e.g. postgresql://host/db (default: ${DB_ENV}, else the store's SQLite file).",
)
@click.version_option(package_name="alexandria")
@click.pass_context
def cli(ctx: click.Context, store: str | None, db: str | None) -> None:
    """Alexandria: track experiments in append-only logs, query them with SQL."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store
    ctx.obj["db"] = db


#: What `alex runs --format csv|json` gives per run: the database's names, so scripts can join with SQL.
RUN_COLUMNS = (
    "id",
    "name",
    "experiment_name",
    "status",
    "attempt",
    "parent_id",
    "timestamp_start",
    "timestamp_end",
    "error",
    "num_params",
    "num_metric_keys",
    "tags",
)


@cli.command()
@click.option("--experiment", "-e", help="Only runs of this experiment.")
@click.option(
    "--status",
    type=click.Choice(["running", "finished", "failed", "killed", "crashed"]),
    help="Only runs with this status.",
)
@click.option("--limit", "-n", type=int, default=None, help="At most this many runs (newest first).")
@click.option("--deleted", is_flag=True, help="Only deleted runs (`alex restore RUN` brings one back).")
@click.option(
    "--filter",
    "-f",
    "expr",
    metavar="EXPR",
    help="Only runs this expression keeps, e.g. 'metrics.val/acc > 0.9 and params.lr = 0.01' (docs/filters.md).",
)
@format_option(
    f"a header, then one line per run, newest first: {', '.join(RUN_COLUMNS)} (times in unix seconds, tags as JSON).",
    "a list of objects with those keys.",
)
@click.pass_context
def runs(
    ctx: click.Context,
    experiment: str | None,
    status: str | None,
    limit: int | None,
    deleted: bool,
    expr: str | None,
    fmt: str,
) -> None:
    """List runs, newest first, each sweep's child runs indented under their parent; deleted runs only
    with --deleted.

    Status is running, finished, failed, killed, or crashed (the process vanished without ending the
    run: kill -9, out of memory, power loss); a resumed run shows how many times it was resumed.
    """
    from .query import list_runs, problems

    engine = _fresh_reader(ctx)
    rows = list_runs(engine, experiment=experiment, status=status, limit=limit, deleted=deleted, filter=expr)
    title = f"{len(rows)} deleted run(s) (`alex restore RUN` restores one)" if deleted else f"{len(rows)} run(s)"
    emit(
        fmt,
        columns=RUN_COLUMNS,
        rows=([r[c] for c in RUN_COLUMNS] for r in rows),
        table=lambda: _runs_table(rows, title),
    )
    found = problems(engine)
    if found:
        note(fmt, f"{len(found)} unreadable line(s) in the logs were skipped: `alex problems` lists them")


def _runs_table(rows: list[dict[str, Any]], title: str) -> None:
    from .query import run_tree

    cells = []
    for depth, r in run_tree(rows):
        tags = ", ".join(f"{k}={v}" for k, v in (r["tags"] or {}).items())
        status_text = (r["status"] or "?") + (f" (resumed {r['attempt']}x)" if r["attempt"] else "")
        cells.append(
            (
                "  " * (depth - 1) + "└ " + r["id"] if depth else r["id"],
                r["name"] or "-",
                r["experiment_name"] or "?",
                status_text,
                when_text(r["timestamp_start"]),
                duration_text(r["timestamp_start"], r["timestamp_end"]),
                str(r["num_params"]),
                str(r["num_metric_keys"]),
                tags,
            )
        )
    columns = ("id", "name", "experiment", "status", "started", "duration", "params", "metrics", "tags")
    print_table(title, columns, cells, no_wrap=("id", "started"))


#: `alex show --format csv`: one table of the run's fields, parameters, tags, metrics and artifacts.
SHOW_COLUMNS = ("section", "key", "value", "count", "last_step", "min", "max")


@cli.command()
@click.argument("run_id")
@format_option(
    "one table, "
    + ",".join(SHOW_COLUMNS)
    + ": a row per run field (section run), parameter (param), tag (tag), metric (metric: value is its last "
    "value, with its point count, last step, min and max) and artifact (artifact: key its name, value its path).",
    "one object: run, params, tags, metrics, artifacts, datasets, code, environment, lifecycle, children, problems.",
)
@click.pass_context
def show(ctx: click.Context, run_id: str, fmt: str) -> None:
    """Show one run: name, note, status, parameters, tags, metrics, artifacts. RUN_ID may be a unique prefix
    or the run's name (EXPERIMENT/NAME where names repeat)."""
    from dataclasses import asdict

    from .query import run_details

    d = run_details(_fresh_reader(ctx), run_id)
    document = {"run": d["run"], "params": d["params"], "tags": d["run"]["tags"] or {}, **d}  # that order first
    document["metrics"] = [asdict(m) for m in d["metrics"]]
    emit(fmt, columns=SHOW_COLUMNS, rows=_show_rows(d), table=lambda: _show_table(d), document=document)
    if fmt == "csv":
        for p in d["problems"]:
            note(fmt, _skipped(p))


def _show_rows(d: dict[str, Any]) -> Iterable[tuple[Any, ...]]:
    yield from (("run", k, v, None, None, None, None) for k, v in d["run"].items() if k != "tags")
    yield from (("param", k, v, None, None, None, None) for k, v in d["params"].items())
    yield from (("tag", k, v, None, None, None, None) for k, v in (d["run"]["tags"] or {}).items())
    yield from (("metric", m.key, m.last_value, m.count, m.last_step, m.min, m.max) for m in d["metrics"])
    yield from (("artifact", a["name"], a["path"], None, None, None, None) for a in d["artifacts"])
    yield from (("media", m["key"], m["kind"], m["count"], m["last_step"], None, None) for m in d["media"])


def _skipped(p: dict[str, Any]) -> str:
    return f"skipped {p['kind']} line in {p['segment']} at byte {p['offset']}: {p['detail']}"


def _show_table(d: dict[str, Any]) -> None:
    from rich.table import Table

    r = d["run"]
    console.print(
        f"run {r['id']}  name {r['name'] or '-'}  experiment {r['experiment_name']}  status {r['status']}", style="bold"
    )
    if r["deleted"]:
        console.print(f"deleted: hidden from every listing; `alex restore {r['id']}` restores it", style="red")
    console.print(
        f"started {when_text(r['timestamp_start'])}  ended {when_text(r['timestamp_end'])}  "
        f"duration {duration_text(r['timestamp_start'], r['timestamp_end'])}"
    )
    if r["error"]:
        console.print(f"error: {r['error']}")
    if r["note"]:
        from rich.markdown import Markdown  # rendered as terminal text: raw HTML in it is dropped, never run

        console.print("note:")
        console.print(Markdown(r["note"]))
    if r["parent_id"]:
        console.print(f"parent run: {r['parent_id']}")
    if d["children"]:
        console.print(f"child runs: {len(d['children'])} ({', '.join(c[:8] for c in d['children'][:10])})")
    if r["attempt"]:  # resumed: show every start, resume and end
        steps = (
            f"{e['event'] if e['status'] == 'running' else e['status']} {when_text(e['timestamp'])}"
            for e in d["lifecycle"]
        )
        console.print("life: " + " -> ".join(steps))
    if d["code"]:
        c = d["code"]
        git = (
            f"git {c['git_commit'][:12]}{' (dirty)' if c['git_dirty'] else ''} on {c['git_branch'] or 'detached HEAD'}"
            if c["git_commit"]
            else "no git commit"
        )
        console.print(f"code: {c['entrypoint']}  {git}  {len(c['tracked_files'] or {})} file(s) hashed")
        if c["note"]:
            console.print(f"  note: {c['note']}")
    if d["environment"]:
        e = d["environment"]
        libs = ", ".join(f"{k} {v}" for k, v in (e["libraries"] or {}).items())
        console.print(
            f"environment: Python {e['python_version']} on {e['os']}, {e['hostname']}, {e['cpu_count']} CPUs, "
            f"{len(e['pip_freeze'] or {})} packages{'; ' + libs if libs else ''}"
        )
    if d["datasets"]:
        t = Table(title="datasets")
        for col in ("role", "name", "format", "rows", "columns", "sha256", "path"):
            t.add_column(col)
        for ds in d["datasets"]:
            t.add_row(
                ds["role"] or "",
                ds["name"] or "",
                ds["format"] or "",
                "-" if ds["num_rows"] is None else str(ds["num_rows"]),
                "-" if ds["num_columns"] is None else str(ds["num_columns"]),
                (ds["hash"] or "")[:16],
                ds["path"] or "(in memory)",
            )
        console.print(t)
    if r["tags"]:
        console.print("tags: " + ", ".join(f"{k}={v}" for k, v in r["tags"].items()))
    if d["params"]:
        t = Table(title="parameters")
        t.add_column("key")
        t.add_column("value")
        for k, v in d["params"].items():
            t.add_row(k, v)
        console.print(t)
    if d["metrics"]:
        t = Table(title="metrics")
        for col in ("key", "points", "last step", "last value", "min", "max"):
            t.add_column(col, justify="left" if col == "key" else "right")
        for m in d["metrics"]:
            step = "-" if m.last_step is None else str(m.last_step)
            t.add_row(m.key, str(m.count), step, number_text(m.last_value), number_text(m.min), number_text(m.max))
        console.print(t)
    if d["artifacts"]:
        t = Table(title="artifacts")
        for col in ("name", "type", "size", "path"):
            t.add_column(col)
        for a in d["artifacts"]:
            t.add_row(a["name"], a["type"] or "", str(a["size"]), a["path"])
        console.print(t)
    if d["media"]:
        t = Table(title="media")
        for col in ("key", "kind", "count", "last step"):
            t.add_column(col, justify="right" if col in ("count", "last step") else "left")
        for m in d["media"]:
            t.add_row(m["key"], m["kind"], str(m["count"]), "-" if m["last_step"] is None else str(m["last_step"]))
        console.print(t)
    for p in d["problems"]:
        console.print(_skipped(p), style="yellow")


def _key_values(pairs: tuple[str, ...], what: str) -> dict[str, str]:
    """KEY=VALUE pairs as given on the command line (the value is text; it may hold "=")."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"{what} {pair!r} must be KEY=VALUE, e.g. team=vision")
        out[key] = value
    return out


def _ids_text(ids: list[str], shown: int = 10) -> str:
    more = f", ... ({len(ids) - shown} more)" if len(ids) > shown else ""
    return ", ".join(r[:8] for r in ids[:shown]) + more


@cli.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--experiment", "-e", metavar="NAME", help="Edit this experiment instead (with --rename, --note).")
@click.option("--name", help="The run's new name (names need not be unique: the id stays the run's identity).")
@click.option("--rename", metavar="NEW", help="With --experiment: its new name (its runs move; a merge if taken).")
@click.option("--note", help='A note: Markdown text ("" clears it), of the run or of the --experiment.')
@click.option("--note-file", type=click.File("r", encoding="utf-8"), help="The note read from this file (-: stdin).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Set a tag (repeatable).")
@click.option("--untag", multiple=True, metavar="KEY", help="Remove a tag (repeatable).")
@click.pass_context
def edit(
    ctx: click.Context,
    run_ref: str | None,
    experiment: str | None,
    name: str | None,
    rename: str | None,
    note: str | None,
    note_file: Any,
    tags: tuple[str, ...],
    untag: tuple[str, ...],
) -> None:
    """Change a run after the fact (its name, note, tags) or an experiment (its name, note), as events in the
    logs: the run is not resumed, its status, times and attempt stay. RUN is an id, a unique prefix or a name."""
    from .edits import edit_experiment, edit_run

    if note_file is not None:
        if note is not None:
            raise InvalidInputError("give --note or --note-file, not both")
        note = note_file.read()
    note_text = None if note is None else f"note set ({len(note.splitlines())} line(s))" if note else "note cleared"
    if experiment is not None:
        if run_ref is not None or name is not None or tags or untag:
            raise InvalidInputError("--experiment takes --rename and --note only; edit a run with `alex edit RUN`")
        done = edit_experiment(experiment, rename=rename, note=note, store=_store(ctx))
        changes = [f"renamed to {rename!r}"] * (rename is not None) + [note_text or ""] * (note is not None)
        click.echo(f"experiment {experiment!r} ({len(done.runs)} run(s)): {'; '.join(changes)}")
        return
    if run_ref is None:
        raise InvalidInputError("give the run to edit (an id, a unique prefix or a name), or --experiment NAME")
    if rename is not None:
        raise InvalidInputError("--rename renames an experiment (with --experiment NAME); a run's new name is --name")
    set_tags = _key_values(tags, "tag")
    run_id = edit_run(run_ref, name=name, note=note, tags=set_tags, untag=untag, store=_store(ctx))
    changes = [f"name {name!r}"] * (name is not None) + [note_text or ""] * (note is not None)
    changes += [f"tag {k}={v}" for k, v in set_tags.items()] + [f"tag {k} removed" for k in untag if k not in set_tags]
    click.echo(f"edited run {run_id}: {'; '.join(changes)}")


def _chosen_runs(store: Store, refs: tuple[str, ...], experiment: str | None) -> list[str]:
    """The runs a delete or restore names: RUN... or every run of --experiment."""
    from .edits import experiment_runs

    if experiment is not None and refs:
        raise InvalidInputError("give runs or --experiment NAME, not both")
    if experiment is None:
        if not refs:
            raise InvalidInputError("no runs given: name runs (ids, unique prefixes or names), or --experiment NAME")
        return list(refs)
    with _reader(store) as reader:
        return experiment_runs(reader.engine, experiment)


def _tombstones_done(done: Any, verb: str) -> None:
    click.echo(f"{verb} {len(done.runs)} run(s), child runs included" + (f": {_ids_text(done.runs)}" * bool(done.runs)))
    if done.unchanged:
        click.echo(f"already {verb}: {len(done.unchanged)} run(s): {_ids_text(done.unchanged)}")


@cli.command()
@click.argument("run_refs", nargs=-1, metavar="[RUN]...")
@click.option("--experiment", "-e", metavar="NAME", help="Delete every run of this experiment.")
@click.option("--force", is_flag=True, help="Delete runs still running too (their writers go on logging into them).")
@click.pass_context
def delete(ctx: click.Context, run_refs: tuple[str, ...], experiment: str | None, force: bool) -> None:
    """Delete runs and their child runs: hidden from every listing, report and export until `alex restore`;
    their logs and rows are kept (`alex runs --deleted` lists them). A run still running needs --force."""
    from .edits import delete_runs

    store = _store(ctx)
    _tombstones_done(delete_runs(_chosen_runs(store, run_refs, experiment), force=force, store=store), "deleted")


@cli.command()
@click.argument("run_refs", nargs=-1, metavar="[RUN]...")
@click.option("--experiment", "-e", metavar="NAME", help="Restore every run of this experiment.")
@click.pass_context
def restore(ctx: click.Context, run_refs: tuple[str, ...], experiment: str | None) -> None:
    """Restore deleted runs and their child runs exactly as they were."""
    from .edits import restore_runs

    store = _store(ctx)
    _tombstones_done(restore_runs(_chosen_runs(store, run_refs, experiment), store=store), "restored")


EXPERIMENT_COLUMNS = ("name", "runs", "deleted", "last_activity", "note")


@cli.command("experiments")
@click.option("--deleted", is_flag=True, help="Only experiments whose every run is deleted.")
@format_option(
    f"a header, then one line per experiment, the latest active first: {', '.join(EXPERIMENT_COLUMNS)} (runs: "
    "live ones; last_activity: unix seconds; note: the whole Markdown text).",
    "a list of objects with those keys.",
)
@click.pass_context
def experiments_cmd(ctx: click.Context, deleted: bool, fmt: str) -> None:
    """List experiments: live and deleted runs, last activity (latest start or sign of life), note's first line."""
    from .query import list_experiments

    found = list_experiments(_fresh_reader(ctx), deleted=deleted)

    def table() -> None:
        from rich.table import Table

        t = Table(title=f"{len(found)} experiment(s)" + (" with every run deleted" if deleted else ""))
        for col in ("name", "runs", "deleted runs", "last activity", "note"):
            t.add_column(col, justify="right" if "runs" in col else "left")
        for e in found:
            first = (e["note"] or "").strip().split("\n", 1)[0]
            t.add_row(e["name"], str(e["runs"]), str(e["deleted"]), when_text(e["last_activity"]), first)
        console.print(t)

    emit(fmt, columns=EXPERIMENT_COLUMNS, rows=([e[c] for c in EXPERIMENT_COLUMNS] for e in found), table=table)


@cli.command()
@click.argument("query")
@format_option("a header of the column names, then one line per row.", "a list of objects, one per row.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run one read-only SQL query against the projection."""
    from .query import execute_sql

    columns, rows = execute_sql(_fresh_reader(ctx), query)

    def table() -> None:
        from rich.table import Table

        t = Table(title=f"{len(rows)} row(s)")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*("NULL" if v is None else str(v) for v in r))
        console.print(t)

    emit(fmt, columns=columns, rows=rows, table=table)


PROBLEM_COLUMNS = ("segment", "offset", "kind", "detail")


@cli.command()
@format_option(
    f"a header, then one line per skipped log line: {', '.join(PROBLEM_COLUMNS)}.", "a list of objects with those keys."
)
@click.pass_context
def problems(ctx: click.Context, fmt: str) -> None:
    """List log lines that could not be projected (corrupt or from a newer version), with file and byte offset."""
    from .query import problems as list_problems

    found = list_problems(_fresh_reader(ctx))

    def table() -> None:
        if not found:
            console.print("no problems: every complete line in the logs is projected")
        for p in found:
            console.print(f"{p['segment']} at byte {p['offset']}: {p['kind']}: {p['detail']}")

    emit(fmt, columns=PROBLEM_COLUMNS, rows=([p[c] for c in PROBLEM_COLUMNS] for p in found), table=table)


VERIFY_COLUMNS = ("run_id", "kind", "name", "path", "status", "detail")


@cli.command()
@click.argument("run_ids", nargs=-1)
@format_option(
    f"a header, then one line per recorded file: {', '.join(VERIFY_COLUMNS)} (status ok, changed, missing or "
    "refused; the summary goes to stderr).",
    "one object: checked, runs, the count of each status, files (a list of objects with those keys).",
)
@click.pass_context
def verify(ctx: click.Context, run_ids: tuple[str, ...], fmt: str) -> None:
    """Check every file the runs (all runs when none is named) recorded, artifacts and dataset files, against
    its logged size and SHA-256: list those missing, changed or refused (outside the store, not a regular
    file). Exit code 1 if any."""
    from dataclasses import astuple

    from .verify import verify_files

    found = verify_files(_store(ctx), run_ids or None)

    def table() -> None:
        for c in found.problems:
            line = f"{c.status}: run {c.run_id} {c.kind} {c.name!r} at {c.path!r}: {c.detail}"
            console.print(line, style="red", soft_wrap=True)  # one line per file, however long its path
        console.print(found.summary)

    emit(fmt, columns=VERIFY_COLUMNS, rows=(astuple(c) for c in found.checks), table=table, document=found.document())
    if fmt != "table":
        note(fmt, found.summary)
    if found.problems:
        ctx.exit(1)


@cli.command()
@click.option("--poll", is_flag=True, help="Poll the store instead of using file notifications (network filesystems).")
@click.option(
    "--interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between folds when nothing wakes the watcher.",
)
@click.pass_context
def watch(ctx: click.Context, poll: bool, interval: float) -> None:
    """Keep the database current while runs log (until Ctrl-C or SIGTERM)."""
    from .db import open_database, safe_target
    from .watch import watch as run_watch

    store = _store(ctx, create=True)
    engine = open_database(store, catch_up=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"watching {store.runs_dir} -> {safe_target(store.database)} (Ctrl-C stops)")

    def report(stats: Any) -> None:
        console.print(f"{when_text(time.time())} folded {stats.events} event(s) from {stats.segments} segment(s)")
        for p in stats.problems:
            console.print(f"skipped {p}", style="yellow")

    try:
        run_watch(store, engine, poll=poll, interval=interval, stop=stop, on_fold=report)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()


@cli.command()
@click.pass_context
def rebuild(ctx: click.Context) -> None:
    """Replay every log into a fresh database and swap it in atomically."""
    from .db import safe_target
    from .rebuild import rebuild as do_rebuild

    store = _store(ctx)
    started = time.perf_counter()
    with progress_bar("replaying logs") as progress:
        stats = do_rebuild(store, progress=progress)
    seconds = time.perf_counter() - started
    console.print(
        f"rebuilt {safe_target(store.database)}: {stats.events} events from {len(list(store.segments()))} segment(s) "
        f"in {seconds:.1f}s"
    )
    for p in stats.problems:
        console.print(f"skipped {p}", style="yellow")


@cli.command()
@click.option(
    "--min-age",
    default="1m",
    show_default=True,
    metavar="AGE",
    help="Compact only segments quiet for longer than this (30s, 10m, 1h; 0: every closed one).",
)
@click.pass_context
def compact(ctx: click.Context, min_age: str) -> None:
    """Compress the closed, folded log segments (gzip, read back transparently); live ones stay as they are."""
    from .compaction import compact as do_compact
    from .db import open_database
    from .gc import parse_age

    store = _store(ctx)
    engine = open_database(store)
    try:
        report = do_compact(store, engine, min_age=parse_age(min_age))
    finally:
        engine.dispose()
    _print_compaction(report)


def _print_compaction(report: Any) -> None:
    from .formatting import size_text

    for rel, why in report.skipped:
        console.print(f"kept {rel}: {why}", style="yellow")
    done = report.compacted + report.finished
    finished = f" ({report.finished} finishing an interrupted compaction)" if report.finished else ""
    console.print(
        f"compacted {done} segment(s){finished}: {size_text(report.bytes_before)} to {size_text(report.bytes_after)}"
    )


@cli.command()
@click.option(
    "--older-than",
    default="7d",
    show_default=True,
    metavar="AGE",
    help="Purge runs deleted longer ago than this (30m, 12h, 7d; 0: every deleted run).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be purged and freed; touch nothing.")
@click.pass_context
def gc(ctx: click.Context, older_than: str, dry_run: bool) -> None:
    """Remove for good the logs, artifacts and rows of runs deleted longer ago than the grace period."""
    from .formatting import size_text
    from .gc import collect_garbage, parse_age

    grace = parse_age(older_than)
    store = _store(ctx)
    with progress_bar("purging deleted runs") as progress:
        report = collect_garbage(store, grace, dry_run, progress=progress)
    for rid in report.skipped_running:
        console.print(
            f"skipped run {rid[:8]}: deleted but still running (a live writer); rerun `alex gc` once it ended",
            style="yellow",
        )
    for rel, why in report.kept_files:
        console.print(f"kept {rel}: {why}", style="yellow")
    verb, freed = ("would purge", "would free") if dry_run else ("purged", "freed")
    if dry_run:
        for rid in report.purged:
            console.print(f"would purge run {rid}")
    finished = f" ({len(report.finished)} finishing an interrupted gc)" if report.finished else ""
    console.print(f"{verb} {len(report.purged)} run(s){finished}, {freed} {size_text(report.bytes_freed)}")
    if not dry_run:  # reclaiming disk: the closed, folded segments that stay are compacted too
        from .compaction import compact as do_compact
        from .db import open_database

        engine = open_database(store)
        try:
            _print_compaction(do_compact(store, engine))
        finally:
            engine.dispose()


@cli.group("import")
def import_group() -> None:
    """Bring runs over from other trackers, keeping their times; running an import twice adds nothing."""


def _print_import_summary(summary: Any) -> None:
    """What every `alex import ...` prints: the counts, then what was skipped and why, in yellow."""
    first, *rest = summary.lines()
    console.print(first)
    for line in rest:
        console.print(line, style="yellow")


@import_group.command("tensorboard")
@click.argument("logdir", type=click.Path(exists=True, file_okay=False))
@click.option("--experiment", metavar="NAME", help="The experiment the runs go into (default: the logdir's name).")
@click.pass_context
def import_tensorboard_cmd(ctx: click.Context, logdir: str, experiment: str | None) -> None:
    """Import every run of a TensorBoard LOGDIR: scalars with their steps and wall times, hparams, text."""
    from .importers.tensorboard import import_tensorboard

    store = _store(ctx, create=True)
    with progress_bar("reading event files") as progress:
        summary = import_tensorboard(logdir, store, experiment, progress=progress)
    _print_import_summary(summary)


@import_group.command("mlflow")
@click.argument("uri")
@click.option(
    "--experiment", "experiments", multiple=True, metavar="NAME", help="Only this MLflow experiment (repeatable)."
)
@click.pass_context
def import_mlflow_cmd(ctx: click.Context, uri: str, experiments: tuple[str, ...]) -> None:
    """Import the runs of an MLflow store: URI is sqlite:///mlflow.db, an mlruns/ folder or a file: URI (needs
    the mlflow package: pip install 'alexandria[mlflow]'). Params, tags, metrics with their steps and times,
    artifacts, statuses and nesting come along; runs imported before are skipped."""
    from .importers.mlflow import import_mlflow

    store = _store(ctx, create=True)
    with progress_bar("importing MLflow runs", unit="runs") as progress:
        summary = import_mlflow(uri, store, experiments=list(experiments) or None, progress=progress)
    _print_import_summary(summary)


@import_group.command("wandb")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.pass_context
def import_wandb_cmd(ctx: click.Context, directory: str) -> None:
    """Import W&B's runs kept on disk: DIRECTORY is a wandb/ folder (offline-run-*/, run-*/) or one run folder
    (needs the wandb package: pip install 'alexandria[wandb]'). Config, history with W&B's steps and times,
    system metrics, summary, tags, notes, files and exit status come along; runs imported before are skipped."""
    from .importers.wandb import import_wandb

    store = _store(ctx, create=True)
    with progress_bar("reading W&B runs", unit="runs") as progress:
        summary = import_wandb(directory, store, progress=progress)
    _print_import_summary(summary)


@cli.command()
@click.option("--steps", type=click.IntRange(1), default=20000, show_default=True, help="Gradient steps per run.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes.")
@click.pass_context
def demo(ctx: click.Context, steps: int, workers: int) -> None:
    """Train a small model for several learning rates in worker processes, tracking everything."""
    from pathlib import Path

    from rich.table import Table

    from .demo import EXPERIMENT, LEARNING_RATES, MEDIA, SUMMARY_SQL, run_demo

    store = _store(ctx, create=True)
    console.print(f"store: {store.root}")
    console.print(f"training {len(LEARNING_RATES)} runs x {steps} steps in {workers} worker processes ...")
    done = run_demo(store, steps=steps, workers=workers)
    table = Table(title=f"{EXPERIMENT}: {len(done.run_ids)} runs tracked in {done.seconds:.1f}s")
    for c in done.columns:
        table.add_column(c, justify="right")
    for r in done.rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r))
    console.print(table)
    store_opt = f"--store {store.root} " if store.root != Path.cwd() / "alexandria_data" else ""
    logged = ", ".join(f"{key} ({kind})" for key, kind in MEDIA.items())
    console.print(f"Each run also logged media, shown on its page in `alex {store_opt}ui`: {logged}", soft_wrap=True)
    console.print("Query it yourself:")
    console.print(f"  alex {store_opt}runs --experiment {EXPERIMENT}")
    console.print(f"  alex {store_opt}show {done.run_ids[-1]}")
    one_line = " ".join(SUMMARY_SQL.split())
    console.print(f'  alex {store_opt}sql "{one_line}"', soft_wrap=True)


_embed_option = click.option(
    "--embed", is_flag=True, help="Put the plotting library inside the page (one ~5 MB file to share)."
)
_x_option = click.option(
    "--x",
    "x_axis",
    type=click.Choice(["step", "time"]),
    default="step",
    show_default=True,
    help="x axis: the step, or the seconds since each run's start.",
)
_smoothing_option = click.option(
    "--smoothing",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Initial EMA smoothing weight in [0, 1), as TensorBoard's; the page has a control to change it.",
)


@cli.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option("--metric", "-m", "metrics", multiple=True, required=True, help="A metric key to plot (repeatable).")
@_x_option
@_smoothing_option
@click.option("--log", "log_y", is_flag=True, help="Start with a log y axis (a button in the page switches).")
@click.option("--buckets", type=click.IntRange(1), default=2000, show_default=True, help="Points per curve at most.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="The page to write (default plot-<run>.html).")
@_embed_option
@click.pass_context
def plot(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    metrics: tuple[str, ...],
    x_axis: str,
    smoothing: float,
    log_y: bool,
    buckets: int,
    output: str | None,
    embed: bool,
) -> None:
    """Plot metrics of runs, overlaid, into an HTML page that opens offline; prints its path.

    RUN is a run id or a unique prefix. Each curve is drawn from at most --buckets buckets: the line is
    each bucket's last value, the band its min..max, so a one-step spike stays visible at any length.
    """
    from .query import select_runs
    from .report import write_plot

    engine = _fresh_reader(ctx)
    ids = select_runs(engine, run_ids)
    path = write_plot(
        output or f"plot-{ids[0][:8]}.html",
        engine,
        ids,
        metrics,
        x=x_axis,
        smoothing=smoothing,
        log_y=log_y,
        buckets=buckets,
        embed=embed,
    )
    click.echo(str(path))


@cli.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--sweep", metavar="PARENT_ID", help="Report on this parent run's child runs.")
@click.option("--metric", "-m", "metrics", multiple=True, help="Only this metric (repeatable; default: every one).")
@_x_option
@_smoothing_option
@click.option(
    "--buckets",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Points per curve at most (fewer on a page of many curves: it draws 60,000 points at most).",
)
@click.option(
    "--parallel-metric",
    metavar="KEY",
    help="The metric colouring the parallel coordinates (default: a held-out accuracy, else a held-out loss, "
    "else any accuracy or loss, among the metrics every run has).",
)
@click.option(
    "--parallel-agg",
    type=click.Choice(["last", "min", "max"]),
    default="last",
    show_default=True,
    help="The parallel coordinates' metric per run: its last value, its min or its max.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="The page to write (default report-<run>.html).")
@_embed_option
@click.pass_context
def report(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    sweep: str | None,
    metrics: tuple[str, ...],
    x_axis: str,
    smoothing: float,
    buckets: int,
    parallel_metric: str | None,
    parallel_agg: str,
    output: str | None,
    embed: bool,
) -> None:
    """Write one HTML page about runs: the runs, every metric's curves, parameters side by side and, for
    runs with differing numeric parameters, parallel coordinates. Prints its path.

    A sweep's page stays small: every curve is downsampled (min/max buckets), a figure of more than 20 runs
    has no legend (each line's hover names its run), the parameters table scrolls sideways."""
    from .query import resolve_run_id, select_runs
    from .report import write_report

    if sweep is not None and run_ids:
        raise InvalidInputError("give run ids or --sweep PARENT_ID, not both")
    if sweep is None and not run_ids:
        raise InvalidInputError("no runs selected: give run ids, or --sweep PARENT_ID for a sweep's child runs")
    engine = _fresh_reader(ctx)
    selection: Any = resolve_run_id(engine, sweep) if sweep is not None else select_runs(engine, run_ids)
    first = selection if isinstance(selection, str) else selection[0]
    path = write_report(
        output or f"report-{first[:8]}.html",
        engine,
        selection,
        list(metrics) or None,
        x=x_axis,
        smoothing=smoothing,
        buckets=buckets,
        embed=embed,
        parallel_metric=parallel_metric,
        parallel_agg=parallel_agg,
    )
    click.echo(str(path))


@cli.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_A RUN_B [RUN]...")
@click.option(
    "--best",
    type=click.Choice(["min", "max"]),
    help='Which end is best for every metric (default: min for keys with "loss" or "error", else max).',
)
@format_option(
    "a header section,key,<each run's id>, then a row per parameter that differs (section param; an empty "
    "cell: not logged) and, per metric, its final, final_step, best, points and best_rule (min or max) rows.",
    "one object: runs, params_differ, params_equal, metrics (per key its best_rule and, per run, null or "
    "final, final_step, best, points).",
)
@click.pass_context
def compare(ctx: click.Context, run_ids: tuple[str, ...], best: str | None, fmt: str) -> None:
    """Compare runs: the parameters that differ, then each metric's final and best value per run."""
    from .compare import compare_runs

    if len(run_ids) < 2:
        raise InvalidInputError("compare needs at least two runs")
    c = compare_runs(_fresh_reader(ctx), run_ids, best=best)
    if len(c["runs"]) < 2:
        raise InvalidInputError("compare needs at least two different runs")
    columns = ("section", "key", *(r["id"] for r in c["runs"]))
    emit(fmt, columns=columns, rows=_compare_rows(c), table=lambda: _compare_table(c), document=c)


def _compare_rows(c: dict[str, Any]) -> Iterable[tuple[Any, ...]]:
    yield from (("param", key, *values) for key, values in c["params_differ"].items())
    for key, m in c["metrics"].items():
        for field in ("final", "final_step", "best", "points"):
            yield (field, key, *(None if s is None else s[field] for s in m["runs"]))
        yield ("best_rule", key, *(None if s is None else m["best_rule"] for s in m["runs"]))


def _compare_table(c: dict[str, Any]) -> None:
    from rich.table import Table

    runs = c["runs"]
    heads = [f"{r['id'][:8]}\n{r['name'] or '-'}\n{r['experiment'] or '?'}" for r in runs]
    t = Table(title=f"{len(c['params_differ'])} parameter(s) differ")
    t.add_column("parameter")
    for h in heads:
        t.add_column(h)
    for key, values in c["params_differ"].items():
        t.add_row(key, *("-" if v is None else v for v in values))
    console.print(t)
    if c["params_equal"]:
        same = ", ".join(f"{k}={v}" for k, v in c["params_equal"].items())
        console.print(f"{len(c['params_equal'])} parameter(s) equal in every run: {same}")
    t = Table(title="metrics (final: at the last step; best: * marks the best run)")
    t.add_column("metric")
    t.add_column("")
    for h in heads:
        t.add_column(h, justify="right")
    for key, m in c["metrics"].items():
        cells = m["runs"]
        bests = [s["best"] for s in cells if s is not None and not math.isnan(s["best"])]
        winner = (min if m["best_rule"] == "min" else max)(bests) if bests else None
        finals = ("-" if s is None else number_text(s["final"]) + _at_step(s["final_step"]) for s in cells)
        best_cells = (
            "-" if s is None else number_text(s["best"]) + (" *" if s["best"] == winner else "") for s in cells
        )
        t.add_row(key, "final", *finals)
        t.add_row("", f"best ({m['best_rule']})", *best_cells)
        t.add_row("", "points", *("-" if s is None else str(s["points"]) for s in cells), end_section=True)
    console.print(t)


def _at_step(step: int | None) -> str:
    return "" if step is None else f" @{step}"


@cli.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--output", "-o", "out_dir", type=click.Path(file_okay=False), required=True, help="Directory to write.")
@click.pass_context
def export(ctx: click.Context, run_ids: tuple[str, ...], fmt: str, out_dir: str) -> None:
    """Export runs (every run when none is named) as runs, params and metrics tables in CSV or Parquet."""
    from .export import export_runs

    for path in export_runs(_fresh_reader(ctx), list(run_ids) or None, out_dir, fmt):
        click.echo(str(path))


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (the default: this machine only)."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: a free one).")
@click.option(
    "--interval", type=click.FloatRange(0.1), default=1.0, show_default=True, help="Seconds between folds and updates."
)
@click.option("--no-fold", is_flag=True, help="Only read: another process (`alex watch`) keeps the database current.")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, interval: float, no_fold: bool) -> None:
    """Serve a live dashboard of the store in the browser (until Ctrl-C or SIGTERM).

    Runs with filters and sorting, one page per run with a chart per metric that updates while the run
    logs, and runs compared side by side. It folds new log lines itself unless --no-fold.
    """
    from .ui import serve

    store = _store(ctx, create=not no_fold)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt  # the server has shut down gracefully when SIGTERM reaches this

    signal.signal(signal.SIGTERM, stop)

    def announce(url: str) -> None:
        click.echo(f"Alexandria dashboard for {store.root} at {url} (Ctrl-C stops)")
        sys.stdout.flush()

    try:
        serve(store, host=host, port=port, interval=interval, fold=not no_fold, announce=announce)
    except KeyboardInterrupt:
        pass
    click.echo("dashboard stopped")


register_commands(cli)  # installed plug-ins' commands and groups: see hookspecs.py


def main() -> None:
    cli(prog_name="alex")


if __name__ == "__main__":
    main()
