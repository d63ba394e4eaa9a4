"""Invariants of the limit engine, checked on random profiles (hypothesis).

The example counts are kept small for a shared machine; bench/review.py --invariants
runs the same checks on many more profiles."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from limits.engine import decide
from limits.features import DAY_MS, LineState, Profile
from limits.policy import load_policy

POLICY = load_policy()
EPS = 1e-6
T0 = 1_700_000_000_000
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

money = st.floats(0, 400_000, allow_nan=False)
unit = st.floats(0, 1, allow_nan=False)


@st.composite
def line_states(draw):
    limit = draw(money)
    temp = draw(st.sampled_from([0.0, draw(st.floats(0, 50_000, allow_nan=False))]))
    until = draw(st.none() | st.integers(T0 - 200 * DAY_MS, T0 + 400 * DAY_MS))
    last = draw(st.none() | st.integers(T0 - 400 * DAY_MS, T0 + 365 * DAY_MS))
    return LineState(limit=limit, balance=draw(money), temp_limit=temp, temp_until_ms=until,
                     last_raise_ms=last)


@st.composite
def profiles(draw) -> Profile:
    now = draw(st.integers(T0, T0 + 365 * DAY_MS))
    lines = {}
    for line in ("bnpl", "cash_loan"):
        if draw(st.booleans()):
            lines[line] = draw(line_states())
    ring = draw(st.sampled_from([0, 0, 3, 12]))
    return Profile(
        user_id="u",
        now_ms=now,
        lifecycle=draw(st.sampled_from([None, "new", "active", "dormant"])),
        credit_score=draw(st.none() | st.floats(350, 950)),
        income=draw(st.none() | st.floats(0, 3_000_000)),
        months_on_book=draw(st.integers(0, 120)),
        repayment_history=draw(st.text("0000000123456-", max_size=36)),
        overdue_count=draw(st.integers(0, 20)),
        worst_dpd=draw(st.integers(0, 400)),
        utilisation=draw(st.floats(0, 1.6)),
        monthly_spend=draw(st.floats(0, 50_000)),
        monthly_txns=draw(st.floats(0, 80)),
        merchant_categories=draw(st.integers(0, 30)),
        active_days_30d=draw(st.integers(0, 30)),
        other_products=draw(st.integers(0, 4)),
        obligations=draw(st.floats(0, 60_000)),
        fraud_risk=draw(st.none() | unit),
        relational_risk=draw(st.none() | unit),
        ring_id="ring:x" if ring else None,
        ring_size=ring,
        ring_exposure=draw(unit) if ring else 0.0,
        lines=lines,
    )


def check_caps(p: Profile) -> None:
    d = decide(p, POLICY)
    income = p.income or 0.0
    total = sum(ld.effective_limit for ld in d.lines)
    assert total <= min(300_000, income / 3) + EPS  # online micro-loans, joint
    assert d.line("cash_loan").effective_limit <= 200_000 + EPS  # single bank consumer loan
    assert total <= POLICY.exposure.joint_cap * 1.5 + EPS
    capacity = max(0.0, income / 12 * 0.5 - p.obligations) * 12
    assert total <= capacity + EPS
    for ld in d.lines:
        assert ld.new_limit >= 0 and ld.temp_limit >= 0
        assert ld.effective_limit <= ld.ceiling + EPS
        assert ld.effective_limit <= POLICY.lines.rules(ld.line).max_limit + EPS


@SETTINGS
@given(profiles())
def test_no_cap_is_ever_exceeded(p: Profile) -> None:
    check_caps(p)


def _limits(p: Profile) -> list[tuple[float, float]]:
    return [(ld.new_limit, ld.effective_limit) for ld in decide(p, POLICY).lines]


def _not_higher(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    """Every limit in ``b`` (the riskier or poorer case) is at most its value in ``a``."""
    for (na, ea), (nb, eb) in zip(a, b):
        assert nb <= na + EPS and eb <= ea + EPS


@SETTINGS
@given(profiles(), unit, unit)
def test_more_fraud_risk_never_gives_a_higher_limit(p: Profile, x: float, y: float) -> None:
    lo, hi = sorted((x, y))
    _not_higher(_limits(replace(p, fraud_risk=lo)), _limits(replace(p, fraud_risk=hi)))


@SETTINGS
@given(profiles(), unit, unit)
def test_more_relational_risk_never_gives_a_higher_limit(p: Profile, x: float, y: float
                                                         ) -> None:
    lo, hi = sorted((x, y))
    _not_higher(_limits(replace(p, relational_risk=lo)),
                _limits(replace(p, relational_risk=hi)))


@SETTINGS
@given(profiles(), unit, unit)
def test_more_ring_exposure_never_gives_a_higher_limit(p: Profile, x: float, y: float
                                                       ) -> None:
    lo, hi = sorted((x, y))
    _not_higher(_limits(replace(p, ring_exposure=lo)),
                _limits(replace(p, ring_size=5, ring_id="ring:a", ring_exposure=hi)))


@SETTINGS
@given(profiles(), st.floats(0, 3_000_000), st.floats(0, 3_000_000))
def test_more_income_never_gives_a_lower_limit(p: Profile, x: float, y: float) -> None:
    lo, hi = sorted((x, y))
    _not_higher(_limits(replace(p, income=hi)), _limits(replace(p, income=lo)))


@SETTINGS
@given(profiles(), st.text("123456", min_size=1, max_size=3))
def test_more_overdue_history_never_lowers_risk(p: Profile, worse: str) -> None:
    a = decide(p, POLICY).assessment.pd
    hist = p.repayment_history
    b = decide(replace(p, repayment_history=(hist + worse)[-36:] if len(hist) + len(worse) <= 36
                       else hist[: 36 - len(worse)] + worse), POLICY).assessment.pd
    c = decide(replace(p, overdue_count=p.overdue_count + 1,
                       worst_dpd=p.worst_dpd + 30), POLICY).assessment.pd
    # appending overdue months to a history that had on-time months at the end
    assert c >= a - 1e-12
    if len(hist) + len(worse) <= 36:
        assert b >= a - 1e-12


@SETTINGS
@given(profiles(), st.integers(0, len("0123456") - 1), st.integers(0, 35))
def test_a_worse_month_never_lowers_risk(p: Profile, bucket: int, pos: int) -> None:
    hist = p.repayment_history
    if pos >= len(hist) or hist[pos] == "-" or int(hist[pos]) >= bucket:
        return
    worse = hist[:pos] + str(bucket) + hist[pos + 1:]
    assert decide(replace(p, repayment_history=worse), POLICY).assessment.pd >= \
        decide(p, POLICY).assessment.pd - 1e-12


@SETTINGS
@given(profiles(), st.floats(0.85, 1.0))
def test_a_frozen_user_gets_no_new_exposure(p: Profile, fraud: float) -> None:
    d = decide(replace(p, fraud_risk=fraud), POLICY)
    assert d.action == "freeze" and d.refer
    for ld in d.lines:
        assert ld.action == "freeze"
        assert ld.effective_limit == 0
        assert ld.effective_limit <= (ld.current_limit or 0.0)


@SETTINGS
@given(profiles())
def test_raises_respect_the_step_and_the_cooldown(p: Profile) -> None:
    adj = POLICY.adjustment
    for ld in decide(p, POLICY).lines:
        if ld.action != "raise":
            continue
        cur = ld.current_limit or 0.0
        step = max(min(cur * adj.max_step_fraction, adj.max_step_amount), adj.min_step_amount)
        assert ld.new_limit <= cur + step + EPS
        last = p.lines[ld.line].last_raise_ms
        assert last is None or p.now_ms - last >= adj.cooldown_days * DAY_MS


@SETTINGS
@given(profiles())
def test_temporary_raises_expire(p: Profile) -> None:
    d = decide(p, POLICY)
    for ld in d.lines:
        if ld.temp_limit > 0:
            assert ld.temp_until_ms is not None and ld.temp_until_ms > p.now_ms
        old = p.lines.get(ld.line)
        if old is not None and old.temp_until_ms is not None and old.temp_until_ms <= p.now_ms:
            # an ended raise is never carried over; only a running season can give a new one
            assert ld.temp_until_ms != old.temp_until_ms or ld.temp_limit == 0
    # Decided again at the end of every temporary raise, nothing of it remains.
    for ld in d.lines:
        if ld.temp_limit > 0 and ld.current_limit is not None:
            after = replace(p, now_ms=ld.temp_until_ms, lines={**p.lines, ld.line: LineState(
                limit=ld.new_limit, temp_limit=ld.temp_limit, temp_until_ms=ld.temp_until_ms,
                last_raise_ms=p.now_ms)})
            again = decide(after, POLICY).line(ld.line)
            assert again.temp_until_ms != ld.temp_until_ms or again.temp_limit == 0


@SETTINGS
@given(profiles())
def test_same_inputs_and_versions_give_the_same_decision(p: Profile) -> None:
    from limits.policy import parse_policy, read_policy_text

    other = parse_policy(read_policy_text()[0])
    a, b = decide(p, POLICY), decide(Profile.from_dict(p.to_dict()), other)
    assert a.to_dict() == b.to_dict()
