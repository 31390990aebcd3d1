"""Generate docs/log-format.md's table of events from alexandria/events.py, so the two never disagree.

The table lies between the BEGIN and END markers below; the prose around it is written by hand. Each row
is one Struct of the `Event` union: its tag, its fields (type, default, and the `#:` comment above the
field in events.py) and the first sentence of its docstring, which says what the event means (an event
without a docstring has an empty meaning: document it in events.py, then regenerate). `time`, which
every event has, is left to the prose.

    python tools/log_format.py          rewrite the table in docs/log-format.md
    python tools/log_format.py --check  exit 1, saying so, when the committed table differs
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "log-format.md"
BEGIN = "<!-- BEGIN events table: generated from alexandria/events.py by `python tools/log_format.py` -->"
END = "<!-- END events table -->"
REGENERATE = "python tools/log_format.py"

_NAMES: dict[Any, str] = {str: "text", int: "integer", float: "number", bool: "true or false", Any: "any"}


def _type_text(tp: Any) -> str:
    """A field's type as the doc spells it (a nested Struct lists its fields in braces)."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _type_text(get_args(tp)[0])
    if origin is Literal:
        return " or ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in get_args(tp))
    if origin is Union or origin is types.UnionType:
        return " or ".join(_type_text(a) for a in get_args(tp) if a is not type(None))
    if origin is dict:
        value = get_args(tp)[1]
        return "object" if value is Any else f"object of {_type_text(value)}"
    if origin is list:
        return f"list of {_type_text(get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "{" + "; ".join(_field_text(tp, f) for f in msgspec.structs.fields(tp)) + "}"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _default_text(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return ""
    default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
    if default is None:
        return ", omitted when none"
    if default in ({}, [], ""):
        return ", omitted when empty"
    return f", default `{msgspec.json.encode(default).decode()}`"


def _field_comments(cls: type) -> dict[str, str]:
    """The `#:` comment lines right above each field of `cls` in its source, by field name."""
    lines, _ = inspect.getsourcelines(cls)
    body = ast.parse(textwrap.dedent("".join(lines))).body[0]
    assert isinstance(body, ast.ClassDef)
    comments: dict[str, str] = {}
    for node in body.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            i = node.lineno - 2  # the line before the field, 0-based
            while i >= 0 and lines[i].strip().startswith("#:"):
                above.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if above:
                comments[node.target.id] = " ".join(above)
    return comments


def _field_text(cls: type, field: msgspec.structs.FieldInfo) -> str:
    text = f"`{field.encode_name}` ({_type_text(field.type)}{_default_text(field)})"
    comment = _field_comments(cls).get(field.name)
    return f"{text}: {comment.rstrip('.')}" if comment else text


def _summary(cls: type) -> str:
    """The first sentence of the docstring: what the event means (the rest is for readers of the code)."""
    text = " ".join(inspect.cleandoc(cls.__doc__ or "").split())
    return re.split(r"(?<=\.) (?=[A-Z])", text, maxsplit=1)[0]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def events_table() -> str:
    """The markdown table of every event type, in the union's order."""
    from alexandria.events import Event

    rows = ["| `event` | struct | fields | meaning |", "|---|---|---|---|"]
    for cls in get_args(Event):
        fields = [_field_text(cls, f) for f in msgspec.structs.fields(cls) if f.name != "time"]
        tag, meaning = cls.__struct_config__.tag, _summary(cls)
        rows.append(f"| `{tag}` | `{cls.__name__}` | {_cell('; '.join(fields) or '(none)')} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def render(doc: str) -> str:
    """`doc` with the text between the markers replaced by the generated table."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} ... {END!r} are missing")
    return doc[: start + len(BEGIN)] + "\n\n" + events_table() + "\n" + doc[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check: exit 1 when the committed table differs")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document (default: docs/log-format.md)")
    args = parser.parse_args(argv)
    path = args.doc.resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else args.doc
    committed = args.doc.read_text()
    try:
        generated = render(committed)
    except ValueError as exc:
        print(f"{shown}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if generated != committed:
            print(
                f"{shown}: the events table differs from alexandria/events.py; regenerate it: {REGENERATE}",
                file=sys.stderr,
            )
            return 1
        return 0
    if generated != committed:
        args.doc.write_text(generated)
        print(f"rewrote the events table in {shown}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
