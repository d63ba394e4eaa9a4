"""A synthetic credit ecosystem in the documented file format (docs/data-format.md,
"Synthetic data", lists what it holds: users, merchants, shared devices and IPs,
products and holdings, a year of payments, five fraud patterns, label noise and
relational-risk cases).

Deterministic for a seed: every random draw comes from one ``numpy`` generator per
component, spawned from the seed, and every step is vectorised. A ``manifest.json``
beside the files records the seed, the counts and the ids of the special cases; the
loader does not read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from graph.errors import RiskGraphError
from graph.model import CREDIT_PROPERTIES

FileFormat = Literal["csv", "parquet"]

DAY_MS = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, first day of payments
DAYS = 366  # 2024 is a leap year
END_MS = START_MS + DAYS * DAY_MS  # 2025-01-01, the "as of" date
MIN_USERS = 100
CHUNK_ROWS = 1_000_000

CITIES = [
    "Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Hangzhou", "Chengdu", "Chongqing",
    "Wuhan", "Nanjing", "Xi'an", "Tianjin", "Suzhou", "Changsha", "Zhengzhou", "Qingdao",
    "Dongguan", "Shenyang", "Ningbo", "Kunming", "Hefei", "Foshan", "Fuzhou", "Xiamen",
    "Jinan", "Harbin", "Dalian", "Changchun", "Nanning", "Guiyang", "Shijiazhuang",
]
SURNAMES = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu",
    "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
]
GIVEN = [
    "Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong",
    "Yan", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hui", "Ping", "Gang", "Hua", "Ying",
    "Dan", "Bo", "Lan", "Ning", "Kai", "Hao", "Yu", "Xin",
]

# name, share of payments, median amount (CNY), usual transaction type
CATEGORIES: list[tuple[str, float, float, str]] = [
    ("groceries", 0.20, 45, "purchase"),
    ("restaurants", 0.18, 60, "purchase"),
    ("ecommerce", 0.16, 150, "purchase"),
    ("transport", 0.08, 25, "purchase"),
    ("fashion", 0.06, 260, "purchase"),
    ("utilities", 0.05, 180, "bill"),
    ("entertainment", 0.05, 90, "subscription"),
    ("telecom", 0.04, 80, "bill"),
    ("electronics", 0.04, 1400, "purchase"),
    ("travel", 0.03, 900, "purchase"),
    ("healthcare", 0.03, 200, "purchase"),
    ("gaming", 0.03, 50, "top_up"),
    ("education", 0.02, 600, "purchase"),
    ("digital_goods", 0.02, 120, "purchase"),
    ("luxury", 0.01, 3000, "purchase"),
]
CAT_NAMES = [c[0] for c in CATEGORIES]
CAT_SHARE = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
CAT_MEDIAN = np.array([c[2] for c in CATEGORIES], dtype=np.float64)
CAT_TXN_TYPE = [c[3] for c in CATEGORIES]
# Categories that fraudsters use to turn credit into resellable goods.
CASH_OUT_CATS = np.array([CAT_NAMES.index(c) for c in ("electronics", "digital_goods", "luxury")])

CHANNELS = ["app", "qr", "online", "pos"]
PAY_PRODUCTS = ["bnpl", "balance", "bank_card"]

PRODUCTS = [
    ("bnpl", "Buy-now-pay-later line", "bnpl"),
    ("cash_loan", "Cash-loan line", "cash_loan"),
    ("wealth", "Money-market wealth fund", "wealth"),
    ("insurance", "Health insurance", "insurance"),
]

FRAUD_KINDS = ("device_ring", "referral_farm", "bust_out", "mule_chain", "merchant_cashout")

# Weekly pattern Monday..Sunday and the 2024 shopping peaks (day of year from 0, factor).
WEEKDAY_FACTOR = np.array([0.90, 0.92, 0.95, 1.00, 1.15, 1.30, 1.20])
HOLIDAYS: list[tuple[int, int, float]] = [
    (24, 40, 1.6),  # before the Spring Festival (10 Feb)
    (40, 47, 0.7),  # the festival itself: shops close
    (121, 126, 1.4),  # Labour Day week
    (160, 170, 1.8),  # "618" mid-year sale
    (260, 263, 1.3),  # Mid-Autumn
    (274, 281, 1.5),  # National Day week
    (305, 316, 2.5),  # "Double 11"
    (345, 347, 1.6),  # "Double 12"
]
HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 8, 8, 9, 11, 12, 10, 9, 9, 10, 11, 12, 13, 13, 11, 8, 4],
    dtype=np.float64,
)
NIGHT_HOUR_WEIGHTS = np.roll(HOUR_WEIGHTS, 10)  # fraud bursts peak after midnight


class GeneratorError(RiskGraphError):
    """The generator was asked for something it cannot make."""


@dataclass(frozen=True)
class GeneratorConfig:
    users: int
    seed: int = 0
    payments_per_user: float = 4.5
    fraud_rate: float = 0.02  # share of users in a fraud pattern
    missed_fraud: float = 0.08  # frauds labelled 0
    false_alarm: float = 0.002  # clean users labelled 1

    def check(self) -> None:
        if self.users < MIN_USERS:
            raise GeneratorError(
                f"--users must be at least {MIN_USERS} to hold every fraud pattern, "
                f"not {self.users}"
            )
        if not 0 < self.fraud_rate < 0.5:
            raise GeneratorError("fraud_rate must be between 0 and 0.5")


@dataclass
class GenerateSummary:
    out: str
    format: str
    seed: int
    users: int
    files: dict[str, int] = field(default_factory=dict)  # file name -> rows
    fraud: dict[str, int] = field(default_factory=dict)  # kind -> true fraud users
    labels: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": self.out, "format": self.format, "seed": self.seed,
            "users": self.users, "files": self.files, "fraud": self.fraud,
            "labels": self.labels,
        }


# -- small vectorised helpers ---------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, built in Arrow (no Python loop)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _pick(strings: list[str], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(strings, pa.string()), pa.array(index, pa.int64()))


def _groups(rng: np.random.Generator, n: int, sizes: np.ndarray, probs: np.ndarray
            ) -> np.ndarray:
    """Group number of each of ``n`` consecutive items, group sizes drawn from ``sizes``."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    draw = rng.choice(sizes, size=n, p=probs / probs.sum())
    ends = np.cumsum(draw)
    return np.searchsorted(ends, np.arange(n), side="right").astype(np.int64)


def _day_cdf() -> np.ndarray:
    days = np.arange(DAYS)
    weekday = (days + 0) % 7  # 2024-01-01 was a Monday
    w = WEEKDAY_FACTOR[weekday].copy()
    for lo, hi, f in HOLIDAYS:
        w[lo:hi] *= f
    return np.concatenate([[0.0], np.cumsum(w) / w.sum()])


def _sample_ts(rng: np.random.Generator, lo_day: np.ndarray, hi_day: np.ndarray,
               hours: np.ndarray = HOUR_WEIGHTS) -> np.ndarray:
    """Epoch-ms times in days [lo_day, hi_day), following the seasonal day curve."""
    cdf = _day_cdf()
    lo_day = np.clip(lo_day, 0, DAYS - 1)
    hi_day = np.clip(np.maximum(hi_day, lo_day + 1), 1, DAYS)
    a, b = cdf[lo_day], cdf[hi_day]
    x = a + rng.random(lo_day.size) * (b - a)
    day = np.clip(np.searchsorted(cdf, x, side="right") - 1, lo_day, hi_day - 1)
    hour = rng.choice(24, size=lo_day.size, p=hours / hours.sum())
    within = rng.integers(0, 3_600_000, size=lo_day.size)
    ts: np.ndarray = START_MS + day * DAY_MS + hour * 3_600_000 + within
    return ts


def _day_of(ms: np.ndarray) -> np.ndarray:
    return (ms - START_MS) // DAY_MS


def _round_to(x: np.ndarray, step: float) -> np.ndarray:
    return np.round(x / step) * step


# -- the world, built step by step ------------------------------------------------------
@dataclass
class _Users:
    n: int
    n_regular: int  # regular users first, then ring members, then farm accounts
    public: np.ndarray  # public number of each internal index
    width: int
    signup: np.ndarray
    last_active: np.ndarray
    city: np.ndarray
    quality: np.ndarray  # latent credit quality, standard normal for clean users
    income: np.ndarray
    household: np.ndarray
    office: np.ndarray  # -1 when not in an office
    kind: np.ndarray  # index into FRAUD_KINDS, -1 clean
    fraud_ts: np.ndarray  # ms, 0 when clean
    ring: np.ndarray  # ring number for device_ring members, -1 otherwise
    farm: np.ndarray  # farm number for referral_farm accounts, -1 otherwise
    ring_times: np.ndarray
    farm_times: np.ndarray

    def ids(self, internal: np.ndarray) -> pa.Array:
        return _ids("u", self.public[internal], self.width)


