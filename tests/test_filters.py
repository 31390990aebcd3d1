"""The filter language (alexandria/filters.py) on a real store whose runs real writer processes logged: every
operator, and/or/not/parentheses, numbers against parameters' text, attributes, times, the errors with their
exact messages, an injection attempt that stays a value; the SQL on every backend. Also `alex runs --filter`,
`Reader.runs(filter=...)` and docs/filters.md against the module's own tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alexandria.filters import FIELDS, OPERATORS, FilterError, compile_filter
from alexandria.query import Reader
from alexandria.store import Store
from tests.conftest import alex, child_env, every_backend, python, run_python

REPO = Path(__file__).resolve().parent.parent
INJECTION = "'; DROP TABLE run; --"

# Four runs: a and b (vision; b fails), c (audio, lr written as "1e-2", an injection-shaped parameter),
# d (audio; its process dies without ending it: crashed, no end time, a parameter that is not a number).
SEED = """
import json, os, sys, alexandria
store, which = sys.argv[1], sys.argv[2]
if which == "abc":
    ids = {}
    with alexandria.start_run(experiment="vision", name="a-run", store=store, capture=False,
                              tags={"team": "vision"}) as r:
        ids["a"] = r.id
        r.log_params({"lr": 0.01, "batch": 64, "opt": "adam"})
        for step, v in enumerate((0.5, 0.8, 0.95)):
            r.log_metric("val/accuracy", v, step=step)
    try:
        with alexandria.start_run(experiment="vision", name="b-run", store=store, capture=False,
                                  tags={"team": "nlp"}) as r:
            ids["b"] = r.id
            r.log_params({"lr": 0.1, "batch": 32, "opt": "sgd"})
            for step, v in enumerate((0.7, 0.99, 0.6)):
                r.log_metric("val/accuracy", v, step=step)
            raise RuntimeError("diverged")
    except RuntimeError:
        pass
    with alexandria.start_run(experiment="audio", name="c-run", store=store, capture=False,
                              tags={"team": "vision"}) as r:
        ids["c"] = r.id
        r.log_params({"lr": "1e-2", "opt": "adam", "weird": sys.argv[3], "glob": "x*[y]?_1"})
    print(json.dumps(ids))
else:
    r = alexandria.start_run(experiment="audio", name="d-run", store=store, capture=False)
    r.log_param("lr", "auto")
    alexandria.flush()
    print(json.dumps({"d": r.id}), flush=True)
    os._exit(0)
