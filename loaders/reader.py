"""Reading CSV and Parquet files as batches of raw rows, each with its source line.

CSV is read with one parser end to end: RFC 4180 as Python's csv module reads it in
strict mode, every column as text (the rules and bounds are below, at ``_CsvStream``).
Records that do not parse (too few or too many fields, a quote left open, text after a
closing quote) come back as parse rejects with their line numbers; a bad record costs
its first line, and reading resumes at the next line. Empty lines are not rows; they
are counted.

Line numbers are physical lines of the file, counting the header as line 1 and
counting the newlines inside quoted values: a record's line is the line it starts on.
For Parquet the "line" is the 1-based row number.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loaders.errors import FatalFileError, LoadError

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
    blank: int = 0  # empty lines skipped (CSV)


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


def _readable_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _readable_type(t.value_type)
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_integer(t) or pa.types.is_floating(t)
                or pa.types.is_boolean(t) or pa.types.is_decimal(t)
                or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_null(t))


def check_parquet(info: FileInfo) -> None:
    """Raise unless every column of ``info`` has a type the loader reads and every data
    page of those columns decodes: part of the pre-pass, so that a damaged page stops
    the load before anything is written."""
    try:
        pf = pq.ParquetFile(info.path)
        schema = pf.schema_arrow
    except Exception as exc:  # pyarrow raises several types
        raise FatalFileError(info.path, f"not a readable Parquet file ({exc})") from None
    for name in info.columns:
        t = schema.field(name).type
        if not _readable_type(t):
            raise FatalFileError(
                info.path, f"column {name!r} has the Parquet/Arrow type {t}, which the "
                "format does not take; write text as UTF-8 strings and numbers and times "
                "as numbers, timestamps or dates (docs/data-format.md)")
    done = 0
    try:
        for rb in pf.iter_batches(batch_size=65_536, columns=info.columns):
            done += rb.num_rows
    except Exception as exc:  # a damaged page raises OSError or ArrowInvalid
        raise FatalFileError(
            info.path, f"a data page after row {done} cannot be read ({exc}); nothing was "
            "loaded: export the file again") from None


def _parquet_batches(info: FileInfo, batch_rows: int) -> Iterator[RawBatch]:
    done = 0
    try:
        for rb in pq.ParquetFile(info.path).iter_batches(batch_size=batch_rows,
                                                         columns=info.columns):
            table = pa.Table.from_batches([rb])
            yield RawBatch(table, np.arange(done + 1, done + 1 + rb.num_rows, dtype=np.int64))
            done += rb.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise FatalFileError(info.path, f"unreadable after row {done} ({exc})") from None


# -- CSV -------------------------------------------------------------------------------
# RFC 4180, read by Python's csv module in strict mode: a quote inside a quoted field is
# doubled, and after a closing quote only a comma or the end of the line may follow. A
# quoted field may span lines, within bounds: a record is at most MAX_RECORD_LINES
# physical lines and MAX_RECORD_CHARS characters. A record that breaks the rules (a
# quote left open to the end of the file or beyond the bounds, text after a closing
# quote) is quarantined as its first line alone, and reading resumes at the line after
# it, so a stray quote costs one row, never the rows after it.
MAX_RECORD_LINES = 100
MAX_RECORD_CHARS = 1 << 20
MAX_RAW_CHARS = 10_000  # of a rejected line kept in the quarantine file's _raw
BLOCK_CHARS = 1 << 20  # read at a time; a block without quotes is split directly


class _Unclosed(LoadError):
    """A record ran past the bounds (control flow inside the reader, never raised out)."""


class _LongLine(LoadError):
    """The next physical line is longer than MAX_RECORD_CHARS (control flow)."""


@dataclass
class _Line:
    number: int
    text: str  # for an over-long line, its start only
    too_long: bool = False


class _Lines:
    """The physical lines of a CSV file for ``csv.reader``, one record at a time.

    ``current`` holds the lines the record being parsed has taken; after a bad record
    all but its first line are handed out again (``put_back``)."""

    def __init__(self, f: TextIO, first_number: int) -> None:
        self.f = f
        self.next_number = first_number
        self.pending: deque[_Line] = deque()
        self.current: list[_Line] = []
        self.chars = 0

    def __iter__(self) -> _Lines:
        return self

    def start_record(self) -> None:
        self.current, self.chars = [], 0

    def __next__(self) -> str:
        if len(self.current) >= MAX_RECORD_LINES or self.chars > MAX_RECORD_CHARS:
            raise _Unclosed
        line = self.pending.popleft() if self.pending else self._read()
        if line is None:
            raise StopIteration
        if line.too_long:
            self.pending.appendleft(line)
            raise _LongLine
        self.current.append(line)
        self.chars += len(line.text)
        return line.text

    def _read(self) -> _Line | None:
        text = self.f.readline(MAX_RECORD_CHARS + 1)
        if not text:
            return None
        number = self.next_number
        self.next_number += 1
        if len(text) > MAX_RECORD_CHARS and not text.endswith(("\n", "\r")):
            self.next_number -= 1
            return self.skip_long(text)
        return _Line(number, text)

    def skip_long(self, start: str) -> _Line:
        """The over-long line beginning with ``start``: the rest of it is read and dropped,
        so that it is never held whole."""
        while True:
            more = self.f.readline(MAX_RECORD_CHARS)
            if not more or more.endswith(("\n", "\r")):
                break
        line = _Line(self.next_number, start[:MAX_RAW_CHARS], too_long=True)
        self.next_number += 1
        return line

    def put_back(self, lines: list[_Line]) -> None:
        self.pending.extendleft(reversed(lines))


def _raw(text: str) -> str:
    text = text.rstrip("\r\n")
    if len(text) <= MAX_RAW_CHARS:
        return text
    return f"{text[:MAX_RAW_CHARS]}[... {len(text) - MAX_RAW_CHARS:,} more characters]"


def _fields_of(text: str) -> list[str]:
    """The fields of one line read leniently, to fill the quarantine's columns."""
    try:
        return next(csv.reader([text.rstrip("\r\n")]), [])
    except csv.Error:
        return [text]


