"""What code and which environment produced a run: the entrypoint, git state, file hashes and package versions.

`describe_entrypoint` runs on the main thread at `start_run` (no I/O); `capture_environment` and `capture_code`
run on a background thread. None of them raises: whatever cannot be captured is said in the record's `note`,
so a broken git, an odd interpreter or an unreadable file never reaches the user's training.

Every cost is bounded by the limits below: files and bytes hashed, diff bytes kept, and a timeout per git
command. Paths and names become valid UTF-8 text (undecodable bytes as backslash escapes) so the records can
always be logged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import re
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .files import CHUNK_SIZE, hash_file

MAX_FILES = 5000  # files hashed per record; past this the note says where the list was cut
MAX_BYTES = 200 << 20  # total bytes hashed per record (200 MiB); hashing stops before the file that would pass it
MAX_FILE_BYTES = 50 << 20  # a single file bigger than this (50 MiB) is not hashed, only counted in the note
MAX_DIFF_BYTES = 1 << 20  # the uncommitted diff is kept when at most this big (1 MiB); its hash is always kept
GIT_TIMEOUT = 10.0  # seconds per git command
MAX_UNTRACKED_NAMES = 20  # untracked names listed in the note

_PRUNED_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", "node_modules"})
# Modules whose versions matter for reproducing a number, and the distributions that may provide each (first wins).
# A fixed map rather than packages_distributions(), which reads every distribution's file list.
_LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "jax": ("jax",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly", "tensorflow-macos"),
    "cirq": ("cirq-core", "cirq"),
}


@dataclass(frozen=True)
class EnvironmentInfo:
    """The interpreter, machine and installed packages a run used."""

    python_version: str  # platform.python_version(), e.g. "3.11.9"
    os: str  # platform.platform(), e.g. "Linux-6.1.0-x86_64-with-glibc2.36"
    pip_freeze: dict[str, str]  # PEP 503 normalized distribution name -> version, sorted; first on sys.path wins
    executable: str  # sys.executable
    hostname: str  # socket.gethostname()
    cpu_count: int | None  # os.cpu_count()
    libraries: dict[str, str]  # numpy, torch, jax, tensorflow, cirq (those importable) and cuda -> version
    note: str | None = None  # what could not be captured, if anything


@dataclass(frozen=True)
class CodeInfo:
    """The code a run was started from.

    `git_dirty` counts untracked (non-ignored) files as well as tracked changes, but the diff holds tracked
    changes only (`git diff HEAD --binary`): untracked files are named in the note instead.
    """

    entrypoint: str  # see describe_entrypoint
    repository: str | None = None  # absolute path of the git work tree holding the entrypoint
    git_commit: str | None = None  # full hex of HEAD
    git_branch: str | None = None  # None when detached or no git; the unborn branch when there are no commits
    git_dirty: bool | None = None  # None when unknown (no git / not a repo)
    diff_sha256: str | None = None  # SHA-256 of `git diff HEAD --binary`; None when there is no diff or it is unknown
    diff: bytes | None = None  # the diff itself when it is at most max_diff_bytes
    tracked_files: dict[str, str] = field(default_factory=dict)  # relative path -> SHA-256 of its bytes on disk
    note: str | None = None  # what could not be captured, or is worth knowing (detached HEAD, untracked files)


# -- entrypoint ----------------------------------------------------------------


def describe_entrypoint(argv: list[str] | None = None, main_module: Any = None) -> tuple[str, Path | None]:
    """What started this process, as text, and the path of its script (None when there is none).

    "/abs/train.py --lr 0.1", "-m pkg.mod args", "-c args", "- args" (code piped to stdin), "interactive",
    "notebook [/abs/nb.ipynb]" or "unknown". Called on the main thread at start_run, so it does no I/O.
    """
    try:
        if argv is None:
            argv = list(getattr(sys, "argv", None) or [])
        if main_module is None:
            main_module = sys.modules.get("__main__")
        text, script = _describe(argv, main_module)
        return _safe_clean(text), script
    except Exception:
        return "unknown", None


def _describe(argv: list[str], main: Any) -> tuple[str, Path | None]:
    names = getattr(main, "__dict__", None)
    names = names if isinstance(names, Mapping) else {}
    if "ipykernel" in sys.modules or "get_ipython" in names:
        path = _notebook_path(names)
        return ("notebook", None) if path is None else (f"notebook {path}", Path(path))
    if not all(isinstance(a, str) for a in argv):
        return "unknown", None
    args = list(argv)
    file = getattr(main, "__file__", None)
    file = file if isinstance(file, str) and file else None
    piped = file == "<stdin>"  # code read from a pipe: `python - args` or `python < train.py`
    if file is not None and file.startswith("<"):
        file = None
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":  # python -m
        name = name.removesuffix(".__main__")  # `python -m pkg` runs pkg.__main__
        origin = getattr(spec, "origin", None)
        if file is None and getattr(spec, "has_location", False) and isinstance(origin, str):
            file = origin
        return shlex.join(["-m", name, *args[1:]]), Path(os.path.abspath(file)) if file else None
    if args and args[0] == "-c":
        return shlex.join(args), None
    if file is not None:
        script = os.path.abspath(file)  # __main__.__file__ is absolute since 3.9, so a later chdir does not matter
        shown = args[0] if args else file
        # argv[0] is the script itself, unless a directory or zip was run
        shown = script if os.path.basename(shown) == os.path.basename(script) else os.path.abspath(shown)
        return shlex.join([shown, *args[1:]]), Path(script)
    if hasattr(sys, "ps1"):
        return "interactive", None
    if piped or (args and args[0] == "-"):
        return shlex.join(["-", *args[1:]]), None
    if args == [""]:
        return "interactive", None
    return "unknown", None


def _notebook_path(names: Mapping[str, Any]) -> str | None:
    """The notebook's absolute path when the front end tells it (VS Code, or Jupyter's __session__)."""
    for key in ("__vsc_ipynb_file__", "__session__"):
        value = names.get(key)
        if not isinstance(value, str) or not value or not (os.path.isabs(value) or value.endswith(".ipynb")):
            continue
        if os.path.isabs(value):
            return os.path.normpath(value)
        # Relative to the server's root, while the kernel runs in the notebook's directory.
        cwd = os.getcwd()
        parent, base = os.path.split(os.path.normpath(value))
        if parent and (cwd == parent or cwd.endswith(os.sep + parent)):
            return os.path.join(cwd, base)
        return os.path.normpath(os.path.join(cwd, value))
    return None


def _clean(text: str) -> str:
    """Text that encodes as UTF-8: bytes that were not UTF-8 (surrogate-escaped) become backslash escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _safe_clean(text: str) -> str:
    try:
        return _clean(text)
    except UnicodeEncodeError:  # a surrogate that no undecodable byte left
        return text.encode("utf-8", "replace").decode("utf-8")


