"""The audit trail: append-only, hash-chained, replayable; tampering is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limits.audit import AuditLog
from limits.engine import decide
from limits.errors import AuditError, ReplayMismatchError
from limits.features import LineState, Profile
from limits.policy import parse_policy, read_policy_text

NOW = 1_757_000_000_000


def profile(i: int, **over) -> Profile:
    base = dict(
        user_id=f"u{i}", now_ms=NOW, lifecycle="active", credit_score=600 + 10 * i,
        income=100_000 + 20_000 * i, months_on_book=12 + i, repayment_history="0" * (6 + i),
        utilisation=0.3, monthly_txns=6, active_days_30d=10, obligations=500,
        fraud_risk=0.02 * i, relational_risk=0.05, lines={"bnpl": LineState(limit=3000)},
    )
    base.update(over)
    return Profile(**base)


@pytest.fixture()
def log(tmp_path: Path) -> tuple[AuditLog, object]:
    text = read_policy_text()[0]
    policy = parse_policy(text)
    audit = AuditLog(tmp_path / "audit")
    audit.keep_policy(policy, text)
    decisions = [decide(profile(i), policy, counterfactuals=(i == 0)) for i in range(6)]
    audit.append(decisions[0], applied=True, recorded_at_ms=NOW)
    audit.append_many(decisions[1:], applied=True, recorded_at_ms=NOW + 1)
    return audit, policy


def _lines(audit: AuditLog) -> list[str]:
    return audit.path.read_text("utf-8").splitlines(keepends=True)


def test_records_chain_and_verify(log) -> None:
    audit, _ = log
    res = audit.verify()
    assert res.ok and res.records == 6
    recs = list(audit.records())
    assert [r["seq"] for r in recs] == list(range(6))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(recs, recs[1:]))


def test_every_record_replays_to_the_same_decision(log) -> None:
    audit, _ = log
    for rec in audit.records():
        again = audit.replay(rec)
        assert again.user_id == rec["decision"]["user_id"]
    assert list(audit.records())[0]["decision"]["counterfactuals"]


@pytest.mark.parametrize("where", [0, 3, 5])
def test_an_edited_record_is_named(log, where: int) -> None:
    audit, _ = log
    lines = _lines(audit)
    rec = json.loads(lines[where])
    rec["decision"]["lines"][0]["new_limit"] += 1000
    lines[where] = json.dumps(rec, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False) + "\n"
    audit.path.write_text("".join(lines), "utf-8")
    res = audit.verify()
    assert not res.ok and res.error is not None
    assert res.error.seq == where and res.error.line == where + 1
    assert "hash" in res.error.reason


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(log) -> None:
    from limits.audit import canonical, record_hash

    audit, _ = log
    lines = _lines(audit)
    rec = json.loads(lines[2])
    rec["decision"]["action"] = "freeze"
    rec["hash"] = record_hash(rec)
    lines[2] = canonical(rec) + "\n"
    audit.path.write_text("".join(lines), "utf-8")
    res = audit.verify()
    assert not res.ok and res.error is not None and res.error.seq == 3
    assert "prev_hash" in res.error.reason


def test_removed_and_reordered_records_are_found(log) -> None:
    audit, _ = log
    lines = _lines(audit)
    audit.path.write_text("".join(lines[:2] + lines[3:]), "utf-8")
    res = audit.verify()
    assert not res.ok and res.error is not None and res.error.seq == 2
    audit.path.write_text("".join([lines[1], lines[0], *lines[2:]]), "utf-8")
    assert audit.verify().error.seq == 0  # type: ignore[union-attr]


def test_a_cut_write_is_found_and_blocks_appending(log) -> None:
    audit, policy = log
    data = audit.path.read_bytes()
    audit.path.write_bytes(data[:-40])
    res = audit.verify()
    assert not res.ok and res.error is not None and res.error.seq == 5
    with pytest.raises(AuditError, match="incomplete"):
        audit.append(decide(profile(9), policy), applied=True, recorded_at_ms=NOW)


def test_replay_detects_a_changed_input_even_with_a_valid_hash(log) -> None:
    from limits.audit import record_hash

    audit, _ = log
    rec = list(audit.records())[1]
    rec["decision"]["inputs"]["fraud_risk"] = 0.95
    rec["hash"] = record_hash(rec)
    with pytest.raises(ReplayMismatchError, match="replays differently"):
        audit.replay(rec)


def test_replay_uses_the_archived_policy(log, tmp_path: Path) -> None:
    audit, policy = log
    text = read_policy_text()[0].replace("macro_factor = 1.0", "macro_factor = 0.5")
    tighter = parse_policy(text)
    audit.keep_policy(tighter, text)
    d = decide(profile(2), tighter)
    rec = audit.append(d, applied=False, recorded_at_ms=NOW)
    assert rec["decision"]["policy_hash"] == tighter.content_hash != policy.content_hash
    assert audit.replay(rec).to_dict() == d.to_dict()
    (audit.policies_dir / f"{tighter.content_hash}.toml").write_text(
        text.replace("0.5", "0.6", 1), "utf-8")
    with pytest.raises(AuditError, match="changed"):
        audit.replay(rec)


def test_history_of_a_user(log) -> None:
    audit, policy = log
    audit.append(decide(profile(3, now_ms=NOW + 10), policy), applied=True,
                 recorded_at_ms=NOW + 10)
    hist = audit.history("u3")
    assert [r["decision"]["decided_at_ms"] for r in hist] == [NOW, NOW + 10]
    assert audit.history("u33") == []
