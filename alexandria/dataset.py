"""Describe one dataset (shape, schema, content hash) so a run can record exactly what data produced it.

`describe_dataset(data, name=None)` accepts:

* A path (`str` or `os.PathLike`) to a file. The format comes from the suffix,
  case-insensitive: `.csv`; `.tsv` or `.tab`; `.npy`; `.npz`; `.parquet` or
  `.pq`. `hash` is the SHA-256 of the file's bytes (what `sha256sum` prints),
  read in 1 MiB chunks, so a file of any size is hashed without being loaded;
  `size` is the number of bytes hashed; `path` is `os.path.abspath` of the
  path (symlinks are not resolved).

  - CSV / TSV: read once, streaming, as UTF-8 (a leading BOM is dropped); the
    same pass hashes and parses. Delimiter `,` or tab, `"` quotes (a quoted
    field may hold the delimiter and newlines). The first row is the header:
    `num_columns` is its length, `num_rows` the number of data rows. Blank
    lines are skipped wherever they are (as pandas does). `schema` maps each
    column to a type inferred over all rows: "integer" if `int()` parses every
    value, else "float" if `float()` does ("nan", "inf" included), else
    "boolean" if every value is true/false (any case), else "string". Empty
    (or all-whitespace) cells are ignored; a column with only empty cells is
    "empty". An empty file has 0 rows, 0 columns and an empty schema. Errors,
    each naming the file and line: a row with a different number of fields
    than the header; bytes that are not UTF-8; a quote left open at the end of
    the file or followed by text before the delimiter; a field over the csv
    module's limit (128 KiB).
  - `.npy`: only the header is read. `schema` is {"dtype": str(dtype),
    "shape": [...]}, plus "fields": {field: str(type)} for a structured dtype.
    `num_rows` is shape[0] (1 for a 0-d array); `num_columns` is the number of
    fields for a structured dtype, else shape[1] for 2-d and up, else 1. An
    object array (readable only by unpickling) is an error.
  - `.npz`: only each member's header is read. `schema` is {array name:
    schema as for `.npy`}; `num_columns` is the number of arrays; `num_rows`
    is the first dimension the arrays share (a 0-d array counts as 1), None
    if they differ or there are no arrays.
  - Parquet: only the footer metadata is read (needs pyarrow). `schema` is
    {column: str(arrow type)} over the top-level columns.

* A `numpy.ndarray`: `path` None, `format` "ndarray", `name` "array" unless
  given, schema / rows / columns as for `.npy`, `size` = nbytes. `hash` is
  SHA-256 over `dtype.str` (`repr(dtype.descr)` for a structured dtype) as
  UTF-8, then `str(shape)` as UTF-8 (e.g. "(3, 4)"), then the array's bytes in
  C order. It depends on the values, not on the memory layout: a strided view
  hashes equal to its contiguous copy. Object arrays are an error.

* A pandas DataFrame: `path` None, `format` "dataframe", `name` "dataframe"
  unless given; schema {str(column): str(dtype)}; `size` =
  `df.memory_usage(deep=False).sum()`. `hash` is SHA-256 over
  `json.dumps([[str(column), str(dtype)], ...])` as UTF-8, then the bytes of
  `pandas.util.hash_pandas_object(df, index=True)` as little-endian uint64 -
  pandas' row hash, which uses a fixed key: stable across processes and
  machines for the same data and pandas version, but a new pandas version may
  change it.

In every schema, a column name that repeats (CSV header, Parquet, DataFrame)
gets a suffix as pandas gives it, `a`, `a.1`, `a.2`, so no column is lost.

Anything else, an unknown suffix, a missing file, a directory or an unreadable
file raises `InvalidInputError` naming the input and saying what is accepted.
No input is ever loaded whole into memory by this module, except that a `.npz`
member saved with the rare `.npy` format 3.0 header is loaded to learn its
shape.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .errors import InvalidInputError
from .files import CHUNK_SIZE, hash_file

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from numpy import dtype, ndarray

ACCEPTED = "a CSV (.csv), TSV (.tsv, .tab), NumPy (.npy, .npz) or Parquet (.parquet, .pq) file"
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a run records about one dataset; every field is JSON-able."""

    name: str
    path: str | None
    format: str
    num_rows: int | None
    num_columns: int | None
    schema: dict[str, Any]
    hash: str
    size: int | None


