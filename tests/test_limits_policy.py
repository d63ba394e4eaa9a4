"""The policy file: the packaged default loads; bad files are rejected with field and reason;
and the engine's rules on hand-made profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.errors import RiskGraphError
from limits.counterfactuals import decide_with_counterfactuals
from limits.engine import decide, round_down
from limits.errors import PolicyError, ProfileError
from limits.features import DAY_MS, MONTH_MS, LineState, Profile, history_stats
from limits.policy import load_policy, parse_policy, read_policy_text

NOW = 1_750_000_000_000  # 2025-06-15, inside the 618 window of the default policy
AUTUMN = 1_757_000_000_000  # 2025-09-04, no season running


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture(scope="module")
def text() -> str:
    return read_policy_text()[0]


def good(**over) -> Profile:
    base = dict(
        user_id="u1", now_ms=AUTUMN, lifecycle="active", credit_score=720, income=180_000,
        months_on_book=30, repayment_history="0" * 24, overdue_count=0, worst_dpd=0,
        utilisation=0.45, monthly_spend=3000, monthly_txns=12, merchant_categories=6,
        active_days_30d=20, other_products=1, obligations=1500, fraud_risk=0.05,
        relational_risk=0.05, lines={"bnpl": LineState(limit=6000, balance=2500)},
    )
    base.update(over)
    return Profile(**base)


def test_default_policy_loads_with_version_and_hash(policy) -> None:
    assert policy.version
    assert len(policy.content_hash) == 64
    assert policy.id.startswith(policy.version + "+")
    assert load_policy().content_hash == policy.content_hash


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (("macro_factor = 1.0", "macro_factor = -1"), "macro_factor", "greater than 0"),
        (("[split.new]\nbnpl = 0.6\ncash_loan = 0.0", "[split.new]\nbnpl = 0.6\ncash_loan = 0.1"),
         "split", "new.cash_loan must be 0"),
        (("cooldown_days = 90", "cooldown_days = 90\ncooldown_weeks = 3"),
         "adjustment.cooldown_weeks", "not a policy field"),
        (('version = "2025.06-1"\n', ""), "version", "required"),
        (('start = "11-01"', 'start = "13-40"'), "seasonal.0.start", "MM-DD"),
        (("fraud_threshold = 0.85", "fraud_threshold = 0.5"), "(top level)", "fraud.high"),
        (("band_factor = { low = 1.0, medium = 0.75, high = 0.4 }",
          "band_factor = { low = 0.5, medium = 0.75, high = 0.4 }"), "risk.band_factor",
         "not increase"),
        (("{ max_pd = 0.03, factor = 0.85 }", "{ max_pd = 0.03, factor = 1.2 }"),
         "risk.pd_grades.1.factor", "less than or equal"),
        (("version =", "version = = "), "(file)", "not valid TOML"),
        (("ring = { medium = 0.3, high = 0.9 }", "ring = { medium = 0.8, high = 0.5 }"),
         "risk.ring", "at least medium"),
    ],
)
def test_bad_policy_is_rejected_naming_field_and_reason(text, edit, field, words) -> None:
    old, new = edit
    assert old in text
    with pytest.raises(PolicyError) as err:
        parse_policy(text.replace(old, new, 1), "bad.toml")
    assert err.value.field == field
    assert words in err.value.reason
    assert field in str(err.value) and "bad.toml" in str(err.value)
    assert isinstance(err.value, RiskGraphError)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.toml")


def test_a_changed_value_changes_the_hash(text) -> None:
    a = parse_policy(text)
    b = parse_policy(text.replace("macro_factor = 1.0", "macro_factor = 0.9"))
    assert a.version == b.version and a.content_hash != b.content_hash


def test_history_stats() -> None:
    h = history_stats("00102-0-00", lookback=1)
    assert h.on_time_months == 6 and h.on_time_streak == 3
    assert h.overdue_points_recent == 3 and h.overdue_now == 0
    assert history_stats("0002", lookback=1).overdue_now == 2


def test_good_user_gets_a_step_limited_raise(policy) -> None:
    d = decide(good(), policy)
    bnpl = d.line("bnpl")
    assert bnpl.action == "raise"
    assert 6000 < bnpl.new_limit <= 6000 * 1.3
    assert {"RAISED"} <= {r.code for r in bnpl.reasons}


def test_one_on_time_month_is_not_enough(policy) -> None:
    d = decide(good(repayment_history="0" * 10 + "1" + "00"), policy)
    bnpl = d.line("bnpl")
    assert bnpl.action == "keep"
    why = [r for r in bnpl.reasons if r.code == "NEEDS_ON_TIME_WINDOW"]
    assert why and why[0].params["missing"] == 4
    assert "4 more" in why[0].en and "还差 4 个月" in why[0].zh


def test_overdue_cuts_at_once_and_drops_the_temporary_raise(policy) -> None:
    st = LineState(limit=8000, temp_limit=2000, temp_until_ms=AUTUMN + 10 * DAY_MS)
    d = decide(good(repayment_history="0" * 23 + "2", lines={"bnpl": st}), policy)
    bnpl = d.line("bnpl")
    assert bnpl.action == "reduce" and bnpl.new_limit <= 4000 and bnpl.temp_limit == 0
    assert {"OVERDUE_NOW", "TEMP_WITHDRAWN"} <= {r.code for r in bnpl.reasons}


def test_fraud_hard_stop_freezes_and_refers(policy) -> None:
    d = decide(good(fraud_risk=0.9), policy)
    assert d.action == "freeze" and d.refer == policy.hard_stop.refer_to
    assert all(ld.action == "freeze" and ld.effective_limit == 0 for ld in d.lines)


def test_new_user_gets_bnpl_first(policy) -> None:
    d = decide(good(lifecycle="new", months_on_book=2, repayment_history="00", lines={}),
               policy)
    assert d.line("bnpl").action == "open"
    cash = d.line("cash_loan")
    assert cash.action == "keep" and cash.new_limit == 0
    assert "NEW_USER_BNPL_FIRST" in {r.code for r in cash.reasons}


def test_cooldown_blocks_a_second_raise(policy) -> None:
    st = LineState(limit=6000, last_raise_ms=AUTUMN - 30 * DAY_MS)
    d = decide(good(lines={"bnpl": st}), policy)
    assert d.line("bnpl").action == "keep"
    assert "COOLDOWN" in {r.code for r in d.line("bnpl").reasons}
    later = decide(good(lines={"bnpl": st}, now_ms=AUTUMN + 61 * DAY_MS), policy)
    assert later.line("bnpl").action == "raise"


def test_seasonal_raise_has_an_end_and_expires(policy) -> None:
    d = decide(good(now_ms=NOW), policy)
    bnpl = d.line("bnpl")
    assert bnpl.temp_limit > 0 and bnpl.temp_until_ms is not None
    after = LineState(limit=bnpl.new_limit, temp_limit=bnpl.temp_limit,
                      temp_until_ms=bnpl.temp_until_ms, last_raise_ms=NOW)
    d2 = decide(good(now_ms=bnpl.temp_until_ms, lines={"bnpl": after}), policy)
    assert d2.line("bnpl").temp_limit == 0
    assert "TEMP_EXPIRED" in {r.code for r in d2.line("bnpl").reasons}


def test_regulatory_caps_bind_existing_limits(policy) -> None:
    st = {"bnpl": LineState(limit=50_000), "cash_loan": LineState(limit=250_000)}
    d = decide(good(income=90_000, lines=st), policy)
    total = sum(ld.effective_limit for ld in d.lines)
    assert total <= 30_000 + 1e-6
    assert d.line("cash_loan").new_limit <= 200_000
    assert d.line("cash_loan").action == "reduce"


def test_counterfactual_names_the_missing_months(policy) -> None:
    d = decide_with_counterfactuals(good(repayment_history="0" * 10 + "1" + "00"), policy)
    months = [c for c in d.counterfactuals if c.lever == "on_time_months"]
    assert months and months[0].needed == 4 and months[0].action == "raise"
    assert "4 more months of on-time repayment" in months[0].en
    again = decide(d.inputs.with_changes(
        repayment_history=d.inputs.repayment_history + "0" * 4,
        months_on_book=d.inputs.months_on_book + 4, now_ms=d.inputs.now_ms + 4 * MONTH_MS),
        policy)
    assert again.action == "raise"


def test_counterfactual_relational_threshold_is_searched(policy) -> None:
    d = decide_with_counterfactuals(good(relational_risk=0.65), policy)
    assert d.action == "keep"
    assert "BAND_NO_RAISE" in {r.code for r in d.line("bnpl").reasons}
    rel = [c for c in d.counterfactuals if c.lever == "relational_risk"]
    assert rel and 0.55 <= rel[0].needed < 0.6
    assert "0.59" in rel[0].en
    assert decide(d.inputs.with_changes(relational_risk=rel[0].needed), policy).action != d.action


def test_bad_profile_names_the_field(policy) -> None:
    with pytest.raises(ProfileError, match="fraud_risk"):
        decide(good(fraud_risk=1.5), policy)
    with pytest.raises(ProfileError, match="repayment_history"):
        decide(good(repayment_history="00x"), policy)


def test_round_down_never_exceeds() -> None:
    assert round_down(29_999.999, 100) == 29_900
    assert round_down(30_000, 100) == 30_000
    assert round_down(-5, 100) == 0


def test_ring_exposure_sets_the_band_whatever_the_group_size(policy) -> None:
    """A community (a household, an office) with low suspicion puts nobody in a higher
    band, however large; a suspicious ring or a strong link to one does, however large.
    No group size cuts the exposure off."""
    alone = decide(good(), policy)
    ring = decide(good(ring_id="ring:x", ring_size=5, ring_kind="ring", ring_suspicion=0.8,
                       ring_exposure=0.8), policy)
    big_ring = decide(good(ring_id="ring:x", ring_size=500, ring_kind="ring",
                           ring_suspicion=0.8, ring_exposure=0.8), policy)
    community = decide(good(ring_id="ring:y", ring_size=40, ring_kind="community",
                            ring_suspicion=0.1, ring_exposure=0.1), policy)
    assert ring.assessment.band != alone.assessment.band
    assert "ring" in ring.assessment.drivers
    assert big_ring.assessment.band == ring.assessment.band
    assert community.assessment.band == alone.assessment.band
    assert community.line("bnpl").new_limit == alone.line("bnpl").new_limit
    assert ring.line("bnpl").new_limit <= alone.line("bnpl").new_limit
    for exposure in (0.0, 0.2, 0.3, 0.5, 0.9):  # more exposure: never a larger limit
        worse = decide(good(ring_exposure=min(1.0, exposure + 0.1)), policy)
        base = decide(good(ring_exposure=exposure), policy)
        assert worse.line("bnpl").new_limit <= base.line("bnpl").new_limit
        assert worse.line("cash_loan").new_limit <= base.line("cash_loan").new_limit
