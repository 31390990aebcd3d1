"""Sweep values from text (`qex sweep --over name=...`): a small arithmetic grammar, ranges and lists.

The grammar, and nothing more (no `eval`: text from a command line is never run as code)::

    values := expr ":" expr ":" expr      start:stop:count, `count` points from start to stop inclusive
            | expr ("," expr)*            a list
    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("-" | "+") unary | atom
    atom   := NUMBER | "pi" | "(" expr ")"
    NUMBER := 12 | 1.5 | .5 | 1e-3 | 2.5E+2

Types follow Python's: a number written without a point or exponent is an int, and `+ - *` of ints stay
ints; `/`, `pi` and any float make a float. So `n=1,2,3` gives the ints a qubit count or depth needs and
`theta=0,pi/2` gives floats. A range gives ints when start and stop are ints and every point lands on an
integer (`n=1:4:4` is 1, 2, 3, 4), floats otherwise (`0:1:3` is 0.0, 0.5, 1.0). Every value must be
finite. A range, a list and a whole grid (the product of its parameters' values) hold at most
`MAX_POINTS` values: each is a run. Anything else is an `InvalidInputError` naming the text and the
character where reading stopped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInputError

#: The most values one range, list or grid may hold: every one is a run, with its files.
MAX_POINTS = 100_000
#: Parentheses nest at most this deep (what a person writes; it bounds the parser's recursion).
MAX_DEPTH = 32

Number = int | float

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>[-+*/()]))"
)
_ALLOWED = "numbers, pi, + - * / and parentheses (e.g. 3*pi/4)"


class _Parser:
    """Recursive descent over one expression `text[start:end]`, positions reported within `whole`."""

    def __init__(self, whole: str, start: int, end: int, where: str) -> None:
        self.whole, self.begin, self.pos, self.end, self.where = whole, start, start, end, where
        self.depth = 0

    def fail(self, problem: str) -> InvalidInputError:
        return InvalidInputError(f"{self.where}: {problem}; sweep values are {_ALLOWED}")

    def _skip_space(self) -> None:
        while self.pos < self.end and self.whole[self.pos].isspace():
            self.pos += 1

    def peek(self) -> tuple[str, str] | None:
        """(kind, text) of the next token, or None at the end; an unreadable character is an error."""
        self._skip_space()
        if self.pos >= self.end:
            return None
        m = _TOKEN.match(self.whole, self.pos, self.end)
        if m is None:
            raise self.fail(f"unexpected {self.whole[self.pos]!r} at character {self.pos + 1}")
        kind = m.lastgroup or "op"
        return kind, m.group(kind)

    def take(self) -> tuple[str, str]:
        token = self.peek()
        assert token is not None
        self.pos = _TOKEN.match(self.whole, self.pos, self.end).end()  # type: ignore[union-attr]
        return token

    def unexpected(self) -> InvalidInputError:
        token = self.peek()
        if token is None:
            if not self.whole[self.begin : self.end].strip():
                return self.fail(f"a value is empty (at character {self.begin + 1})")
            return self.fail(f"the value ends early: a number is missing at character {self.pos + 1}")
        text = token[1]
        if text == "*" and self.whole.startswith("**", self.pos - 1):
            return self.fail(f"'**' (a power) at character {self.pos} is not allowed")
        return self.fail(f"unexpected {text!r} at character {self.pos + 1}")

    def parse(self) -> Number:
        value = self.expr()
        if self.peek() is not None:
            raise self.unexpected()
        return value

    def expr(self) -> Number:
        value = self.term()
        while (token := self.peek()) is not None and token[1] in "+-":
            at = self.pos
            op = self.take()[1]
            right = self.term()
            value = self.check(value + right if op == "+" else value - right, at)
        return value

    def term(self) -> Number:
        value = self.unary()
        while (token := self.peek()) is not None and token[1] in "*/":
            at = self.pos
            op = self.take()[1]
            right = self.unary()
            if op == "*":
                value = value * right
            elif right == 0:
                raise self.fail(f"division by zero at character {at + 1}")
            else:
                value = value / right
            self.check(value, at)
        return value

    def unary(self) -> Number:
        negative = False
        while (token := self.peek()) is not None and token[1] in "+-":  # a loop: no recursion per sign
            self.take()
            negative ^= token[1] == "-"
        value = self.atom()
        return -value if negative else value

    def atom(self) -> Number:
        token = self.peek()
        at = self.pos
        if token is None:
            raise self.unexpected()
        kind, text = token
        if kind == "number":
            self.take()
            value: Number = int(text) if text.isdigit() else float(text)
            return self.check(value, at)
        if kind == "name":
            if text != "pi":
                raise self.fail(f"unknown name {text!r} at character {at + 1} (pi is the only one)")
            self.take()
            return math.pi
        if text == "(":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"parentheses nest deeper than {MAX_DEPTH} at character {at + 1}")
            value = self.expr()
            closing = self.peek()
            if closing is None:
                raise self.fail(f"the '(' at character {at + 1} is not closed")
            if closing != ("op", ")"):
                raise self.unexpected()
            self.take()
            self.depth -= 1
            return value
        raise self.unexpected()

    def check(self, value: Number, at: int) -> Number:
        """Finite as a float (an int too: a range computes with floats), or an error at `at`."""
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise self.fail(f"the value at character {at + 1} is too large to be a finite number")
        return value


def parse_number(text: str, where: str | None = None) -> Number:
    """One value of the grammar (`3*pi/4`, `-2`, `1e-3`): an int when written as one, else a float."""
    return _Parser(text, 0, len(text), where or repr(text)).parse()


def parse_values(name: str, text: str) -> list[Number]:
    """The values of `name=text`: a range start:stop:count or a list a,b,c (see the module docstring)."""
    where = f"{name}={text}"
    pieces = _split(text, ":")
    if len(pieces) == 1:
        items = _split(text, ",")
        if len(items) > MAX_POINTS:
            raise InvalidInputError(f"{where}: {len(items)} values, more than the {MAX_POINTS} a sweep takes")
        return [_Parser(text, a, b, where).parse() for a, b in items]
    if len(pieces) != 3:
        raise InvalidInputError(f"{where}: a range is start:stop:count, e.g. 0:pi:9; got {len(pieces)} parts")
    start, stop, count = (_Parser(text, a, b, where).parse() for a, b in pieces)
    if not isinstance(count, int):
        raise InvalidInputError(f"{where}: the count of a range must be an integer, got {count!r}")
    if count < 1:
        raise InvalidInputError(f"{where}: the count of a range must be at least 1, got {count}")
    if count > MAX_POINTS:
        raise InvalidInputError(f"{where}: a range of {count} points is more than the {MAX_POINTS} a sweep takes")
    if count == 1:
        return [start]
    if isinstance(start, int) and isinstance(stop, int) and (stop - start) % (count - 1) == 0:
        step = (stop - start) // (count - 1)
        return [start + i * step for i in range(count)]
    return [float(v) for v in np.linspace(float(start), float(stop), count)]  # both endpoints exact


def parse_grid(specs: Sequence[str]) -> dict[str, list[Number]]:
    """`--over` options (`name=values`, repeatable) as a grid; its product may hold at most MAX_POINTS."""
    grid: dict[str, list[Number]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInputError(f"--over {spec!r} must be name=start:stop:count or name=a,b,c")
        if name in grid:
            raise InvalidInputError(f"--over {name} is given twice; give each parameter once")
        grid[name] = parse_values(name, text)
    total = math.prod(len(v) for v in grid.values())
    if total > MAX_POINTS:
        raise InvalidInputError(
            f"the sweep over {', '.join(grid)} has {total} points, more than the {MAX_POINTS} a sweep takes"
        )
    return grid


def _split(text: str, sep: str) -> list[tuple[int, int]]:
    """(start, end) of each `sep`-separated piece of `text`, so errors point into the whole text."""
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch == sep:
            out.append((start, i))
            start = i + 1
    out.append((start, len(text)))
    return out