def describe_dataset(data: Any, name: str | None = None) -> DatasetInfo:
    """Describe a file path, numpy array or pandas DataFrame; the rules are in the module docstring."""
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInputError(f"dataset name must be a non-empty string, got {name!r}")
    if isinstance(data, (str, os.PathLike)):
        return _describe_file(data, name)
    # An array or DataFrame can only exist once its library is imported: never import one just to look.
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(data, numpy.ndarray):
        return _describe_array(data, name)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return _describe_dataframe(data, name)
    raise InvalidInputError(
        f"cannot describe {type(data).__name__} as a dataset: pass a file path (CSV, TSV, .npy, .npz, Parquet), "
        "a numpy array or a pandas DataFrame"
    )


# -- files -------------------------------------------------------------------------
class _HashingReader(io.RawIOBase):
    """Reads a file in 1 MiB chunks, feeds each chunk to SHA-256, and hands its bytes on in any piece size.

    Under a text decoder, it lets one pass over a file both parse and hash it.
    """

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()
        self._chunk = bytearray(CHUNK_SIZE)
        self._view = memoryview(self._chunk)
        self._start = self._end = 0  # the part of the chunk not handed on yet
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if self._start == self._end:
            n = self._raw.readinto(self._chunk)
            if not n:
                return 0
            self._digest.update(self._view[:n])
            self.size += n
            self._start, self._end = 0, n
        out = memoryview(buffer).cast("B")
        n = min(len(out), self._end - self._start)
        out[:n] = self._view[self._start : self._start + n]
        self._start += n
        return n

    def finish(self) -> str:
        """Hash the rest of the file, whatever was consumed; returns the hex digest of all of it."""
        while n := self._raw.readinto(self._chunk):
            self._digest.update(self._view[:n])
            self.size += n
        self._start = self._end = 0
        return self._digest.hexdigest()


def _describe_file(data: str | os.PathLike[Any], name: str | None) -> DatasetInfo:
    given = os.fsdecode(os.fspath(data))
    if not given:
        raise InvalidInputError(f"cannot describe an empty path as a dataset: pass the path of {ACCEPTED}")
    path = os.path.abspath(given)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"cannot describe {path!r}: no such file; pass the path of {ACCEPTED}") from exc
    except OSError as exc:
        raise _read_error(path, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"cannot describe {path!r}: it is a directory; pass the path of {ACCEPTED}")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"cannot describe {path!r}: it is not a regular file; pass the path of {ACCEPTED}")
    suffix = os.path.splitext(path)[1]
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        kind = f"unknown file type {suffix!r}" if suffix else "no file suffix to tell its format"
        raise InvalidInputError(f"cannot describe {path!r}: {kind}; pass the path of {ACCEPTED}")
    describe = _FILE_READERS[fmt]
    try:
        return describe(path, fmt, name or os.path.basename(path))
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _read_error(path: str, exc: OSError) -> InvalidInputError:
    if isinstance(exc, PermissionError):
        return InvalidInputError(f"cannot read {path!r}: permission denied; make it readable or pass another file")
    return InvalidInputError(f"cannot read {path!r}: {exc.strerror or exc}; pass the path of {ACCEPTED}")


# -- CSV / TSV -----------------------------------------------------------------------
def _describe_csv(path: str, fmt: str, name: str) -> DatasetInfo:
    """Hash and parse in one streaming pass: the hashing reader sits under the text decoder."""
    delimiter = "\t" if fmt == "tsv" else ","
    with open(path, "rb", buffering=0) as raw:
        hashing = _HashingReader(raw)
        with io.TextIOWrapper(io.BufferedReader(hashing), encoding="utf-8-sig", newline="") as text:
            # strict: an unclosed quote is an error, not a field that swallows the rest of the file
            reader = csv.reader(text, delimiter=delimiter, strict=True)
            try:
                header, kinds, num_rows = _scan_csv(path, reader)
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"cannot describe {path!r}: it is not UTF-8 text ({_first_undecodable(path)}); re-save it as UTF-8"
                ) from exc
            digest = hashing.finish()
    return DatasetInfo(
        name=name,
        path=path,
        format=fmt,
        num_rows=num_rows,
        num_columns=len(header),
        schema=dict(zip(_unique_names(header), kinds, strict=True)),
        hash=digest,
        size=hashing.size,
    )


