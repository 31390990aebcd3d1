"""docs/log-format.md's table of events is generated from alexandria/events.py: the two never disagree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO, child_env


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("log_format", REPO / "tools" / "log_format.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_events_table_is_what_events_py_generates() -> None:
    gen = _generator()
    committed = gen.DOC.read_text()
    assert gen.render(committed) == committed, (
        f"docs/log-format.md's events table is out of date with alexandria/events.py: run `{gen.REGENERATE}`"
    )


def test_every_event_and_field_is_in_the_table() -> None:
    import msgspec

    from alexandria.events import Event

    table = _generator().events_table()
    for cls in Event.__args__:  # type: ignore[attr-defined]
        row = next(line for line in table.splitlines() if line.startswith(f"| `{cls.__struct_config__.tag}` |"))
        for field in msgspec.structs.fields(cls):
            if field.name != "time":
                assert f"`{field.encode_name}` (" in row, (cls.__name__, field.name)


def test_check_fails_on_a_stale_table_and_regenerating_fixes_it(tmp_path: Path) -> None:
    gen = _generator()
    doc = tmp_path / "log-format.md"
    doc.write_text(f"# prose stays\n\n{gen.BEGIN}\n| `event` | an old table |\n{gen.END}\n\nmore prose\n")

    def tool(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, str(REPO / "tools" / "log_format.py"), "--doc", str(doc), *args]
        return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=60)

    stale = tool("--check")
    assert stale.returncode == 1
    assert stale.stderr == (
        f"{doc}: the events table differs from alexandria/events.py; regenerate it: python tools/log_format.py\n"
    )
    assert tool().returncode == 0 and tool("--check").returncode == 0
    text = doc.read_text()
    assert text.startswith("# prose stays\n\n") and text.endswith(f"{gen.END}\n\nmore prose\n")
    assert "an old table" not in text and "| `metric` | `MetricLogged` |" in text
    doc.write_text("no markers\n")
    missing = tool("--check")
    assert missing.returncode == 1 and "markers" in missing.stderr
