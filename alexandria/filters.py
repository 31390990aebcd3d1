"""The one filter language of `alex runs --filter`, `Reader.runs(filter=...)` and the dashboard's search box,
compiled to one SQLAlchemy Core condition over the `run` table (values are always bound parameters, never
pasted into SQL text). MLflow's `filter_string` is a subset: `mlflow/search.py` parses it here too, with its
own spellings of the attributes (`Dialect`).

    expr       := term ((AND | OR) term)*          AND binds tighter than OR; keywords in any case
    term       := NOT term | ( expr ) | comparison | text
    comparison := field OP value | field [NOT] IN ( value, ... ) | field [NOT] LIKE|ILIKE 'text'
                | field IS [NOT] NULL
    field      := metrics.<key>[.min|.max|.last] | params.<key> | tags.<key> | attributes.<name> | <name>
    key        := name | `quoted` | "quoted"
    OP         := = == != > >= < <=
    value      := number | 'text' | "text"
    text       := a word or quoted text standing alone: runs whose id, name, experiment, status, error,
                  parent or a tag's key=value contains it (case-insensitive)

`FIELDS` and `OPERATORS` are the tables `docs/filters.md` lists (a test keeps them equal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Float, and_, cast, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql import ColumnElement

from .backends.base import CaseSensitiveLike
from .errors import InvalidInputError
from .schema import parameter, run, tag
from .summaries import last_value, summary_column

STATUSES = ("running", "finished", "failed", "killed", "crashed")

#: Every field of the language and what it compares (docs/filters.md lists these).
FIELDS: dict[str, str] = {
    "metrics.<key>": "the metric's last value (highest step, see summaries.py), a number",
    "metrics.<key>.min": "the metric's smallest value, a number",
    "metrics.<key>.max": "the metric's largest value, a number",
    "params.<key>": "the parameter: as text with a quoted value, as a number with a number "
    "(only where its text is a number)",
    "tags.<key>": "the tag's text",
    "status": f"the run's status, one of {', '.join(STATUSES)}",
    "name": "the run's name",
    "experiment": "the run's experiment",
    "id": "the run's id (`id like 'f3a9%'` for a prefix)",
    "parent": "the id of the run's parent (a sweep's children)",
    "error": "the error the run ended with",
    "start": "when the run started: unix seconds, or a quoted ISO date (UTC unless it says)",
    "end": "when the run ended, as start (NULL while it runs)",
    "duration": "end - start in seconds (NULL while the run runs)",
}

#: Every operator and what it does (docs/filters.md lists these).
OPERATORS: dict[str, str] = {
    "= != > >= < <=": "compare (`==` is `=`); text compares with = and != only",
    "like, ilike": "SQL patterns (% any text, _ one character, a backslash takes the next one literally); "
    "like respects case on every database, ilike ignores it",
    "in (...), not in (...)": "one of the listed values",
    "is null, is not null": "the field is missing (a run without that parameter, tag or metric) or present",
    "and, or, not, ( )": "combine; and binds tighter than or",
}

_NUMBER_TEXT = r"^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"
#: A parameter's text that compares as a number (a regular expression for the database's REGEXP).
NUMBER_TEXT = _NUMBER_TEXT

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ident>[A-Za-z_]\w*\.(?:`[^`]*`|"[^"]*")(?:\.\w+)? | [A-Za-z_][\w-]*(?:\.[\w./:-]+)?)
    | (?P<op>!=|>=|<=|==|=|>|<)
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)
_KEYWORDS = ("and", "or", "not", "in", "like", "ilike", "is", "null")


class FilterError(InvalidInputError):
    """A filter that is not the language: the message names the bad token, its position (0-based) and what
    was expected there; `pointer` shows the filter with a caret under that position."""

    def __init__(self, message: str, text: str = "", position: int | None = None) -> None:
        super().__init__(message)
        self.text, self.position = text, position
        if position is not None and "\n" not in text:
            self.pointer = f"  {text}\n  {' ' * position}^"


@dataclass
class Token:
    kind: str
    text: str
    pos: int

    def word(self) -> str:
        """The keyword this token is, lower-cased, or ""."""
        return self.text.lower() if self.kind == "ident" and self.text.lower() in _KEYWORDS else ""


@dataclass
class Field:
    """What a field compares: `kind` number (a number), text (quoted text), param (text or number), time
    (a number or an ISO date); `numeric` the column a number compares with, for a param."""

    kind: str
    column: ColumnElement[Any]
    numeric: ColumnElement[Any] | None = None
    choices: tuple[str, ...] = ()

    def numeric_column(self) -> ColumnElement[Any]:
        return self.column if self.numeric is None else self.numeric


@dataclass
class Dialect:
    """A spelling of the language: `what` names it in errors, `resolve` turns an identifier into its field,
    `connectives` allows OR, NOT, parentheses, IS NULL and text search (MLflow's grammar has only AND)."""

    what: str
    resolve: Callable[[Token, Callable[[str, Token], FilterError]], Field]
    connectives: bool = True


def tokens(text: str, error: Callable[[str, Token], FilterError]) -> list[Token]:
    """`text` as tokens with their positions; `error` makes the FilterError for what cannot be read."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            start = len(text[pos:]) - len(text[pos:].lstrip()) + pos
            raise error(f"cannot read {text[start:][:20]!r} {{at}}", Token("?", text[start:], start))
        kind = m.lastgroup or ""
        out.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def split_ident(ident: str) -> tuple[str, str, str]:
    """`prefix.key[.suffix]` as (prefix, key, suffix): a quoted key keeps its dots, a bare one's last part is
    the suffix when it is min, max or last (`metrics.val/acc.max`)."""
    prefix, _, rest = ident.partition(".")
    if rest[:1] in '`"' and rest:
        end = rest.index(rest[0], 1)
        return prefix, unquote(rest[: end + 1]), rest[end + 2 :]
    head, dot, last = rest.rpartition(".")
    if dot and last.lower() in ("min", "max", "last"):
        return prefix, head, last
    return prefix, rest, ""


def value_of(table: Any, key: str) -> ColumnElement[Any]:
    """The value of the run's row of `table` (parameter, tag) with `key`, as a scalar subquery."""
    return select(table.c.value).where(table.c.run_id == run.c.id, table.c.key == key).scalar_subquery()


def _metric_extreme(key: str, column: str) -> ColumnElement[Any]:
    """The metric's min or max (`column` of its summary row: summaries.py says how NaN counts)."""
    return summary_column(run.c.id, key, column)


def _param(key: str) -> Field:
    text = value_of(parameter, key)
    guarded = select(cast(parameter.c.value, Float)).where(
        parameter.c.run_id == run.c.id, parameter.c.key == key, parameter.c.value.regexp_match(_NUMBER_TEXT)
    )
    return Field("param", text, guarded.scalar_subquery())


def _core_field(token: Token, error: Callable[[str, Token], FilterError]) -> Field:
    prefix, key, suffix = split_ident(token.text)
    entity = prefix.lower()
    if key and entity in ("metrics", "metric"):
        if suffix.lower() in ("", "last"):
            return Field("number", last_value(run.c.id, key))
        return Field("number", _metric_extreme(key, "min_value" if suffix.lower() == "min" else "max_value"))
    if suffix:
        key = f"{key}.{suffix}"
    if key and entity in ("params", "param"):
        return _param(key)
    if key and entity in ("tags", "tag"):
        return Field("text", value_of(tag, key))
    name = key if key and entity in ("attributes", "attribute") else token.text if not key else ""
    columns: dict[str, Field] = {
        "status": Field("text", run.c.status, choices=STATUSES),
        "name": Field("text", run.c.name),
        "experiment": Field("text", run.c.experiment_name),
        "id": Field("text", run.c.id),
        "parent": Field("text", run.c.parent_id),
        "error": Field("text", run.c.error),
        "start": Field("time", run.c.timestamp_start),
        "end": Field("time", run.c.timestamp_end),
        "duration": Field("number", run.c.timestamp_end - run.c.timestamp_start),
    }
    if name.lower() in columns:
        return columns[name.lower()]
    if not name:
        raise error(f"{prefix!r} {{at}} is not metrics., params., tags. or attributes.", token)
    raise error(
        f"{name!r} {{at}} is not a field: one of {', '.join(columns)}, metrics.<key>, params.<key>, tags.<key>", token
    )


CORE = Dialect("filter", _core_field)


def text_search(needle: str) -> ColumnElement[bool]:
    """Runs whose id, name, experiment, status, error, parent or a tag's `key=value` contains `needle`,
    ignoring case (LIKE's wildcards in it are plain characters)."""
    n = needle.lower()
    columns = (run.c.id, run.c.name, run.c.experiment_name, run.c.status, run.c.error, run.c.parent_id)
    found = [func.lower(c).contains(n, autoescape=True) for c in columns]
    in_tags = exists().where(
        tag.c.run_id == run.c.id, func.lower(tag.c.key + "=" + tag.c.value).contains(n, autoescape=True)
    )
    return func.coalesce(or_(*found, in_tags), false(), type_=Boolean)  # never NULL: `not` is the complement


def _time_value(tok: Token, error: Callable[[str, Token], FilterError]) -> float:
    if tok.kind == "number":
        return float(tok.text)
    try:
        when = datetime.fromisoformat(unquote(tok.text))
    except ValueError:
        raise error(
            f"{tok.text} {{at}} is not a date (2026-01-31, 2026-01-31T12:00, ...) nor unix seconds", tok
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class _Parser:
    def __init__(self, text: str, dialect: Dialect) -> None:
        self.text = text
        self.dialect = dialect
        self.toks = tokens(text, self.error)
        self.i = 0

    def error(self, problem: str, tok: Token | None) -> FilterError:
        """The error for `problem`, its `{at}` the position of `tok`."""
        where = f"at position {tok.pos}" if tok is not None else "at the end"
        message = f"{self.dialect.what} {self.text!r}: {problem.replace('{at}', where)}"
        return FilterError(message, self.text, len(self.text) if tok is None else tok.pos)

    def ends(self, problem: str) -> FilterError:
        """The error of a filter that stops short: the caret after its end."""
        return FilterError(f"{self.dialect.what} {self.text!r}: {problem}", self.text, len(self.text.rstrip()))

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kinds: tuple[str, ...], wanted: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.ends(f"ends where {wanted} was expected")
        if tok.kind not in kinds:
            raise self.error(f"expected {wanted} {{at}}, found {tok.text!r}", tok)
        self.i += 1
        return tok

    def keyword(self, *words: str) -> str:
        """The next token's keyword, consumed, when it is one of `words`; else ""."""
        tok = self.peek()
        if tok is not None and tok.word() in words:
            self.i += 1
            return tok.word()
        return ""

    # -- grammar

    def parse(self) -> ColumnElement[bool]:
        if not self.toks:
            return true()
        if not self.dialect.connectives:
            return self.mlflow_conjunction()
        cond = self.expr()
        tok = self.peek()
        if tok is not None:
            wanted = "and, or or the end" if tok.kind != "rparen" else "the end (this ) closes nothing)"
            raise self.error(f"expected {wanted} {{at}}, found {tok.text!r}", tok)
        return cond

    def mlflow_conjunction(self) -> ColumnElement[bool]:
        conditions = [self.comparison(self.take(("ident",), self.field_hint()))]
        while self.peek() is not None:
            conj = self.take(("ident",), "AND")
            if conj.word() != "and":
                raise self.error(f"expected AND {{at}}, found {conj.text!r} (only AND is MLflow's)", conj)
            if self.peek() is None:
                raise self.ends("ends after AND")
            conditions.append(self.comparison(self.take(("ident",), self.field_hint())))
        return and_(*conditions)

    def field_hint(self) -> str:
        return "metrics.<key>, params.<key>, tags.<key> or attributes.<name>"

    def expr(self) -> ColumnElement[bool]:
        alternatives = [self.conjunction()]
        while self.keyword("or"):
            alternatives.append(self.conjunction())
        return alternatives[0] if len(alternatives) == 1 else or_(*alternatives)

    def conjunction(self) -> ColumnElement[bool]:
        terms = [self.term()]
        while self.keyword("and"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else and_(*terms)

    def term(self) -> ColumnElement[bool]:
        if self.keyword("not"):
            return not_(self.term())
        tok = self.take(("ident", "string", "lparen"), "a comparison (field op value), text, not or (")
        if tok.kind == "lparen":
            cond = self.expr()
            self.take(("rparen",), ") closing the ( at position " + str(tok.pos))
            return cond
        if tok.word() and tok.word() != "null":
            raise self.error(f"expected a field or text {{at}}, found the keyword {tok.text!r}", tok)
        nxt = self.peek()
        follows = nxt is not None and (nxt.kind == "op" or nxt.word() in ("in", "like", "ilike", "is", "not"))
        if tok.kind == "string" or not follows:
            return text_search(unquote(tok.text))
        return self.comparison(tok)

    def comparison(self, ident: Token) -> ColumnElement[bool]:
        """A comparison, never NULL: a missing value (no such parameter, tag or metric) makes it false, so
        `not` keeps exactly the runs the comparison does not."""
        return func.coalesce(self._comparison(ident), false(), type_=Boolean)

    def _comparison(self, ident: Token) -> ColumnElement[bool]:
        fld = self.dialect.resolve(ident, self.error)
        op_tok = self.peek()
        word = self.keyword("in", "like", "ilike", "is", "not")
        if word == "not":
            nxt = self.take(("ident",), "IN after NOT")
            if nxt.word() not in ("in", "like", "ilike"):
                raise self.error(f"expected IN, LIKE or ILIKE after NOT {{at}}, found {nxt.text!r}", nxt)
            word = "not " + nxt.word()
        if word == "is":
            if not self.dialect.connectives:
                raise self.error("IS {at} is not MLflow's", op_tok)
            negated = bool(self.keyword("not"))
            null = self.take(("ident",), "NULL after IS")
            if null.word() != "null":
                raise self.error(f"expected NULL after IS {{at}}, found {null.text!r}", null)
            return fld.column.is_not(None) if negated else fld.column.is_(None)
        if word:
            return self.text_op(fld, word, op_tok)
        op = self.take(("op",), "a comparison (=, !=, >, >=, <, <=, LIKE, ILIKE, IN)")
        symbol = "=" if op.text == "==" else op.text
        value_tok = self.peek()
        if fld.kind in ("number", "time"):
            if value_tok is not None and value_tok.kind == "string" and fld.kind == "time":
                self.i += 1
                return _compare(fld.column, symbol, _time_value(value_tok, self.error))
            value = self.take(("number",), "a number")
            return _compare(fld.column, symbol, float(value.text))
        if value_tok is None:
            wanted = {"param": "a number or a quoted value", "text": "a quoted value ('text')"}[fld.kind]
            raise self.ends(f"ends where {wanted} was expected")
        if fld.kind == "param" and (value_tok.kind == "number" or symbol not in ("=", "!=")):
            value_tok = self.take(("number",), "a number")
            return _compare(fld.numeric_column(), symbol, float(value_tok.text))
        if symbol not in ("=", "!="):
            raise self.error(
                f"{op.text} {{at}} compares numbers; {ident.text} is text (use =, !=, LIKE, ILIKE or IN)", op
            )
        wanted = "a quoted value ('text')" if fld.kind == "text" else "a number or a quoted value"
        text = unquote(self.take(("string",), wanted).text)
        self.check_choice(fld, text, self.toks[self.i - 1])
        return _compare(fld.column, symbol, text)

    def check_choice(self, fld: Field, value: str, tok: Token) -> None:
        if fld.choices and value not in fld.choices:
            raise self.error(f"{value!r} {{at}} is not one of {', '.join(fld.choices)}", tok)

    def text_op(self, fld: Field, word: str, op_tok: Token | None) -> ColumnElement[bool]:
        if fld.kind in ("number", "time") and word in ("like", "ilike", "not like", "not ilike"):
            raise self.error(f"{word.upper()} {{at}} compares text, not numbers", op_tok)
        if word.endswith("like"):
            pattern = unquote(self.take(("string",), "a quoted pattern").text)
            like = word in ("like", "not like")
            cond = CaseSensitiveLike(fld.column, pattern) if like else _ilike(fld, pattern)
            return not_(cond) if word.startswith("not") else cond
        self.take(("lparen",), f"( after {word.upper()}")
        items = [self.take(("string", "number"), "a value")]
        while (nxt := self.peek()) is not None and nxt.kind == "comma":
            self.i += 1
            items.append(self.take(("string", "number"), "a value"))
        self.take(("rparen",), f") closing the {word.upper()} list")
        kinds = {t.kind for t in items}
        if len(kinds) > 1:
            raise self.error("the list {at} mixes numbers and quoted values: use one kind", items[0])
        column = fld.column
        values: list[Any]
        if "number" in kinds:
            if fld.kind == "text":
                raise self.error(f"expected a quoted value {{at}}, found {items[0].text!r}", items[0])
            values = [float(t.text) for t in items]
            if fld.kind == "param":
                column = fld.numeric_column()
        else:
            if fld.kind == "number":
                raise self.error(f"expected a number {{at}}, found {items[0].text!r}", items[0])
            if fld.kind == "time":
                values = [_time_value(t, self.error) for t in items]
            else:
                values = [unquote(t.text) for t in items]
                for t, v in zip(items, values, strict=True):
                    self.check_choice(fld, v, t)
        return column.not_in(values) if word.startswith("not") else column.in_(values)


def _ilike(fld: Field, pattern: str) -> ColumnElement[bool]:
    return func.lower(fld.column).like(func.lower(literal(pattern)), escape="\\")


def _compare(column: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, float) and math.isnan(value):
        return false()
    ops: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "=": lambda c, v: c == v,
        "!=": lambda c, v: c != v,
        ">": lambda c, v: c > v,
        ">=": lambda c, v: c >= v,
        "<": lambda c, v: c < v,
        "<=": lambda c, v: c <= v,
    }
    return ops[op](column, value)


def compile_filter(text: str | None, dialect: Dialect = CORE) -> ColumnElement[bool]:
    """The condition on `run` rows a filter means (TRUE for an empty one); FilterError when it is not the
    language. One condition of correlated subqueries: the caller's one query applies it."""
    return _Parser(text or "", dialect).parse()


def field(name: str, what: str = "column") -> Field:
    """The field `name` is in the filter language (`metrics.loss.max`, `params.lr`, `duration`): its SQL
    over the `run` table, for a reader that shows or sorts by it as a filter compares it (the dashboard's runs
    table); FilterError, saying `what` it was given as, when it is not exactly one field."""
    parser = _Parser(name, Dialect(what, _core_field))
    tok = parser.take(("ident",), "a field (metrics.<key>[.min|.max|.last], params.<key>, tags.<key>, ...)")
    if tok.word():
        raise parser.error(f"expected a field {{at}}, found the keyword {tok.text!r}", tok)
    rest = parser.peek()
    if rest is not None:
        raise parser.error(f"expected one field, found {rest.text!r} {{at}}", rest)
    return parser.dialect.resolve(tok, parser.error)


__all__ = ["CORE", "FIELDS", "OPERATORS", "STATUSES", "Dialect", "Field", "FilterError", "compile_filter", "field"]
