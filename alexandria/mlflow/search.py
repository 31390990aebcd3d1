"""MLflow's search grammar (`filter_string`, `order_by`) turned into one SQLAlchemy Core query over the run
tables: a small tokenizer, then each comparison becomes a parameterized condition (values are always bound
parameters, never pasted into SQL text).

    filter  := comparison (AND comparison)*
    comparison := entity.key OP value
    entity  := metrics | params | tags | attributes   (singular forms too; a bare status, run_name, ... is an
               attribute)
    key     := name | `quoted` | "quoted"
    OP      := = != > >= < <=  (and, for text, LIKE ILIKE IN, NOT IN)
    value   := number | 'text' | "text" | ( 'text', ... )

A metric compares its last value (summaries.py); a parameter or tag its text; `attributes.status` MLflow's
spelling (FINISHED, FAILED, KILLED, RUNNING; a crashed run is FAILED); `start_time`/`end_time` milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, literal, select
from sqlalchemy.sql import ColumnElement

from ..errors import InvalidInputError
from ..schema import parameter, run, tag
from ..summaries import last_value


class FilterError(InvalidInputError):
    """A `filter_string` or `order_by` that is not MLflow's grammar: the message points at the bad token."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ident>[A-Za-z_][\w]*\.(?:`[^`]*`|"[^"]*"|[\w./:-]+) | [A-Za-z_]\w*)
    | (?P<op>!=|>=|<=|=|>|<)
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)

_ENTITIES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_ATTRIBUTES = ("status", "run_name", "run_id", "start_time", "end_time", "experiment_id", "artifact_uri")
_TEXT_OPS = ("LIKE", "ILIKE", "IN", "NOT IN")


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _tokens(text: str, what: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"{what} {text!r}: cannot read {text[pos:].strip()[:20]!r} at position {pos}")
        kind = m.lastgroup or ""
        out.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _column(token: _Token, what: str, text: str) -> tuple[str, ColumnElement[Any]]:
    """The entity kind and the SQL expression an identifier names."""
    ident = token.text
    if "." in ident:
        prefix, key = ident.split(".", 1)
        entity = _ENTITIES.get(prefix.lower())
        if entity is None:
            raise FilterError(
                f"{what} {text!r}: {prefix!r} at position {token.pos} is not metrics., params., tags. or attributes."
            )
        key = _unquote(key)
    else:
        entity, key = "attribute", ident
    if entity == "metric":
        return entity, last_value(run.c.id, key)
    if entity == "param":
        return entity, _value_of(parameter, key)
    if entity == "tag":
        special = {
            "mlflow.runName": run.c.name,
            "mlflow.note.content": run.c.note,
            "mlflow.parentRunId": run.c.parent_id,
        }
        return entity, special[key] if key in special else _value_of(tag, key)
    columns: dict[str, ColumnElement[Any]] = {
        "status": case((run.c.status == "crashed", literal("FAILED")), else_=func.upper(run.c.status)),
        "run_name": run.c.name,
        "run_id": run.c.id,
        "experiment_id": run.c.experiment_name,
        "start_time": run.c.timestamp_start * 1000,
        "end_time": run.c.timestamp_end * 1000,
    }
    if key not in columns:
        raise FilterError(
            f"{what} {text!r}: attribute {key!r} at position {token.pos} is not one of {', '.join(columns)}"
        )
    return ("number" if key.endswith("_time") else "attribute"), columns[key]


def _value_of(table: Any, key: str) -> ColumnElement[Any]:
    return select(table.c.value).where(table.c.run_id == run.c.id, table.c.key == key).scalar_subquery()


