"""Loading a directory of files in the documented format into a GraphStore.

Order: a pre-pass checks every file (names, encoding, header, required columns) and
stops with FatalFileError before anything is written; then node files, the
credit-features file and relationship files are streamed in batches. Each row ends as
loaded or quarantined with its reason, never dropped: for every file
``rows == loaded + rejected``. Writes are upserts, so loading again, or again after a
load was killed, gives the same graph.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from graph.model import REL_TYPES
from graph.store import GraphStore
from loaders.errors import FatalFileError, IncompleteLoadError, LoadError
from loaders.formats import EXTENSIONS, RESERVED_COLUMNS, SPECS, FileSpec, spec_for
from loaders.quarantine import Quarantine
from loaders.reader import FileInfo, RawBatch, check_parquet, inspect, iter_batches
from loaders.validate import Validated, store_columns, validate

MAX_BATCH_SIZE = 10_000_000


@dataclass(frozen=True)
class LoadOptions:
    quarantine_dir: Path
    batch_size: int = 100_000
    progress: bool = False
    validate: bool = True  # False only for benchmarks measuring the cost of validation
    read_ahead: int = 2  # batches read and validated while the store writes; 0: none

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise LoadError(f"batch size {self.batch_size} is out of range; give a number "
                            f"of rows from 1 to {MAX_BATCH_SIZE:,} (default 100,000)")


@dataclass
class FileReport:
    file: str
    rows: int = 0
    loaded: int = 0
    rejected: int = 0
    seconds: float = 0.0
    blank_lines: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "rows": self.rows, "loaded": self.loaded,
                               "rejected": self.rejected, "seconds": round(self.seconds, 3)}
        if self.warnings:
            out["warnings"] = self.warnings
        return out


@dataclass(frozen=True)
class PlannedFile:
    spec: FileSpec
    info: FileInfo
    ignored_columns: tuple[str, ...]


# -- planning (the pre-pass) ---------------------------------------------------------------
def plan_directory(directory: Path) -> tuple[list[PlannedFile], list[str]]:
    """The files to load in order, and warnings about files that are not loaded."""
    if not directory.exists():
        raise FatalFileError(directory, "directory not found")
    if not directory.is_dir():
        raise FatalFileError(directory, "not a directory; give the directory of files")
    by_stem: dict[str, list[Path]] = {}
    warnings: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in EXTENSIONS or not path.is_file():
            continue
        spec = spec_for(path)
        if spec is None:
            warnings.append(f"{path.name}: not a file of the format, not loaded")
            continue
        by_stem.setdefault(spec.stem, []).append(path)
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise FatalFileError(directory / stem, f"more than one file for {stem}: {names}")
    if not by_stem:
        raise FatalFileError(
            directory, "no data files; expected names such as users.csv or paid.parquet "
            "(docs/data-format.md)")
    planned = [plan_file(by_stem[s.stem][0], s) for s in SPECS if s.stem in by_stem]
    return planned, warnings


def plan_file(path: Path, spec: FileSpec) -> PlannedFile:
    info = inspect(path)
    missing = [c for c in spec.key_columns if c not in info.columns]
    if missing:
        raise FatalFileError(
            path, f"missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the header has {', '.join(info.columns)}")
    ignored = tuple(c for c in info.columns if c not in spec.columns)
    if info.rows is not None:  # Parquet: only the columns loaded are read, all checked
        info = FileInfo(info.path, [c for c in info.columns if c in spec.columns], info.rows)
        check_parquet(info)
    return PlannedFile(spec, info, ignored)


# -- loading -------------------------------------------------------------------------------
def load_directory(store: GraphStore, directory: Path, options: LoadOptions
                   ) -> list[FileReport]:
    planned, warnings = plan_directory(Path(directory))
    reports = [load_file(store, p, options) for p in planned]
    if warnings and reports:
        reports[0].warnings.extend(warnings)
    return reports


Transform = Callable[[pa.Table, np.ndarray], pa.Table]  # (rows, their lines)


def load_file(store: GraphStore, planned: PlannedFile, options: LoadOptions,
              transform: Transform | None = None) -> FileReport:
    """Load one file. ``transform`` maps the file's columns to the spec's columns (for
    foreign formats); quarantined rows keep the file's own columns."""
    spec, info = planned.spec, planned.info
    report = FileReport(info.path.name)
    reserved = [c for c in planned.ignored_columns if c in RESERVED_COLUMNS]
    other = [c for c in planned.ignored_columns if c not in RESERVED_COLUMNS]
    if reserved:
        report.warnings.append(
            f"{info.path.name}: columns written by the model only, not loaded: "
            f"{', '.join(reserved)}")
    if other:
        report.warnings.append(
            f"{info.path.name}: columns not in the format, not loaded: {', '.join(other)}")
    quarantine = Quarantine(options.quarantine_dir, info.path, info.columns)
    started = time.perf_counter()
    bar = _progress(options, info)
    bulk = (store.bulk(spec.target, _expected_rows(info)) if spec.kind == "relationships"
            else contextlib.nullcontext())
    try:
        with bulk:
            batches = (_prepare(spec, raw, options, transform)
                       for raw in iter_batches(info, options.batch_size))
            with _ahead(batches, options.read_ahead) as prepared:
                for batch in prepared:
                    _load_batch(store, spec, batch, quarantine, report)
                    if bar is not None:
                        bar.update(batch.raw.table.num_rows + len(batch.raw.rejects))
    finally:
        quarantine.close()
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - started
    report.rejected = quarantine.rows
    if report.blank_lines:
        report.warnings.append(f"{info.path.name}: {report.blank_lines:,} empty "
                               f"line{'s' if report.blank_lines > 1 else ''} skipped (not rows)")
    if report.rows != report.loaded + report.rejected:
        raise IncompleteLoadError(
            f"{info.path}: {report.rows} rows but {report.loaded} loaded and "
            f"{report.rejected} rejected; please report this as a defect")
    return report


