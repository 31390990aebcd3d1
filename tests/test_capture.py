"""Code and environment capture, checked against real git repositories and real child processes.

The truth is computed here independently: git run directly for HEAD and the diff, hashlib over the bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from alexandria.capture import (
    CodeInfo,
    EnvironmentInfo,
    capture_code,
    capture_environment,
    describe_entrypoint,
    normalize_name,
)
from tests.conftest import child_env

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

PRINT_ENTRYPOINT = """\
import json
from alexandria.capture import describe_entrypoint
text, script = describe_entrypoint()
print(json.dumps([text, None if script is None else str(script)]))
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, no repository above tmp_path, and a committer for commits."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")


def git(cwd: Path, *args: str) -> bytes:
    assert GIT is not None
    cmd = [GIT, "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True).stdout


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_repo(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").decode().strip()


FILES = {
    "train.py": b"print('train')\n",
    "pkg/model.py": b"W = 1\n",
    "data/blob.bin": bytes(range(256)) * 40,
    "README.md": b"# readme\n",
}


# -- git repositories ----------------------------------------------------------------


def test_clean_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    info = capture_code("pkg/model.py", repo / "pkg" / "model.py")  # a script below the root
    assert info == CodeInfo(
        entrypoint="pkg/model.py",
        repository=os.path.realpath(repo),
        git_commit=head(repo),
        git_branch="main",
        git_dirty=False,
        diff_sha256=None,
        diff=None,
        tracked_files={rel: sha(data) for rel, data in FILES.items()},
        note=None,
    )
    assert list(info.tracked_files) == sorted(info.tracked_files)
    assert len(info.git_commit or "") == 40


def test_dirty_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    write(repo, {"train.py": b"print('changed')\n", "data/blob.bin": bytes(range(255, -1, -1)) * 40})
    write(repo, {"new.py": b"staged = True\n", "notes.txt": b"untracked\n"})
    git(repo, "add", "new.py")
    truth = git(repo, "diff", "HEAD", "--binary")
    assert b"GIT binary patch" in truth

    info = capture_code("train.py", repo / "train.py")
    assert info.git_dirty is True
    assert info.diff == truth
    assert info.diff_sha256 == sha(truth)
    assert info.note == "untracked: notes.txt"
    assert info.tracked_files["train.py"] == sha(b"print('changed')\n")  # the bytes on disk, not the commit's
    assert info.tracked_files["new.py"] == sha(b"staged = True\n")
    assert "notes.txt" not in info.tracked_files

    small = capture_code("train.py", repo / "train.py", max_diff_bytes=len(truth) - 1)
    assert small.diff is None
    assert small.diff_sha256 == sha(truth)
    assert small.note is not None and f"diff is {len(truth)} bytes, over max_diff_bytes" in small.note

    exact = capture_code("train.py", repo / "train.py", max_diff_bytes=len(truth))
    assert exact.diff == truth


def test_untracked_files_make_the_tree_dirty_but_have_no_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    write(repo, {f"out/{i:02}.log": b"x" for i in range(3)})
    write(repo, {f"u{i:02}.txt": b"x" for i in range(25)})
    info = capture_code("train.py", repo / "train.py")
    assert (info.git_dirty, info.diff, info.diff_sha256) == (True, None, None)
    names = ", ".join(["out/"] + [f"u{i:02}.txt" for i in range(19)])
    assert info.note == f"untracked: {names} (+6 more)"


def test_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    first = head(repo)
    write(repo, {"train.py": b"second\n"})
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "checkout", "-q", "--detach", first)
    info = capture_code("train.py", repo / "train.py")
    assert (info.git_commit, info.git_branch, info.git_dirty) == (first, None, False)
    assert info.note == "detached HEAD"
    assert info.tracked_files["train.py"] == sha(FILES["train.py"])


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    empty = capture_code("train.py", repo / "train.py")
    assert (empty.git_commit, empty.git_branch, empty.git_dirty, empty.diff_sha256) == (None, "main", False, None)
    assert empty.repository == os.path.realpath(repo)
    assert empty.note == "repository has no commits"

    write(repo, {"train.py": b"a\n", "other.py": b"b\n"})
    git(repo, "add", "train.py")
    info = capture_code("train.py", repo / "train.py")
    assert (info.git_commit, info.git_dirty, info.diff, info.diff_sha256) == (None, True, None, None)
    assert info.note == "repository has no commits; untracked: other.py"
    assert info.tracked_files == {"train.py": sha(b"a\n")}  # staged files are in the index


def test_submodules_symlinks_and_deleted_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {**FILES, "gone.py": b"bye\n"})
    os.symlink("data/blob.bin", repo / "link")
    git(repo, "add", "link")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head(repo)},vendor/lib")  # a gitlink
    git(repo, "commit", "-q", "-m", "link and submodule")
    (repo / "gone.py").unlink()
    info = capture_code("train.py", repo / "train.py")
    assert info.tracked_files == {
        **{rel: sha(data) for rel, data in FILES.items()},
        "link": sha(b"data/blob.bin"),  # the link's text, not the file it points to
    }
    assert info.git_dirty is True
    assert info.note is not None
    assert "1 submodules skipped" in info.note
    assert "1 tracked files missing on disk" in info.note