class _Writer:
    """Writes one file per type in CSV or Parquet, a chunk at a time."""

    def __init__(self, out: Path, fmt: FileFormat) -> None:
        self.out = out
        self.fmt = fmt
        self.rows: dict[str, int] = {}

    def write(self, name: str, table: pa.Table) -> None:
        path = self.out / f"{name}.{'csv' if self.fmt == 'csv' else 'parquet'}"
        if self.fmt == "csv":
            opts = pacsv.WriteOptions(quoting_style="needed")
            with pacsv.CSVWriter(path, table.schema, write_options=opts) as w:
                for start in range(0, max(table.num_rows, 1), CHUNK_ROWS):
                    w.write_table(table.slice(start, CHUNK_ROWS))
        else:
            pq.write_table(table, path, row_group_size=256_000, compression="snappy")
        self.rows[path.name] = table.num_rows


def _make_users(cfg: GeneratorConfig, rng: np.random.Generator) -> _Users:
    n = cfg.users
    fraud_n = cfg.fraud_rate * n
    cap = max(5, n // 20)

    ring_sizes = _sizes_until(rng, 0.40 * fraud_n, 5, 16, cap)
    farm_sizes = _sizes_until(rng, 0.25 * fraud_n, 8, 41, cap)
    n_ring, n_farm = int(ring_sizes.sum()), int(farm_sizes.sum())
    n_regular = n - n_ring - n_farm

    width = max(7, len(str(n - 1)))
    public = rng.permutation(n)

    # Regular users: lifecycle decides signup and last activity.
    life = rng.choice(3, size=n_regular, p=[0.12, 0.68, 0.20])  # new, active, dormant
    age_days = np.where(
        life == 0, rng.uniform(1, 90, n_regular),
        np.where(life == 1, 90 + rng.exponential(700, n_regular),
                 180 + rng.exponential(700, n_regular)),
    )
    too_old = age_days > 6 * 365  # accounts go back six years at most
    age_days[too_old] = rng.uniform(180, 6 * 365, int(too_old.sum()))
    signup = (END_MS - age_days * DAY_MS).astype(np.int64)
    recent = END_MS - rng.uniform(0, 20, n_regular) * DAY_MS
    dormant_last = END_MS - (90 + rng.exponential(150, n_regular)) * DAY_MS
    last_active = np.where(life == 2, dormant_last, recent).astype(np.int64)
    last_active = np.maximum(last_active, signup + DAY_MS // 2)

    # Households (consecutive regular users) and offices (a random subset).
    household = _groups(rng, n_regular, np.arange(1, 6), np.array([50, 20, 15, 10, 5.0]))
    workers = rng.permutation(n_regular)[: int(0.55 * n_regular)]
    office = np.full(n_regular, -1, dtype=np.int64)
    office[workers] = _groups(rng, workers.size, np.arange(3, 61), 1 / np.arange(3, 61) ** 0.8)

    city_w = 1 / np.arange(1, len(CITIES) + 1) ** 0.7
    home_city = rng.choice(len(CITIES), size=household.max() + 1, p=city_w / city_w.sum())
    city = home_city[household]

    quality = rng.standard_normal(n_regular)

    # Device rings: accounts opened over a few weeks, then a burst at ring time.
    ring_times = START_MS + rng.uniform(45, DAYS - 10, ring_sizes.size) * DAY_MS
    ring = np.repeat(np.arange(ring_sizes.size), ring_sizes)
    ring_signup = ring_times[ring] - rng.uniform(5, 40, n_ring) * DAY_MS
    ring_last = ring_times[ring] + rng.uniform(0, 3, n_ring) * DAY_MS

    # Referral farms: a referrer with an older account and a burst of new accounts.
    farm_times = START_MS + rng.uniform(20, DAYS - 5, farm_sizes.size) * DAY_MS
    farm = np.repeat(np.arange(farm_sizes.size), farm_sizes)
    first_of_farm = np.concatenate([[0], np.cumsum(farm_sizes)[:-1]])
    is_farmer = np.zeros(n_farm, dtype=bool)
    is_farmer[first_of_farm] = True
    farm_signup = farm_times[farm] + rng.uniform(0, 3, n_farm) * DAY_MS
    farmer_age = rng.uniform(60, 400, int(is_farmer.sum())) * DAY_MS
    farm_signup[is_farmer] = farm_times[farm[is_farmer]] - farmer_age
    farm_last = farm_signup + rng.uniform(1, 10, n_farm) * DAY_MS
    farm_last[is_farmer] = farm_times[farm[is_farmer]] + 5 * DAY_MS

    fraud_cities = rng.choice(len(CITIES), size=ring_sizes.size + farm_sizes.size)
    city = np.concatenate([city, fraud_cities[ring], fraud_cities[ring_sizes.size + farm]])

    signup = np.concatenate([signup, ring_signup, farm_signup]).astype(np.int64)
    last_active = np.concatenate([last_active, ring_last, farm_last]).astype(np.int64)
    last_active = np.minimum(last_active, END_MS - DAY_MS // 4)
    # Fraud accounts look only somewhat worse than clean ones.
    quality = np.concatenate([quality, rng.normal(-0.5, 0.9, n_ring + n_farm)])
    income = np.exp(11.0 + 0.35 * quality + 0.45 * rng.standard_normal(n))
    income = _round_to(income, 100.0)

    hh = np.concatenate([household, household.max() + 1 + np.arange(n_ring + n_farm)])
    off = np.concatenate([office, np.full(n_ring + n_farm, -1)])

    kind = np.full(n, -1, dtype=np.int64)
    fraud_ts = np.zeros(n, dtype=np.int64)
    kind[n_regular:n_regular + n_ring] = FRAUD_KINDS.index("device_ring")
    fraud_ts[n_regular:n_regular + n_ring] = ring_times[ring]
    kind[n_regular + n_ring:] = FRAUD_KINDS.index("referral_farm")
    fraud_ts[n_regular + n_ring:] = np.where(is_farmer, farm_times[farm], farm_signup)

    ring_all = np.full(n, -1, dtype=np.int64)
    ring_all[n_regular:n_regular + n_ring] = ring
    farm_all = np.full(n, -1, dtype=np.int64)
    farm_all[n_regular + n_ring:] = farm

    return _Users(
        n=n, n_regular=n_regular, public=public, width=width, signup=signup,
        last_active=last_active, city=city, quality=quality, income=income,
        household=hh, office=off, kind=kind, fraud_ts=fraud_ts, ring=ring_all,
        farm=farm_all, ring_times=ring_times, farm_times=farm_times,
    )


def _sizes_until(rng: np.random.Generator, target: float, lo: int, hi: int, cap: int
                 ) -> np.ndarray:
    """Group sizes in [lo, hi) (at most ``cap``) adding up to about ``target``; at least one."""
    hi = max(lo + 1, min(hi, cap + 1))
    k = max(1, int(round(target / ((lo + hi - 1) / 2))))
    return rng.integers(lo, hi, size=k)


def _pick_bust_and_mules(cfg: GeneratorConfig, u: _Users, rng: np.random.Generator
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bust-out users (long good history) and mule chains, from the regular users."""
    reg = np.arange(u.n_regular)
    seasoned = reg[(END_MS - u.signup[: u.n_regular] > 400 * DAY_MS)
                   & (u.last_active[: u.n_regular] > END_MS - 30 * DAY_MS)]
    n_bust = max(1, int(0.20 * cfg.fraud_rate * u.n))
    bust = rng.choice(seasoned, size=min(n_bust, seasoned.size), replace=False)
    u.kind[bust] = FRAUD_KINDS.index("bust_out")
    default_at = END_MS - rng.uniform(40, 150, bust.size) * DAY_MS
    u.fraud_ts[bust] = default_at.astype(np.int64)
    u.last_active[bust] = u.fraud_ts[bust] + DAY_MS
    u.quality[bust] = np.abs(u.quality[bust]) + 0.3  # they built a good record first

    n_mules = max(3, int(0.15 * cfg.fraud_rate * u.n))
    free = np.setdiff1d(reg[u.last_active[: u.n_regular] > START_MS + 60 * DAY_MS], bust)
    mules = rng.choice(free, size=min(n_mules, free.size), replace=False)
    lengths = _sizes_until(rng, mules.size, 3, 7, mules.size)
    chains: list[np.ndarray] = []
    start = 0
    for length in lengths:
        chain = mules[start:start + length]
        if chain.size < 2:
            break
        chains.append(chain)
        start += length
    for chain in chains:
        u.kind[chain] = FRAUD_KINDS.index("mule_chain")
    return bust, chains


def _users_table(u: _Users, rng: np.random.Generator, labels: np.ndarray) -> pa.Table:
    n = u.n
    names = pc.binary_join_element_wise(
        _pick(SURNAMES, rng.integers(0, len(SURNAMES), n)),
        _pick(GIVEN, rng.integers(0, len(GIVEN), n)), " ",
    )
    life = np.where(u.signup > END_MS - 90 * DAY_MS, 0,
                    np.where(u.last_active < END_MS - 90 * DAY_MS, 2, 1))
    true_fraud = u.kind >= 0
    kinds = pa.array(np.where(true_fraud, u.kind, 0), pa.int64())
    kind_str = pc.if_else(pa.array(true_fraud), pc.take(pa.array(FRAUD_KINDS), kinds), None)
    fraud_ts = pa.array(u.fraud_ts, pa.int64(), mask=~true_fraud)
    return pa.table({
        "id": u.ids(np.arange(n)),
        "name": names,
        "city": _pick(CITIES, u.city),
        "signup_ts": pa.array(u.signup, pa.int64()),
        "lifecycle": _pick(["new", "active", "dormant"], life),
        "is_fraud": pa.array(labels, pa.int64()),
        "fraud_kind": kind_str,
        "fraud_ts": fraud_ts,
    })


def _labels(cfg: GeneratorConfig, u: _Users, rng: np.random.Generator) -> np.ndarray:
    """The label as known: a few frauds missed, a few clean users flagged."""
    truth = u.kind >= 0
    flip = np.where(truth, rng.random(u.n) < cfg.missed_fraud,
                    rng.random(u.n) < cfg.false_alarm)
    return np.where(flip, ~truth, truth).astype(np.int64)


@dataclass
class _Merchants:
    n: int
    category: np.ndarray
    cum: np.ndarray  # category c + within-category popularity CDF, sorted
    order: np.ndarray  # merchant index for each position of ``cum``
    table: pa.Table


def _make_merchants(n_users: int, rng: np.random.Generator) -> _Merchants:
    n = max(60, n_users // 40)
    per_cat = np.maximum(3, np.round(CAT_SHARE * n)).astype(np.int64)
    category = np.repeat(np.arange(len(CATEGORIES)), per_cat)
    n = category.size
    rank = np.concatenate([np.arange(k) for k in per_cat])
    pop = 1.0 / (rank + 1.0) ** 1.1 * rng.uniform(0.7, 1.3, n)
    cum = np.empty(n)
    start = 0
    for c, k in enumerate(per_cat):
        w = np.cumsum(pop[start:start + k])
        cum[start:start + k] = c + w / w[-1]
        start += k
    city_w = 1 / np.arange(1, len(CITIES) + 1) ** 0.7
    table = pa.table({
        "id": _ids("m", np.arange(n), 6),
        "name": pc.binary_join_element_wise(
            _pick([c.replace("_", " ").title() for c in CAT_NAMES], category),
            pc.cast(pa.array(rank + 1), pa.string()), " #"),
        "category": _pick(CAT_NAMES, category),
        "city": _pick(CITIES, rng.choice(len(CITIES), size=n, p=city_w / city_w.sum())),
    })
    return _Merchants(n, category, cum, np.arange(n), table)


def _merchant_for(m: _Merchants, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = cats + rng.random(cats.size) * (1 - 1e-12)
    pos = np.searchsorted(m.cum, x, side="left")
    return m.order[np.minimum(pos, m.n - 1)]


@dataclass
class _Payments:
    user: np.ndarray
    merchant: np.ndarray
    cat: np.ndarray
    ts: np.ndarray
    amount: np.ndarray
    fraud: np.ndarray
    bnpl: np.ndarray  # paid with the BNPL line


def _make_payments(cfg: GeneratorConfig, u: _Users, m: _Merchants, bust: np.ndarray,
                   holds_bnpl: np.ndarray, rng: np.random.Generator) -> _Payments:
    lo = np.clip(_day_of(u.signup), 0, DAYS)
    hi = np.clip(_day_of(u.last_active) + 1, 0, DAYS)
    months = np.maximum(hi - lo, 0) / 30.44
    rate = np.exp(0.9 * rng.standard_normal(u.n) + 0.2 * u.quality)
    rate[u.signup > END_MS - 90 * DAY_MS] *= 1.4  # new users try the product
    rate[u.kind == FRAUD_KINDS.index("referral_farm")] *= 0.2
    expected = rate * months
    scale = cfg.payments_per_user * u.n_regular / max(expected[: u.n_regular].sum(), 1e-9)
    counts = rng.poisson(expected * scale)
    owner = np.repeat(np.arange(u.n), counts)
    favourite = rng.choice(len(CATEGORIES), size=u.n, p=CAT_SHARE)
    cat = np.where(rng.random(owner.size) < 0.45, favourite[owner],
                   rng.choice(len(CATEGORIES), size=owner.size, p=CAT_SHARE))
    ts = _sample_ts(rng, lo[owner], hi[owner])
    amount = np.exp(np.log(CAT_MEDIAN[cat]) + 0.25 * u.quality[owner]
                    + 0.7 * rng.standard_normal(owner.size))
    fraud = np.zeros(owner.size, dtype=np.int64)

    parts: list[tuple[np.ndarray, ...]] = [(owner, cat, ts, amount, fraud)]
    parts.append(_ring_bursts(u, rng))
    parts.append(_bust_sprees(u, bust, rng))
    parts.append(_farm_bonuses(u, rng))
    owner = np.concatenate([p[0] for p in parts])
    cat = np.concatenate([p[1] for p in parts])
    ts = np.concatenate([p[2] for p in parts]).astype(np.int64)
    amount = np.round(np.concatenate([p[3] for p in parts]), 2)
    fraud = np.concatenate([p[4] for p in parts])
    order = np.argsort(ts, kind="stable")
    owner, cat, ts, amount, fraud = owner[order], cat[order], ts[order], amount[order], fraud[order]
    merchant = _merchant_for(m, cat, rng)
    bnpl_share = np.where(holds_bnpl, 0.55, 0.0)[owner]
    bnpl = (rng.random(owner.size) < bnpl_share) | ((fraud == 1) & holds_bnpl[owner])
    return _Payments(owner, merchant, cat, ts, amount, fraud, bnpl)


def _burst(rng: np.random.Generator, who: np.ndarray, per: tuple[int, int],
           start: np.ndarray, span_days: float, scale: float
           ) -> tuple[np.ndarray, ...]:
    k = rng.integers(per[0], per[1], size=who.size)
    owner = np.repeat(who, k)
    t0 = np.repeat(start, k)
    ts = t0 + (rng.random(owner.size) * span_days * DAY_MS).astype(np.int64)
    hour_shift = rng.choice(24, size=owner.size, p=NIGHT_HOUR_WEIGHTS / NIGHT_HOUR_WEIGHTS.sum())
    ts = ts - ts % DAY_MS + hour_shift * 3_600_000 + rng.integers(0, 3_600_000, owner.size)
    ts = np.clip(ts, START_MS, END_MS - 1)
    cat = rng.choice(CASH_OUT_CATS, size=owner.size)
    amount = np.exp(np.log(CAT_MEDIAN[cat] * scale) + 0.4 * rng.standard_normal(owner.size))
    return owner, cat, ts, amount, np.ones(owner.size, dtype=np.int64)


def _ring_bursts(u: _Users, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    who = np.flatnonzero(u.ring >= 0)
    return _burst(rng, who, (3, 9), u.fraud_ts[who], 3.0, 1.0)


def _bust_sprees(u: _Users, bust: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, ...]:
    return _burst(rng, bust, (8, 21), u.fraud_ts[bust] - 60 * DAY_MS, 60.0, 1.2)


def _farm_bonuses(u: _Users, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    who = np.flatnonzero(u.farm >= 0)
    owner, cat, ts, amount, fraud = _burst(rng, who, (0, 3), u.signup[who], 7.0, 0.1)
    return owner, cat, ts, np.minimum(amount, 100.0), fraud


def _paid_table(u: _Users, m: _Merchants, p: _Payments, labels: np.ndarray,
                rng: np.random.Generator) -> pa.Table:
    n = p.user.size
    online = np.isin(p.cat, [CAT_NAMES.index(c) for c in
                             ("ecommerce", "digital_goods", "gaming", "entertainment")])
    channel = np.where(online, 2, rng.choice([0, 1, 3], size=n, p=[0.4, 0.45, 0.15]))
    product = np.where(p.bnpl, 0, rng.choice([1, 2], size=n, p=[0.6, 0.4]))
    merchant_city = np.asarray(
        pc.index_in(m.table.column("city"), pa.array(CITIES)).to_numpy(zero_copy_only=False)
    )[p.merchant]
    location = np.where(rng.random(n) < 0.85, u.city[p.user], merchant_city)
    txn_type = pc.take(pa.array(CAT_TXN_TYPE), pa.array(p.cat))
    labelled_fraud = p.fraud * labels[p.user]
    return pa.table({
        "src": u.ids(p.user),
        "dst": m.table.column("id").take(pa.array(p.merchant)),
        "id": _ids("p", np.arange(n), max(9, len(str(n)))),
        "amount": pa.array(p.amount),
        "ts": pa.array(p.ts),
        "channel": _pick(CHANNELS, channel),
        "product": _pick(PAY_PRODUCTS, product),
        "location": _pick(CITIES, location),
        "txn_type": txn_type,
        "is_fraud": pa.array(labelled_fraud, pa.int64()),
    })


# -- devices, phones, IPs, cards --------------------------------------------------------
def _link_table(src: pa.Array, dst: pa.Array, cols: dict[str, Any]) -> pa.Table:
    return pa.table({"src": src, "dst": dst, **cols})


def _devices(u: _Users, rng: np.random.Generator
             ) -> tuple[pa.Table, pa.Table, list[dict[str, str]]]:
    """Device nodes and USES: personal devices, shared home and office devices, ring
    devices, and a few clean users on a ring device (relational-risk cases)."""
    n = u.n
    user_parts, dev_parts, kinds = [], [], []
    next_dev = 0

    def add(users: np.ndarray, devs: np.ndarray) -> None:
        user_parts.append(users)
        dev_parts.append(devs)

    # One phone each, and a second personal device for some.
    personal = np.arange(n)
    farm_acc = u.farm >= 0
    add(personal, next_dev + personal)
    kinds.append(np.where(farm_acc, 3, 0))  # phone, or an emulator for farm accounts
    next_dev += n
    second = np.flatnonzero((rng.random(n) < 0.2) & (u.kind < 0))
    add(second, next_dev + np.arange(second.size))
    kinds.append(rng.choice([1, 2], size=second.size))
    next_dev += second.size

    # A shared home tablet or computer in 60% of households of two or more.
    reg = np.arange(u.n_regular)
    hh = u.household[reg]
    hh_size = np.bincount(hh)
    shared_hh = np.flatnonzero((hh_size >= 2) & (rng.random(hh_size.size) < 0.6))
    hh_dev = np.full(hh_size.size, -1, dtype=np.int64)
    hh_dev[shared_hh] = next_dev + np.arange(shared_hh.size)
    kinds.append(rng.choice([1, 2], size=shared_hh.size))
    next_dev += shared_hh.size
    users_h = reg[(hh_dev[hh] >= 0) & (rng.random(reg.size) < 0.85)]
    add(users_h, hh_dev[u.household[users_h]])

    # Shared computers in some offices.
    offices = u.office[reg]
    n_off = offices.max() + 1 if offices.size and offices.max() >= 0 else 0
    off_dev = np.full(max(n_off, 1), -1, dtype=np.int64)
    shared_off = np.flatnonzero(rng.random(n_off) < 0.3)
    off_dev[shared_off] = next_dev + np.arange(shared_off.size)
    kinds.append(np.full(shared_off.size, 2))
    next_dev += shared_off.size
    in_off = reg[offices >= 0]
    users_o = in_off[(off_dev[u.office[in_off]] >= 0) & (rng.random(in_off.size) < 0.5)]
    add(users_o, off_dev[u.office[users_o]])

    # Ring devices: one to three per ring, used by most members.
    n_rings = u.ring_times.size
    per_ring = rng.integers(1, 4, size=n_rings)
    ring_dev_start = next_dev + np.concatenate([[0], np.cumsum(per_ring)[:-1]])
    kinds.append(rng.choice([0, 3], size=int(per_ring.sum()), p=[0.6, 0.4]))
    next_dev += int(per_ring.sum())
    members = np.flatnonzero(u.ring >= 0)
    for rep in range(3):
        pick = rng.random(members.size) < (0.9 if rep == 0 else 0.4)
        mem = members[pick]
        r = u.ring[mem]
        add(mem, ring_dev_start[r] + rng.integers(0, per_ring[r]))

    # Farm accounts share one or two emulators per farm.
    n_farms = u.farm_times.size
    farm_dev = next_dev + 2 * np.arange(n_farms)
    kinds.append(np.full(2 * n_farms, 3))
    next_dev += 2 * n_farms
    fa = np.flatnonzero(farm_acc)
    fa = fa[rng.random(fa.size) < 0.7]
    add(fa, farm_dev[u.farm[fa]] + rng.integers(0, 2, size=fa.size))

    # Clean users tied to a ring through one shared device.
    clean = np.flatnonzero((u.kind < 0) & (np.arange(n) < u.n_regular))
    k = max(1, int(0.4 * n_rings))
    tied_users = rng.choice(clean, size=min(k, clean.size), replace=False)
    tied_rings = rng.choice(n_rings, size=tied_users.size)
    tied_devs = ring_dev_start[tied_rings]
    add(tied_users, tied_devs)
    cases = [
        {"user": str(u.ids(np.array([tu]))[0]), "ring_device": f"d{td:08d}",
         "ring_member": str(u.ids(np.flatnonzero(u.ring == tr)[:1])[0])}
        for tu, td, tr in zip(tied_users.tolist(), tied_devs.tolist(), tied_rings.tolist())
    ]

    users = np.concatenate(user_parts)
    devs = np.concatenate(dev_parts)
    pair = np.unique(users.astype(np.int64) * (next_dev + 1) + devs)
    users, devs = pair // (next_dev + 1), pair % (next_dev + 1)

    kind = np.concatenate(kinds)
    kind_names = ["phone", "tablet", "computer", "emulator"]
    os_names = ["android", "ios", "harmonyos", "windows", "macos", "linux"]
    # For each device kind: the operating systems it may run and how often.
    os_choice = {0: ([0, 1, 2], [0.55, 0.3, 0.15]), 1: ([0, 1], [0.4, 0.6]),
                 2: ([3, 4, 5], [0.75, 0.2, 0.05]), 3: ([0], [1.0])}
    os_idx = np.zeros(next_dev, dtype=np.int64)
    for k_, (choices, probs) in os_choice.items():
        sel = np.flatnonzero(kind == k_)
        os_idx[sel] = rng.choice(choices, size=sel.size, p=probs)
    device_table = pa.table({
        "id": _ids("d", np.arange(next_dev), 8),
        "kind": _pick(kind_names, kind),
        "os": _pick(os_names, os_idx),
    })

    lo = np.maximum(u.signup[users], START_MS - 365 * DAY_MS)
    hi = np.maximum(u.last_active[users], lo + 1)
    first = lo + (rng.random(users.size) * 0.3 * (hi - lo)).astype(np.int64)
    last = hi - (rng.random(users.size) * 0.1 * (hi - first)).astype(np.int64)
    sessions = 1 + rng.poisson(np.maximum((last - first) / DAY_MS, 0) * 0.6)
    uses = _link_table(u.ids(users), _ids("d", devs, 8), {
        "first_seen": pa.array(first), "last_seen": pa.array(last),
        "sessions": pa.array(sessions.astype(np.int64)),
    })
    return device_table, uses, cases


def _phones(u: _Users, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    n = u.n
    number = np.arange(n)  # own number
    # 5% of household members use the number of the first member of their household.
    first_of_hh = np.zeros(u.household.max() + 1, dtype=np.int64)
    first_of_hh[u.household[::-1]] = np.arange(n)[::-1]
    share = (rng.random(n) < 0.05) & (u.kind < 0)
    number = np.where(share, first_of_hh[u.household], number)
    # Half of ring members use one of two ring numbers.
    members = np.flatnonzero(u.ring >= 0)
    ring_first = np.full(u.ring_times.size, -1, dtype=np.int64)
    ring_first[u.ring[members[::-1]]] = members[::-1]
    use = members[rng.random(members.size) < 0.5]
    number[use] = ring_first[u.ring[use]] + rng.integers(0, 2, use.size)
    used = np.unique(number)
    digits = 13_000_000_000 + (used * 7_919) % 9_000_000_000
    phone_ids = pc.binary_join_element_wise("+86", pc.cast(pa.array(digits), pa.string()), "")
    nodes = pa.table({"id": phone_ids})
    pos = np.searchsorted(used, number)
    since = u.signup + (rng.random(n) * DAY_MS).astype(np.int64)
    rel = _link_table(u.ids(np.arange(n)), phone_ids.take(pa.array(pos)),
                      {"since": pa.array(since)})
    return nodes, rel


def _ip_strings(numbers: np.ndarray) -> pa.Array:
    x = (0x0B000000 + (1 + numbers * 2_654_435_761) % (1 << 24)).astype(np.int64)
    octets = [pc.cast(pa.array((x >> s) & 255), pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def _ips(u: _Users, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    n = u.n
    n_hh = int(u.household.max()) + 1
    n_off = int(max(u.office.max(), -1)) + 1
    n_public = max(20, n // 500)
    n_rings, n_farms = u.ring_times.size, u.farm_times.size
    base_off = n_hh
    base_pub = base_off + n_off
    base_ring = base_pub + n_public
    base_farm = base_ring + 2 * n_rings
    total = base_farm + 3 * n_farms

    parts_u, parts_ip = [], []
    reg = np.flatnonzero((u.ring < 0) & (u.farm < 0))
    home = reg[rng.random(reg.size) < 0.8]
    parts_u.append(home)
    parts_ip.append(u.household[home])
    w = np.flatnonzero(u.office >= 0)
    w = w[rng.random(w.size) < 0.7]
    parts_u.append(w)
    parts_ip.append(base_off + u.office[w])
    pub = reg[rng.random(reg.size) < 0.2]
    pop = 1 / np.arange(1, n_public + 1) ** 1.2
    parts_u.append(pub)
    parts_ip.append(base_pub + rng.choice(n_public, size=pub.size, p=pop / pop.sum()))
    ring = np.flatnonzero(u.ring >= 0)
    parts_u.append(ring)
    parts_ip.append(base_ring + 2 * u.ring[ring] + rng.integers(0, 2, ring.size))
    farm = np.flatnonzero(u.farm >= 0)
    parts_u.append(farm)
    parts_ip.append(base_farm + 3 * u.farm[farm] + rng.integers(0, 3, farm.size))

    users = np.concatenate(parts_u)
    ips = np.concatenate(parts_ip)
    pair = np.unique(users * total + ips)
    users, ips = pair // total, pair % total
    used = np.unique(ips)
    strings = _ip_strings(used)
    last = np.minimum(u.last_active[users] + (rng.random(users.size) * DAY_MS).astype(np.int64),
                      END_MS - 1)
    rel = _link_table(u.ids(users), strings.take(pa.array(np.searchsorted(used, ips))),
                      {"last_seen": pa.array(last)})
    return pa.table({"id": strings}), rel


def _cards(u: _Users, rng: np.random.Generator) -> tuple[pa.Table, pa.Table]:
    n = u.n
    count = rng.choice([0, 1, 2], size=n, p=[0.3, 0.55, 0.15])
    owner = np.repeat(np.arange(n), count)
    card = np.arange(owner.size)
    # Spouses sometimes bind the same card: the first card of the household.
    first_card = np.full(int(u.household.max()) + 1, -1, dtype=np.int64)
    first_card[u.household[owner[::-1]]] = card[::-1]
    share = (rng.random(owner.size) < 0.04) & (u.kind[owner] < 0)
    card = np.where(share & (first_card[u.household[owner]] >= 0),
                    first_card[u.household[owner]], card)
    # Ring members cash out to one shared card per ring.
    members = np.flatnonzero(u.ring >= 0)
    ring_card = owner.size + u.ring[members]
    owner = np.concatenate([owner, members])
    card = np.concatenate([card, ring_card])
    pair = np.unique(owner * (card.max() + 2) + card)
    owner, card = pair // (card.max() + 2), pair % (card.max() + 2)
    used = np.unique(card)
    digits = 6_222_000_000_000_000 + (used * 7_919) % 1_000_000_000_000
    ids = pc.cast(pa.array(digits), pa.string())
    since = u.signup[owner] + (rng.random(owner.size) * 30 * DAY_MS).astype(np.int64)
    since = np.minimum(since, END_MS - 1)
    rel = _link_table(u.ids(owner), ids.take(pa.array(np.searchsorted(used, card))),
                      {"since": pa.array(since)})
    return pa.table({"id": ids}), rel


# -- products and holdings -------------------------------------------------------------
@dataclass
class _Holdings:
    table: pa.Table
    holds_bnpl: np.ndarray
    utilisation: np.ndarray
    other_products: np.ndarray


def _holdings(u: _Users, bust: np.ndarray, overdue_worst: np.ndarray,
              rng: np.random.Generator) -> _Holdings:
    n = u.n
    mob = (END_MS - u.signup) / (30.44 * DAY_MS)
    new = u.signup > END_MS - 90 * DAY_MS
    ring_or_farm = (u.ring >= 0) | (u.farm >= 0)
    holds_bnpl = rng.random(n) < np.where(ring_or_farm, 1.0, 0.88)
    bnpl_limit = np.clip(u.income * 0.06 * np.exp(0.45 * u.quality), 500, 50_000)
    bnpl_limit = np.where(new | ring_or_farm, np.minimum(bnpl_limit, rng.uniform(500, 3000, n)),
                          bnpl_limit)
    cash_ok = (~new) & (mob >= 6) & (u.quality > -0.3) & ~ring_or_farm
    holds_cash = cash_ok & (rng.random(n) < 0.5)
    cash_limit = np.minimum(np.minimum(u.income * 0.25 * np.exp(0.3 * u.quality), 200_000),
                            u.income / 3)
    # Bust-outs were ramped up to the top of their range before the default.
    bnpl_limit[bust] = np.minimum(bnpl_limit[bust] * rng.uniform(1.8, 2.6, bust.size), 80_000)
    cash_limit[bust] = np.minimum(cash_limit[bust] * 1.5, 200_000)
    holds_cash[bust] = True

    dormant = u.last_active < END_MS - 90 * DAY_MS
    util = rng.beta(2, 5, n) * np.where(dormant, 0.1, 1.0)
    util = np.where(u.quality < -1, np.minimum(util * 1.6, 1.0), util)
    util[ring_or_farm] = rng.uniform(0.6, 1.0, int(ring_or_farm.sum()))
    util[bust] = rng.uniform(0.95, 1.02, bust.size)
    bnpl_limit = _round_to(bnpl_limit, 100)
    cash_limit = _round_to(cash_limit, 100)
    cash_util = np.where(bust.size and np.isin(np.arange(n), bust), util, util * 0.7)

    status = np.where(overdue_worst >= 3, np.where(rng.random(n) < 0.4, 1, 0), 0)
    status[ring_or_farm & (u.fraud_ts < END_MS - 30 * DAY_MS)] = 1
    status[bust] = 3
    closed = (rng.random(n) < 0.02) & ~ring_or_farm & (u.kind < 0)
    status[closed] = 2
    statuses = ["active", "frozen", "closed", "defaulted"]

    holds_wealth = (rng.random(n) < 0.15 + 0.15 * (u.quality > 0.5)) & ~ring_or_farm
    holds_ins = (rng.random(n) < 0.12 + 0.1 * (mob > 24)) & ~ring_or_farm
    other = holds_wealth.astype(np.int64) + holds_ins.astype(np.int64)

    since_base = u.signup + (rng.random(n) * 20 * DAY_MS).astype(np.int64)
    temp = (rng.random(n) < 0.05) & ~dormant & (u.quality > 0) & (status == 0)
    temp_limit = np.where(temp, bnpl_limit * 1.3, np.nan)
    temp_until = np.where(temp, END_MS + 30 * DAY_MS, 0)
    temp_limit[bust] = bnpl_limit[bust] * 1.5
    temp_until[bust] = u.fraud_ts[bust] + 30 * DAY_MS
    has_temp = ~np.isnan(temp_limit)

    rows_u, rows_p, lim, bal, st, since, tl, tu = [], [], [], [], [], [], [], []

    def add(mask: np.ndarray, product: int, limit: np.ndarray | None, balance: np.ndarray,
            stat: np.ndarray, start: np.ndarray, tlim: np.ndarray | None = None,
            tuntil: np.ndarray | None = None) -> None:
        idx = np.flatnonzero(mask)
        rows_u.append(idx)
        rows_p.append(np.full(idx.size, product))
        lim.append(np.full(idx.size, np.nan) if limit is None else limit[idx])
        bal.append(np.round(balance[idx], 2))
        st.append(stat[idx])
        since.append(np.minimum(start[idx], END_MS - 1))
        tl.append(np.full(idx.size, np.nan) if tlim is None else tlim[idx])
        tu.append(np.zeros(idx.size, dtype=np.int64) if tuntil is None else tuntil[idx])

    add(holds_bnpl, 0, bnpl_limit, bnpl_limit * util, status, since_base, temp_limit, temp_until)
    cash_since = since_base + (np.maximum(mob - 6, 0) * rng.random(n) * 30 * DAY_MS).astype(
        np.int64) + 180 * DAY_MS
    add(holds_cash, 1, cash_limit, cash_limit * cash_util, status, cash_since)
    zero = np.zeros(n, dtype=np.int64)
    add(holds_wealth, 2, None, np.exp(rng.normal(8.5, 1.2, n)), zero, since_base)
    add(holds_ins, 3, None, np.zeros(n), zero, since_base)

    users = np.concatenate(rows_u)
    tl_all = np.concatenate(tl)
    tu_all = np.concatenate(tu)
    table = pa.table({
        "src": u.ids(users),
        "dst": _pick([p[0] for p in PRODUCTS], np.concatenate(rows_p)),
        "limit": pa.array(np.concatenate(lim), from_pandas=True),
        "balance": pa.array(np.concatenate(bal)),
        "status": _pick(statuses, np.concatenate(st)),
        "since": pa.array(np.concatenate(since)),
        "temp_limit": pa.array(np.round(tl_all, 2), from_pandas=True),
        "temp_until": pa.array(tu_all, mask=tu_all == 0),
    })
    credit_limit = np.where(holds_bnpl, bnpl_limit, 0) + np.where(holds_cash, cash_limit, 0)
    credit_bal = (np.where(holds_bnpl, bnpl_limit * util, 0)
                  + np.where(holds_cash, cash_limit * cash_util, 0))
    utilisation = np.where(credit_limit > 0, credit_bal / np.maximum(credit_limit, 1), np.nan)
    del has_temp
    return _Holdings(table, holds_bnpl, utilisation, other)


# -- referrals and transfers -----------------------------------------------------------
def _referrals(u: _Users, rng: np.random.Generator) -> pa.Table:
    reg = np.flatnonzero((u.ring < 0) & (u.farm < 0))
    by_signup = reg[np.argsort(u.signup[reg], kind="stable")]
    rank = np.arange(by_signup.size)
    referred = (rng.random(by_signup.size) < 0.12) & (rank > 0)
    who = by_signup[referred]
    ref_rank = (rank[referred] * rng.random(who.size) ** 0.5).astype(np.int64)
    referrer = by_signup[ref_rank]
    farm_acc = np.flatnonzero(u.farm >= 0)
    farmer_of = np.full(u.farm_times.size, -1, dtype=np.int64)
    farmer_of[u.farm[farm_acc[::-1]]] = farm_acc[::-1]
    farm_ref = farm_acc[farmer_of[u.farm[farm_acc]] != farm_acc]
    src = np.concatenate([referrer, farmer_of[u.farm[farm_ref]]])
    dst = np.concatenate([who, farm_ref])
    return _link_table(u.ids(src), u.ids(dst), {"ts": pa.array(u.signup[dst])})


def _transfers(u: _Users, chains: list[np.ndarray], rng: np.random.Generator
               ) -> tuple[pa.Table, np.ndarray]:
    """Legitimate transfers (family and friends) and mule chains; returns the table and
    the first time each mule received money."""
    reg = np.flatnonzero((u.ring < 0) & (u.farm < 0))
    k = int(0.25 * reg.size)
    src = rng.choice(reg, size=k)
    # Half go to a household member when there is one (the next user in the household).
    nxt = np.minimum(src + 1, u.n_regular - 1)
    same_hh = u.household[nxt] == u.household[src]
    dst = np.where(same_hh & (rng.random(k) < 0.5), nxt, rng.choice(reg, size=k))
    keep = dst != src
    src, dst = src[keep], dst[keep]
    lo = np.maximum(_day_of(np.maximum(u.signup[src], u.signup[dst])), 0)
    hi = np.minimum(_day_of(np.minimum(u.last_active[src], u.last_active[dst])) + 1, DAYS)
    ok = hi > lo
    src, dst, lo, hi = src[ok], dst[ok], lo[ok], hi[ok]
    ts = _sample_ts(rng, lo, hi)
    amount = np.round(np.exp(np.log(300) + 0.9 * rng.standard_normal(src.size)), 2)
    channel = rng.choice([0, 1], size=src.size, p=[0.8, 0.2])

    first_in = np.zeros(u.n, dtype=np.int64)
    ring_members = np.flatnonzero(u.ring >= 0)
    m_src, m_dst, m_ts, m_amt = [], [], [], []
    for chain in chains:
        feeder = rng.choice(ring_members) if ring_members.size else chain[0]
        path = np.concatenate([[feeder], chain])
        lo_t = max(u.signup[chain].max(), START_MS + 30 * DAY_MS)
        hi_t = min(u.last_active[chain].min(), END_MS - 2 * DAY_MS)
        if hi_t <= lo_t:
            hi_t = lo_t + 10 * DAY_MS
        for _ in range(int(rng.integers(2, 6))):
            t = int(lo_t + rng.random() * (hi_t - lo_t))
            amt = float(np.exp(rng.uniform(np.log(5_000), np.log(50_000))))
            for a, b in zip(path[:-1], path[1:]):
                t += int(rng.uniform(10 * 60_000, 6 * 3_600_000))
                amt *= rng.uniform(0.97, 0.995)
                m_src.append(a)
                m_dst.append(b)
                m_ts.append(t)
                m_amt.append(round(amt, 2))
                if first_in[b] == 0 or t < first_in[b]:
                    first_in[b] = t
    src = np.concatenate([src, np.array(m_src, dtype=np.int64)])
    dst = np.concatenate([dst, np.array(m_dst, dtype=np.int64)])
    ts = np.concatenate([ts, np.array(m_ts, dtype=np.int64)])
    amount = np.concatenate([amount, np.array(m_amt)])
    channel = np.concatenate([channel, np.zeros(len(m_src), dtype=np.int64)])
    order = np.argsort(ts, kind="stable")
    table = pa.table({
        "src": u.ids(src[order]),
        "dst": u.ids(dst[order]),
        "id": _ids("t", np.arange(src.size), 8),
        "amount": pa.array(amount[order]),
        "ts": pa.array(ts[order]),
        "channel": _pick(["app", "bank"], channel[order]),
    })
    return table, first_in


# -- credit features ---------------------------------------------------------------------
def _repayment(u: _Users, holds_bnpl: np.ndarray, rng: np.random.Generator
               ) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """Repayment history strings (oldest first), overdue count, worst bucket, months on book."""
    n = u.n
    mob = np.floor((END_MS - u.signup) / (30.44 * DAY_MS)).astype(np.int64)
    length = np.minimum(mob, 36)
    months_ago = 35 - np.arange(36)  # column j is this many months before the as-of date
    month_end = END_MS - months_ago * 30.44 * DAY_MS
    r = rng.random((n, 36), dtype=np.float32)
    p_late = 1 / (1 + np.exp(4.0 + 1.5 * u.quality))  # about 2% a month for an average user
    active = (month_end[None, :] <= u.last_active[:, None] + 30 * DAY_MS) & holds_bnpl[:, None]
    no_bill = (~active) | (r < 0.12)
    late = r > 1 - p_late[:, None]
    bucket = 1 + np.minimum(rng.geometric(0.6, size=(n, 36)) - 1, 5)
    h = np.where(no_bill, ord("-"), np.where(late, ord("0") + bucket, ord("0"))).astype(np.uint8)
    # Bust-outs and defaulted rings: escalating overdue after the fraud time.
    after = (u.kind[:, None] >= 0) & (u.kind[:, None] != FRAUD_KINDS.index("mule_chain")) & (
        month_end[None, :] > u.fraud_ts[:, None] + 30 * DAY_MS)
    steps = np.cumsum(after, axis=1)
    h = np.where(after, ord("0") + np.minimum(steps, 6), h).astype(np.uint8)
    valid = np.arange(36)[None, :] >= (36 - length)[:, None]
    data = h[valid]  # row-major: each user's last ``length`` months, in order
    offsets = np.concatenate([[0], np.cumsum(length)]).astype(np.int32)
    hist = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))
    hist = pc.if_else(pc.equal(pc.utf8_length(hist), 0), None, hist)
    counted = np.where(valid, h, ord("0"))
    overdue = ((counted >= ord("1")) & (counted <= ord("6"))).sum(axis=1)
    worst = np.where(valid & (h >= ord("1")) & (h <= ord("6")), h - ord("0"), 0).max(axis=1)
    return hist, overdue.astype(np.int64), worst.astype(np.int64), mob


def _credit_features(u: _Users, p: _Payments, h: _Holdings, hist: pa.Array,
                     overdue: np.ndarray, worst: np.ndarray, mob: np.ndarray,
                     rng: np.random.Generator) -> pa.Table:
    n = u.n
    recent = p.ts >= END_MS - 182 * DAY_MS
    spend = np.bincount(p.user[recent], weights=p.amount[recent], minlength=n) / 6
    txns = np.bincount(p.user[recent], minlength=n) / 6
    cats = np.unique(p.user[recent] * len(CATEGORIES) + p.cat[recent]) // len(CATEGORIES)
    n_cats = np.bincount(cats, minlength=n)
    last30 = p.ts >= END_MS - 30 * DAY_MS
    days = np.unique(p.user[last30] * 64 + _day_of(p.ts[last30]) % 64) // 64
    pay_days = np.bincount(days, minlength=n)
    awake = u.last_active >= END_MS - 30 * DAY_MS
    active_days = np.minimum(30, pay_days + np.where(awake, rng.poisson(4, n), 0))
    worst_dpd = np.where(worst > 0, (worst - 1) * 30 + rng.integers(1, 31, n), 0)
    score = (630 + 60 * u.quality + 3 * np.minimum(mob, 60) / 6 - 6 * np.minimum(overdue, 8)
             - 8 * worst + 30 * rng.standard_normal(n))
    new = mob < 3
    score = np.where(new, 560 + 40 * rng.standard_normal(n) + 20 * u.quality, score)
    score = np.clip(np.round(score), 350, 950).astype(np.int64)
    obligations = np.where(rng.random(n) < 0.35, 0.0,
                           u.income / 12 * rng.beta(2, 8, n))
    table = pa.table({
        "id": u.ids(np.arange(n)),
        "credit_score": pa.array(score),
        "income": pa.array(u.income),
        "months_on_book": pa.array(mob),
        "repayment_history": hist,
        "overdue_count": pa.array(overdue),
        "worst_dpd": pa.array(worst_dpd.astype(np.int64)),
        "utilisation": pa.array(np.round(h.utilisation, 4), from_pandas=True),
        "monthly_spend": pa.array(np.round(spend, 2)),
        "monthly_txns": pa.array(np.round(txns, 3)),
        "merchant_categories": pa.array(n_cats.astype(np.int64)),
        "active_days_30d": pa.array(active_days.astype(np.int64)),
        "other_products": pa.array(h.other_products),
        "obligations": pa.array(np.round(obligations, 2)),
    })
    assert table.column_names[1:] == list(CREDIT_PROPERTIES)
    return table


# -- groups, planted and legitimate --------------------------------------------------------
def _dorms(u: _Users, rng: np.random.Generator) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Dormitories: a few clean users who opened their accounts at the same time (one
    intake) and log in from the dorm's IP: legitimate sharing with a sign-up burst.
    Returns the IP nodes, LOGGED_FROM rows and each user's dorm (-1 none)."""
    clean = np.flatnonzero((u.kind < 0) & (np.arange(u.n) < u.n_regular))
    pick = clean[rng.random(clean.size) < 0.03]
    pick = pick[np.argsort(u.signup[pick], kind="stable")]  # roommates joined together
    dorm = np.full(u.n, -1, dtype=np.int64)
    dorm[pick] = _groups(rng, pick.size, np.arange(4, 9), np.ones(5))
    members = pick[rng.random(pick.size) < 0.9]
    numbers = (1 << 22) + dorm[members]  # a block of IPs no other pattern uses
    used = np.unique(numbers)
    strings = _ip_strings(used)
    rel = _link_table(u.ids(members), strings.take(pa.array(np.searchsorted(used, numbers))),
                      {"last_seen": pa.array(np.minimum(u.last_active[members], END_MS - 1))})
    return pa.table({"id": strings}), rel, dorm


def _group_list(kind: str, u: _Users, number: np.ndarray, min_size: int
                ) -> list[dict[str, Any]]:
    """``{"kind", "members"}`` of every group (users with the same ``number`` >= 0)."""
    who = np.flatnonzero(number >= 0)
    who = who[np.argsort(number[who], kind="stable")]
    ids = u.ids(who).to_pylist()
    _, starts, counts = np.unique(number[who], return_index=True, return_counts=True)
    return [{"kind": kind, "members": sorted(ids[s:s + c])}
            for s, c in zip(starts.tolist(), counts.tolist()) if c >= min_size]


def _groups_manifest(u: _Users, chains: list[np.ndarray], dorm: np.ndarray
                     ) -> dict[str, list[dict[str, Any]]]:
    """Planted fraud groups and legitimate sharing groups, members listed, so that ring
    detection can be measured (bench/rings.py)."""
    chain_no = np.full(u.n, -1, dtype=np.int64)
    for i, c in enumerate(chains):
        chain_no[c] = i
    regular = np.arange(u.n) < u.n_regular
    return {
        "planted_groups": (_group_list("device_ring", u, u.ring, 2)
                           + _group_list("referral_farm", u, u.farm, 2)
                           + _group_list("mule_chain", u, chain_no, 2)),
        "legit_groups": (_group_list("household", u, np.where(regular, u.household, -1), 2)
                         + _group_list("office", u, u.office, 3)
                         + _group_list("dorm", u, dorm, 3)),
    }



# -- merchant cash-out ---------------------------------------------------------------------
def _pick_cashout(cfg: GeneratorConfig, u: _Users, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Users who cash out through colluding merchants, in groups of 6-30, with the time
    each group defaults; ``_cashout_payments`` gives them their merchants."""
    n_cash = max(3, int(0.15 * cfg.fraud_rate * u.n))
    reg = np.arange(u.n_regular)
    free = reg[(u.kind[reg] < 0) & (u.signup[reg] < END_MS - 150 * DAY_MS)
               & (u.last_active[reg] > END_MS - 30 * DAY_MS)]
    who = rng.choice(free, size=min(n_cash, free.size), replace=False)
    sizes = _sizes_until(rng, who.size, 6, 31, who.size)
    group = np.minimum(np.searchsorted(np.cumsum(sizes), np.arange(who.size), side="right"),
                       sizes.size - 1)
    fraud_ts = END_MS - rng.uniform(20, 200, sizes.size) * DAY_MS
    u.kind[who] = FRAUD_KINDS.index("merchant_cashout")
    u.fraud_ts[who] = fraud_ts[group].astype(np.int64)
    return who, group


def _cashout_payments(u: _Users, m: _Merchants, p: _Payments, holds_bnpl: np.ndarray,
                      who: np.ndarray, group: np.ndarray, rng: np.random.Generator
                      ) -> tuple[_Merchants, _Payments, list[dict[str, Any]]]:
    """The colluding merchants and their payments: each group buys again and again,
    with BNPL where it can, for large round amounts, from its 1-3 colluding small
    merchants in the 60 days before it defaults. Noise that looks alike: the colluding
    merchants also serve a few ordinary customers, and four small shops per group have
    15-60 loyal legitimate customers who come back often."""
    sizes = np.bincount(group)
    n_col = rng.integers(1, 4, size=sizes.size)
    n_shop = 4 * sizes.size
    new = int(n_col.sum()) + n_shop
    cat = rng.choice(len(CATEGORIES), size=new, p=CAT_SHARE)
    ids = np.arange(m.n, m.n + new)
    table = pa.concat_tables([m.table, pa.table({
        "id": _ids("m", ids, 6),
        "name": pc.binary_join_element_wise(
            _pick([c.replace("_", " ").title() for c in CAT_NAMES], cat),
            pc.cast(pa.array(rng.integers(40, 400, new)), pa.string()), " #"),
        "category": _pick(CAT_NAMES, cat),
        "city": _pick(CITIES, rng.integers(0, len(CITIES), new)),
    })])
    col_of = np.split(ids[: int(n_col.sum())], np.cumsum(n_col)[:-1])
    shops = ids[int(n_col.sum()):]
    # colluders: 4-15 purchases each at their group's merchants, in the 60 days before
    k = rng.integers(4, 16, size=who.size)
    owner = np.repeat(who, k)
    g = np.repeat(group, k)
    merchant = np.array([rng.choice(col_of[x]) for x in g.tolist()], np.int64)
    ts = np.repeat(u.fraud_ts[who], k) - (rng.random(owner.size) * 60 * DAY_MS).astype(np.int64)
    mc = cat[merchant - m.n]
    amount = _round_to(CAT_MEDIAN[mc] * rng.uniform(2, 8, owner.size) + 50, 50)
    parts = [(owner, merchant, ts, amount, np.ones(owner.size, np.int64))]
    # ordinary customers of the colluding merchants, and loyal customers of small shops
    reg = np.arange(u.n_regular)
    active = reg[(u.kind[reg] < 0) & (u.last_active[reg] > START_MS + 60 * DAY_MS)]
    for shop, lo, hi, visits in ((ids[: int(n_col.sum())], 2, 9, (1, 4)),
                                 (shops, 15, 61, (3, 16))):
        n_cust = rng.integers(lo, hi, size=shop.size)
        cust = rng.choice(active, size=int(n_cust.sum()))
        sm = np.repeat(shop, n_cust)
        kv = rng.integers(visits[0], visits[1], size=cust.size)
        owner, merchant = np.repeat(cust, kv), np.repeat(sm, kv)
        lo_d = np.clip(_day_of(u.signup[owner]), 0, DAYS)
        hi_d = np.clip(_day_of(u.last_active[owner]) + 1, 0, DAYS)
        ts = _sample_ts(rng, lo_d, np.maximum(hi_d, lo_d + 1))
        mc = cat[merchant - m.n]
        amount = np.exp(np.log(CAT_MEDIAN[mc]) + 0.8 * rng.standard_normal(owner.size))
        parts.append((owner, merchant, ts, amount, np.zeros(owner.size, np.int64)))
    owner = np.concatenate([p.user, *[x[0] for x in parts]])
    merchant = np.concatenate([p.merchant, *[x[1] for x in parts]])
    ts = np.clip(np.concatenate([p.ts, *[x[2] for x in parts]]), START_MS, END_MS - 1)
    amount = np.round(np.concatenate([p.amount, *[x[3] for x in parts]]), 2)
    fraud = np.concatenate([p.fraud, *[x[4] for x in parts]])
    extra = owner.size - p.user.size
    bnpl = np.concatenate([p.bnpl, (rng.random(extra) < 0.55) & holds_bnpl[owner[p.user.size:]]])
    bnpl[p.user.size:] |= (fraud[p.user.size:] == 1) & holds_bnpl[owner[p.user.size:]]
    allcat = np.concatenate([m.category, cat])
    order = np.argsort(ts, kind="stable")
    m2 = _Merchants(m.n + new, allcat, m.cum, m.order, table)
    p2 = _Payments(owner[order], merchant[order], allcat[merchant[order]], ts[order],
                   amount[order], fraud[order], bnpl[order])
    groups = [{"kind": "merchant_cashout",
               "members": sorted(str(x) for x in u.ids(who[group == i]).to_pylist()),
               "merchants": [str(x) for x in table.column("id").take(
                   pa.array(col_of[i])).to_pylist()]} for i in range(sizes.size)]
    return m2, p2, groups


# -- entry point -------------------------------------------------------------------------
def generate(cfg: GeneratorConfig, out: str | Path, fmt: FileFormat = "csv"
             ) -> GenerateSummary:
    """Write a synthetic ecosystem to ``out`` (created if needed); the same config
    always gives the same files."""
    cfg.check()
    if fmt not in ("csv", "parquet"):
        raise GeneratorError(f"format must be csv or parquet, not {fmt!r}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GeneratorError(f"cannot create output directory {out}: {exc}") from exc
    seeds = np.random.SeedSequence(cfg.seed).spawn(14)
    rngs = [np.random.default_rng(s) for s in seeds]
    w = _Writer(out, fmt)

    u = _make_users(cfg, rngs[0])
    bust, chains = _pick_bust_and_mules(cfg, u, rngs[1])
    tx_table, first_in = _transfers(u, chains, rngs[2])
    mule = u.kind == FRAUD_KINDS.index("mule_chain")
    u.fraud_ts[mule] = np.where(first_in[mule] > 0, first_in[mule], u.last_active[mule])
    cash_who, cash_group = _pick_cashout(cfg, u, rngs[12])
    labels = _labels(cfg, u, rngs[3])

    m = _make_merchants(u.n, rngs[4])
    holds_pre = rngs[5].random(u.n) < 0.88  # only for repayment bills: see _holdings
    hist, overdue, worst, mob = _repayment(u, holds_pre, rngs[6])
    h = _holdings(u, bust, worst, rngs[7])
    p = _make_payments(cfg, u, m, bust, h.holds_bnpl, rngs[8])
    m, p, planted = _cashout_payments(u, m, p, h.holds_bnpl, cash_who, cash_group, rngs[12])

    w.write("users", _users_table(u, rngs[9], labels))
    w.write("merchants", m.table)
    dev_nodes, uses, cases = _devices(u, rngs[10])
    w.write("devices", dev_nodes)
    w.write("products", pa.table({
        "id": [p_[0] for p_ in PRODUCTS], "name": [p_[1] for p_ in PRODUCTS],
        "kind": [p_[2] for p_ in PRODUCTS],
    }))
    r = rngs[11]
    phone_nodes, has_phone = _phones(u, r)
    ip_nodes, logged = _ips(u, r)
    card_nodes, has_card = _cards(u, r)
    dorm_ips, dorm_logins, dorm = _dorms(u, rngs[13])
    ip_nodes = pa.concat_tables([ip_nodes, dorm_ips])
    logged = pa.concat_tables([logged, dorm_logins])
    w.write("phones", phone_nodes)
    w.write("ips", ip_nodes)
    w.write("bank_cards", card_nodes)
    w.write("credit_features", _credit_features(u, p, h, hist, overdue, worst, mob, r))
    w.write("uses", uses)
    w.write("paid", _paid_table(u, m, p, labels, r))
    del p
    w.write("holds", h.table)
    w.write("referred", _referrals(u, r))
    w.write("transferred", tx_table)
    w.write("has_phone", has_phone)
    w.write("has_card", has_card)
    w.write("logged_from", logged)

    summary = GenerateSummary(
        out=str(out), format=fmt, seed=cfg.seed, users=cfg.users, files=dict(w.rows),
        fraud={k: int((u.kind == i).sum()) for i, k in enumerate(FRAUD_KINDS)},
        labels={"is_fraud_1": int(labels.sum()), "true_fraud": int((u.kind >= 0).sum()),
                "missed": int(((u.kind >= 0) & (labels == 0)).sum()),
                "false_alarms": int(((u.kind < 0) & (labels == 1)).sum())},
    )
    new_short = np.flatnonzero((mob < 3) & (u.kind < 0))[:20]
    groups = _groups_manifest(u, chains, dorm)
    groups["planted_groups"] += planted
    manifest = {k: v for k, v in summary.as_dict().items() if k != "out"} | {
        "as_of_ms": END_MS,
        "payments_from_ms": START_MS,
        "relational_risk_cases": cases,
        "new_users_short_history": [str(x) for x in u.ids(new_short).to_pylist()],
        "rings": int(u.ring_times.size),
        "referral_farms": int(u.farm_times.size),
        "mule_chains": [[str(x) for x in u.ids(c).to_pylist()] for c in chains[:50]],
        **groups,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return summary
