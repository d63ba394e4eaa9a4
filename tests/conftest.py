"""Shared fixtures: one ``store`` fixture over every backend, and the live Bolt server.

The Bolt server (ArcadeDB, see tests/bolt_server.py) starts once per session, and only
when a test that needs it runs. If it cannot start, those tests fail with its log
tail: a missing server must never pass for a green run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import neo4j
import pytest

from graph.neo4j_store import Neo4jStore, connect
from graph.store import GraphStore
from tests.bolt_server import BoltServer, BoltServerError


@dataclass(frozen=True)
class BoltSettings:
    uri: str
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The RISKGRAPH_* variables that point the CLI at this server."""
        return {
            "RISKGRAPH_STORE": "neo4j",
            "RISKGRAPH_NEO4J_URI": self.uri,
            "RISKGRAPH_NEO4J_USER": self.user,
            "RISKGRAPH_NEO4J_PASSWORD": self.password,
            "RISKGRAPH_NEO4J_DATABASE": self.database,
        }


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoltServer]:
    server = BoltServer(root=tmp_path_factory.mktemp("bolt-server"))
    try:
        server.start()
    except BoltServerError as exc:
        pytest.fail(f"the live Bolt server did not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bolt_settings(bolt_server: BoltServer) -> BoltSettings:
    return BoltSettings(
        bolt_server.uri, bolt_server.user, bolt_server.password, bolt_server.database
    )


@pytest.fixture(scope="session")
def neo4j_driver(bolt_settings: BoltSettings) -> Iterator[neo4j.Driver]:
    driver = connect(bolt_settings.uri, bolt_settings.user, bolt_settings.password)
    yield driver
    driver.close()


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[GraphStore]:
    from graph.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "graph")
    store.init()
    yield store
    store.close()


@pytest.fixture
def neo4j_store(neo4j_driver: neo4j.Driver, bolt_settings: BoltSettings) -> Iterator[Neo4jStore]:
    store = Neo4jStore(neo4j_driver, database=bolt_settings.database)
    store.init()
    store.clear()
    yield store
    store.close()


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("neo4j", id="neo4j", marks=pytest.mark.neo4j),
    ]
)
def store(request: pytest.FixtureRequest) -> GraphStore:
    """Every GraphStore backend in turn, empty and initialised."""
    fixture = "embedded_store" if request.param == "embedded" else "neo4j_store"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def gnn_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, ...]]:
    """A small graph with fraud rings (tests/gnn_graphs.py) and a model trained on it,
    once per session: (store, graph, root, version, metrics, model)."""
    from gnn import pipeline, registry
    from graph.embedded import EmbeddedStore
    from tests.gnn_graphs import build

    root = tmp_path_factory.mktemp("gnn")
    store = EmbeddedStore(root / "graph")
    store.init()
    small = build(store)
    version, metrics = pipeline.train_users(store, root / "models", "random", seed=0,
                                            max_epochs=150)
    _, model = registry.load(root / "models", version)
    yield store, small, root, version, metrics, model
    store.close()


@pytest.fixture
def trained_models(gnn_world: tuple[Any, ...]) -> Path:
    """The directory of a trained model; copy it into a test's RISKGRAPH_HOME/models."""
    return Path(gnn_world[2]) / "models"
