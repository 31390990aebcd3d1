"""The `alex` command line, run as a real process, as a user meets it."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

import alexandria
from alexandria.cli import RUN_COLUMNS, cli
from alexandria.store import Store
from tests.conftest import REPO, alex, complete_lines


def invoke(store: Store, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(store.root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def two_runs(store: Store) -> tuple[str, str]:
    with alexandria.start_run(experiment="mnist", tags={"team": "vision"}) as a:
        a.log_params({"lr": 0.1, "layers": 3})
        for step in range(10):
            a.log_metric("loss", 1.0 / (step + 1), step=step)
    with pytest.raises(RuntimeError), alexandria.start_run(experiment="cifar") as b:
        b.log_metric("acc", 0.5, step=0)
        raise RuntimeError("out of memory")
    return a.id, b.id


def test_every_command_has_help_and_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    assert set(cli.commands) >= {"runs", "show", "sql", "watch", "rebuild", "demo", "problems"}
    for name, command in cli.commands.items():
        assert f"`alex {name}" in readme, f"alex {name} is not documented in README.md"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.stdout and command.help


def test_runs_lists_and_filters(store: Store, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    code, out, _ = invoke(store, "runs")
    assert code == 0
    assert a in out and b in out and "finished" in out and "failed" in out and "team=vision" in out
    code, out, _ = invoke(store, "runs", "--experiment", "cifar")
    assert code == 0 and b in out and a not in out
    code, out, _ = invoke(store, "runs", "--status", "finished")
    assert a in out and b not in out


def test_what_was_logged_prints_as_it_is_never_as_an_emoji(store: Store) -> None:
    with alexandria.start_run(experiment="emoji", tags={"mood": ":fire:"}) as run:
        run.log_param("note", ":smile:")
    code, out, _ = invoke(store, "runs")
    assert code == 0 and "mood=:fire:" in out
    code, out, _ = invoke(store, "show", run.id)
    assert code == 0 and "mood=:fire:" in out and ":smile:" in out and "\U0001f525" not in out


def test_show_a_run(store: Store, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    code, out, _ = invoke(store, "show", a[:8])
    assert code == 0
    assert f"run {a}" in out and "status finished" in out
    assert re.search(r"lr\s+│\s+0\.1", out) and re.search(r"layers\s+│\s+3", out)
    assert re.search(r"loss\s+│\s+10\s+│\s+9\s+│\s+0\.1\s+│\s+0\.1\s+│\s+1", out)  # points, last step/value, min, max
    code, out, _ = invoke(store, "show", b)
    assert "status failed" in out and "error: RuntimeError: out of memory" in out


def test_sql_is_read_only_with_clear_errors(store: Store, two_runs: tuple[str, str]) -> None:
    code, out, _ = invoke(
        store, "sql", "SELECT key, count(*) AS n FROM metric GROUP BY key ORDER BY key", "--format", "json"
    )
    assert code == 0 and json.loads(out) == [{"key": "acc", "n": 1}, {"key": "loss", "n": 10}]
    code, out, _ = invoke(store, "sql", "SELECT value FROM parameter WHERE key = 'lr'", "--format", "csv")
    assert out.splitlines() == ["value", "0.1"]
    code, _, err = invoke(store, "sql", "DELETE FROM metric")
    assert (code, err) == (1, f"Error: DELETE on metric {REFUSED}\n")
    code, _, err = invoke(store, "sql", "SELEC 1")
    assert (code, err) == (1, 'Error: query failed: near "SELEC": syntax error\n')
    code, out, _ = invoke(store, "sql", "SELECT count(*) FROM metric")
    assert code == 0 and "11" in out  # the refused DELETE removed nothing


#: The end of every refusal of `alex sql`.
REFUSED = "is refused: the database is opened read-only here (queries only)"

#: Statements that are not reads, and what their refusal names.
NOT_READS = {
    "PRAGMA writable_schema=1": "PRAGMA writable_schema=1",
    "PRAGMA query_only=OFF": "PRAGMA query_only=OFF",
    "PRAGMA journal_mode=DELETE": "PRAGMA journal_mode=DELETE",
    "PRAGMA user_version=7": "PRAGMA user_version=7",
    "SAVEPOINT keep": "SAVEPOINT keep",
    "RELEASE keep": "RELEASE keep",
    "BEGIN IMMEDIATE": "BEGIN",
    "COMMIT": "COMMIT",
    "END": "COMMIT",
    "ROLLBACK": "ROLLBACK",
    "VACUUM": "VACUUM",
    "/* compact */ vacuum INTO '{out}'": "VACUUM",
    "SELECT load_extension('{out}')": "the function load_extension()",
    "INSERT INTO tag (run_id, key, value) VALUES ('x', 'k', 'v')": "INSERT on tag",
    "UPDATE run SET status = 'x'": "UPDATE on run",
    "WITH doomed AS (SELECT id FROM run) DELETE FROM metric WHERE run_id IN doomed": "DELETE on metric",
    "CREATE TABLE scratch (x)": "CREATE",
    "CREATE TEMP VIEW scratch AS SELECT 1": "CREATE",
    "DROP VIEW runs": "DROP",
    "ANALYZE": "ANALYZE",
    "REINDEX": "REINDEX",
    "ATTACH '{out}' AS other": "ATTACH",
}


def test_sql_refuses_everything_that_is_not_a_read_and_reads_keep_working(
    store: Store, two_runs: tuple[str, str], tmp_path: object
) -> None:
    """The reader's authorizer allows reading and nothing else: settings, transaction control, VACUUM,
    extensions and writes are refused by rule, each with its one `Error:` line, through the real CLI."""
    out = f"{tmp_path}/copy.db"
    for statement, what in NOT_READS.items():
        proc = alex("--store", str(store.root), "sql", statement.format(out=out))
        assert (proc.returncode, proc.stderr) == (1, f"Error: {what} {REFUSED}\n"), statement
    assert not (tmp_path / "copy.db").exists()  # type: ignore[operator]
    reads = {
        "SELECT key, count(*) AS n FROM metric GROUP BY key ORDER BY key": [
            {"key": "acc", "n": 1},
            {"key": "loss", "n": 10},
        ],
        "WITH last AS (SELECT max(step) AS s FROM metric) SELECT s FROM last": [{"s": 9}],
        "SELECT json_extract('{\"a\": [1, 2]}', '$.a[1]') AS a, datetime(0, 'unixepoch') AS t": [
            {"a": 2, "t": "1970-01-01 00:00:00"}
        ],
        "SELECT count(*) AS n FROM json_each('[1, 2, 3]')": [{"n": 3}],
        "SELECT count(*) AS n FROM runs": [{"n": 0}],
        "SELECT count(*) AS n FROM artifacts": [{"n": 0}],
        "SELECT name FROM pragma_table_info('tag') WHERE cid < 3 ORDER BY cid": [
            {"name": "run_id"},
            {"name": "key"},
            {"name": "value"},
        ],
        "PRAGMA user_version": [{"user_version": 0}],
        "PRAGMA query_only": [{"query_only": 1}],
    }
    for statement, expected in reads.items():
        proc = alex("--store", str(store.root), "sql", statement, "--format", "json")
        assert (proc.returncode, proc.stderr) == (0, ""), statement
        assert json.loads(proc.stdout) == expected, statement
    for pragma in ("table_info(run)", "index_list(metric_point)", "table_list"):
        proc = alex("--store", str(store.root), "sql", f"PRAGMA {pragma}", "--format", "json")
        assert proc.returncode == 0 and json.loads(proc.stdout), pragma
    with sqlite3.connect(store.db_path) as db:  # nothing was changed
        assert db.execute("SELECT count(*) FROM metric").fetchone() == (11,)
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_errors_are_one_line_and_exit_1(store: Store, two_runs: tuple[str, str], tmp_path: object) -> None:
    code, _, err = invoke(store, "show", "0" * 32)
    assert (code, err) == (1, f"Error: no run with id or name {'0' * 32!r}; `alex runs` lists the runs\n")
    code, _, err = invoke(store, "show", "xyz")
    assert (code, err) == (1, "Error: no run with id or name 'xyz'; `alex runs` lists the runs\n")  # nor a name
    proc = alex("--store", str(store.root / "nowhere"), "runs")
    assert proc.returncode == 1
    assert proc.stderr == (
        f"Error: no Alexandria store at {store.root / 'nowhere'}; log a run there first, "
        "or pass --store / set ALEXANDRIA_STORE\n"
    )
    assert "Traceback" not in proc.stderr
    proc = alex("runs", "--status", "bogus")
    assert proc.returncode == 2 and "Invalid value for '--status'" in proc.stderr


def test_rebuild_recreates_a_deleted_or_outdated_database(store: Store, two_runs: tuple[str, str]) -> None:
    code, before, _ = invoke(store, "sql", "SELECT run_id, key, value, step FROM metric ORDER BY run_id, key, step")
    store.db_path.unlink()
    for suffix in ("-wal", "-shm"):
        store.db_path.with_name(store.db_path.name + suffix).unlink(missing_ok=True)
    code, out, _ = invoke(store, "rebuild")
    events = sum(len(complete_lines(segment)) - 1 for segment in store.segments())  # every line but the headers
    assert code == 0 and "rebuilt" in out and f"{events} events from 2 segment(s)" in out
    assert invoke(store, "sql", "SELECT run_id, key, value, step FROM metric ORDER BY run_id, key, step")[1] == before
    # a database from another schema version is rebuilt, not trusted
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE alexandria_meta SET value = '0' WHERE key = 'schema_version'")
        db.execute("DELETE FROM metric_point")
    db.close()
    code, out, _ = invoke(store, "sql", "SELECT count(*) AS n FROM metric", "--format", "json")
    assert json.loads(out) == [{"n": 11}]


def test_demo_tracks_a_real_sweep(tmp_path: object) -> None:
    target = f"{tmp_path}/demo-store"
    proc = alex("--store", target, "demo", "--steps", "300", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "demo-logreg: 4 runs tracked" in proc.stdout
    query = re.search(r'sql "(.*)"', proc.stdout)
    assert query is not None
    out = alex("--store", target, "sql", query.group(1), "--format", "json")
    rows = json.loads(out.stdout)
    assert sorted(float(r["lr"]) for r in rows) == [0.01, 0.05, 0.2, 1.0]
    assert all(r["status"] == "finished" and r["points"] == 2 * 300 + 2 * 7 for r in rows)
    assert all(r["best_val_acc"] > 0.8 for r in rows)  # it really learned something
    listed = alex("--store", target, "sql", "SELECT count(*) FROM artifact WHERE type = 'model'", "--format", "json")
    assert json.loads(listed.stdout) == [{"count(*)": 4}]
    # every child run logged media of each kind the dashboard shows: images and histograms at 4 steps
    media_sql = (
        "SELECT m.run_id, m.kind, count(*) AS n, count(DISTINCT m.step) AS steps FROM media m "
        "JOIN run r ON r.id = m.run_id WHERE r.parent_id IS NOT NULL GROUP BY m.run_id, m.kind"
    )
    media = json.loads(alex("--store", target, "sql", media_sql, "--format", "json").stdout)
    per_run: dict[str, dict[str, tuple[int, int]]] = {}
    for r in media:
        per_run.setdefault(r["run_id"], {})[r["kind"]] = (r["n"], r["steps"])
    assert len(per_run) == 4
    for kinds in per_run.values():
        assert kinds == {"image": (4, 4), "histogram": (4, 4), "figure": (1, 1), "table": (1, 1)}
    bins = alex("--store", target, "sql", "SELECT count(*) AS n FROM histogram", "--format", "json")
    assert json.loads(bins.stdout) == [{"n": 4 * 4 * 16}]
    assert "weights (image), weights/histogram (histogram), val/roc (figure), val/per_class (table)" in proc.stdout


def test_an_unreadable_database_is_rebuilt_from_the_logs(store: Store, two_runs: tuple[str, str]) -> None:
    invoke(store, "runs")
    for suffix in ("-wal", "-shm"):
        store.db_path.with_name(store.db_path.name + suffix).unlink(missing_ok=True)
    store.db_path.write_bytes(b"this is not a database" * 100)
    code, out, _ = invoke(store, "sql", "SELECT count(*) AS n FROM metric", "--format", "json")
    assert code == 0 and json.loads(out) == [{"n": 11}]
    assert len(list(store.root.glob("alexandria.db.corrupt-*"))) == 1  # kept for inspection


def test_sql_cannot_attach_other_files_and_json_stays_json(store: Store, tmp_path: object) -> None:
    with alexandria.start_run(experiment="inf") as run:
        run.log_metric("x", float("inf"), step=0)
        run.log_metric("x", float("nan"), step=1)
    code, _, err = invoke(store, "sql", f"ATTACH '{tmp_path}/other.db' AS other")
    assert (code, err) == (1, f"Error: ATTACH {REFUSED}\n")
    assert not (tmp_path / "other.db").exists()  # type: ignore[operator]
    code, out, _ = invoke(store, "sql", "SELECT step, value FROM metric ORDER BY step", "--format", "json")
    assert json.loads(out) == [{"step": 0, "value": "inf"}, {"step": 1, "value": None}]


def test_runs_in_every_format(store: Store, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    code, out, _ = invoke(store, "runs", "--format", "csv")
    assert code == 0 and "\r" not in out
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header == list(RUN_COLUMNS)
    assert [r[0] for r in rows] == [b, a]  # newest first: the ids, whole and clean
    assert rows[1][header.index("tags")] == '{"team": "vision"}' and rows[0][header.index("parent_id")] == ""
    code, out, _ = invoke(store, "runs", "--format", "json")
    listed = json.loads(out)
    assert [r["id"] for r in listed] == [b, a] and set(listed[0]) == set(RUN_COLUMNS)
    assert listed[1]["tags"] == {"team": "vision"} and listed[1]["num_params"] == 2 and listed[0]["status"] == "failed"
    code, out, _ = invoke(store, "runs", "--status", "crashed", "--format", "csv")
    assert out == ",".join(RUN_COLUMNS) + "\n"  # the header even when nothing matches


def test_show_in_every_format(store: Store, two_runs: tuple[str, str]) -> None:
    a, _ = two_runs
    code, out, _ = invoke(store, "show", a[:8], "--format", "csv")
    assert code == 0 and "\r" not in out
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header == ["section", "key", "value", "count", "last_step", "min", "max"]
    assert ["run", "id", a, "", "", "", ""] in rows and ["run", "status", "finished", "", "", "", ""] in rows
    assert [r for r in rows if r[0] in ("param", "tag", "metric")] == [
        ["param", "layers", "3", "", "", "", ""],
        ["param", "lr", "0.1", "", "", "", ""],
        ["tag", "team", "vision", "", "", "", ""],
        ["metric", "loss", "0.1", "10", "9", "0.1", "1.0"],
    ]
    code, out, _ = invoke(store, "show", a, "--format", "json")
    shown = json.loads(out)
    assert list(shown)[:4] == ["run", "params", "tags", "metrics"]
    assert shown["run"]["id"] == a and shown["params"] == {"layers": "3", "lr": "0.1"}
    assert shown["tags"] == {"team": "vision"}
    assert shown["metrics"] == [{"key": "loss", "count": 10, "last_value": 0.1, "last_step": 9, "min": 0.1, "max": 1.0}]
    assert shown["code"]["run_id"] == a and shown["environment"]["python_version"]
    # the only artifact is the captured diff of uncommitted changes, when the tree has any
    assert [a["type"] for a in shown["artifacts"]] in ([], ["git-diff"])
    assert shown["children"] == [] and shown["problems"] == []
    assert [e["event"] for e in shown["lifecycle"]] == ["started", "finished"]


def test_compare_in_every_format(store: Store, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    with alexandria.start_run(experiment="mnist") as c:
        c.log_params({"lr": 0.1, "layers": 4})
        c.log_metric("loss", float("nan"), step=0)
    code, out, _ = invoke(store, "compare", a, c.id, "--format", "csv")
    assert code == 0 and "\r" not in out
    assert list(csv.reader(io.StringIO(out))) == [
        ["section", "key", a, c.id],
        ["param", "layers", "3", "4"],
        ["final", "loss", "0.1", "nan"],
        ["final_step", "loss", "9", "0"],
        ["best", "loss", "0.1", "nan"],
        ["points", "loss", "10", "1"],
        ["best_rule", "loss", "min", "min"],
    ]
    code, out, _ = invoke(store, "compare", a, b, "--format", "json")
    names = {r["id"]: r["name"] for r in alexandria.Reader(store).runs()}
    assert json.loads(out) == {
        "runs": [
            {"id": a, "name": names[a], "experiment": "mnist", "status": "finished"},
            {"id": b, "name": names[b], "experiment": "cifar", "status": "failed"},
        ],
        "params_differ": {"layers": ["3", None], "lr": ["0.1", None]},
        "params_equal": {},
        "metrics": {
            "acc": {"best_rule": "max", "runs": [None, {"final": 0.5, "final_step": 0, "best": 0.5, "points": 1}]},
            "loss": {"best_rule": "min", "runs": [{"final": 0.1, "final_step": 9, "best": 0.1, "points": 10}, None]},
        },
    }
    code, out, _ = invoke(store, "compare", a, c.id, "--format", "json")
    assert json.loads(out)["metrics"]["loss"]["runs"][1] == {
        "final": "nan",
        "final_step": 0,
        "best": "nan",
        "points": 1,
    }


def test_sql_and_problems_in_every_format(store: Store, two_runs: tuple[str, str]) -> None:
    a, b = two_runs
    code, out, _ = invoke(store, "sql", "SELECT id, attempt, parent_id FROM run ORDER BY id", "--format", "csv")
    assert code == 0 and out == "id,attempt,parent_id\n" + "".join(f"{i},0,\n" for i in sorted((a, b)))
    code, out, _ = invoke(store, "problems", "--format", "csv")
    assert (code, out) == (0, "segment,offset,kind,detail\n")
    assert json.loads(invoke(store, "problems", "--format", "json")[1]) == []
    [segment] = (store.runs_dir / a).glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b"not json\n")
    code, out, err = invoke(store, "problems", "--format", "json")
    [found] = json.loads(out)
    assert found["segment"] == f"runs/{a}/{segment.name}" and found["kind"] == "corrupt" and found["offset"] > 0
    code, out, err = invoke(store, "problems", "--format", "csv")
    assert list(csv.reader(io.StringIO(out)))[1] == [found["segment"], str(found["offset"]), "corrupt", found["detail"]]
    code, out, err = invoke(store, "problems")
    assert out == f"{found['segment']} at byte {found['offset']}: corrupt: {found['detail']}\n"
    # beside CSV and JSON, the remark about skipped lines goes to stderr: stdout stays one document
    code, out, err = invoke(store, "runs", "--format", "json")
    assert len(json.loads(out)) == 2 and "1 unreadable line(s)" in err


def test_format_help_says_what_csv_and_json_hold() -> None:
    for name in ("runs", "show", "compare", "sql", "problems"):
        out = CliRunner().invoke(cli, [name, "--help"]).stdout
        assert "--format [table|csv|json]" in out and "csv:" in out and "json:" in out, name


def _drawn(monkeypatch: pytest.MonkeyPatch, width: int, terminal: bool, draw: object) -> str:
    """What `draw()` prints through the commands' console, made `width` columns wide (a terminal or a pipe)."""
    from rich.console import Console

    from alexandria import cli_base

    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, highlight=False, markup=False, emoji=False)
    monkeypatch.setattr(cli_base.console, "_console", console)
    draw()  # type: ignore[operator]
    return out.getvalue()


