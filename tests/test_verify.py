"""Recorded files against their log: every reader of a recorded path keeps to the store (a forged record
naming a file outside is refused, the file never read), and `alex verify` and the readers that load a file
compare it with the size and SHA-256 the log holds. Real stores, the real `alex` and `qex` command lines."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import alexandria
from alexandria.qex.runner import QexResult, run_experiment
from alexandria.store import Store
from tests.conftest import alex, query
from tests.test_qex import qex
from tests.test_ui import Client

MARKER = b"OUTSIDE-THE-STORE-7f3c2a"
REFUSED_TAIL = "(Alexandria records only paths inside the store: the log was edited or comes from elsewhere)"


def _two_qex_runs(root: Path) -> tuple[QexResult, QexResult]:
    """Two one-qubit qex runs, |1> and |+>: their matrices have the same size and differ. Each records 7 files:
    its state, its Bloch spheres, its circuit description and that circuit as Cirq JSON, QASM 2, QASM 3, diagram."""
    a = run_experiment("x", store=root, capture=False)
    b = run_experiment("h", store=root, capture=False)
    return a, b


def _forge_artifact(store: Path, run_id: str, name: str, path: str, data: bytes) -> None:
    """Append to the run's log the record a tampered log would hold: artifact `name` at `path`, with the
    size and SHA-256 of `data` (so only where it points can give it away)."""
    [segment] = sorted((store / "runs" / run_id).glob("*.jsonl"))
    record = {
        "event": "artifact",
        "name": name,
        "path": path,
        "type": "application/x-npy",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "time": time.time() + 1,  # the latest record of the name wins
    }
    with open(segment, "a") as f:
        f.write(json.dumps(record) + "\n")


def _evil_npy(path: Path) -> bytes:
    """A valid density matrix (|0><0|) with a marker after its data: what a reader of it would pass on."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([[1, 0], [0, 0]], dtype=np.complex128), allow_pickle=False)
    data = buffer.getvalue() + MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_forged_density_matrix_path_outside_the_store_is_refused_unread(tmp_path: Path, how: str) -> None:
    root = tmp_path / "qex_data"
    a, b = _two_qex_runs(root)
    outside = tmp_path / "outside" / "evil.npy"
    data = _evil_npy(outside)
    if how == "dotdot":
        recorded, reason = "../outside/evil.npy", "climbs out with '..'"
    elif how == "absolute":
        recorded, reason = str(outside), "is absolute"
    else:
        (root / "results" / "link.npy").symlink_to(outside)
        recorded, reason = "results/link.npy", f"leads outside the store through a symlink (to {outside.resolve()})"
    _forge_artifact(root, a.run_id, "density_matrix", recorded, data)
    error = (
        f"Error: run {a.run_id} artifact 'density_matrix': its recorded path {recorded!r} {reason}; refused, as it "
        f"is not inside the store {root.resolve()} {REFUSED_TAIL}"
    )
    for suffix in (".npy", ".json", ".csv"):
        out = tmp_path / f"exported{suffix}"
        done = qex(root, "export", a.run_id, str(out))
        assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [error]), suffix
        assert not out.exists()
    for args in ((a.run_id, b.run_id), (b.run_id, a.run_id)):
        done = qex(root, "compare", *args)
        assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [error])
    done = qex(root, "show", a.run_id)
    assert (done.returncode, done.stderr.splitlines()) == (1, [error]) and MARKER.decode() not in done.stdout
    # the other run is untouched, and `alex verify` names the forged record
    assert qex(root, "export", b.run_id, str(tmp_path / "b.npy")).returncode == 0
    assert (tmp_path / "b.npy").read_bytes() == (root / b.density_matrix_path).read_bytes()
    done = alex("--store", str(root), "verify")
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"refused: run {a.run_id} artifact 'density_matrix' at {recorded!r}: {reason}",
        "checked 14 recorded file(s) of 2 run(s): 0 changed, 0 missing, 1 refused",
    ]


