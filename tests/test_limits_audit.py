"""The audit trail: append-only, hash-chained, replayable; tampering is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limits.audit import AuditLog
from limits.counterfactuals import decide_with_counterfactuals
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
    decisions = [decide_with_counterfactuals(profile(i), policy, i == 0) for i in range(6)]
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


# -- the compact record (format 2) ----------------------------------------------------
def test_records_are_compact_and_keep_what_replay_needs(log) -> None:
    audit, _ = log
    recs = list(audit.records())
    for rec in recs:
        assert rec["format"] == 2
        d = rec["decision"]
        assert d["policy_hash"] and d["policy_version"] and d["model_version"]
        assert all(isinstance(c, str) for ld in d["lines"] for c in ld["reasons"])
        assert "assessment" not in d and '"en"' not in json.dumps(d)
        assert Profile.from_dict(d["inputs"]).user_id == d["user_id"]
    # Counterfactuals searched for a single decision: levers and values, no wording.
    cf = recs[0]["decision"]["counterfactuals"]
    assert cf and all(set(c) == {"lever", "needed", "action"} for c in cf)
    assert recs[0]["options"] == {"counterfactuals": True}
    assert "counterfactuals" not in recs[1]["decision"]


def test_compact_inputs_round_trip_exactly() -> None:
    from limits.audit import compact_inputs

    p = profile(2, income=None, credit_score=None, utilisation=0, ring_id="r", ring_size=4,
                lines={"bnpl": LineState(limit=0.0, temp_limit=500.0, temp_until_ms=NOW),
                       "cash_loan": LineState(limit=1000, status="frozen")})
    back = Profile.from_dict(json.loads(json.dumps(compact_inputs(p))))
    assert back == p
    assert type(back.utilisation) is int and type(back.lines["cash_loan"].limit) is int


def test_replay_of_a_compact_record_gives_the_decision_back(log) -> None:
    audit, policy = log
    rec = list(audit.records())[0]
    again = audit.replay(rec)
    p = Profile.from_dict(rec["decision"]["inputs"])
    assert again.to_dict() == decide_with_counterfactuals(p, policy, True).to_dict()
    assert again.counterfactuals and all(c.en and c.zh for c in again.counterfactuals)


def test_replay_detects_a_changed_outcome_with_a_valid_hash(log) -> None:
    from limits.audit import record_hash

    audit, _ = log
    rec = list(audit.records())[2]
    rec["decision"]["lines"][0]["reasons"].append("RAISED")
    rec["hash"] = record_hash(rec)
    with pytest.raises(ReplayMismatchError, match="lines"):
        audit.replay(rec)


def test_written_lines_are_canonical_and_hash_as_documented(log) -> None:
    from limits.audit import canonical, record_hash

    audit, _ = log
    for raw in audit.path.read_bytes().splitlines(keepends=True):
        rec = json.loads(raw)
        assert raw == canonical(rec).encode("utf-8") + b"\n"
        assert record_hash(rec) == rec["hash"]


def test_an_unknown_field_is_named(log) -> None:
    from limits.audit import canonical, record_hash

    audit, _ = log
    lines = _lines(audit)
    rec = json.loads(lines[1])
    rec["note"] = "x"
    rec["hash"] = record_hash(rec)
    lines[1] = canonical(rec) + "\n"
    audit.path.write_text("".join(lines), "utf-8")
    res = audit.verify()
    assert not res.ok and res.error is not None and res.error.seq == 1
    assert "unknown fields" in res.error.reason


def test_full_records_of_the_earlier_form_still_verify_and_replay(tmp_path: Path) -> None:
    from limits.audit import GENESIS, _raw_body, canonical, record_hash

    text = read_policy_text()[0]
    policy = parse_policy(text)
    audit = AuditLog(tmp_path / "audit")
    audit.keep_policy(policy, text)
    prev, lines = GENESIS, []
    for i in range(3):
        d = decide_with_counterfactuals(profile(i), policy, i == 1)
        rec = {"seq": i, "prev_hash": prev, "kind": "decision", "recorded_at_ms": NOW,
               "applied": True, "options": {"counterfactuals": i == 1},
               "decision": _raw_body(d)}
        rec["hash"] = record_hash(rec)
        lines.append(canonical(rec) + "\n")
        prev = rec["hash"]
    audit.path.write_text("".join(lines), "utf-8")
    audit.append(decide(profile(4), policy), applied=True, recorded_at_ms=NOW)
    res = audit.verify()
    assert res.ok and res.records == 4
    for rec in audit.records():
        audit.replay(rec)
    assert [r["seq"] for r in audit.history("u1")] == [1]


# -- the index ------------------------------------------------------------------------
def _scan_last_raises(audit: AuditLog) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for rec in audit.records():
        d = rec["decision"]
        if rec["applied"]:
            for ld in d["lines"]:
                if ld["action"] == "raise":
                    out[(d["user_id"], ld["line"])] = int(d["decided_at_ms"])
    return out


def _raising_log(tmp_path: Path) -> tuple[AuditLog, object]:
    text = read_policy_text()[0]
    policy = parse_policy(text)
    audit = AuditLog(tmp_path / "audit")
    audit.keep_policy(policy, text)
    good = dict(credit_score=800, income=300_000, months_on_book=36,
                repayment_history="0" * 24, utilisation=0.6, monthly_txns=20,
                active_days_30d=25, obligations=0, fraud_risk=0.01, relational_risk=0.01)
    for k in range(3):
        ds = [decide(profile(i, now_ms=NOW + k * 1000, **good), policy) for i in range(5)]
        assert any(d.action == "raise" for d in ds)
        audit.append_many(ds, applied=k != 1, recorded_at_ms=NOW + k)
    return audit, policy


def test_the_index_answers_like_a_full_scan(tmp_path: Path) -> None:
    audit, _ = _raising_log(tmp_path)
    assert audit.index.path.exists() and audit.index.is_current()
    expected = _scan_last_raises(audit)
    assert expected and audit.last_raises() == expected
    assert audit.last_raises("u2") == {k: v for k, v in expected.items() if k[0] == "u2"}
    data = audit.path.read_bytes()
    for uid in ("u0", "u3"):
        hist = audit.history(uid)
        assert [r["decision"]["user_id"] for r in hist] == [uid] * 3
        assert [r["seq"] for r in hist] == sorted(r["seq"] for r in hist)
        for seq, offset, length in audit.index.offsets(uid):
            assert json.loads(data[offset:offset + length])["seq"] == seq


def test_a_missing_index_is_rebuilt_by_verify_and_on_use(tmp_path: Path) -> None:
    audit, _ = _raising_log(tmp_path)
    expected = _scan_last_raises(audit)
    audit.index.remove()
    res = audit.verify()
    assert res.ok and res.index_rebuilt and audit.index.is_current()
    assert not audit.verify().index_rebuilt
    assert audit.last_raises() == expected
    audit.index.remove()
    assert [r["seq"] for r in audit.history("u1")] == [1, 6, 11]
    assert audit.index.is_current()


def test_an_index_that_no_longer_matches_the_log_is_rebuilt(tmp_path: Path) -> None:
    audit, policy = _raising_log(tmp_path)
    lines = _lines(audit)
    # The log is replaced by a shorter one: the index must not answer from the old one.
    audit.path.write_text("".join(lines[:5]), "utf-8")
    assert not audit.index.is_current()
    assert [r["seq"] for r in audit.history("u1")] == [1]
    assert audit.last_raises() == _scan_last_raises(audit)
    # Appending after the index fell behind catches it up first.
    audit.index.remove()
    audit.append(decide(profile(1), policy), applied=True, recorded_at_ms=NOW)
    assert [r["seq"] for r in audit.history("u1")] == [1, 5]
    assert audit.verify().ok and not audit.verify().index_rebuilt


def test_a_corrupt_index_file_is_replaced(tmp_path: Path) -> None:
    audit, _ = _raising_log(tmp_path)
    expected = _scan_last_raises(audit)
    audit.index.remove()
    audit.index.path.write_bytes(b"not a database" * 100)
    assert audit.last_raises() == expected


class _CountingLock:
    """The log's lock, counted: reads that find the log unchanged must not take it."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit, self.taken = audit, 0

    def __call__(self):  # type: ignore[no-untyped-def]
        self.taken += 1
        return self.audit._locked()


