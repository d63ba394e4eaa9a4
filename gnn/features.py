"""User features: what is read from the store, how it is encoded, and the saved spec
that makes scoring repeat training's encoding exactly.

Own features come from the User node (credit features, lifecycle, account age) and from
the user's own payments (PAID: count, amounts, channels, recency). Numbers pass through
``log1p`` where heavy-tailed, then are standardised with means and deviations computed
on training users only and saved in the spec; a missing value becomes 0 after scaling
with a 0/1 "missing" column beside it. Times are turned into ages against the spec's
``reference_ms``, fixed at training, so a score does not drift with the wall clock.
Labels (is_fraud, fraud_kind, fraud_ts) and scores are never features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DAY_MS = 86_400_000.0

NUMERIC_USER_PROPS: tuple[str, ...] = (
    "credit_score", "income", "months_on_book", "overdue_count", "worst_dpd",
    "utilisation", "monthly_spend", "monthly_txns", "merchant_categories",
    "active_days_30d", "other_products", "obligations",
)
LOG_PROPS = frozenset({"income", "monthly_spend", "monthly_txns", "obligations", "worst_dpd",
                       "overdue_count"})
LIFECYCLES: tuple[str, ...] = ("new", "active", "dormant")
USER_EXPORT_PROPS: tuple[str, ...] = (
    *NUMERIC_USER_PROPS, "repayment_history", "lifecycle", "signup_ts", "is_fraud", "fraud_ts",
    "fraud_kind",  # ground truth for evaluation by kind; never a feature
)
PAID_EXPORT_PROPS: tuple[str, ...] = ("amount", "ts", "channel")
MAX_CHANNELS = 8


@dataclass
class FeatureSpec:
    """Everything needed to encode users the same way later."""

    names: list[str]
    mean: list[float]
    std: list[float]
    reference_ms: float
    channels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(**dict(d))


REPAYMENT_CODES = "-0123456789"  # "-": not billed; a digit: months overdue (9: 9 or more)


def _repayment_row(h: str) -> tuple[float, ...] | None:
    billed = [c for c in h if c != "-"]
    if not billed:
        return None
    last6 = [c for c in h[-6:] if c != "-"]
    last12 = [c for c in h[-12:] if c != "-"]
    streak = 0
    for c in reversed(billed):
        if c != "0":
            break
        streak += 1
    return (
        len(billed),
        sum(c == "0" for c in billed) / len(billed),
        sum(c not in "0" for c in last6),
        sum(c not in "0" for c in last12),
        max((int(c) for c in last12 if c.isdigit()), default=0),
        streak,
    )


def repayment_features(history: np.ndarray) -> np.ndarray:
    """From the month string (oldest first): months billed, on-time share, overdue
    months in the last 6 and 12, worst bucket in the last 12, current on-time streak.

    Strings of "-" and digits are read as a character matrix, all users at once; any
    other string goes through ``_repayment_row``, the same rules one user at a time."""
    values = history.tolist()
    out = np.full((len(values), 6), np.nan)
    text = np.array([h if isinstance(h, str) else "" for h in values], dtype=str)
    if text.size == 0 or text.itemsize == 0:
        return out
    codes = text.view(np.uint32).reshape(len(text), -1)
    lengths = np.char.str_len(text)
    allowed = np.zeros(max(int(codes.max()) + 1, 128), bool)
    allowed[[ord(c) for c in REPAYMENT_CODES]] = True
    padding = np.arange(codes.shape[1]) >= lengths[:, None]
    simple = (lengths > 0) & (allowed[codes] | padding).all(1)
    for i in np.flatnonzero((lengths > 0) & ~simple):
        row = _repayment_row(values[i])
        out[i] = (0,) + (np.nan,) * 5 if row is None else row
    rows = np.flatnonzero(simple)
    m = codes[rows].astype(np.int16) - ord("0")  # digits 0..9; "-" and padding below 0
    to_end = lengths[rows, None] - 1 - np.arange(m.shape[1])  # 0: the latest month
    billed = m >= 0
    on_time = m == 0
    late = billed & ~on_time
    n_billed = billed.sum(1)
    last12 = billed & (to_end < 12)
    # the streak: on-time months after the latest late one
    latest_late = np.where(late, to_end, np.iinfo(np.int64).max).min(1)
    feats = np.stack([
        n_billed,
        on_time.sum(1) / np.maximum(n_billed, 1),
        (late & (to_end < 6)).sum(1),
        (late & last12).sum(1),
        np.where(last12, m, 0).max(1),
        (on_time & (to_end < latest_late[:, None])).sum(1),
    ], axis=1).astype(np.float64)
    feats[n_billed == 0, 1:] = np.nan
    out[rows] = feats
    return out


def payment_features(
    n_users: int, user_idx: np.ndarray, amount: np.ndarray, ts: np.ndarray,
    channel: np.ndarray, reference_ms: float, channels: list[str],
    merchant: np.ndarray | None = None,
) -> np.ndarray:
    """Per user from its payments: count, log total, mean and max log amount, days
    since the last payment, the share of each channel, then ``trajectory_features``."""
    cnt = np.bincount(user_idx, minlength=n_users).astype(np.float64)
    la = np.log1p(np.nan_to_num(np.maximum(amount, 0.0)))
    tot = np.bincount(user_idx, weights=np.nan_to_num(np.maximum(amount, 0.0)),
                      minlength=n_users)
    mean = np.bincount(user_idx, weights=la, minlength=n_users) / np.maximum(cnt, 1)
    mx = np.zeros(n_users)
    np.maximum.at(mx, user_idx, la)
    last = np.full(n_users, -np.inf)
    np.maximum.at(last, user_idx, np.nan_to_num(ts, nan=-np.inf))
    since = np.where(np.isfinite(last), (reference_ms - last) / DAY_MS, np.nan)
    cols = [cnt, np.log1p(tot), np.where(cnt > 0, mean, np.nan), np.where(cnt > 0, mx, np.nan),
            since]
    # a payment without a channel counts as ""
    if "" in channels:
        channel = np.array(["" if c is None else c for c in channel.tolist()], dtype=object)
    for ch in channels:
        w = np.asarray(np.asarray(channel, dtype=object) == ch, dtype=np.float64)
        cols.append(np.bincount(user_idx, weights=w, minlength=n_users) / np.maximum(cnt, 1))
    return np.hstack([np.stack(cols, axis=1),
                      trajectory_features(n_users, user_idx, amount, ts, merchant)])


TRAJECTORY_NAMES = ("paid_ramp_30d", "paid_max_per_day", "paid_night_share",
                    "paid_sd_log_amount", "paid_merchants", "paid_top_merchant_share")


def trajectory_features(n_users: int, user_idx: np.ndarray, amount: np.ndarray,
                        ts: np.ndarray, merchant: np.ndarray | None) -> np.ndarray:
    """How a user's spending moves over time, per user: the ramp (log spend in the 30
    days up to its last payment against its earlier monthly average), the burst (most
    payments in one day), the night-time share (00:00-05:59 of the timestamp's clock),
    the spread of log amounts, and how spend concentrates on merchants (distinct
    merchants, the top merchant's share of payments). NaN for users without payments."""
    n = n_users
    amt = np.nan_to_num(np.maximum(np.asarray(amount, np.float64), 0.0))
    t = np.asarray(ts, np.float64)
    ok = np.isfinite(t)
    cnt = np.bincount(user_idx, minlength=n).astype(np.float64)
    out = np.full((n, len(TRAJECTORY_NAMES)), np.nan)
    if len(user_idx) == 0:
        return out
    tt = np.where(ok, t, -np.inf)
    last = np.full(n, -np.inf)
    np.maximum.at(last, user_idx, tt)
    first = np.full(n, np.inf)
    np.minimum.at(first, user_idx, np.where(ok, t, np.inf))
    recent = tt >= last[user_idx] - 30 * DAY_MS
    spend_recent = np.bincount(user_idx, weights=amt * recent, minlength=n)
    spend_before = np.bincount(user_idx, weights=amt * ~recent, minlength=n)
    months_before = np.maximum((last - 30 * DAY_MS - first) / (30 * DAY_MS), 1.0)
    ramp = np.log1p(spend_recent) - np.log1p(spend_before / months_before)
    day = np.where(ok, np.floor(t / DAY_MS), -1).astype(np.int64)
    key = user_idx.astype(np.int64) * (int(day.max()) + 2) + (day + 1)
    _, inv, per_day = np.unique(key, return_inverse=True, return_counts=True)
    burst = np.zeros(n)
    np.maximum.at(burst, user_idx, per_day[inv.reshape(-1)])
    hour = np.where(ok, (t % DAY_MS) / 3_600_000, 12)
    night = np.bincount(user_idx, weights=(hour < 6).astype(np.float64), minlength=n)
    la = np.log1p(amt)
    m1 = np.bincount(user_idx, weights=la, minlength=n) / np.maximum(cnt, 1)
    m2 = np.bincount(user_idx, weights=la * la, minlength=n) / np.maximum(cnt, 1)
    sd = np.sqrt(np.maximum(m2 - m1 * m1, 0))
    cols = [ramp, burst, night / np.maximum(cnt, 1), sd]
    if merchant is not None and len(merchant):
        import pandas as pd

        codes = np.maximum(pd.factorize(np.asarray(merchant, dtype=object))[0], 0)
        pk = user_idx.astype(np.int64) * (int(codes.max()) + 1) + codes
        pu, per_pair = np.unique(pk, return_counts=True)
        owner = pu // (int(codes.max()) + 1)
        distinct = np.bincount(owner, minlength=n).astype(np.float64)
        top = np.zeros(n)
        np.maximum.at(top, owner, per_pair)
        cols += [distinct, top / np.maximum(cnt, 1)]
    else:
        cols += [np.full(n, np.nan), np.full(n, np.nan)]
    out[:] = np.stack(cols, axis=1)
    out[cnt == 0] = np.nan
    return out


def raw_user_matrix(
    users: Mapping[str, np.ndarray], payments: np.ndarray, reference_ms: float,
    channels: list[str],
) -> tuple[np.ndarray, list[str]]:
    """Unscaled own features (NaN where missing) and their names."""
    n = len(users["signup_ts"])
    cols: list[np.ndarray] = []
    names: list[str] = []
    for p in NUMERIC_USER_PROPS:
        v = np.asarray(users[p], dtype=np.float64)
        cols.append(np.log1p(np.maximum(v, 0)) if p in LOG_PROPS else v)
        names.append(p)
    rep = repayment_features(np.asarray(users["repayment_history"], dtype=object))
    cols += list(rep.T)
    names += ["rep_months", "rep_on_time_share", "rep_overdue_6m", "rep_overdue_12m",
              "rep_worst_12m", "rep_streak"]
    life = np.asarray(users["lifecycle"], dtype=object)
    for lc in LIFECYCLES:
        cols.append(np.asarray(life == lc, dtype=np.float64))
        names.append(f"lifecycle_{lc}")
    signup = np.asarray(users["signup_ts"], dtype=np.float64)
    cols.append(np.log1p(np.maximum((reference_ms - signup) / DAY_MS, 0)))
    names.append("log_account_age_days")
    cols += list(payments.T)
    names += ["paid_n", "paid_log_total", "paid_mean_log_amount", "paid_max_log_amount",
              "paid_days_since_last", *[f"paid_share_{c}" for c in channels],
              *TRAJECTORY_NAMES]
    return np.stack(cols, axis=1) if n else np.zeros((0, len(names))), names


def common_channels(channel: np.ndarray) -> list[str]:
    """The most used payment channels (at most MAX_CHANNELS), fixed at training."""
    vals, counts = np.unique(np.array([str(c) for c in channel.tolist() if c is not None]),
                             return_counts=True)
    return sorted(vals[np.argsort(-counts)][:MAX_CHANNELS].tolist())


def fit_spec(raw: np.ndarray, names: list[str], rows: np.ndarray, reference_ms: float,
             channels: list[str]) -> FeatureSpec:
    """Scaling statistics from the training users' rows only."""
    sub = raw[rows]
    mean = np.nanmean(np.where(np.isfinite(sub), sub, np.nan), axis=0)
    std = np.nanstd(np.where(np.isfinite(sub), sub, np.nan), axis=0)
    mean = np.nan_to_num(mean)
    std = np.where(np.nan_to_num(std) > 1e-9, np.nan_to_num(std), 1.0)
    return FeatureSpec(list(names), mean.tolist(), std.tolist(), float(reference_ms),
                       list(channels))


def encode(raw: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Scaled features with missing indicators; float32."""
    z = raw - np.asarray(spec.mean)  # float64 throughout, then one cast: the same
    z /= np.asarray(spec.std)  # values as before, with fewer temporary arrays
    missing = ~np.isfinite(z)
    z[missing] = 0.0
    np.clip(z, -10, 10, out=z)
    k = z.shape[1]
    out = np.empty((z.shape[0], 2 * k), dtype=np.float32)
    out[:, :k] = z
    out[:, k:] = missing
    return out