def test_a_replaced_density_matrix_is_refused_by_qex_and_listed_by_verify(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    a, b = _two_qex_runs(root)
    done = qex(root, "compare", a.run_id, b.run_id)
    assert done.returncode == 0 and "fidelity (Uhlmann-Jozsa, squared): 0.500000" in done.stdout, done.stderr
    assert alex("--store", str(root), "verify").stdout == (
        "checked 14 recorded file(s) of 2 run(s): all match their logged size and SHA-256\n"
    )
    # another valid density matrix over a's: same size, other bytes
    a_file, b_file = root / a.density_matrix_path, root / b.density_matrix_path
    logged = hashlib.sha256(a_file.read_bytes()).hexdigest()
    shutil.copyfile(b_file, a_file)
    now = hashlib.sha256(a_file.read_bytes()).hexdigest()
    reason = f"its SHA-256 is {now[:12]}..., {logged[:12]}... was logged"
    error = (
        f"Error: run {a.run_id} artifact 'density_matrix': its file {a.density_matrix_path!r} changed since it was "
        f"logged ({reason}); refused. `alex --store {root.resolve()} verify` lists every recorded file that changed"
    )
    done = qex(root, "compare", a.run_id, b.run_id)  # (it printed fidelity 1.0 against the new file)
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [error])
    out = tmp_path / "a.npy"
    done = qex(root, "export", a.run_id, str(out))
    assert (done.returncode, done.stderr.splitlines(), out.exists()) == (1, [error], False)
    done = qex(root, "show", a.run_id, "--format", "json")
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [error])
    done = alex("--store", str(root), "verify")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"changed: run {a.run_id} artifact 'density_matrix' at {a.density_matrix_path!r}: {reason}",
        "checked 14 recorded file(s) of 2 run(s): 1 changed, 0 missing, 0 refused",
    ]
    # only the runs named are checked
    done = alex("--store", str(root), "verify", b.run_id[:10])
    assert (done.returncode, done.stdout) == (
        0,
        "checked 7 recorded file(s) of 1 run(s): all match their logged size and SHA-256\n",
    )
    # a longer file is known changed by its size alone
    a_file.write_bytes(b_file.read_bytes() + b"\0")
    done = qex(root, "export", a.run_id, str(out))
    assert (
        done.returncode == 1
        and f"its size is {b_file.stat().st_size + 1} bytes, {b_file.stat().st_size} were logged" in done.stderr
    )


def test_a_fifo_in_place_of_a_density_matrix_is_refused_without_waiting(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    a, _b = _two_qex_runs(root)
    rho = root / a.density_matrix_path
    rho.unlink()
    os.mkfifo(rho)
    done = qex(root, "export", a.run_id, str(tmp_path / "a.npy"), timeout=60)  # an open that waited would hang
    assert (done.returncode, done.stderr.splitlines()) == (
        1,
        [
            f"Error: run {a.run_id} artifact 'density_matrix': its file {a.density_matrix_path!r} is not a regular "
            "file (a FIFO, a device or a symlink); refused"
        ],
    )
    done = alex("--store", str(root), "verify", timeout=60)
    assert done.returncode == 1 and done.stdout.splitlines()[0] == (
        f"refused: run {a.run_id} artifact 'density_matrix' at {a.density_matrix_path!r}: is not a regular file "
        "(a FIFO, a device or a symlink)"
    )


def _logged_store(tmp_path: Path) -> tuple[Path, str, Path]:
    """A store with one run: a file artifact, a directory artifact (two files) and a dataset file."""
    root = tmp_path / "store"
    scratch = tmp_path / "scratch"
    (scratch / "ckpt").mkdir(parents=True)
    (scratch / "model.txt").write_text("weights")
    (scratch / "ckpt" / "a.bin").write_bytes(b"\x00\x01")
    (scratch / "ckpt" / "b.bin").write_bytes(b"\x02")
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n3,4\n")
    with alexandria.start_run(experiment="verify", store=root, capture=False) as run:
        run.log_artifact(scratch / "model.txt", type="model")
        run.log_artifact(scratch / "ckpt", type="checkpoint")
        run.log_dataset(str(data), role="train")
    return root, run.id, data


def test_verify_lists_missing_and_changed_files_and_exits_1(tmp_path: Path) -> None:
    root, rid, data = _logged_store(tmp_path)
    done = alex("--store", str(root), "verify")
    assert (done.returncode, done.stdout) == (
        0,
        "checked 3 recorded file(s) of 1 run(s): all match their logged size and SHA-256\n",
    ), done.stderr
    (root / "artifacts" / rid / "model.txt").unlink()
    (root / "artifacts" / rid / "ckpt" / "b.bin").write_bytes(b"\x03")
    data.write_text("x,y\n1,2\n3,5\n")  # same size, another value
    done = alex("--store", str(root), "verify")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"changed: run {rid} artifact 'ckpt' at 'artifacts/{rid}/ckpt': its SHA-256 is ")
    assert lines[1].startswith(f"changed: run {rid} dataset 'train.csv (train)' at {str(data)!r}: its SHA-256 is ")
    assert lines[2:] == [
        f"missing: run {rid} artifact 'model.txt' at 'artifacts/{rid}/model.txt': missing",
        "checked 3 recorded file(s) of 1 run(s): 2 changed, 1 missing, 0 refused",
    ]
    done = alex("--store", str(root), "verify", "--format", "json")
    assert done.returncode == 1
    found = json.loads(done.stdout)
    assert (found["checked"], found["ok"], found["changed"], found["missing"], found["refused"]) == (3, 0, 2, 1, 0)
    assert {(f["name"], f["status"]) for f in found["files"]} == {
        ("ckpt", "changed"),
        ("model.txt", "missing"),
        ("train.csv (train)", "changed"),
    }
    assert done.stderr == "checked 3 recorded file(s) of 1 run(s): 2 changed, 1 missing, 0 refused\n"
    done = alex("--store", str(root), "verify", "--format", "csv")
    assert done.stdout.splitlines()[0] == "run_id,kind,name,path,status,detail"
    assert f"{rid},artifact,model.txt,artifacts/{rid}/model.txt,missing,missing" in done.stdout.splitlines()
    done = alex("--store", str(root), "verify", "0" * 8)
    refused = "Error: no run with id or name '00000000'; `alex runs` lists the runs\n"
    assert (done.returncode, done.stderr) == (1, refused)


