"""Reading CSV and Parquet files as batches of raw rows, each with its source line.

CSV is parsed by pyarrow's streaming reader with every column read as text. Lines
that do not parse (too few or too many fields, a quote left open) come back as
parse rejects with their line numbers instead of stopping the read. A quote left
open can swallow the lines after it into one value; such a row is taken apart again
line by line, so the rows it swallowed are read on their own.

Line numbers are physical lines of the file, counting the header as line 1 and
counting the newlines inside quoted values. For Parquet the "line" is the 1-based row
number.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loaders.errors import FatalFileError

BLOCK_BYTES = 8 << 20
ENCODING_CHUNK = 16 << 20


@dataclass
class ParseReject:
    line: int
    fields: list[str]
    error: str
    raw: str


@dataclass
class RawBatch:
    table: pa.Table  # the file's columns (text for CSV)
    lines: np.ndarray  # int64 source line of each row
    rejects: list[ParseReject] = field(default_factory=list)


@dataclass(frozen=True)
class FileInfo:
    path: Path
    columns: list[str]
    rows: int | None  # known for Parquet only


# -- the pre-pass ------------------------------------------------------------------------
def inspect(path: Path) -> FileInfo:
    """Columns of a file, after checking it can be read at all. Raises FatalFileError."""
    if not path.is_file():
        raise FatalFileError(path, "file not found")
    if path.suffix.lower() == ".parquet":
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise FatalFileError(path, f"not a readable Parquet file ({exc})") from None
        names = meta.schema_arrow.names
        _check_names(path, names)
        return FileInfo(path, names, meta.metadata.num_rows)
    check_encoding(path)
    header = _csv_header(path)
    _check_names(path, header)
    return FileInfo(path, header, None)


def check_encoding(path: Path) -> None:
    """Raise unless the whole file is UTF-8 (a UTF-8 byte-order mark is allowed)."""
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise FatalFileError(path, "the file is UTF-16; export it again as UTF-8")
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, lines = 0, 0
        while True:
            chunk = f.read(ENCODING_CHUNK)
            final = not chunk
            try:
                decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                pos = max(exc.start, 0)
                line = lines + chunk[:pos].count(b"\n") + 1
                byte = chunk[pos:pos + 1].hex()
                raise FatalFileError(
                    path,
                    f"not UTF-8: byte 0x{byte} at line {line} (byte offset {offset + pos}); "
                    "export the file again as UTF-8",
                ) from None
            if final:
                return
            lines += chunk.count(b"\n")
            offset += len(chunk)


def _csv_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    if not first.strip():
        raise FatalFileError(path, "empty file: the first line must be the header")
    return [c.strip() for c in next(csv.reader([first]))]


def _check_names(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    dup = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dup:
        raise FatalFileError(path, f"repeated column names {dup}")
    if any(not n for n in names):
        raise FatalFileError(path, "a column has no name in the header")


# -- streaming ---------------------------------------------------------------------------
def iter_batches(info: FileInfo, batch_rows: int) -> Iterator[RawBatch]:
    if info.path.suffix.lower() == ".parquet":
        yield from _parquet_batches(info, batch_rows)
    else:
        yield from _CsvStream(info, batch_rows).batches()


def _parquet_batches(info: FileInfo, batch_rows: int) -> Iterator[RawBatch]:
    done = 0
    try:
        for rb in pq.ParquetFile(info.path).iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([rb])
            yield RawBatch(table, np.arange(done + 1, done + 1 + rb.num_rows, dtype=np.int64))
            done += rb.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise FatalFileError(info.path, f"unreadable after row {done} ({exc})") from None


def _split_line(text: str) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return [text]
    return rows[0] if len(rows) == 1 else [text]


def _fields_error(n_fields: int, expected: int, text: str) -> str:
    if text.count('"') % 2:
        return f"row: unbalanced quote ({n_fields} fields, expected {expected})"
    if n_fields < expected:
        return f"row: {n_fields} fields, expected {expected} (truncated line?)"
    return f"row: {n_fields} fields, expected {expected}"


class _CsvStream:
    """One pass over a CSV file, keeping the source line of every row."""

    def __init__(self, info: FileInfo, batch_rows: int) -> None:
        self.info = info
        self.n_cols = len(info.columns)
        self.batch_rows = batch_rows
        # Records the parser could not read: (record number, text), in order.
        self.bad: list[tuple[int, str]] = []
        self.bad_done = 0
        # Records holding newlines: record number -> newline count, for line numbers.
        self.extra_rec: list[int] = []
        self.extra_nl: list[int] = []
        self.valid_seen = 0
        self.suspects: list[tuple[int, int]] = []  # (first line, line count)
        self.reported = 0  # bad records already turned into rejects
        self.recovered: list[tuple[int, list[str]]] = []  # (line, fields) read again

    def _handler(self, row: pacsv.InvalidRow) -> str:
        self.bad.append((int(row.number or 0), row.text or ""))
        return "skip"

    def _line_of_records(self, recs: np.ndarray) -> np.ndarray:
        if not self.extra_rec:
            return recs
        er = np.asarray(self.extra_rec)
        order = np.argsort(er, kind="stable")
        er = er[order]
        cum = np.concatenate([[0], np.cumsum(np.asarray(self.extra_nl)[order])])
        return recs + cum[np.searchsorted(er, recs, side="left")]

    def _records_of_valid(self, first: int, n: int) -> np.ndarray:
        k = np.arange(first, first + n, dtype=np.int64)
        if not self.bad:
            return k + 2
        b = np.array([r for r, _ in self.bad], dtype=np.int64)
        before = b - 2 - np.arange(b.size)  # valid rows read before each bad record
        return k + 2 + np.searchsorted(before, k, side="right")

    def batches(self) -> Iterator[RawBatch]:
        read = pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False,
                                 column_names=self.info.columns, skip_rows=1)
        parse = pacsv.ParseOptions(invalid_row_handler=self._handler,
                                   newlines_in_values=True, ignore_empty_lines=False)
        convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in self.info.columns},
            strings_can_be_null=False, quoted_strings_can_be_null=False)
        try:
            reader = pacsv.open_csv(self.info.path, read_options=read,
                                    parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise FatalFileError(self.info.path, f"cannot be read as CSV ({exc})") from None
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise FatalFileError(
                    self.info.path, f"cannot be read past row {self.valid_seen} ({exc})"
                ) from None
            for start in range(0, rb.num_rows, self.batch_rows):
                yield from self._batch(pa.Table.from_batches([rb.slice(start, self.batch_rows)]))
        yield from self._finish()

    def _batch(self, table: pa.Table) -> Iterator[RawBatch]:
        n = table.num_rows
        recs = self._records_of_valid(self.valid_seen, n)
        self.valid_seen += n
        newlines = np.zeros(n, dtype=np.int64)
        blank = np.ones(n, dtype=bool)
        for col in table.columns:
            arr = col.combine_chunks()
            if pc.any(pc.match_substring(arr, "\n")).as_py():
                newlines += np.asarray(pc.count_substring(arr, "\n").to_numpy(), dtype=np.int64)
            blank &= np.asarray(pc.equal(arr, "").to_numpy(zero_copy_only=False), dtype=bool)
        # Bad records up to this batch: their newlines count too.
        last_rec = int(recs[-1]) if n else 0
        while self.bad_done < len(self.bad) and self.bad[self.bad_done][0] <= last_rec + 1:
            rec, text = self.bad[self.bad_done]
            if "\n" in text:
                self.extra_rec.append(rec)
                self.extra_nl.append(text.count("\n"))
            self.bad_done += 1
        multi = np.flatnonzero(newlines)
        for i in multi.tolist():
            self.extra_rec.append(int(recs[i]))
            self.extra_nl.append(int(newlines[i]))
        lines = self._line_of_records(recs)
        keep = ~blank
        if multi.size:
            for i in multi.tolist():
                if self._swallowed(table, i):
                    self.suspects.append((int(lines[i]), int(newlines[i]) + 1))
                    keep[i] = False
        rejects = self._take_bad(last_rec + 1)
        if keep.all():
            yield RawBatch(table, lines, rejects)
        else:
            idx = np.flatnonzero(keep)
            yield RawBatch(table.take(pa.array(idx)), lines[idx], rejects)

    def _swallowed(self, table: pa.Table, row: int) -> bool:
        """True when a value spanning lines holds lines that are complete rows by
        themselves: a quote left open has swallowed them."""
        for col in table.columns:
            value = col[row].as_py() or ""
            for piece in value.split("\n")[1:]:
                if len(_split_line(piece)) >= self.n_cols - 1 and piece.count(",") >= 1:
                    return True
        return False

    def _take_bad(self, upto_rec: int) -> list[ParseReject]:
        """Parse rejects for bad records numbered up to ``upto_rec`` not yet reported."""
        out: list[ParseReject] = []
        pending = self.reported
        while pending < self.bad_done and self.bad[pending][0] <= upto_rec:
            rec, text = self.bad[pending]
            line = int(self._line_of_records(np.array([rec]))[0])
            out.extend(self._rejects_for(line, text))
            pending += 1
        self.reported = pending
        return out

    def _rejects_for(self, line: int, text: str) -> list[ParseReject]:
        """A bad record; when it spans lines, each line is judged on its own."""
        pieces = text.split("\n")
        out = []
        for j, piece in enumerate(pieces):
            piece = piece.rstrip("\r")
            fields = _split_line(piece)
            if j > 0 and not piece.strip():
                continue
            if j > 0 and len(fields) == self.n_cols:
                self.recovered.append((line + j, fields))
                continue
            out.append(ParseReject(line + j, fields,
                                   _fields_error(len(fields), self.n_cols, piece), piece))
        return out

    def _finish(self) -> Iterator[RawBatch]:
        for rec, text in self.bad[self.bad_done:]:
            if "\n" in text:
                self.extra_rec.append(rec)
                self.extra_nl.append(text.count("\n"))
        self.bad_done = len(self.bad)
        rejects = self._take_bad(1 << 62)
        if self.suspects:
            rejects.extend(self._reread_suspects())
        if self.recovered or rejects:
            self.recovered.sort()
            cols = {c: [f[i] for _, f in self.recovered]
                    for i, c in enumerate(self.info.columns)}
            table = pa.table({c: pa.array(v, pa.string()) for c, v in cols.items()})
            lines = np.array([ln for ln, _ in self.recovered], dtype=np.int64)
            yield RawBatch(table, lines, rejects)

    def _reread_suspects(self) -> list[ParseReject]:
        """Read the lines of swallowing rows again and judge each line on its own."""
        wanted: dict[int, int] = {}
        for first, count in self.suspects:
            for j in range(count):
                wanted[first + j] = first
        out: list[ParseReject] = []
        with self.info.path.open("r", encoding="utf-8-sig", newline="") as f:
            for number, raw in enumerate(f, start=1):
                if number not in wanted:
                    continue
                text = raw.rstrip("\r\n")
                fields = _split_line(text)
                if number != wanted[number] and len(fields) == self.n_cols:
                    self.recovered.append((number, fields))
                elif number != wanted[number] and not text.strip():
                    continue
                else:
                    out.append(ParseReject(number, fields,
                                           _fields_error(len(fields), self.n_cols, text), text))
        return out
