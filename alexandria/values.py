"""Value rules: what training code may pass to the logging calls, and the text and numbers the log keeps.

The one home of these rules, for the writing side (checks and conversions at every logging call) and the
reading side (a filter on a parameter compares `param_to_str` texts; output spells non-finite floats as
`float_text` does). Non-finite floats have two spellings, both defined here only:

* in the log, JSON has no NaN or infinity: a metric value travels as "NaN", "Infinity" or "-Infinity"
  (`encode_float` / `decode_float`, JavaScript's spelling, which JSON tools read back);
* as text, a parameter, a tag or a CLI cell says "nan", "inf" or "-inf" (`float_text`, Python's spelling,
  which `float()` reads back).

Imported by `import alexandria` on training nodes: only the standard library and msgspec here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from .errors import InvalidInputError

#: The longest metric, parameter or tag key (characters).
MAX_KEY_LENGTH = 250
#: SQL's INTEGER range: a step outside it could never be stored.
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> float | NonFinite:
    """Return `value` itself when finite, else its JSON-safe string spelling."""
    if value - value == 0.0:
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: float | str) -> float:
    """Invert `encode_float`."""
    if type(value) is float:
        return value
    if isinstance(value, str):
        return _NONFINITE[value]
    return float(value)


def float_text(value: float) -> str:
    """A float as text: its shortest round-trip repr ("0.1", "1e-05"), non-finite as "nan", "inf", "-inf"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def map_nonfinite(value: Any, replace: Callable[[float], Any]) -> Any:
    """`value` with every NaN and infinity, at any depth of dicts, lists and tuples, replaced by
    `replace(x)`: JSON has neither, so each view says how it spells them (text for scripts, null for charts)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else replace(value)
    if isinstance(value, dict):
        return {k: map_nonfinite(v, replace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_nonfinite(v, replace) for v in value]
    return value


def finite_or_none(value: float | None) -> float | None:
    """A float where it is finite, else None: what a chart draws as a gap and JSON can carry as null."""
    return float(value) if value is not None and math.isfinite(value) else None


def param_to_str(value: Any) -> str:
    """The stable text a parameter value is stored as.

    str as is; bool as "true"/"false"; int in decimal; float as `float_text` spells it; None as "null";
    numpy scalars as the Python scalar they hold; lists, tuples and dicts as compact JSON with sorted
    keys; anything else as str().
    """
    if isinstance(value, str):
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy / torch scalar
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, (list, tuple, dict)):
        try:
            return msgspec.json.encode(value, order="sorted").decode()
        except (TypeError, msgspec.EncodeError):
            return str(value)
    return str(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, {"opt": {"lr": 1}} -> {"opt.lr": 1}: the one spelling of nested
    parameters and config (the W&B adapter and importer, Lightning's hyperparameters, the callbacks); an
    empty mapping stays one value."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def check_text(text: str, what: str) -> str:
    """Text must be encodable as UTF-8 (a lone surrogate, as surrogateescape leaves, is not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{what} {text[:40]!r} is not valid Unicode text (it holds a lone surrogate, as undecodable "
            "bytes from a file name or argv leave); clean it with .encode('utf-8', 'replace').decode()"
        ) from None
    return text


def check_key(key: Any, what: str) -> str:
    """A metric, parameter or tag key: a non-empty string of at most `MAX_KEY_LENGTH` characters."""
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{what} key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(f"{what} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    return check_text(key, f"{what} key")


def metric_value(key: str, value: Any) -> float | NonFinite:
    """A metric value as the event carries it: a float, or the JSON-safe spelling of NaN / +-inf."""
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(f"metric {key!r}: value must be a number, got the string {value!r}")
    try:
        return encode_float(float(value))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metric {key!r}: value {value!r} cannot be converted to float ({exc})") from exc


def metric_step(step: Any) -> int:
    """A step as the event carries it: an integer (numpy's too, not bool) within SQL's INTEGER range."""
    if isinstance(step, bool):
        raise InvalidInputError(f"step must be an integer or None, got {step!r}")
    try:
        step = operator.index(step)
    except TypeError:
        raise InvalidInputError(f"step must be an integer or None, got {step!r}") from None
    if not STEP_MIN <= step <= STEP_MAX:
        raise InvalidInputError(f"step {step} is outside the 64-bit integer range SQL can store")
    return int(step)


def event_time(when: Any, what: str = "timestamp") -> float:
    """A time given by the caller (an imported point's or run's: unix seconds), as events carry it: a finite
    number, not a bool. MLflow's milliseconds are converted by its adapter, not guessed here."""
    if isinstance(when, bool) or not isinstance(when, int | float) and not hasattr(when, "__float__"):
        raise InvalidInputError(f"{what} must be unix seconds (a number), got {when!r}")
    seconds = float(when)
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInputError(f"{what} must be finite unix seconds (>= 0), got {when!r}")
    return seconds