def test_reads_keep_the_index_open_and_see_every_append(tmp_path: Path) -> None:
    import multiprocessing

    audit, policy = _raising_log(tmp_path)
    reader = AuditLog(tmp_path / "audit")  # as another server worker holds it
    lock = _CountingLock(reader)
    reader.index._log_lock = lock
    assert reader.last_raises("u2") == audit.last_raises("u2")
    taken = lock.taken
    for _ in range(5):  # the log is unchanged: no lock, no catching up
        assert reader.last_raises() == _scan_last_raises(audit)
        assert [r["seq"] for r in reader.history("u1")] == [1, 6, 11]
    assert lock.taken == taken
    # Another object appends: the next read takes the lock and sees the record.
    good = dict(credit_score=800, income=300_000, months_on_book=36,
                repayment_history="0" * 24, utilisation=0.6, monthly_txns=20,
                active_days_30d=25, obligations=0, fraud_risk=0.01, relational_risk=0.01)
    late = decide(profile(7, now_ms=NOW + 9000, **good), policy)
    assert late.action == "raise"
    audit.append(late, applied=True, recorded_at_ms=NOW + 9)
    expected = {k: v for k, v in _scan_last_raises(audit).items() if k[0] == "u7"}
    assert expected and reader.last_raises("u7") == expected
    assert lock.taken == taken + 1
    # Another process appends, from a fork holding the reader's open connection.
    later = decide(profile(8, now_ms=NOW + 10_000, **good), policy)
    child = multiprocessing.get_context("fork").Process(
        target=reader.append, args=(later,), kwargs={"applied": True,
                                                     "recorded_at_ms": NOW + 10})
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert reader.last_raises() == _scan_last_raises(audit)
    assert "u8" in {u for u, _ in reader.last_raises()}
    assert reader.verify().ok and not reader.verify().index_rebuilt
    # Removed and rebuilt by someone else: still the same answers.
    audit.index.remove()
    assert audit.last_raises() == reader.last_raises() == _scan_last_raises(audit)