def _scan_csv(path: str, reader: Any) -> tuple[list[str], list[str], int]:
    """Header, inferred column types and data-row count; `reader` is a csv.reader."""
    header: list[str] | None = None
    kinds: list[str] = []
    num_rows = 0
    line = 0  # reader.line_num after the previous record: the next record starts on the line after
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row:
                continue  # a blank line
            if header is None:
                header = row
                kinds = ["empty"] * len(header)
                continue
            if len(row) != len(header):
                raise InvalidInputError(
                    f"cannot describe {path!r}: line {start} has {len(row)} fields but the header has "
                    f"{len(header)}; quote fields that contain the delimiter, or fix the row"
                )
            num_rows += 1
            for i, value in enumerate(row):
                if value:
                    kind = kinds[i]
                    if kind != "string":
                        kinds[i] = _widen(kind, value)
    except csv.Error as exc:
        raise InvalidInputError(
            f"cannot parse {path!r}: the record starting on line {line + 1}: {exc}; check its quotes"
        ) from exc
    return header or [], kinds, num_rows


def _first_undecodable(path: str) -> str:
    """Where the first byte that is not UTF-8 sits ("byte 0xff on line 3"); a second pass, on the error path only."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as fp:
        while chunk := fp.read(CHUNK_SIZE):
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks; never a newline
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = max(exc.start - pending, 0)
                line += chunk.count(b"\n", 0, at)
                return f"byte 0x{chunk[at]:02x} on line {line}"
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"a truncated character at the end, line {line}"
    return "the file changed while it was read"


def _widen(kind: str, value: str) -> str:
    """The type a column has once `value` is seen, given its type so far (integer < float; boolean apart)."""
    if kind in ("empty", "integer"):
        try:
            int(value)
            return "integer"
        except ValueError:
            pass
    if kind in ("empty", "integer", "float"):
        try:
            float(value)
            return "float"
        except ValueError:
            pass
    if kind in ("empty", "boolean") and value.strip().lower() in ("true", "false"):
        return "boolean"
    if value.isspace():
        return kind  # an all-whitespace cell counts as empty
    return "string"


def _unique_names(names: Iterable[str]) -> list[str]:
    """Column names with repeats made distinct as pandas does: a, a.1, a.2."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    unique = []
    for name in names:
        candidate = name
        while candidate in seen:
            counts[name] = counts.get(name, 0) + 1
            candidate = f"{name}.{counts[name]}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


# -- NumPy ---------------------------------------------------------------------------
def _array_schema(shape: tuple[int, ...], dt: dtype[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"dtype": str(dt), "shape": [int(n) for n in shape]}
    if dt.names is not None:
        schema["fields"] = {field: str(dt.fields[field][0]) for field in dt.names} if dt.fields else {}
    return schema


def _array_counts(shape: tuple[int, ...], dt: dtype[Any]) -> tuple[int, int]:
    """(num_rows, num_columns) of an array: rows along the first axis, fields or the second axis as columns."""
    rows = int(shape[0]) if shape else 1
    if dt.names is not None:
        return rows, len(dt.names)
    return rows, int(shape[1]) if len(shape) >= 2 else 1


def _object_error(what: str) -> InvalidInputError:
    return InvalidInputError(
        f"cannot describe {what}: it holds Python objects (dtype object), which can only be read by unpickling; "
        "convert it to a numeric, string or structured dtype"
    )


def _npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], dtype[Any]] | None:
    """Shape and dtype from a .npy header without reading the data; None for a header version read only by loading."""
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(fp)
    if version == (1, 0):
        shape, _, dt = npy_format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dt = npy_format.read_array_header_2_0(fp)
    else:
        return None
    return tuple(shape), dt


def _describe_npy(path: str, fmt: str, name: str) -> DatasetInfo:
    import numpy as np

    try:
        with open(path, "rb") as fp:
            header = _npy_header(fp)
        if header is None:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            header = array.shape, array.dtype
    except ValueError as exc:
        raise InvalidInputError(f"cannot describe {path!r}: not a valid .npy file ({exc})") from exc
    shape, dt = header
    if dt.hasobject:
        raise _object_error(repr(path))
    rows, columns = _array_counts(shape, dt)
    digest, size = hash_file(path)
    return DatasetInfo(name, path, fmt, rows, columns, _array_schema(shape, dt), digest, size)


