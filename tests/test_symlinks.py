"""Nothing outside the store is read, written or served through a symbolic link (docs/log-format.md, "Links in
the store"): a link where a segment or a run folder should be is reported once and never read; links inside
a logged directory are recorded, never followed nor copied; a link where Alexandria writes is refused with
UnsafePathError; a store root reached through a link works as any other."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from sqlalchemy import select

from alexandria.db import open_database
from alexandria.schema import metadata
from alexandria.store import Store
from tests.conftest import alex, child_env, every_backend, python, rebuilt_snapshot, run_python, snapshot

SECRET = b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

LOG_A_RUN = """
import sys, alexandria
with alexandria.start_run(experiment="links", store=sys.argv[1]) as run:
    run.log_param("lr", 0.1)
    run.log_metric("loss", 1.0, step=0)
print(run.id)
"""


def _outside(tmp_path: Path) -> Path:
    """A credentials-like file outside the store."""
    home = tmp_path / "home" / ".aws"
    home.mkdir(parents=True)
    secret = home / "credentials"
    secret.write_bytes(b"[default]\n" + SECRET + b"\n")
    return secret


def _every_row(store: Store) -> str:
    """Every row of every table of the projection, as text (what a leak would show up in)."""
    engine = open_database(store, catch_up=False)
    try:
        with engine.connect() as conn:
            return repr({t.name: conn.execute(select(t)).all() for t in metadata.sorted_tables})
    finally:
        engine.dispose()


def _bytes_under(root: Path) -> bytes:
    """The bytes of every regular file below `root` (the database file and its WAL included)."""
    out = b""
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = Path(base) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                out += path.read_bytes()
    return out


def _plant_links(store: Store, tmp_path: Path, run_id: str) -> tuple[Path, Path]:
    """A link to the credentials as a segment of a real run, and a link as a run folder to an outside
    folder holding a valid segment (copied from the real run, so that following it would project a run)."""
    secret = _outside(tmp_path)
    segment_link = store.run_dir(run_id) / "zz-planted.jsonl"
    segment_link.symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = store.run_segments(run_id)[0]
    forged_id = "f" * 32
    text = real.read_bytes().replace(run_id.encode(), forged_id.encode())
    (elsewhere / real.name).write_bytes(text + SECRET + b"\n")
    folder_link = store.runs_dir / forged_id
    folder_link.symlink_to(elsewhere, target_is_directory=True)
    file_id = "e" * 32  # a regular file where a run folder should be: not a segment either
    (store.runs_dir / file_id).write_bytes(real.read_bytes().replace(run_id.encode(), file_id.encode()))
    return segment_link, folder_link


@every_backend
def test_a_linked_segment_or_run_folder_is_reported_once_and_never_read(store: Store, tmp_path: Path) -> None:
    run_id = run_python(LOG_A_RUN, str(store.root)).strip()
    segment_link, folder_link = _plant_links(store, tmp_path, run_id)

    for _ in range(2):  # a second fold reports nothing new
        result = alex("problems", "--format", "json")
        assert result.returncode == 0, result.stderr
        problems = json.loads(result.stdout)
        found = {p["segment"]: (p["offset"], p["kind"], p["detail"]) for p in problems}
        assert len(problems) == 3 and {k: v[:2] for k, v in found.items()} == {
            store.relative(segment_link): (0, "refused"),
            store.relative(folder_link): (0, "refused"),
            f"runs/{'e' * 32}": (0, "refused"),
        }
        for link in (segment_link, folder_link):
            assert found[store.relative(link)][2].startswith(f"{link} is a symbolic link")
        assert f"{'e' * 32} is a file not named *.jsonl" in found[f"runs/{'e' * 32}"][2]
        assert SECRET not in (result.stdout + result.stderr).encode()
        assert ".aws" not in result.stdout  # not even where the link points

    table = alex("problems")
    assert table.returncode == 0 and str(store.relative(segment_link)) in table.stdout.replace("\n", "")
    assert SECRET not in (table.stdout + table.stderr).encode()
    rows = _every_row(store)
    assert SECRET.decode() not in rows and "wJalrXUtnFEMI" not in rows
    if store.db_url is None:
        assert b"wJalrXUtnFEMI" not in _bytes_under(store.root)
    runs = alex("runs", "--format", "json")
    assert runs.returncode == 0, runs.stderr
    assert [r["id"] for r in json.loads(runs.stdout)] == [run_id]


@every_backend
def test_rebuild_with_linked_segments_equals_the_live_projection(store: Store, tmp_path: Path) -> None:
    run_id = run_python(LOG_A_RUN, str(store.root)).strip()
    _plant_links(store, tmp_path, run_id)
    os.mkfifo(store.run_dir(run_id) / "zy-fifo.jsonl")  # refused by the same rule, without blocking
    assert alex("runs").returncode == 0  # the live projector folds
    tables = (*[t.name for t in metadata.sorted_tables if t.name != "alexandria_meta"],)
    engine = open_database(store, catch_up=False)
    try:
        live = snapshot(engine, tables)
    finally:
        engine.dispose()
    assert len(live["log_problem"]) == 4
    result = alex("rebuild")
    assert result.returncode == 0, result.stderr
    engine = open_database(store, catch_up=False)
    try:
        assert snapshot(engine, tables) == live
    finally:
        engine.dispose()
    assert rebuilt_snapshot(store, tables) == live


def _old_directory_hash(root: Path) -> tuple[str, int]:
    """The directory hash as documented (files.copy_atomically), over the regular files only."""
    digest = hashlib.sha256()
    size = 0
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for f in sorted(files):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        data = f.read_bytes()
        digest.update(data)
        size += len(data)
    return digest.hexdigest(), size


def test_links_in_a_logged_directory_are_recorded_not_followed(store: Store, tmp_path: Path) -> None:
    secret = _outside(tmp_path)
    ckpt = tmp_path / "ckpt"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "weights.bin").write_bytes(b"\x00\x01weights")
    (ckpt / "sub" / "notes.txt").write_text("inside")
    (ckpt / "credentials").symlink_to(secret)
    (ckpt / "home").symlink_to(secret.parent.parent, target_is_directory=True)
    (ckpt / "loop").symlink_to(".", target_is_directory=True)  # ln -s . loop
    (ckpt / "sub" / "up").symlink_to("..", target_is_directory=True)
    (ckpt / "ping").symlink_to("pong")  # a pair pointing at each other
    (ckpt / "pong").symlink_to("ping")
    expected_hash, expected_size = _old_directory_hash(ckpt)

    child = python(
        """
        import sys, alexandria
        with alexandria.start_run(experiment="ckpt", store=sys.argv[1]) as run:
            print(run.log_artifact(sys.argv[2], type="checkpoint"), flush=True)
        """,
        str(store.root),
        str(ckpt),
    )
    out, err = child.communicate(timeout=60)  # returns: no link is followed, so no loop is walked
    assert child.returncode == 0, err.decode()
    stored = store.root / out.decode().strip()

    copied = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*"))
    assert copied == ["sub", "sub/notes.txt", "weights.bin"]
    assert not any(p.is_symlink() for p in stored.rglob("*"))
    assert b"wJalrXUtnFEMI" not in _bytes_under(store.root)
    engine = open_database(store)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT size, sha256, links FROM artifact WHERE name = 'ckpt'").one()
    finally:
        engine.dispose()
    assert (row.size, row.sha256) == (expected_size, expected_hash)  # the regular files, as before
    assert json.loads(row.links) == {
        "credentials": str(secret),
        "home": str(secret.parent.parent),
        "loop": ".",
        "ping": "pong",
        "pong": "ping",
        "sub/up": "..",
    }
    assert b"wJalrXUtnFEMI" not in _every_row(store).encode()


REFUSED_WRITE = """
import sys, alexandria
from pathlib import Path
store, outside, model, where = sys.argv[1:]
with alexandria.start_run(experiment="planted", store=store) as run:
    target = Path(store) / "artifacts" / run.id
    if where == "name":
        target.mkdir()
        target = target / "model.bin"
    target.symlink_to(outside)
    try:
        run.log_artifact(model, name="model.bin")
    except alexandria.UnsafePathError as exc:
        print(exc)
    else:
        print("written")
