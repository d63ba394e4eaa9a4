"""`riskgraph export scores OUT.parquet` on every store: the scores written are the
scores exported, unscored users have nulls, and a bad path fails with advice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from api.exports import SCHEMA, ExportError, export_scores
from graph.store import GraphStore
from tests.conftest import BoltSettings

TS = 1_700_000_000_000


def _scored(store: GraphStore) -> tuple[list[str], dict[str, np.ndarray]]:
    ids = [f"u{i:04d}" for i in range(250)]
    store.upsert_nodes("User", {"id": ids})
    rng = np.random.default_rng(3)
    scores = {k: rng.random(200) for k in ("fraud_risk", "own_risk", "relational_risk")}
    assert store.write_scores(ids[:200], scores, "m-test", TS) == 200
    return ids, scores


def test_scores_written_are_the_scores_exported(store: GraphStore, tmp_path: Path) -> None:
    ids, scores = _scored(store)
    out = tmp_path / "out"
    out.mkdir()
    result = export_scores(store, out / "scores.parquet", batch_size=64)
    assert (result.rows, result.scored) == (250, 200)
    table = pq.read_table(result.path)
    assert table.schema == SCHEMA
    got = table.to_pydict()
    assert got["user_id"] == ids
    for name, values in scores.items():
        np.testing.assert_array_equal(np.array(got[name][:200]), values)
        assert got[name][200:] == [None] * 50
    assert got["model_version"] == ["m-test"] * 200 + [None] * 50
    assert [t.timestamp() * 1000 for t in got["scored_at"][:200]] == [TS] * 200
    assert got["scored_at"][200:] == [None] * 50
    assert list(out.iterdir()) == [result.path]  # no temporary file left


def test_bad_paths_fail_with_advice(store: GraphStore, tmp_path: Path) -> None:
    _scored(store)
    with pytest.raises(ExportError, match="parquet"):
        export_scores(store, tmp_path / "scores.csv")
    with pytest.raises(ExportError, match="directory"):
        export_scores(store, tmp_path / "missing" / "scores.parquet")


@pytest.mark.neo4j
def test_the_command_on_the_neo4j_store(neo4j_store: GraphStore, bolt_settings: BoltSettings,
                                        tmp_path: Path) -> None:
    ids, _ = _scored(neo4j_store)
    env = os.environ | bolt_settings.env() | {"RISKGRAPH_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "api.cli", "export", "scores",
                          str(tmp_path / "s.parquet"), "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert '"rows": 250' in out.stdout
    assert pq.read_table(tmp_path / "s.parquet").column("user_id").to_pylist() == ids
    out = subprocess.run([sys.executable, "-m", "api.cli", "export", "scores",
                          str(tmp_path / "s.txt")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "parquet" in out.stderr
