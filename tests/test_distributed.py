"""`--distributed` score and review on a real local Ray cluster (two worker slots): the
same scores (within 1e-6) and the same decisions, records and writes as one process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api import distributed
from api.limits_service import LimitsService
from api.settings import Settings
from graph.embedded import EmbeddedStore
from limits.audit import AuditLog
from limits.policy import parse_policy, read_policy_text
from tests.conftest import BoltSettings

NOW = 1_735_689_600_000  # 2025-01-01
SCORES = ["fraud_risk", "own_risk", "relational_risk"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A generated ecosystem, loaded, with a model trained on it: (home, version)."""
    from gnn import pipeline
    from loaders.load import LoadOptions, load_directory
    from loaders.synthetic import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("distributed")
    generate(GeneratorConfig(users=700, seed=5), root / "data")
    store = EmbeddedStore(root / "home" / "graph")
    store.init()
    load_directory(store, root / "data", LoadOptions(quarantine_dir=root / "q"))
    version, _ = pipeline.train_users(store, root / "home" / "models", "random", seed=0,
                                      max_epochs=40)
    store.close()
    return root / "home", version


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[int]:
    with distributed.cluster(None, workers=2) as cpus:
        yield cpus


def _copy(world: tuple[Path, str], to: Path) -> Settings:
    shutil.copytree(world[0], to)
    return Settings(home=to, store="embedded")


def _open(settings: Settings) -> EmbeddedStore:
    store = EmbeddedStore(settings.graph_dir)
    store.init()
    return store


def _scores(settings: Settings) -> dict[str, np.ndarray]:
    store = _open(settings)
    try:
        chunks = list(store.export_nodes("User", [*SCORES, "scored_at", "model_version"]))
    finally:
        store.close()
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def test_partitions_cover_every_user_once(world: tuple[Path, str], tmp_path: Path) -> None:
    store = _open(_copy(world, tmp_path / "h"))
    try:
        ids = store.node_ids("User", limit=10_000)
        parts = distributed.id_partitions(store, 3)
    finally:
        store.close()
    assert [p.index for p in parts] == [0, 1, 2] and sum(p.users for p in parts) == len(ids)
    inside = [[u for u in ids if distributed._inside(u, p)] for p in parts]
    assert [len(x) for x in inside] == [p.users for p in parts]
    assert sum(inside, []) == ids


def test_distributed_scores_equal_one_process(world: tuple[Path, str], tmp_path: Path,
                                              ray_cluster: int) -> None:
    from gnn import pipeline

    one = _copy(world, tmp_path / "one")
    store = _open(one)
    try:
        pipeline.score_all(store, one.models_dir, world[1])
    finally:
        store.close()
    reference = _scores(one)

    many = _copy(world, tmp_path / "many")
    run = distributed.score(many, many.models_dir, world[1], partitions=3,
                            scored_at_ms=NOW)
    got = _scores(many)
    assert ray_cluster == 2 and len(run.partitions) == 3
    assert run.users == run.written == len(reference["id"]) == 700
    assert got["id"].tolist() == reference["id"].tolist()
    assert (got["scored_at"] == NOW).all()  # every user was written by the cluster
    assert set(got["model_version"].tolist()) == {world[1]}
    for name in SCORES:
        assert np.isfinite(got[name]).all()
        np.testing.assert_allclose(got[name], reference[name], rtol=0, atol=1e-6)
    # each worker read its partition and the neighbours it needed, not the graph
    assert all(p.read_users < 700 for p in run.partitions)


def _review(settings: Settings, spread: bool) -> tuple[dict, bytes, dict]:
    text = read_policy_text()[0]
    policy = parse_policy(text)
    if spread:
        summary, run = distributed.review(settings, policy, text, partitions=3, at_ms=NOW,
                                          clock=lambda: NOW)
        assert len(run.partitions) == 3
    store = _open(settings)
    try:
        if not spread:
            svc = LimitsService(store, AuditLog(settings.audit_dir), policy, text,
                                clock=lambda: NOW)
            summary = svc.review(at_ms=NOW)
        ids = store.node_ids("User", limit=10_000)
        holds = {(r.src, r.dst): r.properties for r in store.relationships("HOLDS", ids)}
    finally:
        store.close()
    return (summary.to_dict() | {"seconds": 0, "users_per_second": 0},
            (settings.audit_dir / "decisions.jsonl").read_bytes(), holds)


def test_distributed_review_decides_records_and_writes_what_one_process_does(
        world: tuple[Path, str], tmp_path: Path, ray_cluster: int) -> None:
    one = _review(_copy(world, tmp_path / "one"), spread=False)
    many = _review(_copy(world, tmp_path / "many"), spread=True)
    assert one[0]["users"] == 700 and one[0]["recorded"] == 700 and one[0]["written"] > 0
    assert many[0] == one[0]
    assert many[1] == one[1]  # byte for byte: same records, same order, same chain
    assert many[2] == one[2]
    assert AuditLog(tmp_path / "many" / "audit").verify().ok


def test_the_commands(world: tuple[Path, str], tmp_path: Path) -> None:
    """`riskgraph score --distributed` and `review --distributed` as a user runs them:
    each starts its own local cluster and stops it."""
    import json
    import os
    import subprocess
    import sys

    settings = _copy(world, tmp_path / "cli")
    env = os.environ | {"RISKGRAPH_HOME": str(settings.home), "RISKGRAPH_STORE": "embedded"}
    env.pop("RISKGRAPH_CLUSTER", None)

    def run(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "api.cli", *args, "--distributed",
                              "--cluster-workers", "2", "--json"], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    scored = run("score", "--partitions", "4")
    assert (scored["workers"], scored["partitions"], scored["written"]) == (2, 4, 700)
    reviewed = run("review", "--dry-run")
    assert reviewed["users"] == 700 and reviewed["recorded"] == 0 and reviewed["dry_run"]
    assert reviewed["distributed"]["partitions"] == 2


@pytest.mark.neo4j
def test_distributed_scores_on_the_neo4j_store(world: tuple[Path, str], tmp_path: Path,
                                               neo4j_store: object,
                                               bolt_settings: BoltSettings,
                                               ray_cluster: int) -> None:
    """The workers read their partitions from the Neo4j server and write back to it."""
    from gnn import pipeline
    from graph.neo4j_store import Neo4jStore
    from loaders.load import LoadOptions, load_directory

    assert isinstance(neo4j_store, Neo4jStore)
    load_directory(neo4j_store, world[0].parent / "data",
                   LoadOptions(quarantine_dir=tmp_path / "q"))
    home = _copy(world, tmp_path / "neo")
    b = bolt_settings
    settings = Settings(home=home.home, store="neo4j", neo4j_uri=b.uri, neo4j_user=b.user,
                        neo4j_password=b.password, neo4j_database=b.database)
    pipeline.score_all(neo4j_store, settings.models_dir, world[1])
    names = [*SCORES, "scored_at"]

    def read() -> dict[str, np.ndarray]:
        chunks = list(neo4j_store.export_nodes("User", names))
        return {k: np.concatenate([c[k] for c in chunks]) for k in ["id", *names]}

    reference = read()
    run = distributed.score(settings, settings.models_dir, world[1], partitions=2,
                            scored_at_ms=NOW)
    got = read()
    assert run.written == 700 and (got["scored_at"] == NOW).all()
    assert got["id"].tolist() == reference["id"].tolist()
    for name in SCORES:
        np.testing.assert_allclose(got[name], reference[name], rtol=0, atol=1e-6)
