"""Readable run names: given to `start_run(name=...)`, or generated as two words and a number
("brisk-heron-42"), as MLflow and W&B do. A name is stored with the run (events.RunStarted.name) and is
not unique: the id stays the run's identity, and a command takes a name only where it names one run."""

from __future__ import annotations

import secrets

from .errors import InvalidInputError

#: The longest name accepted: it has to fit a table column and a chart legend.
MAX_NAME = 200

_ADJECTIVES = (
    "amber", "ancient", "bold", "brave", "breezy", "bright", "brisk", "calm", "clever", "cosmic", "crimson",
    "curious", "dapper", "daring", "dusty", "eager", "electric", "fancy", "fearless", "fluffy", "gentle",
    "gleaming", "golden", "graceful", "happy", "hidden", "humble", "icy", "jolly", "keen", "lively", "lucky",
    "mellow", "misty", "modest", "nimble", "noble", "olive", "patient", "polished", "proud", "quick", "quiet",
    "rapid", "restless", "rosy", "rustic", "serene", "sharp", "shiny", "silent", "silver", "sleek", "smooth",
    "snowy", "solar", "spry", "stellar", "sturdy", "sunny", "swift", "tidy", "tranquil", "vivid", "wandering",
    "warm", "wise", "witty", "zesty",
)  # fmt: skip
_NOUNS = (
    "albatross", "badger", "beacon", "bison", "breeze", "canyon", "cedar", "comet", "coral", "crane", "creek",
    "dawn", "delta", "dune", "eagle", "ember", "falcon", "fern", "fjord", "forest", "fox", "galaxy", "glacier",
    "harbor", "hawk", "heron", "horizon", "ibis", "island", "jaguar", "kestrel", "lagoon", "lantern", "lark",
    "lynx", "maple", "meadow", "meteor", "moon", "nebula", "oak", "orbit", "otter", "owl", "panda", "pebble",
    "pine", "planet", "prairie", "quasar", "raven", "reef", "river", "robin", "sparrow", "spruce", "star",
    "summit", "thunder", "tiger", "tundra", "valley", "violet", "walrus", "willow", "wolf", "yak", "zephyr",
)  # fmt: skip


def generate_name() -> str:
    """Two words and a number, e.g. "brisk-heron-42" (about 450,000 of them: a name is not an id)."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(100)}"


def check_name(name: object, what: str = "name") -> str:
    """A run name as given, or InvalidInputError saying why it cannot be one."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"a run's {what} must be non-empty text, got {name!r}")
    if len(name) > MAX_NAME or any(c in name for c in "\n\r\0"):
        raise InvalidInputError(
            f"a run's {what} must be one line of at most {MAX_NAME} characters, got {name[:60]!r}..."
        )
    return name
