"""Time-ordered neighbour aggregation: sums over the strictly earlier rows that share a key.

Transactions that share a key (a source account, a merchant, a location, a pair of
them) are neighbours in the transaction graph. Aggregating over a row's *earlier*
neighbours only, and over labels only where the caller says they are visible, is what
keeps these features free of leakage: a row never sees its own label, nor a row at the
same time or later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupIndex:
    """Rows sorted by (key, time), with each row's strictly-earlier range in that order."""

    order: np.ndarray  # sorted position -> row
    start: np.ndarray  # per row: first sorted position of its key
    end: np.ndarray  # per row: first sorted position of its key at its own time or later
    sorted_time: np.ndarray
    keys: np.ndarray
    times: np.ndarray

    @classmethod
    def build(cls, keys: np.ndarray, times: np.ndarray) -> GroupIndex:
        keys = np.asarray(keys, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        order = np.lexsort((times, keys))
        ks, ts = keys[order], times[order]
        span = int(times.max() - times.min()) + 2 if len(times) else 2
        base = ts - (times.min() if len(times) else 0)
        comp = ks * span + base
        first = np.searchsorted(comp, ks * span, side="left")
        end = np.searchsorted(comp, comp, side="left")
        start = np.empty_like(first)
        start[order] = first
        end_rows = np.empty_like(end)
        end_rows[order] = end
        return cls(order, start, end_rows, ts, keys, times)

    def window_start(self, window: int) -> np.ndarray:
        """Per row: first sorted position of its key with time >= own time - window."""
        ks = self.keys
        tmin = self.times.min()
        span = int(self.times.max() - tmin) + 2
        comp_sorted = ks[self.order] * span + (self.sorted_time - tmin)
        lo = np.maximum(self.times - window - tmin, 0)
        a = np.searchsorted(comp_sorted, ks * span + lo, side="left")
        first: np.ndarray = np.maximum(a, self.start)
        return first

    def earlier_sums(self, values: np.ndarray, window: int | None = None) -> np.ndarray:
        """Per row, the sum of ``values`` (n or n x m) over strictly earlier rows with the
        same key, within ``window`` time units when given."""
        v = np.asarray(values, dtype=np.float64)
        squeeze = v.ndim == 1
        if squeeze:
            v = v[:, None]
        csum = np.zeros((len(v) + 1, v.shape[1]))
        np.cumsum(v[self.order], axis=0, out=csum[1:])
        lo = self.start if window is None else self.window_start(window)
        out: np.ndarray = csum[self.end] - csum[lo]
        return out[:, 0] if squeeze else out

    def last_earlier_time(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Per row, the time of the latest strictly earlier row with the same key (and
        ``mask`` true), or NaN when there is none."""
        ts = self.sorted_time.astype(np.float64)
        if mask is not None:
            ts = np.where(np.asarray(mask)[self.order], ts, -np.inf)
        # running maximum that restarts at each key: offset each key's block
        block = np.zeros(len(ts), dtype=np.float64)
        ks = self.keys[self.order]
        new = np.r_[True, ks[1:] != ks[:-1]] if len(ks) else np.zeros(0, bool)
        gid = np.cumsum(new) - 1
        big = float(self.times.max() - self.times.min() + 10) * 4 if len(ts) else 1.0
        block = gid * big
        shifted = np.where(np.isfinite(ts), ts - self.times.min() + block, -np.inf)
        run = np.maximum.accumulate(shifted) if len(ts) else shifted
        prev = self.end - 1
        ok = prev >= self.start
        out = np.full(len(ts), np.nan)
        vals = run[np.clip(prev, 0, None)]
        gid_rows = np.empty_like(gid)
        gid_rows[self.order] = gid
        valid = ok & np.isfinite(vals) & (vals >= gid_rows * big)
        out[valid] = vals[valid] - gid_rows[valid] * big + self.times.min()
        return out


def pair_codes(*codes: np.ndarray) -> np.ndarray:
    """One integer key per distinct combination of integer codes."""
    stacked = np.stack([np.asarray(c, dtype=np.int64) for c in codes], axis=1)
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)
