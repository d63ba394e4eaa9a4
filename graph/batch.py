"""Checking and normalising columnar batches before a store writes them.

Both stores call these, so a batch that one store accepts the other accepts too, with
the same values.
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graph.errors import InvalidBatchError
from graph.model import MAX_ID_LENGTH, PropType, node_type, rel_type
from graph.store import Columns


@dataclass(frozen=True)
class NormalisedBatch:
    """Row-major values ready to write. ``props`` gives the column order of ``values``."""

    keys: list[tuple[str, ...]]  # (id,) for nodes; (src, dst, id) for relationships
    props: list[str]
    values: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.keys)


def _as_float(value: Any) -> float | None:
    f = float(value)
    if math.isnan(f):
        return None
    if math.isinf(f):
        raise ValueError("infinite")
    return f


def _as_bool(value: Any) -> int:
    if isinstance(value, str):
        low = value.lower()
        if low in ("true", "1", "yes"):
            return 1
        if low in ("false", "0", "no"):
            return 0
        raise ValueError("not a boolean")
    return 1 if bool(value) else 0


def _as_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an integer")
    return int(value)


def _coerce(value: Any, kind: PropType, column: str, row: int) -> Any:
    """A value as stored, or None for "not given" (None, NaN, empty string for numbers)."""
    if value is None:
        return None
    try:
        if kind is PropType.STR:
            return str(value)
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                return None
        if kind is PropType.FLOAT:
            return _as_float(value)
        if isinstance(value, float) and math.isnan(value):
            return None
        if kind is PropType.BOOL:
            return _as_bool(value)
        return _as_int(value)  # INT and TS (epoch milliseconds)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidBatchError(
            f"column {column!r}, row {row}: {value!r} is not a valid {kind.value} ({exc})"
        ) from None


def _as_list(col: Sequence[Any]) -> list[Any]:
    tolist = getattr(col, "tolist", None)
    return tolist() if tolist is not None else list(col)


def _fast_column(col: Sequence[Any], kind: PropType) -> list[Any] | None:
    """The coerced column when it can be done without a Python call per value."""
    arr = col if isinstance(col, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "iuf":
        if kind is PropType.FLOAT:
            if arr.dtype.kind == "f" and np.isinf(arr).any():
                return None  # the slow path names the row
            values = arr.astype(np.float64).tolist()
            return [None if v != v else v for v in values]
        if kind in (PropType.INT, PropType.TS):
            if arr.dtype.kind in "iu":
                return arr.astype(np.int64).tolist()
            finite = arr[~np.isnan(arr)]
            if not np.all(np.isfinite(finite)) or not np.all(finite == np.floor(finite)):
                return None
            return [None if v != v else int(v) for v in arr.tolist()]
        return None
    values = _as_list(col)
    types = set(map(type, values))
    if kind is PropType.STR and types <= {str, type(None)}:
        return values
    if kind in (PropType.INT, PropType.TS) and types <= {int, type(None)}:
        return values
    if kind is PropType.FLOAT and types <= {float, int, type(None)} and values:
        # None becomes NaN and back: one numpy pass instead of a call per value
        return _fast_column(np.asarray(values, dtype=np.float64), kind)  # type: ignore[arg-type]
    return None


def _ids(columns: Columns, name: str, n: int, required: bool = True) -> list[str]:
    if name not in columns:
        if required:
            raise InvalidBatchError(f"batch has no {name!r} column")
        return [""] * n
    values = _as_list(columns[name])
    if (values and set(map(type, values)) <= {str}
            and min(map(len, values)) >= 1 and max(map(len, values)) <= MAX_ID_LENGTH):
        return values
    out = []
    for i, v in enumerate(columns[name]):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise InvalidBatchError(f"column {name!r}, row {i}: missing id")
        s = str(v)
        if not s or len(s) > MAX_ID_LENGTH:
            raise InvalidBatchError(
                f"column {name!r}, row {i}: id must be 1 to {MAX_ID_LENGTH} characters"
            )
        out.append(s)
    return out


def _length(columns: Columns) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidBatchError(f"columns have different lengths: {lengths}")
    return next(iter(lengths.values()), 0)


def _props(
    columns: Columns, schema: dict[str, PropType], reserved: set[str], what: str, n: int
) -> tuple[list[str], list[list[Any]]]:
    names = [c for c in columns if c not in reserved]
    unknown = [c for c in names if c not in schema]
    if unknown:
        raise InvalidBatchError(
            f"{what} has no properties {unknown}; known: {sorted(schema)}"
        )
    cols = []
    for c in names:
        fast = _fast_column(columns[c], schema[c])
        if fast is None:
            fast = [_coerce(v, schema[c], c, i) for i, v in enumerate(columns[c])]
        cols.append(fast)
    return names, cols


def _rows(cols: list[list[Any]], n: int) -> list[tuple[Any, ...]]:
    return list(zip(*cols)) if cols else [()] * n


def normalise_nodes(label: str, columns: Columns) -> NormalisedBatch:
    nt = node_type(label)
    n = _length(columns)
    ids = _ids(columns, "id", n)
    props, cols = _props(columns, dict(nt.properties), {"id"}, label, n)
    return _dedupe(NormalisedBatch([(i,) for i in ids], props, _rows(cols, n)))


def normalise_relationships(type_: str, columns: Columns) -> NormalisedBatch:
    rt = rel_type(type_)
    n = _length(columns)
    src = _ids(columns, "src", n)
    dst = _ids(columns, "dst", n)
    keys = _ids(columns, "id", n, required=rt.keyed)
    if not rt.keyed and "id" in columns:
        raise InvalidBatchError(
            f"{type_} relationships are identified by their endpoints and take no 'id'"
        )
    props, cols = _props(columns, dict(rt.properties), {"src", "dst", "id"}, type_, n)
    return _dedupe(NormalisedBatch(list(zip(src, dst, keys)), props, _rows(cols, n)))


def _dedupe(batch: NormalisedBatch) -> NormalisedBatch:
    """Merge rows with the same key inside one batch, later given values winning, so a
    batch means the same as its rows sent one at a time in order."""
    if len(set(batch.keys)) == len(batch.keys):
        return batch
    merged: dict[tuple[str, ...], list[Any]] = {}
    for key, vals in zip(batch.keys, batch.values):
        cur = merged.get(key)
        if cur is None:
            merged[key] = list(vals)
        else:
            for j, v in enumerate(vals):
                if v is not None:
                    cur[j] = v
    return NormalisedBatch(list(merged), batch.props, [tuple(v) for v in merged.values()])


def positions_of(keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], list[int]]:
    """Row positions of each key in an unnormalised batch (for reporting rejects)."""
    out: dict[tuple[str, ...], list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return out


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector held off while a batch becomes rows: a batch makes
    hundreds of thousands of tuples, none in a cycle, and each few hundred of them
    would otherwise trigger a collection (16% of a relationship upsert, bench/store.py).
    Nested and concurrent holders are counted; the last one restores the collector."""
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()
