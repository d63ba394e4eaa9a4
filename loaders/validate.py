"""Vectorised validation of one batch of rows against a file's spec.

Values are checked a column at a time with pyarrow compute; a Python call per value
happens only for the rare values that the vectorised paths reject, to say exactly
what is wrong with them. The result holds the typed columns ready for a store, a mask
of rejected rows and, for those rows only, the reasons, each naming its field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from graph.model import MAX_ID_LENGTH, PropType
from loaders.formats import FileSpec

# Text that means "no value" in a numeric or time column (string columns: only "").
NULL_MARKERS = ["", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "none", "-"]
INT_RE = r"^[+-]?[0-9]{1,18}(\.0*)?$"
FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
ZONE_RE = r"(Z|z|[+-][0-9]{2}:?[0-9]{2})$"
ISO_RE = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?"
          r"(Z|z|[+-][0-9]{2}:?[0-9]{2})?$")
TS_LIMIT_MS = 8_640_000_000_000_000  # the range of ECMAScript dates, ±273,790 years

CONTROL_RE = r"[\x00-\x1f\x7f]"  # no line breaks, tabs or NULs in an id
MAX_EXACT_INT = 2**53
MAX_CELL_CHARS = 65_536  # characters of one text value; longer values reject the row

# Value rules beyond the type: (low, high) bounds, allowed values, or a pattern.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "amount": (0, None), "limit": (0, None), "balance": (None, None),
    "temp_limit": (0, None), "income": (0, None), "obligations": (0, None),
    "credit_score": (350, 950), "months_on_book": (0, None), "overdue_count": (0, None),
    "worst_dpd": (0, None), "utilisation": (0, None), "monthly_spend": (0, None),
    "monthly_txns": (0, None), "merchant_categories": (0, None),
    "active_days_30d": (0, 31), "other_products": (0, None), "sessions": (0, None),
    "is_fraud": (0, 1),
}
CHOICES: dict[str, tuple[str, ...]] = {"lifecycle": ("new", "active", "dormant")}
PATTERNS: dict[str, tuple[str, str]] = {
    "repayment_history": (r"^[0-6\-]{0,36}$", "up to 36 of 0-6 or '-'"),
}


@dataclass
class Validated:
    """Typed columns for every row, the rejected rows and why."""

    columns: dict[str, Any]  # numpy arrays: object (str/None) or float64/int64
    bad: np.ndarray  # bool per row
    errors: dict[int, list[str]] = field(default_factory=dict)

    def error_of(self, row: int) -> str:
        return "; ".join(self.errors.get(row, ["rejected"]))

    def good_columns(self) -> dict[str, Any]:
        keep = ~self.bad
        return {k: v[keep] for k, v in self.columns.items()}


class _Errors:
    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.msgs: dict[int, list[str]] = {}

    def add(self, mask: np.ndarray, original: pa.Array, message: Callable[[Any], str]
            ) -> None:
        idx = np.flatnonzero(mask)
        if not idx.size:
            return
        self.bad[idx] = True
        values = _plain(original.take(pa.array(idx))).to_pylist()
        for i, v in zip(idx.tolist(), values):
            self.msgs.setdefault(i, []).append(message(v))


def _plain(arr: pa.Array) -> pa.Array:
    """Times as their stored integers, which any value can be told as (a timestamp far
    outside Python's dates cannot become a datetime)."""
    if pa.types.is_timestamp(arr.type) or pa.types.is_date64(arr.type):
        return arr.cast(pa.int64())
    if pa.types.is_date32(arr.type):
        return arr.cast(pa.int32())
    return arr


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean pyarrow array as numpy, null counting as False."""
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "...'"


def _as_text(col: pa.Array) -> pa.Array:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_dictionary(col.type):
        return col.cast(pa.string())
    return pc.cast(col, pa.string())


def _numeric_nulls(text: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(text)
    is_null = pc.or_kleene(pc.is_null(trimmed), pc.is_in(trimmed, pa.array(NULL_MARKERS)))
    return pc.if_else(is_null, pa.scalar(None, pa.string()), trimmed)


def validate(spec: FileSpec, table: pa.Table) -> Validated:
    n = table.num_rows
    errs = _Errors(n)
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if name in spec.key_columns:
            out[name] = _key(name, col, errs)
        elif name in spec.properties:
            out[name] = _property(name, spec.properties[name], col, errs)
    return Validated(out, errs.bad, errs.msgs)


def _key(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    text = pc.utf8_trim_whitespace(_as_text(col))
    length = pc.utf8_length(text)
    missing = _mask(pc.or_kleene(pc.is_null(text), pc.equal(length, 0)))
    errs.add(missing, col, lambda v: f"{name}: missing")
    long = _mask(pc.greater(length, MAX_ID_LENGTH))
    errs.add(long, col, lambda v: f"{name}: longer than {MAX_ID_LENGTH} characters")
    control = _mask(pc.match_substring_regex(text, CONTROL_RE)) & ~long
    errs.add(control, col, lambda v: (
        f"{name}: {_short(v)} holds a line break or another control character"))
    values = np.asarray(text.to_numpy(zero_copy_only=False))
    if missing.any():
        values = values.copy()
        values[missing] = ""
    return values


def _property(name: str, kind: PropType, col: pa.Array, errs: _Errors) -> np.ndarray:
    if kind is PropType.STR:
        values = _string(name, col, errs)
    elif kind is PropType.FLOAT:
        values = _float(name, col, errs)
    elif kind is PropType.TS:
        values = _timestamp(name, col, errs)
    elif kind is PropType.BOOL:
        values = _bool(name, col, errs)
    else:
        values = _int(name, col, errs)
    _rules(name, values, col, errs)
    return values


def _string(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    text = _as_text(col)
    long = _mask(pc.greater(pc.utf8_length(text), MAX_CELL_CHARS))
    if long.any():
        errs.add(long, col, lambda v: (
            f"{name}: longer than {MAX_CELL_CHARS:,} characters ({len(v):,})"))
        text = pc.if_else(pa.array(long), pa.scalar(None, pa.string()), text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return np.asarray(text.to_numpy(zero_copy_only=False))


def _to_float_array(arr: pa.Array) -> np.ndarray:
    # A writable copy: later checks blank out rejected values in place.
    # Integers beyond 2**53 are rounded here (and rejected by the range checks after).
    exact = not (pa.types.is_integer(arr.type) or pa.types.is_decimal(arr.type))
    return np.array(pc.cast(arr, pa.float64(), safe=exact).to_numpy(zero_copy_only=False),
                    dtype=np.float64)


def _float(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = _to_float_array(col)
    else:
        text = _unsigned(_numeric_nulls(_as_text(col)))
        try:
            values = _to_float_array(text)
        except pa.ArrowInvalid:
            ok = pc.match_substring_regex(text, FLOAT_RE)
            wrong = _mask(pc.and_kleene(pc.is_valid(text), pc.invert(ok)))
            errs.add(wrong, col, lambda v: f"{name}: {_short(v)} is not a number")
            values = _to_float_array(pc.if_else(ok, text, pa.scalar(None, pa.string())))
    inf = np.isinf(values)
    if inf.any():
        errs.add(inf, col, lambda v: f"{name}: {_short(v)} is not a finite number")
        values[inf] = np.nan
    return values


def _unsigned(text: pa.Array) -> pa.Array:
    """Text without a leading ``+`` (allowed by the format, not by Arrow's casts)."""
    return pc.replace_substring_regex(text, r"^\+", "")


def _int_from_text(name: str, text: pa.Array, col: pa.Array, errs: _Errors) -> np.ndarray:
    """float64 holding integers (NaN for missing and rejected values)."""
    text = _unsigned(text)
    try:
        return _to_float_array(pc.cast(text, pa.int64()))
    except (pa.ArrowInvalid, OverflowError):
        pass
    ok = pc.match_substring_regex(text, INT_RE)
    wrong = _mask(pc.and_kleene(pc.is_valid(text), pc.invert(ok)))
    errs.add(wrong, col, lambda v: f"{name}: {_short(v)} is not an integer")
    whole = pc.replace_substring_regex(
        pc.if_else(ok, text, pa.scalar(None, pa.string())), r"\.0*$", "")
    return _to_float_array(pc.cast(whole, pa.int64()))


def _int(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        values = _to_float_array(col)
    elif pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        values = _to_float_array(col)
        with np.errstate(invalid="ignore"):
            frac = ~np.isnan(values) & np.isfinite(values) & (values != np.floor(values))
        errs.add(frac, col, lambda v: f"{name}: {_short(v)} is not an integer")
        values[frac] = np.nan
    else:
        values = _int_from_text(name, _numeric_nulls(_as_text(col)), col, errs)
    # Beyond 2**53 a float64 no longer holds every integer, and an infinity none.
    with np.errstate(invalid="ignore"):
        huge = ~np.isnan(values) & ~(np.abs(values) <= MAX_EXACT_INT)
    errs.add(huge, col, lambda v: (
        f"{name}: {_short(v)} is out of range (integers up to ±{MAX_EXACT_INT:,})"))
    values[huge] = np.nan
    return values


def _bool(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    if pa.types.is_boolean(col.type) or pa.types.is_integer(col.type):
        values = _to_float_array(col)
    else:
        text = pc.utf8_lower(_numeric_nulls(_as_text(col)))
        true = pc.is_in(text, pa.array(["true", "1", "yes", "t", "y"]))
        false = pc.is_in(text, pa.array(["false", "0", "no", "f", "n"]))
        wrong = _mask(pc.and_kleene(pc.is_valid(text), pc.invert(pc.or_(true, false))))
        errs.add(wrong, col, lambda v: f"{name}: {_short(v)} is not true or false")
        values = np.where(_mask(true), 1.0, np.where(_mask(false), 0.0, np.nan))
    bad = ~np.isnan(values) & ~np.isin(values, [0.0, 1.0])
    errs.add(bad, col, lambda v: f"{name}: {_short(v)} is not true or false")
    values[bad] = np.nan
    return values


def _timestamp(name: str, col: pa.Array, errs: _Errors) -> np.ndarray:
    """Epoch milliseconds (float64, NaN for missing) from integers or ISO-8601 text."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        values = _temporal_ms(col)
        out_of_range = ~np.isnan(values) & (np.abs(values) > TS_LIMIT_MS)
        errs.add(out_of_range, col, lambda v: f"{name}: {_short(v)} is out of range")
        values[out_of_range] = np.nan
        return values
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values = _int(name, col, errs)
    else:
        text = _numeric_nulls(_as_text(col))
        numeric = pc.match_substring_regex(text, INT_RE)
        values = _int_from_text(
            name, pc.if_else(numeric, text, pa.scalar(None, pa.string())), col, errs)
        iso = _mask(pc.and_kleene(pc.is_valid(text), pc.invert(numeric)))
        if iso.any():
            values = np.where(iso, _iso_ms(name, text, iso, col, errs), values)
    out_of_range = ~np.isnan(values) & (np.abs(values) > TS_LIMIT_MS)
    errs.add(out_of_range, col, lambda v: f"{name}: {_short(v)} is out of range")
    values[out_of_range] = np.nan
    return values


_MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def _temporal_ms(col: pa.Array) -> np.ndarray:
    """Epoch milliseconds of an Arrow timestamp or date column, in float64, so that no
    value can overflow on the way (the range is checked after)."""
    if pa.types.is_date32(col.type):
        factor = 86_400_000.0
    elif pa.types.is_date64(col.type):
        factor = 1.0
    else:
        factor = _MS_PER_UNIT[col.type.unit]
    raw = _to_float_array(pc.cast(col, pa.int64() if not pa.types.is_date32(col.type)
                                  else pa.int32()))
    return np.floor(raw * factor)


def _iso_ms(name: str, text: pa.Array, rows: np.ndarray, col: pa.Array, errs: _Errors
            ) -> np.ndarray:
    """Milliseconds for the ISO-8601 strings at ``rows``; naive times are UTC."""
    out = np.full(len(text), np.nan)
    idx = np.flatnonzero(rows)
    sub = text.take(pa.array(idx))
    zoned = _mask(pc.match_substring_regex(sub, ZONE_RE))
    shape_ok = _mask(pc.match_substring_regex(sub, ISO_RE))
    for want_zone, tz in ((True, "UTC"), (False, None)):
        part = idx[(zoned == want_zone) & shape_ok]
        if not part.size:
            continue
        values = text.take(pa.array(part))
        try:
            ms = pc.cast(pc.cast(values, pa.timestamp("ms", tz=tz)), pa.int64())
            out[part] = _to_float_array(ms)
        except pa.ArrowInvalid:
            out[part] = [_one_iso(v) for v in values.to_pylist()]
    failed = rows & np.isnan(out)
    errs.add(failed, col, lambda v: (
        f"{name}: {_short(v)} is not a time (ISO-8601 or epoch milliseconds)"))
    return out


def _one_iso(value: str) -> float:
    try:
        dt = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return np.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return float(round(dt.timestamp() * 1000))


def _rules(name: str, values: np.ndarray, col: pa.Array, errs: _Errors) -> None:
    if name in BOUNDS and values.dtype.kind == "f":
        lo, hi = BOUNDS[name]
        with np.errstate(invalid="ignore"):
            bad = np.zeros(values.size, dtype=bool)
            if lo is not None:
                bad |= values < lo
            if hi is not None:
                bad |= values > hi
        if bad.any():
            span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            errs.add(bad, col, lambda v: f"{name}: {_short(v)} must be {span}")
            values[bad] = np.nan
    if name in CHOICES:
        allowed = CHOICES[name]
        arr = pa.array(values, pa.string())
        bad = _mask(pc.and_kleene(pc.is_valid(arr), pc.invert(pc.is_in(arr, pa.array(allowed)))))
        errs.add(bad, col, lambda v: f"{name}: {_short(v)} is not one of {', '.join(allowed)}")
    if name in PATTERNS:
        pattern, what = PATTERNS[name]
        arr = pa.array(values, pa.string())
        bad = _mask(pc.invert(pc.match_substring_regex(arr, pattern)))
        errs.add(bad, col, lambda v: f"{name}: {_short(v)} is not {what}")


def store_columns(spec: FileSpec, columns: dict[str, Any]) -> dict[str, Any]:
    """Columns as the store takes them: integers as int64 when nothing is missing."""
    out: dict[str, Any] = {}
    for name, values in columns.items():
        kind = spec.properties.get(name)
        if kind in (PropType.INT, PropType.TS, PropType.BOOL) and values.dtype.kind == "f":
            if not np.isnan(values).any():
                values = values.astype(np.int64)
            elif np.isnan(values).all():
                continue  # nothing given in this batch
        elif (values.dtype == object and kind is not None and values.size
              and values[0] is None and not any(v is not None for v in values)):
            continue  # nothing given in this batch
        out[name] = values
    return out

