"""Bulk review: decisions made in worker processes are the per-user decisions, recorded
in the same order, and a review records and writes the same with one process or many."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from limits.audit import AuditLog, canonical, compact_body
from limits.bulk import decide_outcomes, init_worker, outcome_of, worker_outcomes
from limits.engine import decide
from limits.features import DAY_MS, LineState, Profile
from limits.policy import load_policy

POLICY = load_policy()
NOW = 1_735_689_600_000  # 2025-01-01, inside a season of the default policy


def random_profiles(n: int, seed: int) -> list[Profile]:
    """Varied profiles: missing scores and income, rings, temporary raises, cool-downs."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hist = "".join(rng.choice(list("0000000000-123"), int(rng.integers(0, 37))))
        lines = {}
        for line in ("bnpl", "cash_loan"):
            if rng.random() < 0.6:
                temp = float(rng.choice([0.0, 0.0, 2000.0]))
                lines[line] = LineState(
                    limit=float(np.round(rng.uniform(0, 60_000), -2)),
                    status=str(rng.choice(["active", "active", "frozen"])), temp_limit=temp,
                    temp_until_ms=(NOW + int(rng.integers(-60, 60)) * DAY_MS) if temp else None,
                    last_raise_ms=(NOW - int(rng.integers(0, 200)) * DAY_MS)
                    if rng.random() < 0.5 else None)
        ring = int(rng.choice([0, 0, 0, 3, 8]))
        out.append(Profile(
            user_id=f"u{i:06d}", now_ms=NOW + int(rng.integers(0, 300)) * DAY_MS,
            lifecycle=rng.choice([None, "new", "active", "dormant"]),
            credit_score=None if rng.random() < 0.1 else float(rng.integers(350, 951)),
            income=None if rng.random() < 0.1 else float(rng.lognormal(11.3, 0.7)),
            months_on_book=int(rng.integers(0, 80)), repayment_history=hist,
            overdue_count=int(rng.integers(0, 4)), worst_dpd=int(rng.integers(0, 90)),
            utilisation=float(rng.uniform(0, 1.3)), monthly_txns=float(rng.gamma(2, 3)),
            active_days_30d=int(rng.integers(0, 31)), obligations=float(rng.exponential(2000)),
            fraud_risk=None if rng.random() < 0.1 else float(
                rng.uniform(0.8, 1.0) if rng.random() < 0.05 else rng.beta(1, 8)),
            relational_risk=None if rng.random() < 0.1 else float(rng.beta(1, 5)),
            ring_id="ring:x" if ring else None, ring_size=ring, lines=lines,
        ))
    return out


def test_worker_outcomes_equal_per_user_decisions() -> None:
    profiles = random_profiles(3000, 11)
    reference = [outcome_of(decide(p, POLICY)) for p in profiles]
    with ProcessPoolExecutor(2, initializer=init_worker, initargs=(POLICY,)) as ex:
        chunks = [(profiles[i:i + 400], True, False) for i in range(0, len(profiles), 400)]
        bulk = [o for out in ex.map(worker_outcomes, chunks) for o in out]
    assert bulk == reference
    assert decide_outcomes(profiles, POLICY, record=True) == reference
    assert len({o.action for o in bulk}) == 5  # every path of the engine is exercised


def test_every_compact_record_replays_to_itself() -> None:
    from limits.features import check_profile

    for p in random_profiles(2000, 12):
        check_profile(p)
        d = decide(p, POLICY)
        rec = outcome_of(d).entry
        assert rec is not None and rec.text == canonical(compact_body(d))
        again = decide(Profile.from_dict(json.loads(rec.text)["inputs"]), POLICY)
        assert again == d
        assert canonical(compact_body(again)) == rec.text


@pytest.fixture(scope="module")
def generated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graph.embedded import EmbeddedStore
    from loaders.load import LoadOptions, load_directory
    from loaders.synthetic import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("bulk")
    generate(GeneratorConfig(users=400, seed=3), root / "data")
    store = EmbeddedStore(root / "graph")
    store.init()
    load_directory(store, root / "data", LoadOptions(quarantine_dir=root / "q"))
    ids = store.node_ids("User", limit=10_000)
    rng = np.random.default_rng(1)
    store.write_scores(ids, {"fraud_risk": rng.beta(1, 10, len(ids)).tolist(),
                             "relational_risk": rng.beta(1, 5, len(ids)).tolist()},
                       "test", NOW)
    store.close()
    return root / "graph"


def _review(graph: Path, root: Path, workers: int) -> tuple[dict, bytes, dict]:
    from api.limits_service import LimitsService
    from graph.embedded import EmbeddedStore
    from limits.policy import parse_policy, read_policy_text

    shutil.copytree(graph, root / "graph")
    store = EmbeddedStore(root / "graph")
    store.init()
    text = read_policy_text()[0]
    svc = LimitsService(store, AuditLog(root / "audit"), parse_policy(text), text,
                        clock=lambda: NOW)
    try:
        summary = svc.review(batch_size=64, workers=workers, at_ms=NOW)
        ids = store.node_ids("User", limit=10_000)
        holds = {(r.src, r.dst): r.properties for r in store.relationships("HOLDS", ids)}
    finally:
        store.close()
    return summary.to_dict() | {"seconds": 0, "users_per_second": 0}, \
        (root / "audit" / "decisions.jsonl").read_bytes(), holds


def test_review_in_workers_records_and_writes_what_one_process_does(
        generated_store: Path, tmp_path: Path) -> None:
    one = _review(generated_store, tmp_path / "one", 1)
    two = _review(generated_store, tmp_path / "two", 2)
    assert one[0]["users"] == 400 and one[0]["recorded"] == 400
    assert two[0] == one[0]
    assert two[1] == one[1]  # byte for byte: same records, same order, same chain
    assert two[2] == one[2]
    log = AuditLog(tmp_path / "two" / "audit")
    assert log.verify().ok
    for rec in list(log.records())[::37]:
        log.replay(rec)