def _join(notes: list[str]) -> str | None:
    return "; ".join(_safe_clean(n) for n in notes) or None


# -- environment ---------------------------------------------------------------


def capture_environment() -> EnvironmentInfo:
    """The interpreter, machine and installed distributions; imports nothing the program has not imported."""
    notes: list[str] = []
    freeze: dict[str, str] = {}
    try:
        freeze = _installed(notes)
    except Exception as exc:
        notes.append(f"installed packages: {_describe_exc(exc)}")
    libraries: dict[str, str] = {}
    try:
        libraries = _libraries(freeze, notes)
    except Exception as exc:
        notes.append(f"libraries: {_describe_exc(exc)}")
    return EnvironmentInfo(
        python_version=platform.python_version(),
        os=_attempt(platform.platform, "os", "unknown", notes),
        pip_freeze=freeze,
        executable=_attempt(lambda: sys.executable or "", "executable", "", notes),
        hostname=_attempt(socket.gethostname, "hostname", "unknown", notes),
        cpu_count=_attempt(os.cpu_count, "cpu_count", None, notes),
        libraries=libraries,
        note=_join(notes),
    )


def _attempt(get: Callable[[], Any], what: str, default: Any, notes: list[str]) -> Any:
    try:
        return get()
    except Exception as exc:
        notes.append(f"{what}: {_describe_exc(exc)}")
        return default


def _describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def normalize_name(name: str) -> str:
    """A distribution name as PEP 503 compares them: lowercase, runs of -_. as one "-"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(notes: list[str]) -> dict[str, str]:
    """Every distribution on sys.path -> version; the first found for a name wins, as import would pick it."""
    found: dict[str, str] = {}
    nameless = 0
    for dist in metadata.distributions():
        try:
            name, version = _name_version(dist)
        except Exception:
            name = version = None
        if not name:
            nameless += 1
            continue
        found.setdefault(normalize_name(name), version or "unknown")
    if nameless:
        notes.append(f"{nameless} distributions without a name skipped")
    return dict(sorted(found.items()))


def _name_version(dist: metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and Version from the metadata's header lines: parsing the whole file as email costs ~10x more."""
    name = version = None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text:
        end = text.find("\n\n")
        for line in (text if end < 0 else text[:end]).splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().lower()
            if key == "name" and name is None:
                name = value.strip()
            elif key == "version" and version is None:
                version = value.strip()
            if name and version:
                return name, version
    meta = dist.metadata  # an old .egg-info file, or an odd header: let importlib parse it
    return name or meta["Name"], version or meta["Version"]


