"""describe_dataset on real files and in-memory data, checked against independently computed truth."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alexandria.dataset import DatasetInfo, describe_dataset
from alexandria.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[1]
ACCEPTED = "a CSV (.csv), TSV (.tsv, .tab), NumPy (.npy, .npz) or Parquet (.parquet, .pq) file"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_json_able(info: DatasetInfo) -> None:
    assert json.loads(json.dumps(dataclasses.asdict(info))) == dataclasses.asdict(info)


def array_rule_hash(array: np.ndarray) -> str:
    """The documented ndarray hash, computed independently (tobytes() copies in C order)."""
    dtype_text = repr(array.dtype.descr) if array.dtype.names is not None else array.dtype.str
    return hashlib.sha256(dtype_text.encode() + str(array.shape).encode() + array.tobytes(order="C")).hexdigest()


# -- CSV / TSV -----------------------------------------------------------------------
CSV_TEXT = (
    "id,name,score,ok,n,mixed,blank\n"
    '1,"Smith, John",0.5,true,7,1,\n'
    '2,"two\nlines, and a comma",nan,False,,2.5,\n'
    '3,"say ""hi""",inf,TRUE,9,3,\n'
    "-4,Bob,1e3,false,10,4,\n"
    "\n"
    "\n"
)


def test_csv_rows_columns_types_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(CSV_TEXT.encode())
    info = describe_dataset(path)
    assert info.name == "data.csv"
    assert info.path == os.path.abspath(path)
    assert info.format == "csv"
    assert info.num_rows == 4
    assert info.num_columns == 7
    assert info.schema == {
        "id": "integer",
        "name": "string",
        "score": "float",
        "ok": "boolean",
        "n": "integer",
        "mixed": "float",
        "blank": "empty",
    }
    assert info.hash == sha256_of(path)
    assert info.size == len(CSV_TEXT.encode())
    # pandas reads the same rows and columns
    frame = pd.read_csv(path)
    assert (info.num_rows, info.num_columns) == frame.shape
    assert list(info.schema) == list(frame.columns)
    assert_json_able(info)


def test_name_str_path_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    info = describe_dataset("data.csv", name="train split")
    assert info.name == "train split"
    assert info.path == str(tmp_path / "data.csv")


def test_tsv_with_bom_crlf_and_uppercase_suffix(tmp_path: Path) -> None:
    text = '\ufeffword\tcount\tweight\r\nhello, world\t3\t0.25\r\n"tab\tinside"\t4\t1\r\n'
    for filename in ("words.TSV", "words.tab"):
        path = tmp_path / filename
        path.write_bytes(text.encode("utf-8"))
        info = describe_dataset(path)
        assert info.format == "tsv"
        assert (info.num_rows, info.num_columns) == (2, 3)
        assert info.schema == {"word": "string", "count": "integer", "weight": "float"}
        assert info.hash == sha256_of(path)


def test_csv_edge_shapes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    info = describe_dataset(empty)
    assert (info.num_rows, info.num_columns, info.schema, info.size) == (0, 0, {}, 0)
    assert info.hash == hashlib.sha256(b"").hexdigest()

    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    assert describe_dataset(header_only).schema == {"a": "empty", "b": "empty"}

    repeated = tmp_path / "repeated.csv"
    repeated.write_text("a,a,b,a\n1,x,true,  \n")
    info = describe_dataset(repeated)
    assert info.schema == {"a": "integer", "a.1": "string", "b": "boolean", "a.2": "empty"}
    assert info.num_columns == 4


def test_csv_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text('a,b\n"multi\nline",2\n3,4,5\n6,7\n')
    with pytest.raises(InvalidInputError, match=r"ragged\.csv.*line 4 has 3 fields but the header has 2"):
        describe_dataset(path)
    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInputError, match=r"short\.csv.*line 3 has 1 fields"):
        describe_dataset(short)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("name,city\nJosé,Zürich\n".encode("latin-1"))
    with pytest.raises(
        InvalidInputError, match=r"latin1\.csv.*not UTF-8 text \(byte 0xe9 on line 2\); re-save"
    ) as caught:
        describe_dataset(path)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)
    # far into the file, past the first 1 MiB chunk, with a UTF-8 character split across the chunk boundary
    late = tmp_path / "late.csv"
    head = b"a,b\n" + b"1,2\n" * 5000
    late.write_bytes(head + b"x," + b"y" * (2**20 - len(head) - 3) + "é".encode() + b"\xff\n")
    with pytest.raises(InvalidInputError, match=r"late\.csv.*\(byte 0xff on line 5002\)"):
        describe_dataset(late)