def parse_filter(text: str) -> list[ColumnElement[bool]]:
    """The conditions of a filter string, ANDed by the caller; FilterError names the token it stopped at."""
    what = "filter_string"
    tokens = _tokens(text or "", what)
    conditions: list[ColumnElement[bool]] = []
    i = 0

    def expect(kinds: tuple[str, ...], wanted: str) -> _Token:
        nonlocal i
        if i >= len(tokens):
            raise FilterError(f"{what} {text!r}: ends where {wanted} was expected")
        tok = tokens[i]
        if tok.kind not in kinds:
            raise FilterError(f"{what} {text!r}: expected {wanted} at position {tok.pos}, found {tok.text!r}")
        i += 1
        return tok

    while i < len(tokens):
        ident = expect(("ident",), "metrics.<key>, params.<key>, tags.<key> or attributes.<name>")
        entity, column = _column(ident, what, text)
        if i < len(tokens) and tokens[i].kind == "ident" and tokens[i].text.upper() in ("LIKE", "ILIKE", "IN", "NOT"):
            op = tokens[i].text.upper()
            i += 1
            if op == "NOT":
                nxt = expect(("ident",), "IN after NOT")
                if nxt.text.upper() != "IN":
                    raise FilterError(f"{what} {text!r}: expected IN after NOT at position {nxt.pos}")
                op = "NOT IN"
        else:
            op = expect(("op",), "a comparison (=, !=, >, >=, <, <=, LIKE, ILIKE, IN)").text
        if entity == "metric" or entity == "number":
            if op in _TEXT_OPS:
                raise FilterError(f"{what} {text!r}: {op} at position {tokens[i - 1].pos} compares text, not numbers")
            value: Any = float(expect(("number",), "a number").text)
        elif op in ("IN", "NOT IN"):
            expect(("lparen",), "( after IN")
            items = [_unquote(expect(("string",), "a quoted value").text)]
            while i < len(tokens) and tokens[i].kind == "comma":
                i += 1
                items.append(_unquote(expect(("string",), "a quoted value").text))
            expect(("rparen",), ") closing the IN list")
            value = items
        else:
            if op in (">", ">=", "<", "<="):
                raise FilterError(
                    f"{what} {text!r}: {op} at position {tokens[i - 1].pos} compares numbers; "
                    f"{ident.text} is text (use =, !=, LIKE, ILIKE or IN)"
                )
            value = _unquote(expect(("string",), "a quoted value ('text')").text)
        conditions.append(_compare(column, op, value))
        if i < len(tokens):
            conj = expect(("ident",), "AND")
            if conj.text.upper() != "AND":
                raise FilterError(
                    f"{what} {text!r}: expected AND at position {conj.pos}, found {conj.text!r} (only AND is MLflow's)"
                )
            if i >= len(tokens):
                raise FilterError(f"{what} {text!r}: ends after AND")
    return conditions


def _compare(column: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == "LIKE":
        return column.like(value)
    if op == "ILIKE":
        return func.lower(column).like(func.lower(literal(value)))
    if op == "IN":
        return column.in_(value)
    return column.not_in(value)


def parse_order_by(clauses: Sequence[str]) -> list[Any]:
    """`["metrics.acc DESC", "params.lr"]` as ORDER BY terms (NULLs last, as MLflow sorts them)."""
    out: list[Any] = []
    for clause in clauses:
        what = "order_by"
        tokens = _tokens(clause, what)
        if not tokens or tokens[0].kind != "ident":
            raise FilterError(f"{what} {clause!r}: expected metrics.<key>, params.<key>, tags.<key> or an attribute")
        _, column = _column(tokens[0], what, clause)
        direction = tokens[1].text.upper() if len(tokens) > 1 else "ASC"
        if len(tokens) > 2 or direction not in ("ASC", "DESC"):
            bad = tokens[1] if direction not in ("ASC", "DESC") else tokens[2]
            raise FilterError(f"{what} {clause!r}: expected ASC or DESC at position {bad.pos}, found {bad.text!r}")
        out.append(column.desc().nulls_last() if direction == "DESC" else column.asc().nulls_last())
    return out


def search(
    engine: Engine,
    experiments: Sequence[str] | None,
    filter_string: str,
    order_by: Sequence[str],
    max_results: int | None,
    run_view_type: int | None,
) -> list[dict[str, Any]]:
    """The `run` rows matching, in order: `order_by`, then newest first, then by id."""
    q = select(run)
    for condition in parse_filter(filter_string):
        q = q.where(condition)
    if experiments:
        q = q.where(run.c.experiment_name.in_(list(experiments)))
    view = run_view_type or 1  # MLflow's ViewType: 1 active only, 2 deleted only, 3 all
    if view == 1:
        q = q.where(run.c.deleted == False)  # noqa: E712
    elif view == 2:
        q = q.where(run.c.deleted == True)  # noqa: E712
    q = q.order_by(*parse_order_by(order_by), run.c.timestamp_start.desc().nulls_last(), run.c.id)
    if max_results is not None:
        q = q.limit(max_results)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


__all__ = ["FilterError", "parse_filter", "parse_order_by", "search"]