def _libraries(freeze: Mapping[str, str], notes: list[str]) -> dict[str, str]:
    """Versions of the libraries in _LIBRARIES that are importable, without importing any of them."""
    found: dict[str, str] = {}
    for module_name, dists in _LIBRARIES.items():
        module = sys.modules.get(module_name)
        if module is not None:
            version = getattr(module, "__version__", None)
            if isinstance(version, str) and version:
                found[module_name] = str(version)  # str(): torch's TorchVersion is a str subclass
                continue
        elif module_name in sys.modules:  # set to None: import blocked on purpose
            continue
        else:
            try:
                spec = importlib.util.find_spec(module_name)  # a top-level name: finds, does not import
            except Exception as exc:
                notes.append(f"find_spec({module_name}): {_describe_exc(exc)}")
                continue
            if spec is None or (spec.origin is None and spec.submodule_search_locations is not None):
                continue  # not installed (a bare namespace directory of that name is not the library)
        found[module_name] = next((freeze[d] for d in dists if d in freeze), "unknown")
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = getattr(getattr(torch, "version", None), "cuda", None)
        if isinstance(cuda, str) and cuda:
            found["cuda"] = cuda
    return found


# -- code ----------------------------------------------------------------------


def capture_code(
    entrypoint: str,
    script: Path | None,
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_diff_bytes: int = MAX_DIFF_BYTES,
    timeout: float = GIT_TIMEOUT,
) -> CodeInfo:
    """Git state and file hashes for the code in the script's directory (or the working directory).

    In a git work tree: HEAD, branch, dirtiness, the uncommitted diff against HEAD and the SHA-256 of every
    tracked file as it is on disk. Untracked files are not in the diff (nor hashed) but do make the tree
    dirty; their names are listed in the note. Outside a work tree, or without git: the script itself and
    the .py files under its directory are hashed instead. Never raises.
    """
    try:
        limits = _Limits(max_files, max_bytes, max_file_bytes, timeout)
        return _capture_code(entrypoint, script, limits, max_diff_bytes)
    except Exception as exc:
        return CodeInfo(entrypoint=entrypoint, note=_join([f"code capture failed: {_describe_exc(exc)}"]))


@dataclass(frozen=True)
class _Limits:
    files: int
    bytes: int
    file_bytes: int
    timeout: float


