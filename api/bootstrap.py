"""The one place that wires adapters together. Each adapter is a parameter with a default."""

from __future__ import annotations

from api.settings import Settings
from graph.store import GraphStore


def open_store(settings: Settings, retry_s: float | None = None) -> GraphStore:
    """The configured store, connected and initialised. ``retry_s`` overrides how long
    a Neo4j transaction is retried while the server is unreachable
    (``Settings.neo4j_retry_s``)."""
    store: GraphStore
    if settings.store == "neo4j":
        from graph.neo4j_store import Neo4jStore, connect

        driver = connect(settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password,
                         retry_s=settings.neo4j_retry_s if retry_s is None else retry_s)
        store = Neo4jStore(driver, database=settings.neo4j_database, owns_driver=True)
    else:
        from graph.embedded import EmbeddedStore

        store = EmbeddedStore(settings.graph_dir)
    store.init()
    return store


def api_store_retry_s(settings: Settings) -> float:
    """How long the API retries an unreachable store: a quarter of the request time
    limit, so a request still gets UNAVAILABLE (or decideLimit its safe fallback) in time."""
    return min(settings.neo4j_retry_s, settings.api_timeout_s / 4)