def test_csv_unclosed_quote(tmp_path: Path) -> None:
    """An open quote would swallow the rest of the file into one field: an error, not a wrong row count."""
    path = tmp_path / "open.csv"
    path.write_text('a,b\n1,2\n3,"never closed\n4,5\n')
    with pytest.raises(InvalidInputError, match=r"open\.csv.*record starting on line 3.*check its quotes"):
        describe_dataset(path)


def test_big_csv_streams_in_bounded_memory(tmp_path: Path) -> None:
    """~20 MB of CSV is described with a few MB of Python allocation at most: it is never read whole."""
    pad = "x" * 100
    rows = "".join(f"{i},{pad}\n" for i in range(200_000))
    path = tmp_path / "big.csv"
    path.write_text("id,text\n" + rows)
    expected = sha256_of(path)
    size = path.stat().st_size
    assert size > 20_000_000
    del rows
    tracemalloc.start()
    try:
        info = describe_dataset(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"peak Python allocation {peak} bytes"
    assert (info.num_rows, info.num_columns, info.size, info.hash) == (200_000, 2, size, expected)
    assert info.schema == {"id": "integer", "text": "string"}


# -- NumPy files ---------------------------------------------------------------------
def test_npy_2d_float(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(15, dtype=np.float64).reshape(5, 3))
    info = describe_dataset(path)
    assert (info.format, info.num_rows, info.num_columns) == ("npy", 5, 3)
    assert info.schema == {"dtype": "float64", "shape": [5, 3]}
    assert info.hash == sha256_of(path)
    assert info.size == path.stat().st_size
    assert_json_able(info)


def test_npy_1d_int_0d_and_structured(tmp_path: Path) -> None:
    ints = tmp_path / "ints.NPY"
    with open(ints, "wb") as f:  # np.save(path) would append ".npy" to an upper-case suffix
        np.save(f, np.arange(7, dtype=np.int32))
    info = describe_dataset(ints)
    assert (info.num_rows, info.num_columns) == (7, 1)
    assert info.schema == {"dtype": "int32", "shape": [7]}

    scalar = tmp_path / "scalar.npy"
    np.save(scalar, np.array(2.5))
    assert (describe_dataset(scalar).num_rows, describe_dataset(scalar).num_columns) == (1, 1)

    records = tmp_path / "records.npy"
    dtype = np.dtype([("id", "<i8"), ("score", "<f4"), ("label", "<U3")])
    np.save(records, np.zeros(4, dtype=dtype))
    info = describe_dataset(records)
    assert (info.num_rows, info.num_columns) == (4, 3)
    assert info.schema == {
        "dtype": str(dtype),
        "shape": [4],
        "fields": {"id": "int64", "score": "float32", "label": "<U3"},
    }
    assert info.hash == sha256_of(records)
    assert_json_able(info)


@pytest.mark.filterwarnings("ignore:Stored array in format 3.0")
def test_npy_format_3_header(tmp_path: Path) -> None:
    """Field names outside Latin-1 make numpy write a version 3.0 header; it is still described."""
    records = np.zeros(3, dtype=[("名前", "<i4"), ("x", "<f8")])
    path = tmp_path / "utf8.npy"
    np.save(path, records)
    assert path.read_bytes()[6:8] == bytes([3, 0])
    info = describe_dataset(path)
    assert (info.num_rows, info.num_columns) == (3, 2)
    assert info.schema["fields"] == {"名前": "int32", "x": "float64"}
    archive = tmp_path / "utf8.npz"
    np.savez(archive, records=records, other=np.zeros(3))
    info = describe_dataset(archive)
    assert info.schema["records"]["fields"] == {"名前": "int32", "x": "float64"}
    assert info.num_rows == 3


def test_npy_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match=r"objects\.npy.*Python objects.*unpickling"):
        describe_dataset(path)


def test_npy_not_numpy(tmp_path: Path) -> None:
    path = tmp_path / "fake.npy"
    path.write_bytes(b"not an array at all")
    with pytest.raises(InvalidInputError, match=r"fake\.npy.*not a valid \.npy file"):
        describe_dataset(path)