def _capture_code(entrypoint: str, script: Path | None, limits: _Limits, max_diff_bytes: int) -> CodeInfo:
    notes: list[str] = []
    if script is not None:
        script = Path(os.path.abspath(script))
    try:
        where = script.parent if script is not None else Path.cwd()
    except OSError as exc:  # the working directory was removed
        return CodeInfo(entrypoint=entrypoint, note=_join([f"no working directory ({_describe_exc(exc)})"]))

    def without_git(reason: str | None) -> CodeInfo:
        if reason is not None:
            notes.append(reason)
        if script is None:
            notes.append("no script, so no files hashed")
            return CodeInfo(entrypoint=entrypoint, note=_join(notes))
        notes.append("hashed the entrypoint's own files")
        files = _own_files(script, limits, notes)
        return CodeInfo(entrypoint=entrypoint, tracked_files=files, note=_join(notes))

    if not where.is_dir():
        return without_git(f"directory {where} does not exist")
    git = _Git(limits.timeout, notes)
    try:
        top = git.run(where, "rev-parse", "--show-toplevel", probe=True)
    except FileNotFoundError:
        return without_git("git is not installed")
    except OSError as exc:
        return without_git(f"git could not be run ({_describe_exc(exc)})")
    if top is None:  # timed out (noted)
        return without_git(None)
    if top.returncode != 0:
        if b"not a git repository" in top.stderr:
            return without_git("not a git repository")
        return without_git(f"git rev-parse failed: {_first_line(top.stderr)}")
    root = top.stdout.removesuffix(b"\n")  # not strip(): a path may end in spaces
    repository = _text(root)

    commit = branch = None
    head = git.run(root, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    if head is not None:
        if head.returncode == 0:
            commit = head.stdout.strip().decode("ascii")
        else:
            notes.append("repository has no commits")
    ref = git.run(root, "symbolic-ref", "-q", "--short", "HEAD")
    if ref is not None:
        if ref.returncode == 0:
            branch = _text(ref.stdout.removesuffix(b"\n"))
        elif ref.returncode == 1:
            notes.append("detached HEAD")
        else:
            notes.append(f"git symbolic-ref failed: {_first_line(ref.stderr)}")

    dirty = _status(git, root, notes)
    diff_sha256 = diff = None
    if commit is not None:
        diff_size, diff_sha256, diff = _diff(git, root, max_diff_bytes, notes)
        if dirty is None and diff_size:
            dirty = True  # status failed, but a diff means changes

    files = _tracked_files(git, root, limits, notes)
    return CodeInfo(
        entrypoint=entrypoint,
        repository=repository,
        git_commit=commit,
        git_branch=branch,
        git_dirty=dirty,
        diff_sha256=diff_sha256,
        diff=diff,
        tracked_files=files,
        note=_join(notes),
    )


def _first_line(stderr: bytes) -> str:
    lines = _text(stderr).strip().splitlines()
    return lines[0][:200] if lines else "no message"


class _Git:
    """Runs git without prompts, locks or localized output, each command within the timeout."""

    def __init__(self, timeout: float, notes: list[str]) -> None:
        self.timeout = timeout
        self.notes = notes
        self.env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}

    def run(self, cwd: Path | bytes, *args: str, probe: bool = False) -> subprocess.CompletedProcess[bytes] | None:
        """The finished command, or None (noted) when it timed out or could not start.

        The probe (the first command) raises OSError instead: FileNotFoundError there means no git.
        """
        try:
            return subprocess.run(
                ["git", *args],
                cwd=cwd,
                capture_output=True,
                timeout=self.timeout,
                env=self.env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            self._timed_out(args[0])
            return None
        except OSError as exc:
            if probe:
                raise
            self.notes.append(f"git {args[0]} could not be run ({_describe_exc(exc)})")
            return None

    def stream(self, cwd: bytes, args: list[str], feed: Callable[[bytes], None]) -> bool:
        """Run a command whose output may be large, handing it to `feed` in chunks rather than holding it.

        True when the command succeeded; a timeout or a failure is noted.
        """
        try:
            proc = subprocess.Popen(
                ["git", *args],
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a pipe nobody reads could fill up and block git
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        except OSError as exc:
            self.notes.append(f"git {args[0]} could not be run ({_describe_exc(exc)})")
            return False
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(CHUNK_SIZE):
                feed(chunk)
            returncode = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if returncode == 0:
            return True
        if expired.is_set():
            self._timed_out(args[0])
        else:
            self.notes.append(f"git {args[0]} failed (exit {returncode})")
        return False

    def _timed_out(self, command: str) -> None:
        self.notes.append(f"git {command} timed out after {self.timeout:g}s")


def _records(consume: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """A feed that cuts NUL-terminated records (git's -z output) out of chunks."""
    tail = b""

    def feed(chunk: bytes) -> None:
        nonlocal tail
        parts = (tail + chunk).split(b"\0")
        tail = parts.pop()
        for part in parts:
            consume(part)

    return feed


def _status(git: _Git, root: bytes, notes: list[str]) -> bool | None:
    """Whether the tree is dirty (tracked changes or untracked files); notes the untracked names."""
    changed = 0
    untracked: list[str] = []
    untracked_count = 0
    skip_next = False

    def consume(record: bytes) -> None:
        nonlocal changed, untracked_count, skip_next
        if skip_next:  # the source path of a rename or copy
            skip_next = False
            return
        changed += 1
        xy, path = record[:2], record[3:]
        if xy == b"??":
            untracked_count += 1
            if len(untracked) < MAX_UNTRACKED_NAMES:
                untracked.append(_text(path))
        elif b"R" in xy or b"C" in xy:
            skip_next = True

    # --untracked-files=normal overrides a status.showUntrackedFiles=no in the user's config
    if not git.stream(root, ["status", "--porcelain", "-z", "--untracked-files=normal"], _records(consume)):
        return None
    if untracked_count:
        more = f" (+{untracked_count - len(untracked)} more)" if untracked_count > len(untracked) else ""
        notes.append(f"untracked: {', '.join(untracked)}{more}")
    return changed > 0


def _diff(git: _Git, root: bytes, max_diff_bytes: int, notes: list[str]) -> tuple[int, str | None, bytes | None]:
    """(size, SHA-256, bytes kept) of `git diff HEAD --binary`, streamed so a huge diff costs no memory."""
    digest = hashlib.sha256()
    kept = bytearray()
    size = 0

    def feed(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)
        if len(kept) <= max_diff_bytes:
            kept.extend(chunk[: max_diff_bytes + 1 - len(kept)])

    # The flags pin what user config could change (colour, external diff drivers, textconv, prefixes),
    # so the bytes are the same everywhere and `git apply` takes them.
    args = ["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"]
    args += ["--src-prefix=a/", "--dst-prefix=b/", "--submodule=short"]
    if not git.stream(root, args, feed):
        return 0, None, None
    if size == 0:
        return 0, None, None
    if size > max_diff_bytes:
        notes.append(f"diff is {size} bytes, over max_diff_bytes ({max_diff_bytes}); kept its hash only")
        return size, digest.hexdigest(), None
    return size, digest.hexdigest(), bytes(kept)


def _tracked_files(git: _Git, root: bytes, limits: _Limits, notes: list[str]) -> dict[str, str]:
    """SHA-256 of each file in the index, as it is on disk now; gitlinks (submodules) skipped."""
    listed: list[bytes] = []
    keep = 2 * limits.files + 100  # room for files skipped when hashing, without holding a huge index
    total = submodules = 0
    last = None

    def consume(record: bytes) -> None:
        nonlocal total, submodules, last
        info, _, path = record.partition(b"\t")  # "<mode> <object> <stage>\t<path>"
        if path == last:  # one path, several merge stages
            return
        last = path
        if info.startswith(b"160000 "):
            submodules += 1
            return
        total += 1
        if len(listed) < keep:
            listed.append(path)

    if not git.stream(root, ["ls-files", "-z", "--stage"], _records(consume)):
        return {}
    if submodules:
        notes.append(f"{submodules} submodules skipped")
    return _hash_files(root, listed, total, limits, "tracked files", notes)


def _own_files(script: Path, limits: _Limits, notes: list[str]) -> dict[str, str]:
    """The script and the .py files under its directory, for code that is not in a git work tree."""
    base = script.parent
    listed = [os.fsencode(script.name)]
    keep = 2 * limits.files + 100
    total = 1
    deadline = time.monotonic() + limits.timeout
    stack = [b""]
    while stack:
        if time.monotonic() > deadline:
            notes.append(f"file search stopped after {limits.timeout:g}s")
            break
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(os.fsencode(base), rel_dir)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        names = {e.name for e in entries}
        if rel_dir and b"pyvenv.cfg" in names:  # a virtual environment
            continue
        subdirs = []
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                name = entry.name
                if not name.startswith(b".") and os.fsdecode(name) not in _PRUNED_DIRS:
                    subdirs.append(rel)
            elif entry.name.endswith(b".py") and rel != listed[0]:
                total += 1
                if len(listed) < keep:
                    listed.append(rel)
        stack.extend(reversed(subdirs))  # depth first, in name order
    return _hash_files(os.fsencode(base), listed, total, limits, "entrypoint files", notes)


def _hash_files(
    base: bytes, paths: list[bytes], total: int, limits: _Limits, what: str, notes: list[str]
) -> dict[str, str]:
    """Path -> SHA-256 of the bytes on disk (a symlink: of its target text), within the limits."""
    files: dict[str, str] = {}
    hashed_bytes = missing = too_big = unreadable = other = 0
    cut = None
    for rel in paths:
        if len(files) >= limits.files:
            cut = "max_files"
            break
        full = os.path.join(base, rel)
        try:
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                files[_text(rel)] = hashlib.sha256(os.readlink(full)).hexdigest()
                continue
            if not stat.S_ISREG(st.st_mode):  # a directory or a fifo where the file was: never open it
                other += 1
                continue
            if st.st_size > limits.file_bytes:
                too_big += 1
                continue
            if hashed_bytes + st.st_size > limits.bytes:
                cut = "max_bytes"
                break
            digest, size = hash_file(full, limit=limits.file_bytes)
        except (FileNotFoundError, NotADirectoryError):
            missing += 1
            continue
        except OSError:
            unreadable += 1
            continue
        hashed_bytes += size
        if digest is None:  # grew past the limit while being read
            too_big += 1
            continue
        files[_text(rel)] = digest
    if cut is None and total > len(paths):  # the listing was capped, and that many were skipped
        cut = "too many files skipped"
    if cut is not None:
        notes.append(f"{what} cut at {len(files)} of {total} files ({cut})")
    if missing:
        notes.append(f"{missing} {what} missing on disk")
    if too_big:
        notes.append(f"{too_big} {what} over max_file_bytes ({limits.file_bytes}) not hashed")
    if unreadable:
        notes.append(f"{unreadable} {what} unreadable")
    if other:
        notes.append(f"{other} {what} not regular files")
    return dict(sorted(files.items()))
