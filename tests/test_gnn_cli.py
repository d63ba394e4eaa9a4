"""train, evaluate, score, models: run as a user runs them, `riskgraph` in a subprocess
against an embedded store holding a small graph with rings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.embedded import EmbeddedStore
from tests.gnn_graphs import build

RISKGRAPH = [sys.executable, "-m", "api.cli"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gnn-cli")
    store = EmbeddedStore(root / "graph")
    store.init()
    build(store, seed=2)
    store.close()
    return root


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"RISKGRAPH_HOME": str(home), "RISKGRAPH_STORE": "embedded"}
    return subprocess.run([*RISKGRAPH, *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])


def test_models_before_training_says_so(tmp_path: Path) -> None:
    out = run(tmp_path, "models")
    assert out.returncode == 0 and "no trained models" in out.stdout


def test_evaluate_without_a_model_fails_with_advice(tmp_path: Path) -> None:
    out = run(tmp_path, "evaluate", "--json")
    assert out.returncode != 0 and "riskgraph train" in out.stderr


def test_train_evaluate_score_models(home: Path) -> None:
    out = run(home, "train", "--split", "random", "--json")
    assert out.returncode == 0, out.stderr
    trained = json.loads(out.stdout)
    version = trained["version"]

    out = run(home, "evaluate", "--json")
    assert out.returncode == 0, out.stderr
    ev = json.loads(out.stdout)
    # one feature path: training, the model list and evaluation report the same test
    # metrics for the same model and test users
    for key in ("auc", "ap", "f1_macro", "recall_at_1pct_fpr"):
        assert abs(ev["model"][key] - trained["model"][key]) <= 1e-6, key
        for head in ("relational", "own"):
            assert abs(ev["heads"][head][key] - trained["heads"][head][key]) <= 1e-6
    keys = {"auc", "ap", "f1_macro", "recall_at_1pct_fpr"}
    assert keys <= set(ev["model"])
    assert keys <= set(ev["baselines"]["lgbm_own"]) and keys <= set(ev["baselines"]["lgbm_graph"])
    for png in ev["plots"]:
        assert Path(png).is_file() and Path(png).read_bytes()[:4] == b"\x89PNG"

    out = run(home, "score", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["written"] > 0

    out = run(home, "score", "--user", "tied0", "--explain", "--json")
    assert out.returncode == 0, out.stderr
    one = json.loads(out.stdout)
    assert one["version"] == version and one["contributions"]

    out = run(home, "models", "--json")
    listed = json.loads(out.stdout)
    assert [m["version"] for m in listed] == [version] and listed[0]["seed"] == 0
    for key in ("auc", "ap", "f1_macro", "recall_at_1pct_fpr"):
        assert abs(listed[0]["model"][key] - ev["model"][key]) <= 1e-6, key


def test_unknown_user_is_not_found(home: Path) -> None:
    run(home, "train")
    out = run(home, "score", "--user", "nobody")
    assert out.returncode == 1 and "nobody" in out.stderr


def _stored(home: Path, uid: str) -> dict:
    store = EmbeddedStore(home / "graph")
    store.init()
    try:
        node = store.get_nodes("User", [uid])[0]
        assert node is not None
        return dict(node.properties)
    finally:
        store.close()


def test_score_one_user_stores_it_unless_no_save(home: Path) -> None:
    assert run(home, "train").returncode == 0
    store = EmbeddedStore(home / "graph")
    store.init()
    store.write_scores(["tied0"], {"fraud_risk": [0.5], "relational_risk": [0.5]},
                       "stale", 1)
    store.close()
    out = run(home, "score", "--user", "tied0", "--no-save", "--json")
    assert out.returncode == 0, out.stderr
    fresh = json.loads(out.stdout)
    assert fresh["saved"] is False and fresh["scores"]["fraud_risk"] != 0.5
    assert _stored(home, "tied0")["model_version"] == "stale"
    out = run(home, "score", "--user", "tied0", "--explain")
    assert out.returncode == 0, out.stderr
    assert "stored: the next decide uses these scores" in out.stdout
    assert "log-odds" in out.stdout and " pp)" in out.stdout
    held = _stored(home, "tied0")
    assert held["model_version"] == fresh["version"]
    assert abs(held["fraud_risk"] - fresh["scores"]["fraud_risk"]) < 1e-9
    one = json.loads(run(home, "score", "--user", "tied0", "--explain", "--json").stdout)
    for c in one["contributions"]:
        # the same fall on both scales: log-odds rise with probability
        assert (c["relational_log_odds_drop"] > 0) == (c["relational_risk_drop"] > 0) or \
            abs(c["relational_risk_drop"]) < 1e-12


def test_explain_without_a_user_is_a_usage_error(home: Path) -> None:
    out = run(home, "score", "--explain")
    assert out.returncode == 2 and "--user" in out.stderr
