"""The limit policy: a versioned TOML file, validated before any decision uses it.

``load_policy(path)`` or ``parse_policy(text)`` give a frozen ``Policy``; a bad file
raises ``PolicyError`` naming the field and the reason. Every policy has the author's
``version`` string and a ``content_hash`` of its validated content, so an audit record
can name the exact policy it ran under (docs/limits.md lists every field).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import datetime, timedelta, timezone
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from limits.errors import PolicyError

BANDS: tuple[str, ...] = ("low", "medium", "high")
STAGES: tuple[str, ...] = ("new", "active", "dormant", "high_risk")
BASE_STAGES: tuple[str, ...] = ("new", "active", "dormant")
SEGMENTS: tuple[str, ...] = ("high_value", "standard", "medium_risk", "high_risk")

Band = Literal["low", "medium", "high"]
Line = Literal["bnpl", "cash_loan"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lifecycle(_Model):
    new_max_months_on_book: int = Field(ge=0)
    dormant_max_active_days_30d: int = Field(ge=0)
    dormant_max_monthly_txns: float = Field(ge=0)


class Split(_Model):
    bnpl: float = Field(ge=0, le=1)
    cash_loan: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_at_most_one(self) -> Split:
        if self.bnpl + self.cash_loan > 1.0 + 1e-9:
            raise ValueError("bnpl + cash_loan must be at most 1 (the joint cap is shared)")
        return self

    def share(self, line: str) -> float:
        return float(getattr(self, line))


class Splits(_Model):
    new: Split
    active: Split
    dormant: Split

    @model_validator(mode="after")
    def _new_users_get_bnpl_first(self) -> Splits:
        if self.new.cash_loan > 0:
            raise ValueError("new.cash_loan must be 0: new users get the BNPL line first")
        return self


class Segment(_Model):
    joint_cap_multiplier: float = Field(gt=0, le=5)
    limit_factor: float = Field(ge=0, le=2)


class Segments(_Model):
    high_value_min_income: float = Field(ge=0)
    high_value_max_pd: float = Field(ge=0, le=1)
    medium_risk_min_pd: float = Field(ge=0, le=1)
    high_value: Segment
    standard: Segment
    medium_risk: Segment
    high_risk: Segment

    @model_validator(mode="after")
    def _ordered(self) -> Segments:
        order = [self.high_value, self.standard, self.medium_risk, self.high_risk]
        for a, b, name in zip(order, order[1:], SEGMENTS[1:]):
            if b.joint_cap_multiplier > a.joint_cap_multiplier or b.limit_factor > a.limit_factor:
                raise ValueError(
                    f"{name} must not get a higher joint_cap_multiplier or limit_factor than "
                    "the less risky segment before it (high_value, standard, medium_risk, "
                    "high_risk)"
                )
        if self.medium_risk_min_pd < self.high_value_max_pd:
            raise ValueError("medium_risk_min_pd must be at least high_value_max_pd")
        return self


class Capacity(_Model):
    max_debt_service_ratio: float = Field(gt=0, le=1)
    repayment_months: float = Field(gt=0, le=120)


class LineRules(_Model):
    max_limit: float = Field(gt=0)
    min_open: float = Field(ge=0)
    open_max: float = Field(gt=0)
    open_min_months_on_book: int = Field(ge=0)
    open_min_on_time_months: int = Field(ge=0)
    open_bands: tuple[Band, ...]


class Lines(_Model):
    bnpl: LineRules
    cash_loan: LineRules

    def rules(self, line: str) -> LineRules:
        rules: LineRules = getattr(self, line)
        return rules


class Exposure(_Model):
    joint_cap: float = Field(gt=0)
    income_multiple: float = Field(gt=0, le=10)


class RegulatoryCap(_Model):
    name: str = Field(min_length=1)
    scope: Literal["joint", "bnpl", "cash_loan"]
    amount: float = Field(gt=0)
    income_fraction: float | None = Field(default=None, gt=0, le=10)
    description: str = ""

    def value(self, income: float | None) -> float:
        if self.income_fraction is None:
            return self.amount
        return min(self.amount, (income or 0.0) * self.income_fraction)


class PdGrade(_Model):
    max_pd: float = Field(gt=0, le=1)
    factor: float = Field(ge=0, le=1)


class Thresholds(_Model):
    medium: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ascending(self) -> Thresholds:
        if self.high < self.medium:
            raise ValueError("high must be at least medium")
        return self


class Risk(_Model):
    pd_grades: tuple[PdGrade, ...] = Field(min_length=1)
    pd: Thresholds
    fraud: Thresholds
    relational: Thresholds
    # Bands of the ring exposure (graph/rings.py): the larger of the own group's
    # suspicion and the strongest link to fraud evidence. No group size cuts it off:
    # a bigger or more fraudulent neighbourhood never lowers it.
    ring: Thresholds
    band_factor: dict[Band, float]
    raise_bands: tuple[Band, ...]
    require_scores: bool = True

    @field_validator("pd_grades")
    @classmethod
    def _grades_monotone(cls, v: tuple[PdGrade, ...]) -> tuple[PdGrade, ...]:
        for a, b in zip(v, v[1:]):
            if b.max_pd <= a.max_pd:
                raise ValueError("max_pd must increase from one grade to the next")
            if b.factor > a.factor:
                raise ValueError("factor must not increase with max_pd (riskier, not bigger)")
        if v[-1].max_pd < 1.0:
            raise ValueError("the last grade must have max_pd = 1.0 so every PD has a grade")
        return v

    @field_validator("band_factor")
    @classmethod
    def _band_factor(cls, v: dict[str, float]) -> dict[str, float]:
        missing = [b for b in BANDS if b not in v]
        if missing:
            raise ValueError(f"needs a factor for every band, missing {missing}")
        vals = [v[b] for b in BANDS]
        if any(not 0 <= x <= 1 for x in vals) or vals != sorted(vals, reverse=True):
            raise ValueError("factors must be in 0..1 and not increase from low to high")
        return v

    def pd_factor(self, pd: float) -> float:
        for g in self.pd_grades:
            if pd <= g.max_pd:
                return g.factor
        return self.pd_grades[-1].factor


class HardStop(_Model):
    fraud_threshold: float = Field(gt=0, le=1)
    refer_to: str = Field(min_length=1)


class Adjustment(_Model):
    window_months: int = Field(ge=1, le=36)
    min_utilisation: float = Field(ge=0, le=1)
    min_monthly_txns: float = Field(ge=0)
    max_step_fraction: float = Field(gt=0, le=5)
    max_step_amount: float = Field(gt=0)
    min_step_amount: float = Field(gt=0)
    cooldown_days: int = Field(ge=0)
    overdue_lookback_months: int = Field(ge=1, le=12)
    overdue_reduction: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _steps(self) -> Adjustment:
        if self.min_step_amount > self.max_step_amount:
            raise ValueError("min_step_amount must not exceed max_step_amount")
        return self


class Season(_Model):
    name: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    # "MM-DD" repeats every year in the policy's UTC offset; a TOML datetime is one-off.
    start: str | datetime
    end: str | datetime
    raise_fraction: float = Field(gt=0, le=2)
    lines: tuple[Line, ...] = Field(min_length=1)

    @field_validator("start", "end")
    @classmethod
    def _date(cls, v: str | datetime) -> str | datetime:
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise ValueError("a datetime needs an offset, e.g. 2025-11-01T00:00:00+08:00")
            return v
        try:
            datetime.strptime(f"2024-{v}", "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"{v!r} is not MM-DD (e.g. \"11-01\") nor a datetime") from None
        return v


class Policy(_Model):
    version: str = Field(min_length=1)
    description: str = ""
    currency: Literal["CNY"] = "CNY"
    utc_offset_hours: float = Field(ge=-12, le=14)
    rounding: float = Field(gt=0)
    macro_factor: float = Field(gt=0, le=2)
    lifecycle: Lifecycle
    split: Splits
    segments: Segments
    capacity: Capacity
    exposure: Exposure
    lines: Lines
    regulatory_caps: tuple[RegulatoryCap, ...]
    risk: Risk
    hard_stop: HardStop
    adjustment: Adjustment
    seasonal: tuple[Season, ...] = ()
    _season_cache: dict[int, tuple[tuple[Season, int, int], ...]] = PrivateAttr(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        if self.hard_stop.fraud_threshold < self.risk.fraud.high:
            raise ValueError(
                "hard_stop.fraud_threshold must be at least risk.fraud.high, or a user would "
                "be frozen while still judged below high risk"
            )
        names = [c.name for c in self.regulatory_caps]
        if len(set(names)) != len(names):
            raise ValueError("regulatory_caps names must be unique")
        return self

    @cached_property
    def content_hash(self) -> str:
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    @property
    def id(self) -> str:
        """``version+hash12``: readable and exact."""
        return f"{self.version}+{self.content_hash[:12]}"

    # -- time ---------------------------------------------------------------------
    def active_seasons(self, now_ms: int) -> tuple[tuple[Season, int, int], ...]:
        """The seasons running at ``now_ms`` with their (start, end) in ms; cached, as a
        review asks the same instant for every user."""
        got = self._season_cache.get(now_ms)
        if got is None:
            got = tuple(
                (s, *w) for s in self.seasonal
                if (w := self.season_window(s, now_ms)) is not None
            )
            if len(self._season_cache) > 4096:
                self._season_cache.clear()
            self._season_cache[now_ms] = got
        return got

    def season_window(self, s: Season, now_ms: int) -> tuple[int, int] | None:
        """The (start, end) of ``s`` in ms that contains ``now_ms``, or None."""
        if isinstance(s.start, datetime) and isinstance(s.end, datetime):
            a, b = _ms(s.start), _ms(s.end)
            return (a, b) if a <= now_ms < b else None
        tz = timezone(timedelta(hours=self.utc_offset_hours))
        year = datetime.fromtimestamp(now_ms / 1000, tz).year
        for y in (year - 1, year):
            a = _yearly(s.start, y, tz)
            b = _yearly(s.end, y, tz) + 86_400_000  # the end day is included
            if b <= a:
                b = _yearly(s.end, y + 1, tz) + 86_400_000  # crosses the new year
            if a <= now_ms < b:
                return a, b
        return None


def _ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def _yearly(mmdd: str | datetime, year: int, tz: timezone) -> int:
    if isinstance(mmdd, datetime):
        return _ms(mmdd)
    month, day = (int(x) for x in mmdd.split("-"))
    if month == 2 and day == 29 and year % 4:
        day = 28
    return _ms(datetime(year, month, day, tzinfo=tz))


def parse_policy(text: str, source: str = "") -> Policy:
    """A validated Policy from TOML text; PolicyError names the first bad field."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError("(file)", f"not valid TOML: {exc}", source) from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a policy field; check the spelling against docs/limits.md"
        elif err["type"] == "missing":
            msg = "is required; add it (docs/limits.md describes it)"
        raise PolicyError(loc, msg, source) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path``, or the packaged default (limits/policy.toml)."""
    return parse_policy(*read_policy_text(path))


def read_policy_text(path: str | Path | None = None) -> tuple[str, str]:
    """(text, source name) of a policy file, or of the packaged default."""
    if path is None:
        return resources.files("limits").joinpath("policy.toml").read_text("utf-8"), "default"
    p = Path(path)
    try:
        return p.read_text("utf-8"), str(p)
    except OSError as exc:
        raise PolicyError(
            "(file)", f"cannot read {p}: {exc.strerror}; check the path", str(p)
        ) from None
