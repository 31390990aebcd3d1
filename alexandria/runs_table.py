"""The runs table as the dashboard shows it, asked of the database: columns the user chooses (named as the filter
language names fields, so `metrics.loss.min` reads the same in a column and a filter), sorted in SQL (ORDER BY,
LIMIT/OFFSET pages; missing values last either way; ties by id), a sweep's children under their parent, and
groups by a parameter or tag with their run count and the min/max/mean of each numeric column.

Every column's SQL is the filter language's own (`filters.field`): a metric's last value is summaries.py's, its
min and max the filter's. A parameter sorts as a number when every run's value of it is a number, else as text.
Sorting pages the top-level runs (those whose parent is not listed); each one's listed children (and theirs)
follow it, sorted the same way. A grouped view is flat: each run in the group of its own value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, literal, not_, or_, select
from sqlalchemy.sql import ColumnElement

from . import filters
from .errors import InvalidInputError
from .schema import metric_summary, parameter, run, tag
from .summaries import id_chunks

#: The run's own fields a column can show ("tags": every tag as key=value; not sortable, `tags.<key>` is).
ATTRIBUTES = ("name", "experiment", "status", "start", "end", "duration", "parent", "error", "tags")
#: The attribute columns a view shows when its URL chooses none (with `default_columns`' params and metrics).
DEFAULT_ATTRIBUTES = ("name", "experiment", "status", "start", "duration")
DEFAULT_PARAMS = 3  # the first params (by key) whose values differ among the listed runs
DEFAULT_METRICS = 3  # the first metric keys (by key) of the listed runs, their last values
PAGE_SIZE = 100  # top-level runs per page (or groups, grouped)
GROUP_RUNS = 20  # runs shown under each group, the first by the sort
MAX_DEPTH = 8  # levels of children followed under a listed run

_BARE_KEY = re.compile(r"[\w./:-]+")


class ColumnError(InvalidInputError):
    """A column, sort or group that is not one the runs table can show: the message says which and why."""


@dataclass(frozen=True)
class Column:
    """One column of the runs table: `name` as the filter language writes it (metrics always with .last, .min
    or .max), `kind` metric, param, tag or attribute, `key` the metric's/param's/tag's key or the attribute."""

    name: str
    kind: str
    key: str
    agg: str = ""

    @property
    def numeric(self) -> bool:
        """A measure a group aggregates (min, max, mean): a metric, or the duration (not the times of day)."""
        return self.kind == "metric" or (self.kind == "attribute" and self.key == "duration")


def quoted_key(key: str) -> str:
    """`key` as the filter language writes it after `params.`: bare when it can be, else in backticks (or double
    quotes when it holds a backtick)."""
    if _BARE_KEY.fullmatch(key) and not key.startswith("."):
        return key
    return f"`{key}`" if "`" not in key else f'"{key}"'


def column_name(kind: str, key: str, agg: str = "") -> str:
    """The name of a column: `metrics.<key>.<agg>`, `params.<key>`, `tags.<key>` or the attribute."""
    if kind == "attribute":
        return key
    prefix = {"metric": "metrics", "param": "params", "tag": "tags"}[kind]
    name = f"{prefix}.{quoted_key(key)}"
    return f"{name}.{agg or 'last'}" if kind == "metric" else name


def parse_column(text: str) -> Column:
    """The column `text` names (`metrics.loss` is `metrics.loss.last`); ColumnError saying why when none."""
    text = text.strip()
    if text in ATTRIBUTES:
        return Column(text, "attribute", text)
    try:
        filters.field(text)  # the language's own check and message
    except filters.FilterError as exc:
        raise ColumnError(str(exc)) from None
    prefix, key, suffix = filters.split_ident(text)
    entity = prefix.lower()
    if entity in ("metrics", "metric"):
        agg = suffix.lower() or "last"
        return Column(column_name("metric", key, agg), "metric", key, agg)
    if suffix:
        key = f"{key}.{suffix}"
    if entity in ("params", "param"):
        return Column(column_name("param", key), "param", key)
    if entity in ("tags", "tag"):
        return Column(column_name("tag", key), "tag", key)
    name = (key if entity in ("attributes", "attribute") else text).lower()
    if name not in ATTRIBUTES:
        raise ColumnError(
            f"column {text!r}: not a column of the runs table: one of {', '.join(ATTRIBUTES)}, "
            "metrics.<key>.last|min|max, params.<key>, tags.<key>"
        )
    return Column(name, "attribute", name)


def parse_sort(text: str) -> Column:
    """The column `text` sorts by: any column but tags (every tag), or the run's id."""
    if text.strip() == "id":
        return Column("id", "attribute", "id")
    c = parse_column(text)
    if c.name == "tags":
        raise ColumnError("cannot sort by tags (every tag): sort by one, tags.<key>")
    return c


def parse_columns(items: Sequence[str], errors: list[str]) -> list[Column]:
    """Columns from `?col=` values (each one name or a comma list), in order, once each; a bad one is said in
    `errors` and left out."""
    out: dict[str, Column] = {}
    for item in items:
        for text in _split_list(item):
            try:
                c = parse_column(text)
            except ColumnError as exc:
                errors.append(f"{exc} (the column is left out)")
                continue
            out.setdefault(c.name, c)
    return list(out.values())


