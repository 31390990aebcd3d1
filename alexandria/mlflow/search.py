"""MLflow's search grammar (`filter_string`, `order_by`) in MLflow's spellings, parsed by the core's filter
language (`alexandria/filters.py`, of which MLflow's grammar is the AND-only subset) and turned into one
SQLAlchemy Core query over the run tables (values are always bound parameters, never pasted into SQL text).

    filter  := comparison (AND comparison)*
    comparison := entity.key OP value
    entity  := metrics | params | tags | attributes   (singular forms too; a bare status, run_name, ... is an
               attribute)

A metric compares its last value (summaries.py); a parameter or tag its text; `attributes.status` MLflow's
spelling (FINISHED, FAILED, KILLED, RUNNING; a crashed run is FAILED); `start_time`/`end_time` milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, case, func, literal, select
from sqlalchemy.sql import ColumnElement

from ..filters import Dialect, Field, FilterError, Token, compile_filter, split_ident, tokens, value_of
from ..schema import parameter, run, tag
from ..summaries import last_value

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


def _field(token: Token, error: Callable[[str, Token], FilterError]) -> Field:
    """The field an identifier names in MLflow's spelling."""
    ident = token.text
    if "." in ident:
        prefix, key, suffix = split_ident(ident)
        key = f"{key}.{suffix}" if suffix else key
        entity = _ENTITIES.get(prefix.lower())
        if entity is None:
            raise error(f"{prefix!r} {{at}} is not metrics., params., tags. or attributes.", token)
    else:
        entity, key = "attribute", ident
    if entity == "metric":
        return Field("number", last_value(run.c.id, key))
    if entity == "param":
        return Field("text", value_of(parameter, key))
    if entity == "tag":
        special = {
            "mlflow.runName": run.c.name,
            "mlflow.note.content": run.c.note,
            "mlflow.parentRunId": run.c.parent_id,
        }
        return Field("text", special[key] if key in special else value_of(tag, key))
    columns: dict[str, ColumnElement[Any]] = {
        "status": case((run.c.status == "crashed", literal("FAILED")), else_=func.upper(run.c.status)),
        "run_name": run.c.name,
        "run_id": run.c.id,
        "experiment_id": run.c.experiment_name,
        "start_time": run.c.timestamp_start * 1000,
        "end_time": run.c.timestamp_end * 1000,
    }
    if key not in columns:
        raise error(f"attribute {key!r} {{at}} is not one of {', '.join(columns)}", token)
    return Field("number" if key.endswith("_time") else "text", columns[key])


FILTER_STRING = Dialect("filter_string", _field, connectives=False)


def parse_filter(text: str) -> ColumnElement[bool]:
    """The condition a filter string means; FilterError names the token it stopped at."""
    return compile_filter(text, FILTER_STRING)


def parse_order_by(clauses: Sequence[str]) -> list[Any]:
    """`["metrics.acc DESC", "params.lr"]` as ORDER BY terms (NULLs last, as MLflow sorts them)."""
    out: list[Any] = []
    for clause in clauses:

        def error(problem: str, tok: Token, clause: str = clause) -> FilterError:
            message = f"order_by {clause!r}: {problem.replace('{at}', f'at position {tok.pos}')}"
            return FilterError(message, clause, tok.pos)

        toks = tokens(clause, error)
        if not toks or toks[0].kind != "ident":
            raise FilterError(f"order_by {clause!r}: expected metrics.<key>, params.<key>, tags.<key> or an attribute")
        column = _field(toks[0], error).column
        direction = toks[1].text.upper() if len(toks) > 1 else "ASC"
        if len(toks) > 2 or direction not in ("ASC", "DESC"):
            bad = toks[1] if direction not in ("ASC", "DESC") else toks[2]
            raise error(f"expected ASC or DESC {{at}}, found {bad.text!r}", bad)
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
    q = select(run).where(parse_filter(filter_string))
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
