"""Probability of default from credit features: a transparent points scorecard.

Why a scorecard and not a trained model: the graph holds no repayment outcomes (only
fraud labels, and fraud is not default), so a model trained on outcomes would be
trained on the wrong target. A points table can be read by an investigator, gives each
reason a number, and is monotone by construction: every attribute moves points one way
only, so more overdue history never lowers the risk (docs/limits.md shows the table).

Points follow the usual scaling: ``BASE_POINTS`` at good:bad odds of ``BASE_ODDS``, and
``PDO`` more points double the odds. ``pd = 1 / (1 + odds)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from limits.features import HistoryStats, Profile

MODEL_VERSION = "scorecard-1.0"

BASE_POINTS = 600.0
BASE_ODDS = 30.0  # good:bad at BASE_POINTS, a PD of about 3.2 %
PDO = 40.0

# Missing values take the worst value of their range: the card never rewards absence.
CREDIT_SCORE_RANGE = (350.0, 950.0)


@dataclass(frozen=True)
class Attribute:
    name: str
    doc: str


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("credit_score", "0.5 points per credit-score point away from 650 (350..950)"),
    Attribute("on_time_months", "+3 per month repaid on time, at most 36 months"),
    # One weight for every month, old or recent: with a recency weight, appending an
    # overdue month could push an older one out of the heavy window and lower the risk.
    Attribute("overdue_buckets", "-10 per overdue bucket (30 days) in the history"),
    Attribute("overdue_count", "-8 per overdue episode, at most 10"),
    Attribute("worst_dpd", "-0.4 per day of the worst delinquency, at most 180 days"),
    Attribute("utilisation", "-120 per unit of utilisation above 0.3, up to 1.5"),
    Attribute("months_on_book", "+1 per month on book, at most 36"),
    Attribute("debt_to_income", "-150 per unit of debt-to-income above 0.2, up to 1.5"),
)


@dataclass(frozen=True)
class Score:
    points: float
    pd: float
    contributions: tuple[tuple[str, float], ...]  # (attribute, points), in ATTRIBUTES order


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def debt_to_income(p: Profile) -> float:
    """Yearly debt service outside the ecosystem over yearly income; 1.5 when unknown."""
    if not p.income:
        return 1.5
    return min(1.5, p.obligations * 12.0 / p.income)


def score(p: Profile, h: HistoryStats) -> Score:
    cs = CREDIT_SCORE_RANGE[0] if p.credit_score is None else p.credit_score
    parts = (
        ("credit_score", 0.5 * (_clip(cs, *CREDIT_SCORE_RANGE) - 650.0)),
        ("on_time_months", 3.0 * min(h.on_time_months, 36)),
        ("overdue_buckets", -10.0 * (h.overdue_points_recent + h.overdue_points_older)),
        ("overdue_count", -8.0 * min(p.overdue_count, 10)),
        ("worst_dpd", -0.4 * min(p.worst_dpd, 180)),
        ("utilisation", -120.0 * max(0.0, min(p.utilisation, 1.5) - 0.3)),
        ("months_on_book", 1.0 * min(p.months_on_book, 36)),
        ("debt_to_income", -150.0 * max(0.0, debt_to_income(p) - 0.2)),
    )
    points = BASE_POINTS + sum(v for _, v in parts)
    log_odds = math.log(BASE_ODDS) + (points - BASE_POINTS) * math.log(2.0) / PDO
    pd = 1.0 / (1.0 + math.exp(_clip(log_odds, -50.0, 50.0)))
    return Score(points, pd, parts)
