"""Quarantine files: every rejected row with its original values, line and reason.

``<quarantine dir>/<source file name>.rejected.csv`` holds the source file's columns
(as text), then ``_line`` (the line in the source file; the row number for Parquet),
``_error`` (the reasons, each naming its field) and ``_raw`` (the source line as read,
for lines that could not be split into the file's columns). Each load of a source
rewrites its quarantine file, so loading twice does not repeat rows.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from loaders.errors import LoadError

EXTRA_COLUMNS = ["_line", "_error", "_raw"]


def quarantine_path(directory: Path, source: Path) -> Path:
    return directory / f"{source.name}.rejected.csv"


class Quarantine:
    """Writes the rejected rows of one source file as they are found."""

    def __init__(self, directory: Path, source: Path, columns: Sequence[str]) -> None:
        self.path = quarantine_path(directory, source)
        self.columns = list(columns)
        self.rows = 0
        self._file: IO[str] | None = None
        self._writer: Any = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)  # a new load replaces the old rejects
        except OSError as exc:
            raise LoadError(
                f"cannot write the quarantine directory {directory}: {exc}; "
                "check RISKGRAPH_HOME points to a writable directory"
            ) from exc

    def _open(self) -> Any:
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(self.columns + EXTRA_COLUMNS)
        return self._writer

    def add_rows(self, table: pa.Table, positions: Sequence[int], lines: Sequence[int],
                 errors: Sequence[str]) -> None:
        """Rows of ``table`` at ``positions`` (their original values) with their reasons."""
        if not len(positions):
            return
        picked = table.take(pa.array(positions, pa.int64()))
        cols = [
            _text_values(picked.column(c)) if c in picked.column_names else [""] * len(positions)
            for c in self.columns
        ]
        writer = self._open()
        for i in range(len(positions)):
            writer.writerow([col[i] for col in cols] + [int(lines[i]), errors[i], ""])
        self.rows += len(positions)

    def add_raw(self, line: int, fields: Sequence[str], error: str, raw: str) -> None:
        """A line that could not be split into the file's columns."""
        values = list(fields[: len(self.columns)])
        values += [""] * (len(self.columns) - len(values))
        self._open().writerow(values + [line, error, raw])
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None


def _text_values(col: pa.ChunkedArray) -> list[str]:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        try:
            col = col.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # e.g. a timestamp outside the dates text can show: its stored integer
            col = col.cast(pa.int64()).cast(pa.string())
    return ["" if v is None else v for v in col.to_pylist()]