def _describe_npz(path: str, fmt: str, name: str) -> DatasetInfo:
    from numpy.lib import format as npy_format

    schema: dict[str, Any] = {}
    first_dims: set[int] = set()
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    raise InvalidInputError(
                        f"cannot describe {path!r}: member {member!r} is not a .npy array; "
                        "write .npz files with numpy.savez or numpy.savez_compressed"
                    )
                array_name = member[: -len(".npy")]
                with archive.open(member) as fp:
                    header = _npy_header(fp)
                if header is None:  # a format 3.0 header: load this one array to learn its shape
                    with archive.open(member) as fp:
                        array = npy_format.read_array(fp, allow_pickle=False)
                    header = array.shape, array.dtype
                shape, dt = header
                if dt.hasobject:
                    raise _object_error(f"array {array_name!r} of {path!r}")
                schema[array_name] = _array_schema(shape, dt)
                first_dims.add(_array_counts(shape, dt)[0])
    except InvalidInputError:
        raise
    except (ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        raise InvalidInputError(f"cannot describe {path!r}: not a valid .npz file ({exc})") from exc
    digest, size = hash_file(path)
    rows = first_dims.pop() if len(first_dims) == 1 else None
    return DatasetInfo(name, path, fmt, rows, len(schema), schema, digest, size)


def _describe_array(array: ndarray[Any, Any], name: str | None) -> DatasetInfo:
    import numpy as np

    dt = array.dtype
    if dt.hasobject:
        raise _object_error("a numpy array")
    digest = hashlib.sha256()
    digest.update((repr(dt.descr) if dt.names is not None else dt.str).encode())
    digest.update(str(array.shape).encode())
    # The bytes in C order: no copy when the array is already C-contiguous. A uint8 view (rather than
    # memoryview(...).cast("B")) also covers dtypes the buffer protocol refuses, such as datetime64.
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    rows, columns = _array_counts(array.shape, dt)
    return DatasetInfo(
        name or "array",
        None,
        "ndarray",
        rows,
        columns,
        _array_schema(array.shape, dt),
        digest.hexdigest(),
        array.nbytes,
    )


# -- Parquet -------------------------------------------------------------------------
def _describe_parquet(path: str, fmt: str, name: str) -> DatasetInfo:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InvalidInputError(
            f"cannot describe {path!r}: reading Parquet needs pyarrow: pip install pyarrow "
            "(or pip install 'alexandria[data]')"
        ) from exc
    try:
        with open(path, "rb") as fp, pq.ParquetFile(fp) as parquet:  # a Python open() reports OS errors plainly
            num_rows = int(parquet.metadata.num_rows)
            fields = [(field.name, str(field.type)) for field in parquet.schema_arrow]
    except (ValueError, pyarrow.ArrowException) as exc:
        raise InvalidInputError(f"cannot describe {path!r}: not a valid Parquet file ({exc})") from exc
    schema = dict(zip(_unique_names(n for n, _ in fields), (t for _, t in fields), strict=True))
    digest, size = hash_file(path)
    return DatasetInfo(name, path, fmt, num_rows, len(fields), schema, digest, size)


# -- pandas --------------------------------------------------------------------------
def _describe_dataframe(df: Any, name: str | None) -> DatasetInfo:
    import numpy as np
    from pandas.util import hash_pandas_object

    columns = [[str(column), str(dt)] for column, dt in df.dtypes.items()]
    digest = hashlib.sha256(json.dumps(columns).encode())
    try:
        row_hashes = hash_pandas_object(df, index=True).to_numpy()
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"cannot hash the DataFrame: {exc}; convert unhashable cells (lists, dicts, ...) to strings first"
        ) from exc
    digest.update(np.ascontiguousarray(row_hashes, dtype="<u8").data)
    schema = dict(zip(_unique_names(c for c, _ in columns), (t for _, t in columns), strict=True))
    return DatasetInfo(
        name=name or "dataframe",
        path=None,
        format="dataframe",
        num_rows=len(df),
        num_columns=len(columns),
        schema=schema,
        hash=digest.hexdigest(),
        size=int(df.memory_usage(deep=False).sum()),
    )


_FILE_READERS: dict[str, Callable[[str, str, str], DatasetInfo]] = {
    "csv": _describe_csv,
    "tsv": _describe_csv,
    "npy": _describe_npy,
    "npz": _describe_npz,
    "parquet": _describe_parquet,
}