def _expected_rows(info: FileInfo) -> int:
    """Rows in a file: exact for Parquet, estimated from the size for CSV (a
    relationship row is rarely shorter than 40 bytes)."""
    if info.rows is not None:
        return info.rows
    return info.path.stat().st_size // 40


def _progress(options: LoadOptions, info: FileInfo) -> Any:
    if not options.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=info.rows, desc=info.path.name, unit=" rows", unit_scale=True,
                mininterval=0.5, leave=True)


@dataclass
class _Prepared:
    """A batch read and validated, ready for the store."""

    raw: RawBatch
    checked: Validated | None = None
    columns: dict[str, Any] | None = None  # the good rows, as the store takes them
    good: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _prepare(spec: FileSpec, raw: RawBatch, options: LoadOptions,
             transform: Transform | None) -> _Prepared:
    """Everything for a batch that does not touch the store (run ahead in a thread)."""
    if raw.table.num_rows == 0:
        return _Prepared(raw)
    table = raw.table if transform is None else transform(raw.table, raw.lines)
    table = table.select([c for c in table.column_names if c in spec.columns])
    checked = validate(spec, table) if options.validate else _unchecked(table)
    good = np.flatnonzero(~checked.bad)
    columns = store_columns(spec, checked.good_columns()) if good.size else None
    return _Prepared(raw, checked, columns, good)


@contextlib.contextmanager
def _ahead(items: Iterator[_Prepared], depth: int) -> Iterator[Iterator[_Prepared]]:
    """``items`` produced by a thread up to ``depth`` ahead of the consumer, in order.

    Reading and validating run in pyarrow and numpy, and SQLite releases the
    interpreter while it writes, so on two cores the next batch is ready when the
    store is. An exception in the producer is raised in the consumer at the batch it
    belongs to; leaving the block early stops the producer."""
    if depth <= 0:
        yield items
        return
    handoff = _Handoff(depth)
    worker = threading.Thread(target=handoff.produce, args=(items,),
                              name="riskgraph-read-ahead", daemon=True)
    worker.start()
    try:
        yield handoff.consume()
    finally:
        handoff.stop.set()
        worker.join()


