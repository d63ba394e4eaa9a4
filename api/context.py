"""The typed request context: long-lived adapters (Runtime) plus, per request, the caller,
a request id and fresh DataLoaders, so nothing is cached across requests."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from api import dataloaders
from api.auth import Principal
from api.flags import ActionLog, Flag, FlagStore
from api.gnn_service import ModelLoader
from api.metrics import Metrics
from api.services import Limits
from api.settings import Settings
from graph.model import Node, Relationship
from graph.queries import LinkedAccount, Ring, RingHeader
from graph.store import Adjacency, GraphStore

R = TypeVar("R")

MAX_DEVICE_USERS = 200


class RingsCache:
    """The stored ring headers of each (kind, minimum size), each kept for ``ttl_s``
    seconds: the ``rings`` field reads them at most that often."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._got: dict[tuple[str, int], tuple[float, list[RingHeader]]] = {}

    def get(self, kind: str, min_size: int) -> list[RingHeader] | None:
        hit = self._got.get((kind, min_size))
        if hit is None or time.monotonic() - hit[0] >= self.ttl_s:
            return None
        return hit[1]

    def put(self, kind: str, min_size: int, headers: list[RingHeader]) -> None:
        self._got[(kind, min_size)] = (time.monotonic(), headers)


@dataclass
class Runtime:
    """What the API needs for its whole life. Built by ``api.bootstrap.bootstrap``, the
    one place that wires it; nothing here builds its own parts."""

    store: GraphStore
    settings: Settings
    flags: FlagStore
    actions: ActionLog
    metrics: Metrics
    executor: ThreadPoolExecutor
    limits: Limits  # the limit engine's service, built when first used
    models: ModelLoader  # the latest trained model, loaded when first used
    rings: RingsCache = field(default_factory=RingsCache)

    async def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run blocking store or service work off the event loop."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else fn
        try:
            return await loop.run_in_executor(self.executor, call, *(() if kwargs else args))
        except Exception as exc:
            found = self._unavailable(exc)
            if found is None:
                raise
            raise found from exc

    async def read(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """A short, bounded read. The embedded store answers these in microseconds to a
        millisecond or two, less than a thread hop and the lock contention of a thread
        pool cost under load, so they run inline; a networked store's go to threads."""
        if self.store.name == "embedded":
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                found = self._unavailable(exc)
                if found is None:
                    raise
                raise found from exc
        return await self.run(fn, *args, **kwargs)

    def _unavailable(self, exc: Exception) -> Exception | None:
        """StoreUnavailableError when ``exc`` says the store's file is damaged, so that
        callers answer UNAVAILABLE and decisions fall back as for a lost server."""
        translate = getattr(self.store, "unavailable_from", None)
        return translate(exc) if translate is not None else None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


LinkedKey = tuple[str, int, tuple[str, ...]]  # (user id, depth, via)


class Loaders:
    """One set of DataLoaders per request, each made when first used: a request asks
    for one or two of them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def __repr__(self) -> str:
        made = [k for k in vars(self) if k != "rt"]
        return f"Loaders(made={made})"

    @classmethod
    def build(cls, rt: Runtime) -> Loaders:
        return cls(rt)

    def _nodes(self, label: str) -> DataLoader[str, Node | None]:
        rt = self.rt

        async def load(ids: list[str]) -> list[Node | None]:
            return await rt.read(rt.store.get_nodes, label, ids)

        return DataLoader(load_fn=load)

    @functools.cached_property
    def users(self) -> DataLoader[str, Node | None]:
        return self._nodes("User")

    @functools.cached_property
    def merchants(self) -> DataLoader[str, Node | None]:
        return self._nodes("Merchant")

    @functools.cached_property
    def devices(self) -> DataLoader[str, Node | None]:
        return self._nodes("Device")

    @functools.cached_property
    def products(self) -> DataLoader[str, Node | None]:
        return self._nodes("Product")

    @functools.cached_property
    def linked(self) -> DataLoader[LinkedKey, list[LinkedAccount]]:
        rt = self.rt

        async def load_linked(keys: list[LinkedKey]) -> list[Any]:
            groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
            for uid, depth, via in keys:
                groups.setdefault((depth, via), []).append(uid)
            answers: dict[LinkedKey, Any] = {}
            for (depth, via), ids in groups.items():
                # Deep searches go to a thread so that the time limit can stop the
                # request and other requests keep being served meanwhile.
                runner = rt.read if depth <= 2 else rt.run
                got = await runner(dataloaders.linked_accounts_many, rt.store, ids, depth, via)
                for uid in ids:
                    answers[(uid, depth, via)] = got[uid]
            return [answers[k] for k in keys]

        return DataLoader(load_fn=load_linked)

    @functools.cached_property
    def rings(self) -> DataLoader[str, Ring | None]:
        rt = self.rt

        async def load_rings(ids: list[str]) -> list[Any]:
            got = await rt.run(dataloaders.rings_of_many, rt.store, ids)
            return [got[i] for i in ids]

        return DataLoader(load_fn=load_rings)

    @functools.cached_property
    def holdings(self) -> DataLoader[str, list[Relationship]]:
        rt = self.rt

        async def load_holdings(ids: list[str]) -> list[list[Relationship]]:
            return await rt.read(dataloaders.holdings_many, rt.store, ids)

        return DataLoader(load_fn=load_holdings)

    @functools.cached_property
    def used_devices(self) -> DataLoader[str, list[Adjacency]]:
        rt = self.rt

        async def load_used_devices(ids: list[str]) -> list[list[Adjacency]]:
            return await rt.read(dataloaders.adjacent_many, rt.store, "User", ids, "USES",
                                 "out", MAX_DEVICE_USERS)

        return DataLoader(load_fn=load_used_devices)

    @functools.cached_property
    def device_users(self) -> DataLoader[str, list[Adjacency]]:
        rt = self.rt

        async def load_device_users(ids: list[str]) -> list[list[Adjacency]]:
            return await rt.read(dataloaders.adjacent_many, rt.store, "Device", ids, "USES",
                                 "in", MAX_DEVICE_USERS)

        return DataLoader(load_fn=load_device_users)

    @functools.cached_property
    def flags(self) -> DataLoader[str, list[Flag]]:
        rt = self.rt

        async def load_flags(ids: list[str]) -> list[list[Flag]]:
            return await rt.run(rt.flags.for_users, ids)

        return DataLoader(load_fn=load_flags)


@dataclass
class Context:
    """``info.context`` in every resolver."""

    runtime: Runtime
    principal: Principal
    request_id: str
    loaders: Loaders = field(init=False)
    # The root fields asked for, e.g. "decideLimit": a bounded label for metrics.
    operation: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.loaders = Loaders.build(self.runtime)

    @property
    def store(self) -> GraphStore:
        return self.runtime.store

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    async def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await self.runtime.run(fn, *args, **kwargs)