"""


def test_a_link_where_an_artifact_is_written_is_refused(store: Store, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"new weights")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    out = run_python(REFUSED_WRITE, str(store.root), str(outside_dir), str(model), "run folder")
    assert "is a symbolic link" in out and f"{store.root}/artifacts/" in out, out
    assert list(outside_dir.iterdir()) == []

    outside_file = tmp_path / "outside.bin"
    outside_file.write_bytes(b"precious")
    out = run_python(REFUSED_WRITE, str(store.root), str(outside_file), str(model), "name")
    assert "is a symbolic link" in out and "model.bin" in out, out
    assert outside_file.read_bytes() == b"precious" and list(outside_dir.iterdir()) == []
    assert alex("problems").returncode == 0


def test_a_link_in_place_of_a_store_folder_is_an_error(tmp_path: Path) -> None:
    """`runs/` or `artifacts/` a link: every command says so in one Error: line, and writes nothing there."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "store"
    run_python(LOG_A_RUN, str(root))
    shutil.move(root / "runs", elsewhere / "runs")
    (root / "runs").symlink_to(elsewhere / "runs", target_is_directory=True)
    result = alex("--store", str(root), "runs")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {root}/runs is a symbolic link"), result.stderr

    other = tmp_path / "other"
    other.mkdir()
    (other / "artifacts").symlink_to(elsewhere, target_is_directory=True)
    child = python("import sys, alexandria; alexandria.start_run(experiment='x', store=sys.argv[1])", str(other))
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert f"UnsafePathError: {other}/artifacts is a symbolic link" in err.decode()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["runs"]