def test_a_long_runs_list_is_drawn_as_richs_table_draws_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.table import Table

    from alexandria.output import print_table

    columns = ("id", "name", "tags")
    rows = [(f"{i:032x}", "日本-run" if i % 3 else "-", f"k={i}" * (i % 4)) for i in range(300)]
    rows[5] = ("  └ " + rows[5][0], rows[5][1], "")  # a sweep's child, indented

    def with_rich() -> None:
        from alexandria.cli_base import console

        table = Table(title="300 run(s)")
        for c in columns:
            table.add_column(c, no_wrap=c == "id")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    def ours() -> None:
        print_table("300 run(s)", columns, rows, no_wrap=("id",))

    # through a pipe: the same characters; on a terminal: the same text, the title in italics, the header in bold
    assert _drawn(monkeypatch, 200, False, ours) == _drawn(monkeypatch, 200, False, with_rich)
    styled = _drawn(monkeypatch, 200, True, ours)
    plain = re.compile(r"\x1b\[[0-9;]*m")
    assert plain.sub("", styled) == plain.sub("", _drawn(monkeypatch, 200, True, with_rich))
    assert "\x1b[3m" in styled.splitlines()[0] and "\x1b[1m id" in styled.splitlines()[2]
    # narrower than the table: rich's wrapping, every line within the width, the ids whole
    narrow = _drawn(monkeypatch, 60, False, ours)
    assert narrow == _drawn(monkeypatch, 60, False, with_rich)
    assert max(len(line) for line in narrow.splitlines()) <= 60 and rows[7][0] in narrow