def _split_list(item: str) -> list[str]:
    """A comma list of names, commas inside quoted keys kept."""
    parts, current, quote = [], "", ""
    for ch in item:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in '`"':
            quote = ch
        elif ch == ",":
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def value_expr(c: Column) -> ColumnElement[Any]:
    """What the column shows, as SQL over the `run` table (the filter language's field)."""
    if c.key == "tags" and c.kind == "attribute":
        return run.c.tags
    return filters.field(c.name).column


def _numeric_param(conn: Connection, key: str) -> bool:
    """Whether every run's value of parameter `key` reads as a number (then it sorts as one)."""
    odd = exists().where(parameter.c.key == key, not_(parameter.c.value.regexp_match(filters.NUMBER_TEXT)))
    return not conn.execute(select(odd)).scalar()


def sort_expr(conn: Connection, c: Column) -> ColumnElement[Any]:
    """The SQL a column sorts by: its value, a parameter's as a number when all of its values are numbers."""
    if c.kind == "attribute" and c.key == "tags":
        raise ColumnError("cannot sort by tags (every tag): sort by one, tags.<key>")
    fld = filters.field(c.name)
    if c.kind == "param" and _numeric_param(conn, c.key):
        return fld.numeric_column()
    if c.key == "name" and c.kind == "attribute":
        return func.coalesce(run.c.name, run.c.id)  # as shown: a run without a name by its id
    return fld.column


def _order(expr: ColumnElement[Any], desc: bool) -> list[Any]:
    return [expr.desc().nulls_last() if desc else expr.asc().nulls_last(), run.c.id]


@dataclass
class View:
    """What the table shows: its columns, its sort (a column, descending or not), its grouping and page."""

    columns: list[Column]
    sort: Column = field(default_factory=lambda: Column("start", "attribute", "start"))
    desc: bool = True
    group: Column | None = None
    page: int = 1
    page_size: int = PAGE_SIZE


@dataclass
class Table:
    """One page of the table: `rows` (depth, run row with `values` per column name), or `groups` (grouped: value,
    count, aggregates per numeric column and their first runs); `runs` the runs that match, `top` what the pages
    count (top-level runs, or groups), `pages` how many."""

    rows: list[tuple[int, dict[str, Any]]]
    groups: list[dict[str, Any]]
    runs: int
    top: int
    pages: int


def _rows(conn: Connection, ids: Sequence[str], columns: Sequence[Column]) -> dict[str, dict[str, Any]]:
    """The run rows of `ids` with each column's value in `values`."""
    out: dict[str, dict[str, Any]] = {}
    exprs = [value_expr(c).label(f"c{i}") for i, c in enumerate(columns)]
    for chunk in id_chunks(list(ids)):
        for r in conn.execute(select(run, *exprs).where(run.c.id.in_(chunk))):
            m = dict(r._mapping)
            m["values"] = {c.name: m.pop(f"c{i}") for i, c in enumerate(columns)}
            out[m["id"]] = m
    return out


def runs_table(engine: Engine, conditions: Sequence[ColumnElement[bool]], view: View) -> Table:
    """The page `view` asks for of the runs `conditions` keep (query.run_conditions), sorted in SQL."""
    with engine.connect() as conn:
        if view.group is not None:
            return _grouped(conn, conditions, view)
        order = _order(sort_expr(conn, view.sort), view.desc)
        kept = select(run.c.id).where(*conditions).cte("kept")
        top = and_(
            run.c.id.in_(select(kept.c.id)),
            or_(run.c.parent_id.is_(None), run.c.parent_id.not_in(select(kept.c.id))),
        )
        total = conn.execute(select(func.count()).select_from(kept)).scalar_one()
        n_top = conn.execute(select(func.count()).where(top)).scalar_one()
        offset = (view.page - 1) * view.page_size
        page_ids = list(
            conn.execute(select(run.c.id).where(top).order_by(*order).limit(view.page_size).offset(offset)).scalars()
        )
        children: dict[str, list[str]] = {}
        level, seen = page_ids, set(page_ids)
        for _ in range(MAX_DEPTH):
            below: list[str] = []
            for chunk in id_chunks(level):
                q = select(run.c.id, run.c.parent_id).where(run.c.parent_id.in_(chunk), run.c.id.in_(select(kept.c.id)))
                for rid, parent in conn.execute(q.order_by(*order)):
                    if rid not in seen:
                        seen.add(rid)
                        children.setdefault(parent, []).append(rid)
                        below.append(rid)
            if not below:
                break
            level = below
        rows = _rows(conn, list(seen), view.columns)
    out: list[tuple[int, dict[str, Any]]] = []

    def visit(rid: str, depth: int) -> None:
        out.append((depth, rows[rid]))
        for child in children.get(rid, []):
            visit(child, depth + 1)

    for rid in page_ids:
        visit(rid, 0)
    return Table(out, [], total, n_top, _pages(n_top, view.page_size))