def test_a_store_root_reached_through_a_link_works(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "store"
    real.mkdir(parents=True)
    link = tmp_path / "store-link"
    link.symlink_to(real, target_is_directory=True)
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    env = child_env(ALEXANDRIA_STORE=str(link))
    run_id = run_python(LOG_A_RUN, str(link), env=env).strip()
    run_python(
        """
        import sys, alexandria
        with alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1]) as run:
            run.log_artifact(sys.argv[3])
        """,
        str(link),
        run_id,
        str(model),
        env=env,
    )
    assert (real / "artifacts" / run_id / "ckpt" / "w.bin").read_bytes() == b"w"
    for command in (("runs",), ("problems",), ("show", run_id), ("rebuild",)):
        result = alex("--store", str(link), *command, env=env)
        assert result.returncode == 0, result.stderr
        assert "symbolic link" not in result.stdout + result.stderr
    show = alex("--store", str(link), "show", run_id, env=env)
    assert "ckpt" in show.stdout and "lr" in show.stdout
    problems = alex("--store", str(link), "problems", "--format", "json", env=env)
    assert json.loads(problems.stdout) == []


def test_a_run_folder_replaced_by_a_link_is_not_written_to(store: Store, tmp_path: Path) -> None:
    """Resuming a run whose folder is now a link writes no segment where the link points."""
    run_id = run_python(LOG_A_RUN, str(store.root)).strip()
    outside = tmp_path / "outside-run"
    shutil.move(store.run_dir(run_id), outside)
    store.run_dir(run_id).symlink_to(outside, target_is_directory=True)
    before = sorted(p.name for p in outside.iterdir())
    child = python(
        "import sys, alexandria; alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1])", str(store.root), run_id
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert f"UnsafePathError: {store.run_dir(run_id)} is a symbolic link" in err.decode()
    assert sorted(p.name for p in outside.iterdir()) == before