def test_big_npy_hash(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.arange(2_500_000, dtype=np.float64))  # 20 MB
    info = describe_dataset(path)
    assert info.hash == sha256_of(path)
    assert info.size == path.stat().st_size > 20_000_000
    assert info.num_rows == 2_500_000


def test_npz_shared_and_differing_first_dims(tmp_path: Path) -> None:
    same = tmp_path / "same.npz"
    np.savez(same, x=np.zeros((6, 4), dtype=np.float32), y=np.arange(6))
    info = describe_dataset(same)
    assert (info.format, info.num_rows, info.num_columns) == ("npz", 6, 2)
    assert info.schema == {
        "x": {"dtype": "float32", "shape": [6, 4]},
        "y": {"dtype": "int64", "shape": [6]},
    }
    assert info.hash == sha256_of(same)
    assert info.size == same.stat().st_size
    assert_json_able(info)

    differing = tmp_path / "differing.npz"
    np.savez_compressed(differing, train=np.zeros((8, 2)), test=np.zeros((3, 2)))
    info = describe_dataset(differing)
    assert (info.num_rows, info.num_columns) == (None, 2)
    assert info.schema["test"] == {"dtype": "float64", "shape": [3, 2]}

    objects = tmp_path / "objects.npz"
    np.savez(objects, ok=np.zeros(2), bad=np.array([None], dtype=object))
    with pytest.raises(InvalidInputError, match=r"'bad' of .*objects\.npz.*Python objects"):
        describe_dataset(objects)

    not_zip = tmp_path / "not_zip.npz"
    not_zip.write_bytes(b"plain bytes")
    with pytest.raises(InvalidInputError, match=r"not_zip\.npz.*not a valid \.npz file"):
        describe_dataset(not_zip)


# -- Parquet -------------------------------------------------------------------------
def test_parquet_metadata(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2, 3], "b": [0.5, None, 2.0], "c": ["x", "y", "z"], "d": [[1], [], [2, 3]]})
    for filename in ("t.parquet", "t.pq"):
        path = tmp_path / filename
        pq.write_table(table, path)
        info = describe_dataset(path)
        assert (info.format, info.num_rows, info.num_columns) == ("parquet", 3, 4)
        assert info.schema == {"a": "int64", "b": "double", "c": "string", "d": "list<element: int64>"}
        assert info.hash == sha256_of(path)
        assert info.size == path.stat().st_size
        assert_json_able(info)

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 but not really")
    with pytest.raises(InvalidInputError, match=r"broken\.parquet.*not a valid Parquet file"):
        describe_dataset(broken)


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InvalidInputError, match=r"t\.parquet.*reading Parquet needs pyarrow: pip install pyarrow"):
        describe_dataset(path)


# -- in-memory data ------------------------------------------------------------------
def test_ndarray_hash_rule_and_layout_independence() -> None:
    array = np.arange(24, dtype=np.float32).reshape(4, 6)
    info = describe_dataset(array)
    assert (info.name, info.path, info.format) == ("array", None, "ndarray")
    assert (info.num_rows, info.num_columns, info.size) == (4, 6, array.nbytes)
    assert info.schema == {"dtype": "float32", "shape": [4, 6]}
    assert info.hash == array_rule_hash(array)
    assert_json_able(info)

    view = array[:, ::2]
    assert not view.flags.c_contiguous
    assert describe_dataset(view).hash == describe_dataset(view.copy()).hash == array_rule_hash(view.copy())
    fortran = np.asfortranarray(array)
    assert describe_dataset(fortran).hash == info.hash
    # same bytes, other shape or dtype: another dataset
    assert describe_dataset(array.reshape(6, 4)).hash != info.hash
    assert describe_dataset(array.view(np.int32)).hash != info.hash
    changed = array.copy()
    changed[3, 5] += 1
    assert describe_dataset(changed).hash != info.hash


def test_ndarray_structured_datetime_and_object() -> None:
    records = np.array([(1, 0.5), (2, 1.5)], dtype=[("id", "<i4"), ("w", "<f8")])
    info = describe_dataset(records, name="recs")
    assert (info.name, info.num_rows, info.num_columns) == ("recs", 2, 2)
    assert info.schema["fields"] == {"id": "int32", "w": "float64"}
    assert info.hash == array_rule_hash(records)

    times = np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[D]")
    assert describe_dataset(times).hash == array_rule_hash(times)

    with pytest.raises(InvalidInputError, match="Python objects"):
        describe_dataset(np.array([1, "a"], dtype=object))