def test_limits(tmp_path: Path) -> None:
    files = {f"f{i}.py": bytes([65 + i]) * 100 for i in range(5)}
    repo = make_repo(tmp_path / "repo", files)
    truth = {rel: sha(data) for rel, data in files.items()}

    by_count = capture_code("f0.py", repo / "f0.py", max_files=2)
    assert by_count.tracked_files == {"f0.py": truth["f0.py"], "f1.py": truth["f1.py"]}
    assert by_count.note == "tracked files cut at 2 of 5 files (max_files)"

    by_bytes = capture_code("f0.py", repo / "f0.py", max_bytes=250)
    assert list(by_bytes.tracked_files) == ["f0.py", "f1.py"]
    assert by_bytes.note == "tracked files cut at 2 of 5 files (max_bytes)"

    write(repo, {"f2.py": b"x" * 101})
    big = capture_code("f0.py", repo / "f0.py", max_file_bytes=100)
    assert sorted(big.tracked_files) == ["f0.py", "f1.py", "f3.py", "f4.py"]
    assert big.note == "1 tracked files over max_file_bytes (100) not hashed"


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """Names become valid text (undecodable bytes as escapes) so the record can always be logged."""
    repo = make_repo(tmp_path / "repo", {"a.py": b"a\n"})
    for name in (b"caf\xe9.py", b"new\xff.txt"):
        with open(os.path.join(os.fsencode(repo), name), "wb") as f:
            f.write(b"x")
    git(repo, "add", "caf\udce9.py")
    info = capture_code("a.py", repo / "a.py")
    assert info.tracked_files == {"a.py": sha(b"a\n"), "caf\\xe9.py": sha(b"x")}
    assert info.note == "untracked: new\\xff.txt"


