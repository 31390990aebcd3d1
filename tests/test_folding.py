"""The fold registry (alexandria/folding.py): every event type says how it folds, or the import fails."""

from __future__ import annotations

from typing import Union

import msgspec
import pytest

from alexandria.events import EVENT_TYPES, Event
from alexandria.folding import BOOKKEEPING, FOLDS, RULES, Keep, check_registry
from tests.conftest import run_python


class Forgotten(msgspec.Struct, tag="forgotten", tag_field="event"):
    time: float


def test_every_event_type_of_the_union_has_a_fold_rule() -> None:
    assert {cls.__struct_config__.tag for cls in FOLDS} == EVENT_TYPES
    for into in FOLDS.values():
        assert into and all(rule is BOOKKEEPING or rule in RULES for rule, _ in into)


def test_a_union_with_a_type_the_registry_lacks_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="no fold rule for event type.*Forgotten"):
        check_registry(Union[Event, Forgotten], FOLDS)  # noqa: UP007


def test_importing_the_registry_fails_when_events_py_gained_a_type_it_lacks() -> None:
    """A real import in a fresh process, after a Struct was added to the union as events.py would."""
    out = run_python(
        "from typing import Union\n"
        "import msgspec\n"
        "import alexandria.events as events\n"
        "class Forgotten(msgspec.Struct, tag='forgotten', tag_field='event'):\n"
        "    time: float\n"
        "events.Event = Union[events.Event, Forgotten]\n"
        "try:\n"
        "    import alexandria.folding\n"
        "except TypeError as exc:\n"
        "    print(exc)\n"
    )
    assert "no fold rule for event type(s) Forgotten" in out


def test_parameter_tag_and_artifact_share_one_upsert_rule_differing_by_key_and_direction() -> None:
    from alexandria.events import ArtifactSaved, ParamLogged, TagSet

    rules = {t: FOLDS[t][0][0] for t in (ParamLogged, TagSet, ArtifactSaved)}
    assert all(isinstance(rule, Keep) for rule in rules.values())
    assert [(r.key, r.latest) for r in rules.values()] == [
        (("run_id", "key"), False),
        (("run_id", "key"), True),
        (("run_id", "name"), True),
    ]
