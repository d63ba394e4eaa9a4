"""Settings, read once at the edge from the environment (RISKGRAPH_*)."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from graph.errors import RiskGraphError


class SettingsError(RiskGraphError):
    """An environment variable has a value RiskGraph cannot use."""


STORES = ("embedded", "neo4j")
LOG_LEVELS = ("debug", "info", "warning", "error")
ROLES = ("investigator", "limit_engine", "admin")


@dataclass(frozen=True)
class ApiKeySpec:
    """One API key as configured: its role and the SHA-256 of the key (never the key)."""

    role: str
    sha256: str

    @property
    def key_id(self) -> str:
        """A short public name for the key, safe to log and audit."""
        return f"{self.role}:{self.sha256[:8]}"


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".riskgraph")
    store: str = "embedded"
    neo4j_uri: str = "bolt://127.0.0.1:7687"
    neo4j_user: str = "neo4j"
    neo4j_password: str = ""
    neo4j_database: str = "neo4j"
    # Seconds a transaction is retried while the server is unreachable (loads ride out
    # a restart); the API uses at most a quarter of api_timeout_s.
    neo4j_retry_s: float = 10.0
    policy: Path | None = None  # limit policy file; None: the packaged limits/policy.toml
    # API server (issue 6). Keys as "role:sha256hex,..." in RISKGRAPH_API_KEYS.
    api_keys: tuple[ApiKeySpec, ...] = ()
    api_max_depth: int = 10
    api_max_cost: int = 20_000
    api_max_page: int = 100
    api_timeout_s: float = 10.0
    api_threads: int = 8
    # Server processes sharing the port (`riskgraph serve --workers`); one per core by
    # default, as the API is CPU-bound on the embedded store.
    api_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    log_level: str = "info"
    # Where the server's worker processes share their metrics: set by `riskgraph serve`
    # for its workers, a directory of each run's own (api/metrics.py). None: one process.
    metrics_dir: Path | None = None
    # The audit trail's HMAC key (RISKGRAPH_AUDIT_KEY, at least 16 characters): records
    # written with it carry a MAC that a writer without the key cannot make. Never shown.
    audit_key: str | None = field(default=None, repr=False)

    @property
    def audit_key_bytes(self) -> bytes | None:
        return self.audit_key.encode("utf-8") if self.audit_key else None
    # The Ray cluster for `--distributed` batch work (api/distributed.py): an address
    # such as ray://head:10001 or "auto"; None starts a local cluster per command.
    cluster: str | None = None

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
            neo4j_retry_s=_positive(env, "RISKGRAPH_NEO4J_RETRY_S", cls.neo4j_retry_s),
            policy=Path(env["RISKGRAPH_POLICY"]) if env.get("RISKGRAPH_POLICY") else None,
            api_keys=parse_api_keys(env.get("RISKGRAPH_API_KEYS", "")),
            api_max_depth=_positive(env, "RISKGRAPH_API_MAX_DEPTH", cls.api_max_depth),
            api_max_cost=_positive(env, "RISKGRAPH_API_MAX_COST", cls.api_max_cost),
            api_max_page=_positive(env, "RISKGRAPH_API_MAX_PAGE", cls.api_max_page),
            api_timeout_s=_positive(env, "RISKGRAPH_API_TIMEOUT_S", cls.api_timeout_s),
            api_threads=_positive(env, "RISKGRAPH_API_THREADS", cls.api_threads),
            api_workers=_positive(env, "RISKGRAPH_API_WORKERS", os.cpu_count() or 1),
            log_level=_log_level(env.get("RISKGRAPH_LOG_LEVEL") or "info"),
            metrics_dir=(Path(env["RISKGRAPH_METRICS_DIR"])
                         if env.get("RISKGRAPH_METRICS_DIR") else None),
            audit_key=_audit_key(env.get("RISKGRAPH_AUDIT_KEY")),
            cluster=env.get("RISKGRAPH_CLUSTER") or None,
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

    @property
    def flags_dir(self) -> Path:
        return self.home / "flags"


MIN_AUDIT_KEY_CHARS = 16


def _audit_key(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) < MIN_AUDIT_KEY_CHARS:
        raise SettingsError(
            f"RISKGRAPH_AUDIT_KEY is {len(value)} characters; give at least "
            f"{MIN_AUDIT_KEY_CHARS} (e.g. 32 random bytes in hex: `openssl rand -hex 32`)")
    return value


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest under which an API key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key(role: str) -> tuple[str, str]:
    """A fresh random API key and its RISKGRAPH_API_KEYS entry ("role:sha256hex")."""
    if role not in ROLES:
        raise SettingsError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    key = "rg_" + secrets.token_urlsafe(32)
    return key, f"{role}:{hash_api_key(key)}"


def parse_api_keys(text: str) -> tuple[ApiKeySpec, ...]:
    """Parse "role:sha256hex,role:sha256hex"; blanks are ignored."""
    specs = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        role, _, digest = part.partition(":")
        digest = digest.strip().lower()
        if role not in ROLES:
            raise SettingsError(
                f"RISKGRAPH_API_KEYS has role {role!r}; use one of {', '.join(ROLES)} "
                "(entries are role:sha256hex; `riskgraph apikey ROLE` makes one)"
            )
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingsError(
                f"RISKGRAPH_API_KEYS entry for {role} is not a SHA-256 hex digest; "
                "configure the hash of the key, never the key itself"
            )
        specs.append(ApiKeySpec(role, digest))
    return tuple(specs)


def _positive(env: Mapping[str, str], name: str, default: float) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = type(default)(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than zero")
    return value


def _log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"RISKGRAPH_LOG_LEVEL={raw!r} is not a level; use one of "
                            f"{', '.join(LOG_LEVELS)}")
    return level