def _pages(n: int, size: int) -> int:
    return max(1, -(-n // size))


def _grouped(conn: Connection, conditions: Sequence[ColumnElement[bool]], view: View) -> Table:
    """Groups of the kept runs by the group column's value: count and min/max/mean of each numeric column, then
    each group's first `GROUP_RUNS` runs by the sort (a window function), in one query each."""
    assert view.group is not None
    g = view.group
    gexpr = value_expr(g)
    numeric = [c for c in view.columns if c.numeric]
    inner = select(
        gexpr.label("g"),
        *(value_expr(c).label(f"n{i}") for i, c in enumerate(numeric)),
    ).where(*conditions)
    gorder: ColumnElement[Any] = literal(0)
    if g.kind == "param" and _numeric_param(conn, g.key):
        inner = inner.add_columns(filters.field(g.name).numeric_column().label("gnum"))
    sub = inner.offset(0).subquery("grouped")  # not flattened: each value once, however many aggregates use it
    if "gnum" in sub.c:
        gorder = func.min(sub.c.gnum)
    aggs = []
    for i in range(len(numeric)):
        col = sub.c[f"n{i}"]
        aggs += [func.min(col), func.max(col), func.avg(col), func.count(col)]
    q = (
        select(sub.c.g, func.count().label("runs"), *aggs)
        .group_by(sub.c.g)
        .order_by(sub.c.g.is_(None), gorder, sub.c.g)
        .limit(view.page_size)
        .offset((view.page - 1) * view.page_size)
    )
    groups: list[dict[str, Any]] = []
    for r in conn.execute(q):
        stats = {}
        for i, c in enumerate(numeric):
            lo, hi, mean, n = r[2 + 4 * i : 6 + 4 * i]
            stats[c.name] = {"min": lo, "max": hi, "mean": mean, "count": n}
        groups.append({"value": r.g, "count": r.runs, "stats": stats, "rows": []})
    values_only = select(gexpr.label("g")).where(*conditions).group_by(gexpr).subquery()  # no metric read
    n_groups = conn.execute(select(func.count()).select_from(values_only)).scalar_one()
    total = conn.execute(select(func.count()).select_from(select(run.c.id).where(*conditions).subquery())).scalar_one()
    values = [grp["value"] for grp in groups]
    if groups:
        order = _order(sort_expr(conn, view.sort), view.desc)
        rank = func.row_number().over(partition_by=gexpr, order_by=order).label("rank")
        ranked = select(run.c.id, gexpr.label("g"), rank).where(*conditions).subquery("ranked")
        in_page = [ranked.c.g.in_([v for v in values if v is not None])]
        if None in values:
            in_page.append(ranked.c.g.is_(None))
        picked = conn.execute(
            select(ranked.c.id, ranked.c.g).where(ranked.c.rank <= GROUP_RUNS, or_(*in_page)).order_by(ranked.c.rank)
        ).all()
        rows = _rows(conn, [rid for rid, _ in picked], view.columns)
        by_value = {grp["value"]: grp for grp in groups}
        for rid, value in picked:
            by_value[value]["rows"].append(rows[rid])
    return Table([], groups, total, n_groups, _pages(n_groups, view.page_size))


def add_values(engine: Engine, table: Table, columns: Sequence[Column]) -> None:
    """Fill in the values of more `columns` in the table's rows (the default columns, chosen from the rows)."""
    rows = [r for _, r in table.rows] + [r for g in table.groups for r in g["rows"]]
    with engine.connect() as conn:
        found = _rows(conn, [r["id"] for r in rows], columns)
    for r in rows:
        r["values"].update(found[r["id"]]["values"])


def keys_of(engine: Engine, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """The param, metric and tag keys the runs `run_ids` have, each sorted (what a column picker lists): from the
    parameter, tag and metric_summary tables, for those runs only; a key the filter language cannot
    write (one holding both ` and ") is left out."""
    out: dict[str, set[str]] = {"param": set(), "metric": set(), "tag": set()}
    with engine.connect() as conn:
        for chunk in id_chunks(list(run_ids)):
            for kind, table in (("param", parameter), ("tag", tag), ("metric", metric_summary)):
                q = select(table.c.key).where(table.c.run_id.in_(chunk)).group_by(table.c.run_id, table.c.key)
                out[kind].update(conn.execute(q).scalars())
    return {k: sorted(key for key in v if not ("`" in key and '"' in key)) for k, v in out.items()}


def differing_params(engine: Engine, run_ids: Sequence[str]) -> list[str]:
    """The parameter keys whose value differs among the runs `run_ids` (a run without it counts as differing),
    sorted: the ones worth a column by default."""
    values: dict[str, set[str | None]] = {}
    have: dict[str, int] = {}
    with engine.connect() as conn:
        for chunk in id_chunks(list(run_ids)):
            q = select(parameter.c.key, parameter.c.value).where(parameter.c.run_id.in_(chunk))
            for key, value in conn.execute(q):
                values.setdefault(key, set()).add(value)
                have[key] = have.get(key, 0) + 1
    n = len(set(run_ids))
    return sorted(k for k, v in values.items() if len(v) > 1 or have[k] < n)
