"""decide, review, simulate and audit as a user runs them: `python -m api.cli` in a
subprocess, against an embedded store built in the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graph.embedded import EmbeddedStore
from graph.store import GraphStore

RISKGRAPH = [sys.executable, "-m", "api.cli"]
NOW_HISTORY = "0" * 20


def populate(store: GraphStore) -> None:
    """Products, five users with credit features and scores, a ring of three."""
    store.upsert_nodes("Product", {"id": ["p-hb", "p-jb", "p-yeb"],
                                   "kind": ["bnpl", "cash_loan", "wealth"],
                                   "name": ["Huabei", "Jiebei", "Yu'ebao"]})
    users = ["good", "short", "fraud", "newbie", "ring1", "ring2", "ring3"]
    n = len(users)
    store.upsert_nodes("User", {
        "id": users,
        "lifecycle": ["active", "active", "active", "new", "active", "active", "active"],
        "credit_score": [760, 720, 700, 650, 700, 700, 700],
        "income": [240_000.0, 150_000.0, 120_000.0, 80_000.0, 90_000.0, 90_000.0, 90_000.0],
        "months_on_book": [30, 30, 30, 1, 30, 30, 30],
        "repayment_history": [NOW_HISTORY, "0" * 10 + "1" + "0", NOW_HISTORY, "0",
                              NOW_HISTORY, NOW_HISTORY, NOW_HISTORY],
        "overdue_count": [0, 1, 0, 0, 0, 0, 0],
        "worst_dpd": [0, 25, 0, 0, 0, 0, 0],
        "utilisation": [0.5, 0.4, 0.5, 0.0, 0.5, 0.5, 0.5],
        "monthly_spend": [4000.0] * n,
        "monthly_txns": [15.0, 10.0, 9.0, 1.0, 8.0, 8.0, 8.0],
        "merchant_categories": [8] * n,
        "active_days_30d": [25, 20, 20, 3, 20, 20, 20],
        "other_products": [1] * n,
        "obligations": [1000.0] * n,
    })
    store.write_scores(users, {
        "fraud_risk": [0.02, 0.03, 0.95, 0.05, 0.1, 0.1, 0.1],
        "relational_risk": [0.05, 0.05, 0.4, 0.05, 0.7, 0.7, 0.7],
    }, "gnn-test", 1_700_000_000_000)
    held = ["good", "short", "fraud", "ring1", "ring2", "ring3"]
    store.upsert_relationships("HOLDS", {
        "src": held, "dst": ["p-hb"] * len(held), "limit": [8000.0] * len(held),
        "balance": [4000.0] * len(held), "status": ["active"] * len(held),
        "since": [1_650_000_000_000] * len(held),
    })
    store.upsert_nodes("Device", {"id": ["shared"]})
    store.upsert_relationships("USES", {"src": ["ring1", "ring2", "ring3"],
                                        "dst": ["shared"] * 3})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    populate(store)
    store.close()
    return tmp_path


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    return subprocess.run([*RISKGRAPH, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def holds(home: Path) -> dict[tuple[str, str], dict]:
    store = EmbeddedStore(home / "graph")
    store.init()
    try:
        users = ["good", "short", "fraud", "newbie", "ring1", "ring2", "ring3"]
        return {(r.src, r.dst): r.properties for r in store.relationships("HOLDS", users)}
    finally:
        store.close()


def test_decide_answers_why_no_raise_and_records_it(home: Path) -> None:
    r = run(home, "decide", "short", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["action"] == "keep" and d["policy_version"] and d["model_version"]
    codes = {x["code"] for ld in d["lines"] for x in ld["reasons"]}
    assert "NEEDS_ON_TIME_WINDOW" in codes
    cf = {c["lever"]: c for c in d["counterfactuals"]}
    assert cf["on_time_months"]["needed"] == 5
    assert "5 more months of on-time repayment" in cf["on_time_months"]["en"]
    assert "再按时还款 5 个月" in cf["on_time_months"]["zh"]
    text = run(home, "decide", "short")
    assert "One on-time repayment is not enough" in text.stdout
    hist = run(home, "audit", "history", "short", "--json")
    assert len(json.loads(hist.stdout)["records"]) == 2


def test_decide_unknown_user_exits_1(home: Path) -> None:
    r = run(home, "decide", "nobody")
    assert r.returncode == 1 and "nobody" in r.stderr


def test_decide_writes_back_and_opens_the_bnpl_line(home: Path) -> None:
    assert json.loads(run(home, "decide", "good", "--json").stdout)["action"] == "raise"
    assert holds(home)[("good", "p-hb")]["limit"] > 8000
    d = json.loads(run(home, "decide", "newbie", "--json").stdout)
    assert d["action"] == "open"
    assert holds(home)[("newbie", "p-hb")]["limit"] == d["lines"][0]["new_limit"]
    assert ("newbie", "p-jb") not in holds(home)
    again = json.loads(run(home, "decide", "good", "--json").stdout)
    assert "COOLDOWN" in {x["code"] for ld in again["lines"] for x in ld["reasons"]}


def test_review_dry_run_changes_nothing_then_review_applies(home: Path) -> None:
    before = holds(home)
    r = run(home, "review", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["users"] == 7 and s["recorded"] == 0 and s["referred"] == 1
    assert s["actions"]["freeze"] == 1
    assert holds(home) == before
    assert not (home / "audit" / "decisions.jsonl").exists()
    s = json.loads(run(home, "review", "--json").stdout)
    assert s["recorded"] == 7
    after = holds(home)
    assert after[("fraud", "p-hb")]["status"] == "frozen"
    assert after[("fraud", "p-hb")]["limit"] == 0
    v = run(home, "audit", "verify", "--replay")
    assert v.returncode == 0 and "7 records" in v.stdout


def test_audit_verify_names_the_first_bad_record(home: Path) -> None:
    run(home, "review")
    log = home / "audit" / "decisions.jsonl"
    lines = log.read_text("utf-8").splitlines(keepends=True)
    lines[4] = lines[4].replace('"action":', '"action" :', 1)
    log.write_text("".join(lines), "utf-8")
    r = run(home, "audit", "verify")
    assert r.returncode == 1 and "record 4" in r.stderr and "line 5" in r.stderr


def test_bad_policy_file_is_rejected(home: Path) -> None:
    bad = home / "bad.toml"
    bad.write_text("version = 3\n", "utf-8")
    r = run(home, "decide", "good", "--policy", str(bad))
    assert r.returncode == 2 and "version" in r.stderr


def test_simulate_compares_two_policies_with_a_plot(home: Path) -> None:
    from limits.policy import read_policy_text

    text = read_policy_text()[0]
    a, b = home / "a.toml", home / "b.toml"
    a.write_text(text, "utf-8")
    b.write_text(text.replace("macro_factor = 1.0", "macro_factor = 0.5"), "utf-8")
    png = home / "cmp.png"
    r = run(home, "simulate", "--policy", str(a), "--vs", str(b), "--png", str(png), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["a"]["users"] == out["b"]["users"] == 7
    assert out["b"]["exposure_after"] <= out["a"]["exposure_after"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_question_on_generated_users(tmp_path: Path) -> None:
    """"I repaid on time, why no raise?" asked of generated users who did repay on time."""
    from api.limits_service import LimitsService
    from limits.audit import AuditLog
    from limits.policy import parse_policy, read_policy_text
    from loaders.load import LoadOptions, load_directory
    from loaders.synthetic import GeneratorConfig, generate

    generate(GeneratorConfig(users=300, seed=7), tmp_path / "data")
    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    load_directory(store, tmp_path / "data", LoadOptions(quarantine_dir=tmp_path / "q"))
    ids = store.node_ids("User", limit=1000)
    rng = np.random.default_rng(0)
    store.write_scores(ids, {"fraud_risk": rng.uniform(0, 0.3, len(ids)).tolist(),
                             "relational_risk": rng.uniform(0, 0.4, len(ids)).tolist()},
                       "test", 1_735_689_600_000)
    text = read_policy_text()[0]
    svc = LimitsService(store, AuditLog(tmp_path / "audit"), parse_policy(text), text,
                        clock=lambda: 1_735_689_600_000)
    asked = 0
    for uid in ids:
        p = svc.profile(uid)
        if "bnpl" not in p.lines or not p.repayment_history.endswith("0"):
            continue
        d = svc.decide(uid, apply=False)
        if d.line("bnpl").action != "keep":
            continue
        asked += 1
        codes = [r.code for r in d.line("bnpl").reasons]
        assert len(codes) >= 2, codes  # KEPT and at least one reason why
        assert all(r.en and r.zh for r in d.line("bnpl").reasons)
        # something the person can act on, or a clear statement that nothing is missing
        assert d.counterfactuals or {"AT_TARGET", "NO_CAPACITY", "DORMANT"} & set(codes)
        if asked >= 15:
            break
    store.close()
    assert asked > 0


def test_audit_history_renders_compact_records_and_verify_rebuilds_the_index(
        home: Path) -> None:
    assert run(home, "review", "--workers", "2").returncode == 0
    assert run(home, "decide", "short").returncode == 0
    h = run(home, "audit", "history", "short")
    assert h.returncode == 0, h.stderr
    assert h.stdout.count("#") == 2 and "[NEEDS_ON_TIME_WINDOW] One on-time repayment" in h.stdout
    (home / "audit" / "decisions.idx.sqlite").unlink()
    v = run(home, "audit", "verify", "--json")
    assert v.returncode == 0
    out = json.loads(v.stdout)
    assert out["ok"] and out["records"] == 8 and out["index_rebuilt"]
    assert len(json.loads(run(home, "audit", "history", "short", "--json").stdout)
               ["records"]) == 2


def _temp_raise(d: dict) -> list[dict]:
    return [x for ld in d["lines"] for x in ld["reasons"] if x["code"] == "TEMP_RAISE"]


def test_decide_as_of_singles_day_gets_the_temporary_raise_and_replays(home: Path) -> None:
    autumn = json.loads(run(home, "decide", "good", "--dry-run", "--as-of", "2025-09-04",
                            "--json").stdout)
    assert not _temp_raise(autumn)
    r = run(home, "decide", "good", "--as-of", "2025-11-11", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # 2025-11-11 00:00 in the policy's offset (+08:00)
    assert d["decided_at_ms"] == 1_762_790_400_000
    temp = _temp_raise(d)
    assert temp and temp[0]["params"]["season"] == "Singles Day"
    bnpl = next(ld for ld in d["lines"] if ld["line"] == "bnpl")
    assert bnpl["temp_limit"] > 0 and bnpl["temp_limit"] % 100 == 0
    assert "双十一" in temp[0]["zh"]
    hist = json.loads(run(home, "audit", "history", "good", "--json").stdout)["records"]
    assert hist[-1]["decision"]["decided_at_ms"] == 1_762_790_400_000
    assert hist[-1]["recorded_at_ms"] > hist[-1]["decision"]["decided_at_ms"]
    v = run(home, "audit", "verify", "--replay")
    assert v.returncode == 0, v.stderr
    text = run(home, "decide", "good", "--dry-run", "--as-of", "2025-11-11")
    assert "as of 2025-11-11" in text.stdout


def test_review_and_simulate_as_of_a_date(home: Path, tmp_path: Path) -> None:
    r = run(home, "review", "--dry-run", "--as-of", "2025-11-11", "--json")
    assert r.returncode == 0, r.stderr
    nov = json.loads(r.stdout)
    sep = json.loads(run(home, "review", "--dry-run", "--as-of", "2025-09-04",
                         "--json").stdout)
    assert nov["exposure_after"] > sep["exposure_after"]  # the season's temporary raises
    policy = Path(__file__).resolve().parent.parent / "limits" / "policy.toml"
    s = run(home, "simulate", "--policy", str(policy), "--vs", str(policy), "--as-of",
            "2025-11-11", "--png", str(tmp_path / "s.png"), "--json")
    assert s.returncode == 0, s.stderr
    out = json.loads(s.stdout)
    assert out["a"]["exposure_after"] == nov["exposure_after"]
    assert out["a"]["exposure_after"] % 100 == 0


def test_as_of_that_is_not_a_date_is_a_usage_error(home: Path) -> None:
    r = run(home, "decide", "good", "--as-of", "2025-13-40")
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr


def test_audit_history_of_an_unknown_user_exits_1(home: Path) -> None:
    r = run(home, "audit", "history", "nobody")
    assert r.returncode == 1 and "nobody" in r.stderr