def _parse_error(message: str) -> str:
    if "unexpected end of data" in message:
        return "row: unbalanced quote: a quoted field is not closed before the end of the file"
    if "expected after" in message:
        return "row: unbalanced quote: text after a closing quote (write a quote as \"\")"
    if "field larger than field limit" in message:
        return f"row: a field is longer than {csv.field_size_limit():,} characters"
    return f"row: not readable as CSV ({message})"


def _fields_error(n_fields: int, expected: int) -> str:
    if n_fields < expected:
        return f"row: {n_fields} fields, expected {expected} (truncated line?)"
    return f"row: {n_fields} fields, expected {expected}"


class _CsvStream:
    """One pass over a CSV file: every record with its first line, or a reject."""

    def __init__(self, info: FileInfo, batch_rows: int) -> None:
        self.info = info
        self.n_cols = len(info.columns)
        self.batch_rows = batch_rows
        self.rows: list[list[str]] = []
        self.row_lines: list[int] = []
        self.rejects: list[ParseReject] = []
        self.blank = 0
        self.ready: list[tuple[pa.Table, np.ndarray]] = []  # rows made columns, in order

    def batches(self) -> Iterator[RawBatch]:
        with self.info.path.open("r", encoding="utf-8-sig", newline="") as f:
            f.readline()  # the header, read by inspect()
            lines = _Lines(f, 2)
            reader = csv.reader(lines, strict=True)
            while True:
                if not lines.pending and not self._next_block(f, lines):
                    break
                while lines.pending:
                    self._one_record(lines, reader)
                    if self._pending() >= self.batch_rows:
                        yield from self._flush()
                if self._pending() >= self.batch_rows:
                    yield from self._flush()
        if self._pending() or self.blank:
            yield from self._flush()

    def _next_block(self, f: TextIO, lines: _Lines) -> bool:
        """Read the next block of whole lines. A block without a quote is split here (the
        parser's rules reduce to splitting at commas); other blocks are handed to the
        parser line by line. False at the end of the file."""
        block = f.read(BLOCK_CHARS)
        if not block:
            return False
        if not block.endswith("\n"):
            block += f.readline(MAX_RECORD_CHARS + 1)
        texts = list(io.StringIO(block, newline=""))
        long = len(texts[-1]) > MAX_RECORD_CHARS and not texts[-1].endswith(("\n", "\r"))
        if long:
            texts.pop()
        first = lines.next_number
        lines.next_number += len(texts)
        done = self._parse_block(texts, first)
        for k in range(done, len(texts)):
            lines.pending.append(_Line(first + k, texts[k]))
        if long:
            lines.pending.append(lines.skip_long(block[-MAX_RECORD_CHARS - 1:]))
        return True

    def _parse_block(self, texts: list[str], first: int) -> int:
        """Parse whole records of a block; the number of lines they took. It stops at the
        first record that is bad, too long or runs past the block: the lines from there
        on are read again one at a time, within the bounds (``_one_record``)."""
        reader = csv.reader(texts, strict=True)
        n, pos = self.n_cols, 0
        rows, row_lines = self.rows, self.row_lines
        before = (len(rows), len(self.rejects), self.blank)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                if pos == len(texts) and (len(self.rejects), self.blank) == before[1:]:
                    self._columns_by_arrow(texts, before[0])
                return pos
            except csv.Error:
                return pos
            end = reader.line_num
            if end - pos > MAX_RECORD_LINES:
                return pos
            if len(record) == n:
                rows.append(record)
                row_lines.append(first + pos)
            elif not record:
                self.blank += 1
            else:
                raw = texts[pos] if end - pos == 1 else "".join(texts[pos:end])
                self.rejects.append(ParseReject(first + pos, record,
                                                _fields_error(len(record), n), _raw(raw)))
            pos = end

    def _columns_by_arrow(self, texts: list[str], start: int) -> None:
        """The rows of a block from ``start`` on, made columns by pyarrow's CSV reader.

        The block has just been read whole by the csv module without a single bad or
        empty record, and on such text pyarrow's reader (quotes doubled, fields spanning
        lines) gives the same fields; it builds the columns in C++, where turning
        millions of Python strings into columns costs more than parsing them. The row
        counts must agree, or the Python rows are kept."""
        try:
            table = pacsv.read_csv(
                io.BytesIO("".join(texts).encode("utf-8")),
                read_options=pacsv.ReadOptions(column_names=self.info.columns,
                                               use_threads=False, block_size=1 << 22),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.info.columns},
                    strings_can_be_null=False, quoted_strings_can_be_null=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return
        if table.num_rows != len(self.rows) - start:
            return
        lines = np.array(self.row_lines[start:], dtype=np.int64)
        del self.rows[start:], self.row_lines[start:]
        self._rows_to_table()
        self.ready.append((table, lines))

    def _rows_to_table(self) -> None:
        if self.rows:
            cols = [list(c) for c in zip(*self.rows)]
            table = pa.table({c: pa.array(v, pa.string())
                              for c, v in zip(self.info.columns, cols)})
            self.ready.append((table, np.array(self.row_lines, dtype=np.int64)))
            self.rows, self.row_lines = [], []

    def _one_record(self, lines: _Lines, reader: Any) -> None:
        lines.start_record()
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            self._reject_first(lines, _parse_error(str(exc)))
        except _Unclosed:
            self._reject_first(lines, (
                "row: unbalanced quote: a quoted field is not closed within "
                f"{MAX_RECORD_LINES} lines or {MAX_RECORD_CHARS:,} characters"))
        except _LongLine:
            if lines.current:
                self._reject_first(lines, (
                    "row: unbalanced quote: a quoted field is not closed before "
                    f"line {lines.pending[0].number}, which is too long"))
            else:
                long = lines.pending.popleft()
                self.rejects.append(ParseReject(
                    long.number, [], f"row: the line is longer than "
                    f"{MAX_RECORD_CHARS:,} characters", _raw(long.text)))
        else:
            self._record(lines.current, record)

    def _record(self, taken: list[_Line], record: list[str]) -> None:
        if not record:  # an empty line is not a row
            self.blank += 1
            return
        first = taken[0].number
        if len(record) != self.n_cols:
            raw = "".join(x.text for x in taken)
            self.rejects.append(ParseReject(first, record,
                                            _fields_error(len(record), self.n_cols), _raw(raw)))
            return
        self.rows.append(record)
        self.row_lines.append(first)

    def _reject_first(self, lines: _Lines, error: str) -> None:
        """The record being read is bad: its first line is rejected, the others are read
        again as records of their own."""
        first, rest = lines.current[0], lines.current[1:]
        self.rejects.append(ParseReject(first.number, _fields_of(first.text), error,
                                        _raw(first.text)))
        lines.put_back(rest)

    def _pending(self) -> int:
        return len(self.rows) + sum(int(t.num_rows) for t, _ in self.ready) + len(self.rejects)

    def _flush(self) -> Iterator[RawBatch]:
        """The rows read so far in batches of ``batch_rows``; the rejects with the last."""
        self._rows_to_table()
        size = max(1, self.batch_rows)
        if self.ready:
            table = pa.concat_tables([t for t, _ in self.ready])
            lines = np.concatenate([ln for _, ln in self.ready])
        else:
            table = pa.table({c: pa.array([], pa.string()) for c in self.info.columns})
            lines = np.zeros(0, dtype=np.int64)
        total = table.num_rows
        for start in range(0, max(total, 1), size):
            last = start + size >= total
            yield RawBatch(table.slice(start, size), lines[start:start + size],
                           self.rejects if last else [], self.blank if last else 0)
        self.ready, self.rejects, self.blank = [], [], 0