def dataframe_rule_hash(df: pd.DataFrame) -> str:
    columns = [[str(c), str(t)] for c, t in df.dtypes.items()]
    rows = pd.util.hash_pandas_object(df, index=True).to_numpy().astype("<u8")
    return hashlib.sha256(json.dumps(columns).encode() + rows.tobytes()).hexdigest()


def make_frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 1.5, float("nan")], "label": ["a", "b", "c"]})


def test_dataframe() -> None:
    df = make_frame()
    info = describe_dataset(df)
    assert (info.name, info.path, info.format) == ("dataframe", None, "dataframe")
    assert (info.num_rows, info.num_columns) == (3, 3)
    assert info.schema == {"x": "int64", "y": "float64", "label": str(df["label"].dtype)}
    assert info.size == int(df.memory_usage(deep=False).sum())
    assert info.hash == dataframe_rule_hash(df)
    assert_json_able(info)

    assert describe_dataset(make_frame()).hash == info.hash
    changed = make_frame()
    changed.loc[1, "label"] = "B"
    assert describe_dataset(changed).hash != info.hash
    renamed = make_frame().rename(columns={"x": "z"})
    assert describe_dataset(renamed).hash != info.hash
    reindexed = make_frame().set_axis([10, 11, 12])
    assert describe_dataset(reindexed).hash != info.hash

    with pytest.raises(InvalidInputError, match="cannot hash the DataFrame: unhashable type: 'list'"):
        describe_dataset(pd.DataFrame({"a": [[1], [2]]}))


def test_pandas_and_pyarrow_stay_unimported(tmp_path: Path) -> None:
    """Describing a CSV or an array must not import the optional libraries."""
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    code = (
        "import sys, numpy as np\n"
        "from alexandria.dataset import describe_dataset\n"
        f"describe_dataset({str(path)!r}); describe_dataset(np.zeros(3))\n"
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- refused inputs ------------------------------------------------------------------
def test_missing_unknown_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    expected = re.escape(f"{str(missing)!r}: no such file; pass the path of {ACCEPTED}")
    with pytest.raises(InvalidInputError, match=expected):
        describe_dataset(missing)
    text = tmp_path / "notes.txt"
    text.write_text("a,b\n")
    with pytest.raises(InvalidInputError, match=r"notes\.txt.*unknown file type '\.txt'; pass the path of a CSV"):
        describe_dataset(text)
    bare = tmp_path / "README"
    bare.write_text("x")
    with pytest.raises(InvalidInputError, match=r"README.*no file suffix"):
        describe_dataset(bare)
    folder = tmp_path / "shards.parquet"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match=r"shards\.parquet.*it is a directory; pass the path of a CSV"):
        describe_dataset(folder)
    with pytest.raises(InvalidInputError, match="empty path"):
        describe_dataset("")


def test_os_errors_are_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the OS refuses surfaces as InvalidInputError naming the file (simulated: tests may run as root)."""
    import alexandria.dataset as dataset_module

    path = tmp_path / "locked.csv"
    path.write_text("a\n1\n")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dataset_module, "open", refuse, raising=False)
    with pytest.raises(InvalidInputError, match=r"locked\.csv.*permission denied; make it readable") as caught:
        describe_dataset(path)
    assert isinstance(caught.value.__cause__, PermissionError)


@pytest.mark.parametrize(("value", "type_name"), [([1, 2], "list"), ({"a": 1}, "dict"), (None, "NoneType"), (3, "int")])
def test_other_types_are_refused(value: Any, type_name: str) -> None:
    message = (
        f"cannot describe {type_name} as a dataset: pass a file path (CSV, TSV, .npy, .npz, Parquet), "
        "a numpy array or a pandas DataFrame"
    )
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
        describe_dataset(value)


@pytest.mark.parametrize("name", ["", "   ", 5])
def test_bad_name(name: Any) -> None:
    with pytest.raises(InvalidInputError, match="dataset name must be a non-empty string"):
        describe_dataset(np.zeros(2), name=name)


def test_errors_are_value_errors(tmp_path: Path) -> None:
    """Callers that catch ValueError keep working: InvalidInputError is one, and no raw error escapes."""
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a\n\x80\n")
    with pytest.raises(ValueError) as caught:
        describe_dataset(path)
    assert type(caught.value) is InvalidInputError
