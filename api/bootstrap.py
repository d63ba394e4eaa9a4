"""The one place that wires adapters together. Each adapter is a parameter with a default."""

from __future__ import annotations

from api.settings import Settings
from graph.store import GraphStore


def open_store(settings: Settings) -> GraphStore:
    """The configured store, connected and initialised."""
    store: GraphStore
    if settings.store == "neo4j":
        from graph.neo4j_store import Neo4jStore, connect

        driver = connect(settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password)
        store = Neo4jStore(driver, database=settings.neo4j_database, owns_driver=True)
    else:
        from graph.embedded import EmbeddedStore

        store = EmbeddedStore(settings.graph_dir)
    store.init()
    return store