class _Handoff:
    """A bounded queue from one producer thread to one consumer, carrying the items, then
    the end or the producer's exception; ``stop`` makes the producer give up."""

    def __init__(self, depth: int) -> None:
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()

    def put(self, item: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(self, items: Iterator[_Prepared]) -> None:
        try:
            for item in items:
                if not self.put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self.put(("error", exc))
            return
        self.put(("done", None))

    def consume(self) -> Iterator[_Prepared]:
        while True:
            kind, value = self.queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value


def _load_batch(store: GraphStore, spec: FileSpec, batch: _Prepared, quarantine: Quarantine,
                report: FileReport) -> None:
    raw, checked, good, columns = batch.raw, batch.checked, batch.good, batch.columns
    for r in raw.rejects:
        quarantine.add_raw(r.line, r.fields, r.error, r.raw)
    report.rows += raw.table.num_rows + len(raw.rejects)
    report.blank_lines += raw.blank
    if checked is None:
        return
    bad = np.flatnonzero(checked.bad)
    if bad.size:
        quarantine.add_rows(raw.table, bad.tolist(), raw.lines[bad].tolist(),
                            [checked.error_of(i) for i in bad.tolist()])
    if columns is None:
        return
    if spec.kind == "relationships":
        rejected = _write_relationships(store, spec, columns)
    elif spec.kind == "credit":
        rejected = _write_credit(store, spec, columns)
    else:
        store.upsert_nodes(spec.target, columns)
        rejected = []
    if rejected:
        pos = [p for p, _ in rejected]
        quarantine.add_rows(raw.table, good[pos].tolist(), raw.lines[good[pos]].tolist(),
                            [e for _, e in rejected])
    report.loaded += good.size - len(rejected)


def _unchecked(table: pa.Table) -> Validated:
    cols = {c: table.column(c).to_numpy() for c in table.column_names}
    return Validated(cols, np.zeros(table.num_rows, dtype=bool))


def _write_relationships(store: GraphStore, spec: FileSpec, columns: dict[str, Any]
                         ) -> list[tuple[int, str]]:
    """Write; return (position, reason) of rows whose src or dst node does not exist."""
    result = store.upsert_relationships(spec.target, columns)
    if not result.missing_endpoints:
        return []
    rt = REL_TYPES[spec.target]
    pos = sorted(set(result.missing_endpoints))
    src = [str(columns["src"][p]) for p in pos]
    dst = [str(columns["dst"][p]) for p in pos]
    no_src = store.missing_nodes(rt.src, sorted(set(src)))
    no_dst = store.missing_nodes(rt.dst, sorted(set(dst)))
    out = []
    for p, s, d in zip(pos, src, dst):
        why = []
        if s in no_src:
            why.append(f"src: no {rt.src} with id {s!r}")
        if d in no_dst:
            why.append(f"dst: no {rt.dst} with id {d!r}")
        out.append((p, "; ".join(why) or "src or dst: node not found"))
    return out


def _write_credit(store: GraphStore, spec: FileSpec, columns: dict[str, Any]
                  ) -> list[tuple[int, str]]:
    """Credit features update existing users only: an unknown user is rejected."""
    ids = columns["id"]
    missing = store.missing_nodes(spec.target, sorted(set(ids.tolist())))
    rejected: list[tuple[int, str]] = []
    if missing:
        unknown = np.array([i in missing for i in ids.tolist()], dtype=bool)
        rejected = [(int(p), f"id: no {spec.target} with id {ids[p]!r}")
                    for p in np.flatnonzero(unknown)]
        columns = {k: v[~unknown] for k, v in columns.items()}
    if len(columns["id"]):
        store.upsert_nodes(spec.target, columns)
    return rejected