def test_a_git_command_that_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung `git status` costs its timeout; the rest of the record is still filled."""
    repo = make_repo(tmp_path / "repo", FILES)
    write(repo, {"train.py": b"changed\n"})
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = status ] && exec sleep 60; done\nexec {GIT} "$@"\n'
    )
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    info = capture_code("train.py", repo / "train.py", timeout=1.5)
    assert info.note == "git status timed out after 1.5s"
    assert info.git_commit == head(repo)
    assert info.git_dirty is True  # known from the diff
    assert info.diff_sha256 == sha(git(repo, "diff", "HEAD", "--binary"))
    assert info.tracked_files["train.py"] == sha(b"changed\n")


# -- without git ---------------------------------------------------------------------


def own_project(root: Path) -> dict[str, bytes]:
    """A project with .py files to hash and directories that must be pruned; returns what should be hashed."""
    kept = {"train.py": b"main\n", "util.py": b"u\n", "pkg/mod.py": b"m\n", "pkg/deep/er.py": b"d\n"}
    write(root, kept)
    write(
        root,
        {
            "pkg/data.txt": b"not python\n",
            ".hidden/x.py": b"h\n",
            "venv/pyvenv.cfg": b"home = /usr\n",
            "venv/lib/y.py": b"v\n",
            "__pycache__/z.py": b"c\n",
            "node_modules/q.py": b"n\n",
            "env/lib/site-packages/s.py": b"s\n",
        },
    )
    return kept


def test_not_a_repository_hashes_the_entrypoints_own_files(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    kept = own_project(proj)
    info = capture_code("train.py", proj / "train.py")
    assert info == CodeInfo(
        entrypoint="train.py",
        tracked_files={rel: sha(data) for rel, data in kept.items()},
        note="not a git repository; hashed the entrypoint's own files",
    )

    write(proj, {"run": b"#!/usr/bin/env python\n"})  # a script without .py is hashed too
    assert capture_code("run", proj / "run").tracked_files == {
        "run": sha(b"#!/usr/bin/env python\n"),
        **{rel: sha(data) for rel, data in kept.items()},
    }

    cut = capture_code("util.py", proj / "util.py", max_files=2)
    assert list(cut.tracked_files) == ["train.py", "util.py"]  # the script first, then depth first in name order
    assert (
        cut.note
        == "not a git repository; hashed the entrypoint's own files; entrypoint files cut at 2 of 4 files (max_files)"
    )


def test_interactive_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    info = capture_code("interactive", None)
    assert info == CodeInfo(entrypoint="interactive", note="not a git repository; no script, so no files hashed")


def test_interactive_inside_a_repository_uses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    monkeypatch.chdir(repo / "pkg")
    info = capture_code("interactive", None)
    assert (info.git_commit, info.git_branch) == (head(repo), "main")
    assert set(info.tracked_files) == set(FILES)


def test_git_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = own_project(tmp_path / "proj")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    info = capture_code("train.py", tmp_path / "proj" / "train.py")
    assert info == CodeInfo(
        entrypoint="train.py",
        tracked_files={rel: sha(data) for rel, data in kept.items()},
        note="git is not installed; hashed the entrypoint's own files",
    )


def test_odd_input_never_raises(tmp_path: Path) -> None:
    gone = capture_code("x", tmp_path / "no" / "such" / "train.py")
    assert gone.note is not None and "does not exist" in gone.note
    assert gone.tracked_files == {}
    bad = capture_code("x", "not a path")  # type: ignore[arg-type]
    assert isinstance(bad, CodeInfo)


# -- entrypoint ----------------------------------------------------------------------


def run_child(args: list[str], cwd: Path, stdin: str | None = None) -> list[str | None]:
    proc = subprocess.run(args, cwd=cwd, env=child_env(), input=stdin, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result: list[str | None] = json.loads(proc.stdout)
    return result


def test_entrypoint_of_a_script(tmp_path: Path) -> None:
    write(tmp_path, {"my dir/train.py": PRINT_ENTRYPOINT.encode()})
    text, script = run_child([sys.executable, "my dir/train.py", "--lr", "0.1", "a b"], cwd=tmp_path)
    expected = os.path.join(os.path.realpath(tmp_path), "my dir", "train.py")
    assert script == expected
    assert text == shlex.join([expected, "--lr", "0.1", "a b"])
    assert text.endswith("/my dir/train.py' --lr 0.1 'a b'")


def test_entrypoint_of_a_module(tmp_path: Path) -> None:
    write(tmp_path, {"tpkg/__init__.py": b"", "tpkg/mod.py": PRINT_ENTRYPOINT.encode()})
    write(tmp_path, {"tpkg/__main__.py": PRINT_ENTRYPOINT.encode()})
    root = os.path.realpath(tmp_path)
    assert run_child([sys.executable, "-m", "tpkg.mod", "x", "y z"], cwd=tmp_path) == [
        "-m tpkg.mod x 'y z'",
        os.path.join(root, "tpkg", "mod.py"),
    ]
    assert run_child([sys.executable, "-m", "tpkg", "--flag"], cwd=tmp_path) == [
        "-m tpkg --flag",
        os.path.join(root, "tpkg", "__main__.py"),
    ]


def test_entrypoint_of_dash_c(tmp_path: Path) -> None:
    assert run_child([sys.executable, "-c", PRINT_ENTRYPOINT, "arg", "two words"], cwd=tmp_path) == [
        "-c arg 'two words'",
        None,
    ]


def test_entrypoint_of_code_piped_to_stdin(tmp_path: Path) -> None:
    assert run_child([sys.executable, "-", "a b"], cwd=tmp_path, stdin=PRINT_ENTRYPOINT) == ["- 'a b'", None]
    assert run_child([sys.executable], cwd=tmp_path, stdin=PRINT_ENTRYPOINT) == ["-", None]


def test_entrypoint_interactive_notebook_and_unknown(tmp_path: Path) -> None:
    main = types.ModuleType("__main__")
    assert describe_entrypoint([""], main) == ("interactive", None)
    assert describe_entrypoint(["prog"], main) == ("unknown", None)
    assert describe_entrypoint([], object()) == ("unknown", None)
    assert describe_entrypoint([object()], main) == ("unknown", None)  # type: ignore[list-item]

    kernel = types.ModuleType("__main__")
    kernel.get_ipython = lambda: None  # type: ignore[attr-defined]
    assert describe_entrypoint(["/x/ipykernel_launcher.py", "-f", "k.json"], kernel) == ("notebook", None)
    kernel.__session__ = str(tmp_path / "nb.ipynb")  # type: ignore[attr-defined]
    assert describe_entrypoint([], kernel) == (f"notebook {tmp_path / 'nb.ipynb'}", tmp_path / "nb.ipynb")
    kernel.__vsc_ipynb_file__ = "/home/user/vs.ipynb"  # type: ignore[attr-defined]
    assert describe_entrypoint([], kernel) == ("notebook /home/user/vs.ipynb", Path("/home/user/vs.ipynb"))

    script = types.ModuleType("__main__")
    script.__file__ = str(tmp_path / "t.py")
    assert describe_entrypoint(["t.py", "--x", "1"], script) == (f"{tmp_path / 't.py'} --x 1", tmp_path / "t.py")


# -- environment ---------------------------------------------------------------------


def test_capture_environment() -> None:
    import numpy

    env = capture_environment()
    assert isinstance(env, EnvironmentInfo)
    assert env.python_version == platform.python_version()
    assert env.os == platform.platform()
    assert env.executable == sys.executable
    assert env.hostname == socket.gethostname()
    assert env.cpu_count == os.cpu_count()
    assert env.pip_freeze["msgspec"] == importlib.metadata.version("msgspec")
    assert env.pip_freeze["sqlalchemy"] == importlib.metadata.version("SQLAlchemy")
    assert list(env.pip_freeze) == sorted(env.pip_freeze)
    assert all(normalize_name(name) == name for name in env.pip_freeze)
    assert env.libraries["numpy"] == numpy.__version__
    assert env.note is None


def test_normalize_name() -> None:
    assert normalize_name("Foo_Bar.baz--QUX") == "foo-bar-baz-qux"


def dist_info(root: Path, name: str, version: str, top_level: str | None = None) -> None:
    folder = root / f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not-this\n",
        "RECORD": "",
    }
    if top_level:
        files["top_level.txt"] = top_level + "\n"
    write(folder, {rel: text.encode() for rel, text in files.items()})


def test_libraries_are_found_without_being_imported(tmp_path: Path) -> None:
    """A library the program has not imported is looked up, never imported; the first on sys.path wins."""
    marker = tmp_path / "imported"
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, {"jax/__init__.py": f"open({str(marker)!r}, 'w').close()\n__version__ = 'wrong'\n".encode()})
    dist_info(first, "jax", "0.0.7", top_level="jax")
    dist_info(first, "Fake_Pkg.Name", "1.2")
    dist_info(second, "JAX", "0.0.9", top_level="jax")
    (first / "cirq").mkdir()  # a bare directory: a namespace package, not the library
    code = """\
        import json, sys
        from alexandria.capture import capture_environment
        env = capture_environment()
        print(json.dumps({"libraries": env.libraries, "freeze": env.pip_freeze, "jax": "jax" in sys.modules}))
        """
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(first), str(second), env["PYTHONPATH"]])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["libraries"]["jax"] == "0.0.7"
    assert out["freeze"]["jax"] == "0.0.7"
    assert out["freeze"]["fake-pkg-name"] == "1.2"
    assert out["jax"] is False
    assert not marker.exists()
    if importlib.util.find_spec("cirq") is None:
        assert "cirq" not in out["libraries"]
    assert "numpy" in out["libraries"]  # installed, not imported by capture_environment
    assert "numpy" not in sys.modules or out["libraries"]["numpy"] == sys.modules["numpy"].__version__


def test_capture_environment_lists_every_one_of_many_distributions(tmp_path: Path) -> None:
    """(Its speed is measured by `python -m benchmarks --only start_end`, not asserted here.)"""
    many = tmp_path / "many"
    for i in range(400):
        dist_info(many, f"pkg-{i}", f"1.{i}")
    code = """\
        import json
        from alexandria.capture import capture_environment
        env = capture_environment()
        print(json.dumps([len(env.pip_freeze), env.pip_freeze["pkg-0"], env.pip_freeze["pkg-399"]]))
        """
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(many), env["PYTHONPATH"]])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    count, first, last = json.loads(proc.stdout)
    assert count >= 400 and (first, last) == ("1.0", "1.399")