def test_the_dashboard_serves_a_changed_artifact_with_a_warning(store: Store) -> None:
    """Served all the same (it is the user's file), but the run page and the response's header say it changed:
    its size on every request; its hash when the run page is viewed, once per version of the file."""
    from alexandria.ui import BackgroundServer

    scratch = store.root.parent / "scratch"
    scratch.mkdir()
    (scratch / "model.txt").write_text("weights")
    with alexandria.start_run(experiment="served", capture=False) as run:
        run.log_artifact(scratch / "model.txt")
    served = store.artifact_dir(run.id) / "model.txt"
    assert query(store, "SELECT count(*) FROM artifact") == [(1,)]  # folded before the server reads
    with BackgroundServer(store, fold=False) as server:
        url = Client(server.url)
        status, headers, body = url.request("GET", f"/artifact/{run.id}/model.txt")
        assert (status, body, "x-alexandria-integrity" in headers) == (200, b"weights", False)
        status, page = url.get(f"/run/{run.id}")
        assert status == 200 and b"changed since it was logged" not in page
        served.write_text("weighs!")  # the same size: only its hash tells
        status, headers, body = url.request("GET", f"/artifact/{run.id}/model.txt")
        assert (status, body, "x-alexandria-integrity" in headers) == (200, b"weighs!", False)  # not hashed yet
        status, page = url.get(f"/run/{run.id}")
        assert b"changed since it was logged: its SHA-256 differs from the logged one: run <code>alex verify" in page
        status, headers, body = url.request("GET", f"/artifact/{run.id}/model.txt")
        assert (status, body) == (200, b"weighs!")
        assert (
            headers["x-alexandria-integrity"] == "changed since it was logged: its SHA-256 differs from the logged one"
        )
        served.write_text("weights, v2")
        status, headers, body = url.request("HEAD", f"/artifact/{run.id}/model.txt")
        assert headers["x-alexandria-integrity"] == "changed since it was logged: 11 bytes, 7 logged"
        served.write_text("weights")  # back as logged
        status, headers, body = url.request("GET", f"/artifact/{run.id}/model.txt")
        assert (status, body, "x-alexandria-integrity" in headers) == (200, b"weights", False)
        assert b"changed since it was logged" not in url.get(f"/run/{run.id}")[1]


def test_a_dataset_file_is_checked_where_the_run_read_it(tmp_path: Path) -> None:
    """A dataset's path is the user's own file, outside the store: found there, read only if regular."""
    root, rid, data = _logged_store(tmp_path)
    data.unlink()
    os.mkfifo(data)  # a reader that opened it for reading would wait for a writer forever
    done = alex("--store", str(root), "verify", timeout=60)
    assert (done.returncode, done.stdout.splitlines()) == (
        1,
        [
            f"refused: run {rid} dataset 'train.csv (train)' at {str(data)!r}: is not a regular file, or unreadable",
            "checked 3 recorded file(s) of 1 run(s): 0 changed, 0 missing, 1 refused",
        ],
    )
    data.unlink()
    done = alex("--store", str(root), "verify", "--format", "csv", timeout=60)
    assert done.returncode == 1
    assert f"{rid},dataset,train.csv (train),{data},missing,missing" in done.stdout.splitlines()
    assert done.stderr == "checked 3 recorded file(s) of 1 run(s): 0 changed, 1 missing, 0 refused\n"


def test_a_directory_artifact_is_hashed_as_logged_by_every_version(tmp_path: Path) -> None:
    """`alex verify` hashes a directory as `log_artifact` always has: each file's relative path, NUL, bytes,
    in path order by components ("a/b" before "a-c", unlike plain text order), so older logs verify too."""
    src = tmp_path / "tree"
    (src / "a").mkdir(parents=True)
    (src / "a" / "b.bin").write_bytes(b"\x01" * 3)
    (src / "a-c.bin").write_bytes(b"\x02")
    (src / ".hidden").write_text("h")
    root = tmp_path / "store"
    with alexandria.start_run(experiment="tree", store=root, capture=False) as run:
        run.log_artifact(src, name="tree")
    expected = hashlib.sha256()
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        expected.update(f.relative_to(src).as_posix().encode() + b"\0" + f.read_bytes())
    logged = query(Store.open(root), "SELECT sha256, size FROM artifact")
    assert logged == [(expected.hexdigest(), 5)]
    done = alex("--store", str(root), "verify")
    assert (done.returncode, done.stdout) == (
        0,
        "checked 1 recorded file(s) of 1 run(s): all match their logged size and SHA-256\n",
    )
    (root / "artifacts" / run.id / "tree" / "a" / "link").symlink_to(src / "a-c.bin")
    done = alex("--store", str(root), "verify")
    assert done.returncode == 1 and done.stdout.splitlines()[0].startswith(
        f"refused: run {run.id} artifact 'tree' at 'artifacts/{run.id}/tree': holds something that is not a "
        "regular file (a/link in "
    )
