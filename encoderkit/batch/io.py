"""Streaming readers (.txt/.jsonl/.csv/.parquet) and atomic shard writers (.parquet/.jsonl).

A reader never raises on a bad row: it yields a ``Record`` whose ``error`` says why (malformed
JSON, missing field, ...), so the engine decides between stopping with the file and line and
setting the row aside (``--on-error skip``). Only file-level problems (unknown format, a column
missing from the CSV header or the Parquet schema) raise ``InputError`` at once.

pyarrow is imported inside functions: ``import encoderkit.batch`` stays cheap.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError, MissingDependencyError

INPUT_FORMATS = (".txt", ".jsonl", ".csv", ".parquet")
OUTPUT_FORMATS = (".parquet", ".jsonl")
DEFAULT_TEXT_COLUMN = "text"
INT64 = (-(2**63), 2**63 - 1)


def pyarrow():
    """Import pyarrow, or say which extra installs it."""
    try:
        import pyarrow as pa
        import pyarrow.fs  # noqa: F401 - registers pa.fs
        import pyarrow.parquet  # noqa: F401 - registers pa.parquet
    except ModuleNotFoundError:
        raise MissingDependencyError("batch jobs need pyarrow; pip install 'encoderkit[batch]'") from None
    return pa


@dataclass(frozen=True)
class Record:
    """One input row.

    ``line`` is where it starts in the file, 1-based (for .parquet: its 1-based row number); ``id``
    is the id column's value or, without an id column, ``line``; ``error`` is set when the reader
    could not get a text out of the row (``text`` is then None or the raw line, for the rejects).
    """

    line: int
    id: Any
    text: str | None
    error: str | None = None
    pair: str | None = None  # the second text of a two-text task (qa: the context)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InputError(f"{path}: {what} must end in one of {', '.join(allowed)} (got {suffix or 'no suffix'!r})")
    return suffix


class Reader:
    """Streams the records of one input file.

    Args:
        path: a .txt (one text a line), .jsonl, .csv (with a header) or .parquet file.
        text_column: field/column holding the text (default "text"; .txt has none).
        id_column: field/column holding the row id; without it a row's id is its line number.
        pair_column: field/column of a second text per row (two-text tasks: qa's context).
    Raises:
        InputError: unknown format, missing file, or a column absent from the header/schema.
    """

    def __init__(self, path: str | Path, text_column: str | None = None, id_column: str | None = None,
                 pair_column: str | None = None):
        self.path = Path(path)
        self.pair_column = pair_column
        self.format = _suffix(self.path, INPUT_FORMATS, "--input")
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        if self.format == ".txt" and (text_column or id_column or pair_column):
            raise InputError(f"{self.path}: a .txt file has one text a line and no columns; "
                             "drop --text-column/--id-column or use .jsonl/.csv/.parquet")
        self.text_column = text_column or DEFAULT_TEXT_COLUMN
        self.id_column = id_column
        self.unit = "row" if self.format == ".parquet" else "line"
        self.id_type = "int64"  # line numbers
        if self.format == ".parquet":
            pa = pyarrow()
            schema = pa.parquet.ParquetFile(self.path).schema_arrow
            self._check_columns(schema.names)
            if not (pa.types.is_string(schema.field(self.text_column).type)
                    or pa.types.is_large_string(schema.field(self.text_column).type)):
                raise InputError(f"{self.path}: column {self.text_column!r} is {schema.field(self.text_column).type}, "
                                 "not a string column")
            if id_column:
                t = schema.field(id_column).type
                # a typed id column keeps its type; anything else is written as its string form
                self.id_type = "int64" if pa.types.is_integer(t) else "string"
        elif id_column:
            # .csv fields are strings; .jsonl ids keep their JSON type, set by the first valid id
            # (a later id of the other type is a bad row: 1 and "1" would otherwise merge)
            self.id_type = self._first_jsonl_id_type() if self.format == ".jsonl" else "string"
        if self.format == ".csv":
            with self._open_csv() as f:
                header = next(csv.reader(f), None)
            if header is None:
                raise InputError(f"{self.path}: empty CSV file (no header line)")
            self._check_columns(header)

    def _first_jsonl_id_type(self) -> str:
        """"int64" when the first row with a usable id has an integer id, else "string"."""
        for _, line, err in self._lines():
            if err is not None or not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue
            rid = obj.get(self.id_column) if isinstance(obj, dict) else None
            if isinstance(rid, int) and not isinstance(rid, bool) and INT64[0] <= rid <= INT64[1]:
                return "int64"
            if isinstance(rid, str):
                return "string"
        return "string"

    def where(self, line: int) -> str:
        """``path:line`` (``path row N`` for parquet) for messages."""
        return f"{self.path} row {line}" if self.unit == "row" else f"{self.path}:{line}"

    def _check_columns(self, names: list[str]) -> None:
        for flag, col in (("--text-column", self.text_column), ("--id-column", self.id_column),
                          ("the pair column", self.pair_column)):
            if col is not None and col not in names:
                raise InputError(f"{self.path}: no column {col!r} ({flag}); it has: {', '.join(names) or 'none'}")

    def count(self) -> int | None:
        """Number of records, for the progress bar's total (a cheap pass; None if unknown)."""
        if self.format == ".parquet":
            return pyarrow().parquet.ParquetFile(self.path).metadata.num_rows
        if self.format == ".csv":
            with self._open_csv() as f:
                return max(sum(1 for _ in csv.reader(f)) - 1, 0)
        n, last = 0, b"\n"
        with open(self.path, "rb") as f:
            while block := f.read(1 << 20):
                n += block.count(b"\n")
                last = block[-1:]
        return n + (last != b"\n")  # a last line without a newline

    def records(self) -> Iterator[Record]:
        """Every record, in file order."""
        return {".txt": self._txt, ".jsonl": self._jsonl, ".csv": self._csv, ".parquet": self._parquet}[self.format]()

    # ------------------------------------------------------------------ formats
    def _lines(self) -> Iterator[tuple[int, str | None, str | None]]:
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not text
                    raw = raw[3:]
                try:
                    yield n, raw.decode("utf-8").rstrip("\r\n"), None
                except UnicodeDecodeError as e:
                    yield n, None, f"not valid UTF-8 ({e.reason} at byte {e.start})"

    def _txt(self) -> Iterator[Record]:
        for n, text, err in self._lines():
            yield Record(n, n, text, err)

    def _jsonl(self) -> Iterator[Record]:
        for n, line, err in self._lines():
            if err is None and not line.strip():
                continue  # a blank line holds no record (trailing newlines, spacing)
            if err is None:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    # json's own message may end in "at" ("Unterminated string starting at")
                    err = f"malformed JSON ({e.msg}{'' if e.msg.endswith(' at') else ' at'} column {e.colno})"
                except RecursionError:
                    err = "malformed JSON (nested too deeply)"
                else:
                    if not isinstance(obj, dict):
                        err = f"a JSON {type(obj).__name__}, expected an object with a {self.text_column!r} field"
            if err is not None:  # the raw line goes to the rejects file with the reason
                yield Record(n, n if self.id_column is None else None, line, err)
                continue
            yield self._from_fields(n, obj)

    def _from_fields(self, n: int, row: dict[str, Any]) -> Record:
        rid: Any = n
        if self.id_column is not None:
            rid = row.get(self.id_column)
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                what = "missing" if self.id_column not in row else f"{type(rid).__name__}, not a string or integer"
                return Record(n, None, None, f"id field {self.id_column!r} is {what}")
            if self.id_type == "int64" and not isinstance(rid, int):
                return Record(n, None, None, f"id {rid!r} is a string, but this file's ids are integers "
                                             "(mixed id types; use one type)")
            if self.id_type == "string" and not isinstance(rid, str):
                return Record(n, None, None, f"id {rid!r} is an integer, but this file's ids are strings "
                                             "(mixed id types; use one type)")
            if isinstance(rid, int) and not INT64[0] <= rid <= INT64[1]:
                return Record(n, None, None, f"id {rid} does not fit a 64-bit integer")
        if self.text_column not in row:
            return Record(n, rid, None, f"no {self.text_column!r} field (--text-column)")
        text = row[self.text_column]
        if not isinstance(text, str):
            return Record(n, rid, None, f"field {self.text_column!r} is {type(text).__name__}, not a string")
        for what, value in (("text", text), ("id", rid)):
            if isinstance(value, str) and not _utf8(value):  # a JSON "\ud800" escape: no UTF-8 can carry it
                return Record(n, None if what == "id" else rid, None,
                              f"{what} is not valid Unicode (a lone surrogate escape such as \\ud800)")
        if self.pair_column is None:
            return Record(n, rid, text)
        pair = row.get(self.pair_column)
        if not isinstance(pair, str):
            what = "missing" if self.pair_column not in row else f"{type(pair).__name__}, not a string"
            return Record(n, rid, text, f"field {self.pair_column!r} is {what}")
        if not _utf8(pair):
            return Record(n, rid, text, f"field {self.pair_column!r} is not valid Unicode (a lone surrogate escape)")
        return Record(n, rid, text, pair=pair)

    def _open_csv(self):
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name
        return open(self.path, newline="", encoding="utf-8-sig")

    def _csv(self) -> Iterator[Record]:
        # a long document is a long field: lift the 128 KiB default (memory stays one row)
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
        with self._open_csv() as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
                start = reader.line_num + 1
                for fields in reader:
                    n, start = start, reader.line_num + 1
                    if len(fields) != len(header):
                        rid = n if self.id_column is None else None
                        yield Record(n, rid, None, f"{len(fields)} fields, the header has {len(header)}")
                        continue
                    yield self._from_fields(n, dict(zip(header, fields)))
            except UnicodeDecodeError as e:
                raise InputError(f"{self.path}: not valid UTF-8 near line {reader.line_num + 1} ({e.reason})") from None
            except csv.Error as e:
                raise InputError(f"{self.path}:{reader.line_num}: unreadable CSV ({e})") from None

    def _parquet(self) -> Iterator[Record]:
        pa = pyarrow()
        cols = list(dict.fromkeys(c for c in (self.text_column, self.id_column, self.pair_column) if c))
        n = 0
        for batch in pa.parquet.ParquetFile(self.path).iter_batches(batch_size=4096, columns=cols):
            texts = batch.column(self.text_column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column else None
            pairs = batch.column(self.pair_column).to_pylist() if self.pair_column else None
            for i, text in enumerate(texts):
                n += 1
                rid: Any = n
                if ids is not None:
                    rid = ids[i]
                    if rid is None:
                        yield Record(n, None, None, f"id column {self.id_column!r} is null")
                        continue
                    if self.id_type == "string":
                        rid = str(rid)
                if text is None:
                    yield Record(n, rid, None, f"column {self.text_column!r} is null")
                    continue
                if pairs is not None and pairs[i] is None:
                    yield Record(n, rid, text, f"column {self.pair_column!r} is null")
                    continue
                yield Record(n, rid, text, pair=None if pairs is None else pairs[i])


# --------------------------------------------------------------------------- writers

class ShardWriter:
    """Writes one output file atomically: into a temp file beside it, renamed on ``commit``.

    A crash or kill leaves at most a ``.tmp`` file (ignored and removed by the next run), never a
    half-written shard under its final name.
    """

    def __init__(self, path: Path, schema):
        self.path = Path(path)
        self.format = _suffix(self.path, OUTPUT_FORMATS, "--output")
        self.schema = schema
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._tmp = Path(tmp)
        self.rows = 0
        if self.format == ".parquet":
            os.close(fd)
            self._pq = pyarrow().parquet.ParquetWriter(self._tmp, schema)
            self._f = None
        else:
            self._pq = None
            self._f = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, table) -> None:
        """Append the rows of an Arrow table (cast to the shard's schema)."""
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        self.rows += table.num_rows
        if self._pq is not None:
            self._pq.write_table(table)
        else:
            self._f.write(jsonl_text(table))

    def commit(self) -> Path:
        """Close and rename into place."""
        if self._pq is not None:
            self._pq.close()
        else:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            (self._pq or self._f).close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def jsonl_text(table) -> str:
    """Rows of an Arrow table as JSON lines (float32 values print as the doubles they are exactly)."""
    buf = io.StringIO()
    for row in table.to_pylist():
        buf.write(json.dumps(row, ensure_ascii=False))
        buf.write("\n")
    return buf.getvalue()


def read_output(path: str | Path):
    """Read a batch job's output (.parquet or .jsonl) as an Arrow table (tests, small outputs)."""
    pa = pyarrow()
    path = Path(path)
    if path.suffix == ".parquet":
        return pa.parquet.read_table(path)
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return pa.Table.from_pylist(rows)
