"""The one place that wires the API's runtime: ``bootstrap`` builds every long-lived part
(store, flag store, action log, metrics, thread pool, limits service, model loader),
each a parameter with a default, so a test or a tool replaces only the part it must."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.context import Runtime
from api.flags import ActionLog, FlagStore
from api.gnn_service import ModelLoader
from api.metrics import Metrics
from api.services import Limits, build_limits_service
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


def bootstrap(
    settings: Settings,
    store: GraphStore | None = None,
    *,
    flags: FlagStore | None = None,
    actions: ActionLog | None = None,
    metrics: Metrics | None = None,
    executor: ThreadPoolExecutor | None = None,
    limits_service: Callable[[GraphStore, Settings], Any] | None = None,
    model_loader: ModelLoader | None = None,
) -> Runtime:
    """The API's runtime. With no ``store`` the configured one is opened with the API's
    retry budget (``api_store_retry_s``); the caller closes it (``Runtime.close`` does
    not). ``limits_service`` builds the limit engine's service when first used
    (default: the configured policy and audit trail)."""
    if store is None:
        store = open_store(settings, retry_s=api_store_retry_s(settings))
    return Runtime(
        store=store,
        settings=settings,
        flags=flags if flags is not None else FlagStore(settings.flags_dir),
        actions=actions if actions is not None else ActionLog(settings.audit_dir),
        metrics=metrics if metrics is not None else Metrics(settings.metrics_dir),
        executor=executor if executor is not None else ThreadPoolExecutor(
            settings.api_threads, thread_name_prefix="riskgraph-api"),
        limits=Limits(store, settings, limits_service or build_limits_service),
        models=model_loader if model_loader is not None else ModelLoader(settings.models_dir),
    )