"""


def seed(store: Store) -> dict[str, str]:
    ids = json.loads(run_python(SEED, str(store.root), "abc", INJECTION).strip().splitlines()[-1])
    proc = python(SEED, str(store.root), "d", env=child_env())
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    ids.update(json.loads(out.decode().strip().splitlines()[-1]))
    return ids


CASES = [
    ("metrics.val/accuracy > 0.9", "a"),
    ("metrics.val/accuracy.max > 0.9", "ab"),
    ("metrics.val/accuracy.min < 0.6", "a"),
    ("metrics.val/accuracy.last <= 0.6", "b"),
    ("metrics.`val/accuracy` >= 0.6 and metrics.val/accuracy < 0.95", "b"),
    ("metrics.val/accuracy is null", "cd"),
    ("params.lr = 0.01", "ac"),  # numbers compare numerically: "1e-2" is 0.01
    ("params.lr == 1e-2", "ac"),
    ('params.lr = "0.01"', "a"),  # quoted: the text
    ("params.lr > 0.001", "abc"),  # "auto" is no number: not kept
    ("params.lr != 0.01", "b"),
    ("params.lr in (0.1, 0.01)", "abc"),
    ('params.lr not in ("0.1", "auto")', "ac"),
    ("params.batch >= 64", "a"),
    ('params.opt in ("adam")', "ac"),
    ('params.opt not in ("adam")', "b"),  # d has no opt: neither in nor not in
    ("params.opt is null", "d"),
    ("params.opt is not null", "abc"),
    ('params.opt like "a%"', "ac"),
    ('params.opt not like "a%"', "b"),
    ('tags.team = "vision"', "ac"),
    ("tags.team != 'vision'", "b"),
    ('tags.team ilike "VIS%"', "ac"),
    ('tags.team = "vision" and status = "finished"', "ac"),
    ('status = "failed" or status = "crashed"', "bd"),
    ('STATUS = "finished" AND Params.lr = 0.01', "ac"),
    ('not status = "finished"', "bd"),
    ('not tags.team = "vision"', "bd"),  # d has no team: not is the complement
    ('not params.opt = "sgd"', "acd"),
    ("not params.lr > 0.05", "acd"),
    ('status in ("failed", "crashed") and not (name = "b-run")', "d"),
    ('(experiment = "vision" or name like "c%") and not params.opt = "sgd"', "ac"),
    ('experiment = "vision" or name like "c%" and params.opt = "sgd"', "ab"),  # and binds tighter than or
    ('name ilike "A-RUN"', "a"),
    ('name like "A-RUN"', ""),  # like respects case, on SQLite too
    ('name like "a_run"', "a"),
    ('name like "a\\\\_run"', ""),  # a backslash takes _ literally
    ('name like "%-run"', "abcd"),
    ('params.glob like "x*[y]?\\\\_1"', "c"),  # GLOB's own characters are plain text in a like pattern
    ('params.glob like "x*[y]?%"', "c"),
    ('params.glob like "X%"', ""),
    ('params.glob ilike "X*[Y]?_1"', "c"),
    ('params.glob not like "x*%"', ""),
    ('attributes.name = "c-run"', "c"),
    ('error like "%diverged%"', "b"),
    ("vision", "abc"),  # a word alone: the experiment, a tag's key=value
    ('"TEAM=NLP"', "b"),
    ("diverged or d-run", "bd"),
    ("not vision", "d"),
    ("duration >= 0", "abcd"),  # a crashed run ends when it was last seen
    ("end is null", ""),
    ('start > "2000-01-01"', "abcd"),
    ("start < 946684800", ""),
    ('metrics.val/accuracy > 0.9 and params.lr = 0.01 and tags.team = "vision" and status = "finished"', "a"),
    ("metrics.val/accuracy > 0.5 AND params.opt = 'adam'", "a"),  # a pure MLflow filter string
    (f'params.weird = "{INJECTION}"', "c"),  # a value, never SQL
    ("params.weird = 'x'' OR ''1''=''1'", None),  # MLflow's doubled quotes are no escape here either
]


@every_backend
def test_the_language_on_a_real_store(store: Store) -> None:
    ids = seed(store)
    letter = {rid: name for name, rid in ids.items()}
    with Reader(store) as reader:
        assert len(reader.runs()) == 4
        for expr, expected in CASES:
            if expected is None:
                with pytest.raises(FilterError):
                    reader.runs(expr)
                continue
            got = "".join(sorted(letter[r["id"]] for r in reader.runs(filter=expr)))
            assert got == expected, expr
        prefix = ids["a"][:6]
        assert [r["id"] for r in reader.runs(f'id like "{prefix}%"')] == [ids["a"]]
        assert {r["id"] for r in reader.runs('experiment = "vision"', status="failed")} == {ids["b"]}
        assert len(reader.runs()) == 4  # the injection was a value: the table is there, whole
        assert reader.sql("SELECT count(*) FROM run")[1] == [(4,)]


def test_a_filter_is_one_sql_query(store: Store) -> None:
    """However much it says, a filter is part of the one query that lists the runs: no loop over runs."""
    from sqlalchemy import event

    ids = seed(store)
    with Reader(store) as reader:
        reader.runs()  # connected, warmed
        statements: list[str] = []
        event.listen(reader.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
        got = reader.runs(
            'metrics.val/accuracy > 0.9 and params.lr = 0.01 and tags.team = "vision" and status = "finished"'
            " or (vision and params.lr > 0.05) or not (metrics.val/accuracy.min < 0.6 or metrics.x is null)"
        )
        assert {r["id"] for r in got} == {ids["a"], ids["b"]}
        assert len(statements) == 1, statements


def test_values_are_bound_parameters_never_sql_text() -> None:
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql, sqlite

    from alexandria.schema import run

    q = select(run.c.id).where(compile_filter(f'params.weird = "{INJECTION}" or name like "{INJECTION}" or x'))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = q.compile(dialect=dialect)
        assert "DROP" not in str(compiled)
        assert INJECTION in compiled.params.values()


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("params.lr >", "filter 'params.lr >': ends where a number or a quoted value was expected"),
        ("params.lr > 'a'", "filter \"params.lr > 'a'\": expected a number at position 12, found \"'a'\""),
        (
            "tags.t > 'a'",
            "filter \"tags.t > 'a'\": > at position 7 compares numbers; tags.t is text (use =, !=, LIKE, ILIKE or IN)",
        ),
        ("metrics.acc > high", "filter 'metrics.acc > high': expected a number at position 14, found 'high'"),
        (
            'foo = "1"',
            "filter 'foo = \"1\"': 'foo' at position 0 is not a field: one of status, name, experiment, "
            "id, parent, error, start, end, duration, metrics.<key>, params.<key>, tags.<key>",
        ),
        ("bogus.x = 1", "filter 'bogus.x = 1': 'bogus' at position 0 is not metrics., params., tags. or attributes."),
        (
            'status = "done"',
            "filter 'status = \"done\"': 'done' at position 9 is not one of running, finished, failed, killed, crashed",
        ),
        ("a and (b", "filter 'a and (b': ends where ) closing the ( at position 6 was expected"),
        ("a ) b", "filter 'a ) b': expected the end (this ) closes nothing) at position 2, found ')'"),
        ("a b", "filter 'a b': expected and, or or the end at position 2, found 'b'"),
        ("a and or b", "filter 'a and or b': expected a field or text at position 6, found the keyword 'or'"),
        ("tags.t = 3", "filter 'tags.t = 3': expected a quoted value ('text') at position 9, found '3'"),
        ('metrics.m like "a"', "filter 'metrics.m like \"a\"': LIKE at position 10 compares text, not numbers"),
        (
            'params.p in (1, "a")',
            "filter 'params.p in (1, \"a\")': the list at position 13 mixes numbers and quoted values: use one kind",
        ),
        ("params.p is 3", "filter 'params.p is 3': expected NULL after IS at position 12, found '3'"),
        (
            'start > "soon"',
            'filter \'start > "soon"\': "soon" at position 8 is not a date (2026-01-31, '
            "2026-01-31T12:00, ...) nor unix seconds",
        ),
        ("name = 'x' ; drop", "filter \"name = 'x' ; drop\": cannot read '; drop' at position 11"),
    ],
)
def test_errors_name_the_token_its_position_and_what_was_expected(expr: str, message: str) -> None:
    with pytest.raises(FilterError) as err:
        compile_filter(expr)
    assert str(err.value) == message


def test_alex_runs_filter(store: Store) -> None:
    ids = seed(store)
    proc = alex(
        "--store", str(store.root), "runs", "--filter", "params.lr = 0.01 and tags.team = 'vision'", "--format", "csv"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("id,name,experiment_name,status,")
    assert sorted(line.split(",")[:4] for line in lines[1:]) == sorted(
        [[ids["a"], "a-run", "vision", "finished"], [ids["c"], "c-run", "audio", "finished"]]
    )
    proc = alex("--store", str(store.root), "runs", "-f", "vision and not tags.team = 'vision'", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)] == ["b-run"]
    bad = alex("--store", str(store.root), "runs", "--filter", "params.lr >")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr == (
        "Error: filter 'params.lr >': ends where a number or a quoted value was expected\n"
        "  params.lr >\n"
        "             ^\n"
    )
    bad = alex("--store", str(store.root), "runs", "--filter", "metrics.acc > high or x")
    assert bad.returncode == 1
    assert bad.stderr == (
        "Error: filter 'metrics.acc > high or x': expected a number at position 14, found 'high'\n"
        "  metrics.acc > high or x\n"
        "                ^\n"
    )


def test_docs_list_the_modules_fields_and_operators() -> None:
    doc = (REPO / "docs" / "filters.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", doc, re.M))
    assert {k: v for k, v in rows.items() if k in FIELDS or k.startswith(("metrics", "params", "tags"))} == {
        k: v.replace("|", "\\|") for k, v in FIELDS.items()
    }
    assert {k: v for k, v in rows.items() if k in OPERATORS} == OPERATORS
    assert set(rows) == set(FIELDS) | set(OPERATORS)
