"""Settings, read once at the edge from the environment (RISKGRAPH_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from graph.errors import RiskGraphError


class SettingsError(RiskGraphError):
    """An environment variable has a value RiskGraph cannot use."""


STORES = ("embedded", "neo4j")


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".riskgraph")
    store: str = "embedded"
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: str = ""
    neo4j_database: str = "neo4j"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        store = env.get("RISKGRAPH_STORE", "embedded")
        if store not in STORES:
            raise SettingsError(
                f"RISKGRAPH_STORE={store!r} is not a store; use one of {', '.join(STORES)}"
            )
        return cls(
            home=Path(env.get("RISKGRAPH_HOME", ".riskgraph")),
            store=store,
            neo4j_uri=env.get("RISKGRAPH_NEO4J_URI", cls.neo4j_uri),
            neo4j_user=env.get("RISKGRAPH_NEO4J_USER", cls.neo4j_user),
            neo4j_password=env.get("RISKGRAPH_NEO4J_PASSWORD", cls.neo4j_password),
            neo4j_database=env.get("RISKGRAPH_NEO4J_DATABASE", cls.neo4j_database),
        )

    def with_store(self, store: str | None) -> Settings:
        if store is None:
            return self
        if store not in STORES:
            raise SettingsError(f"unknown store {store!r}; use one of {', '.join(STORES)}")
        return replace(self, store=store)

    @property
    def graph_dir(self) -> Path:
        return self.home / "graph"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"
