"""Batch work over a Ray cluster: ``riskgraph score --distributed`` and
``riskgraph review --distributed`` (docs/scale.md).

The users are split into id-range partitions of about equal size. Each partition is one
Ray task on one worker, which opens the store itself (``api.bootstrap.open_store`` with
the driver's settings), reads its users and the bounded neighbourhood they need, and:

* score: scores them with the same model code as a single process
  (``gnn.partition.partition_graph``, then ``gnn.score.score_arrays``; a user's score
  depends only on its one-step neighbourhood) and writes the scores back;
* review: builds their profiles and decides (``limits.bulk.decide_outcomes``), and
  returns the outcomes. The driver records them in the audit trail, partition after
  partition in id order, and only then hands each recorded partition to a worker that
  writes its line changes to the store.

The audit trail keeps one ordered writer, the driver: the log is a hash chain, each
record holding the hash of the one before, so records are appended one at a time in one
order, and a decision must be recorded before its change is written (a crash between
the two leaves a recorded decision not applied, which a new review repeats, never an
applied change without its record). Recording is an append and one fsync per partition,
small beside deciding; per-partition chains would need a signed index to join them
and would change what `riskgraph audit verify` checks.

``RISKGRAPH_CLUSTER`` (Settings.cluster) is the address of an existing cluster
(``ray://head:10001`` or ``auto``); without it a local cluster of one worker per core
starts for the command and stops after it. Ray is imported here and nowhere else.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.bootstrap import open_store
from api.limits_service import (
    USER_PROPS,
    LimitsService,
    ReviewSummary,
    line_state,
    now_ms,
    profile_from_values,
)
from api.settings import Settings
from graph import queries
from graph.errors import RiskGraphError
from graph.store import GraphStore
from limits.audit import AuditLog
from limits.bulk import Outcome, decide_outcomes
from limits.features import LineState, Profile
from limits.policy import Policy


class DistributedError(RiskGraphError):
    """The cluster could not be reached or a partition failed."""


@dataclass(frozen=True)
class Partition:
    """The users with ``lo < id <= hi`` (no bound where None)."""

    index: int
    lo: str | None
    hi: str | None
    users: int


@dataclass(frozen=True)
class PartitionRun:
    """What one worker did with one partition."""

    index: int
    users: int  # the partition's own users
    read_users: int  # with the neighbours their scores needed
    written: int
    seconds: float
    peak_rss_mb: float  # the worker process's peak resident memory


@dataclass
class DistributedRun:
    workers: int
    partitions: list[PartitionRun] = field(default_factory=list)
    seconds: float = 0.0
    version: str = ""

    @property
    def users(self) -> int:
        return sum(p.users for p in self.partitions)

    @property
    def written(self) -> int:
        return sum(p.written for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers, "partitions": len(self.partitions),
            "users": self.users, "written": self.written, "version": self.version,
            "seconds": round(self.seconds, 2),
            "users_per_second": round(self.users / self.seconds, 1) if self.seconds else 0.0,
            "max_partition_users": max((p.users for p in self.partitions), default=0),
            "max_read_users": max((p.read_users for p in self.partitions), default=0),
            "max_peak_rss_mb": max((p.peak_rss_mb for p in self.partitions), default=0.0),
        }


def id_partitions(store: GraphStore, parts: int) -> list[Partition]:
    """``parts`` id ranges with about equal numbers of users, in id order. Reads every
    user id once (the ids alone: about 20 bytes a user)."""
    if parts < 1:
        raise DistributedError(f"partitions must be at least 1, got {parts}")
    ids: list[str] = []
    for chunk in store.export_nodes("User", [], 200_000):
        ids.extend(chunk["id"].tolist())
    n = len(ids)
    parts = max(1, min(parts, n))
    cuts = [round(n * k / parts) for k in range(parts + 1)]
    return [Partition(k, ids[cuts[k] - 1] if cuts[k] > 0 else None,
                      ids[cuts[k + 1] - 1] if k + 1 < parts else None,
                      cuts[k + 1] - cuts[k])
            for k in range(parts)]


@contextmanager
def cluster(address: str | None, workers: int | None = None) -> Iterator[int]:
    """A connection to the Ray cluster at ``address``, or a local cluster of ``workers``
    worker slots (default one per core) for the duration of the block; yields the
    cluster's CPUs. A connection already open (tests, benchmarks) is used and left open."""
    import ray

    if ray.is_initialized():
        yield int(ray.cluster_resources().get("CPU", 1))
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers at niceness 15: on a machine shared with other work they get
    # a small share of the CPU, less than the process that started them. A local cluster
    # is started for this job alone, so its workers run at normal priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise DistributedError(
            f"cannot start or reach {where} ({exc}); check RISKGRAPH_CLUSTER, or unset it "
            "to run a local cluster") from exc
    try:
        yield int(ray.cluster_resources().get("CPU", 1))
    finally:
        ray.shutdown()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _run(tasks: Sequence[Any]) -> list[Any]:
    """The tasks' results, in order; a failed task raises what it raised."""
    import ray

    try:
        return list(ray.get(list(tasks)))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(cause, RiskGraphError):
            raise cause from None
        raise DistributedError(f"a partition failed on its worker: {cause}") from exc


def _remote(fn: Callable[..., Any]) -> Any:
    """``fn`` as a Ray task on one core; each task in a fresh worker process, so that a
    worker's peak memory is its partition's and nothing of one partition stays behind."""
    import ray

    return ray.remote(num_cpus=1, max_calls=1)(fn)


# -- score ------------------------------------------------------------------------------
def _score_partition(settings: Settings, version: str, model: Any, part: Partition,
                     scored_at_ms: int) -> PartitionRun:
    from gnn.partition import partition_graph
    from gnn.score import score_arrays

    started = time.perf_counter()
    store = open_store(settings)
    try:
        pg = partition_graph(store, part.lo, part.hi, model.config.max_item_users)
        k = pg.targets
        written = 0
        if k:
            scores = score_arrays(model, pg.graph)
            block: dict[str, Any] = {name: v[:k] for name, v in scores.items()}
            written = store.write_scores(pg.graph.user_ids[:k].tolist(), block, version,
                                         scored_at_ms)
    finally:
        store.close()
    return PartitionRun(part.index, k, pg.graph.n_users, written,
                        time.perf_counter() - started, _peak_rss_mb())


def score(settings: Settings, models_dir: Path, version: str | None = None,
          workers: int | None = None, partitions: int | None = None,
          scored_at_ms: int | None = None) -> DistributedRun:
    """Score every user on the cluster and write the scores back: one task per
    partition (default: one per worker slot). The model is loaded here once and sent
    to the workers through Ray's object store, so they need no shared models directory."""
    import ray

    from gnn import registry

    started = time.perf_counter()
    name, model = registry.load(models_dir, version)
    at = now_ms() if scored_at_ms is None else scored_at_ms
    with cluster(settings.cluster, workers) as cpus:
        store = open_store(settings)
        try:
            parts = id_partitions(store, partitions or cpus)
        finally:
            store.close()
        model_ref = ray.put(model)
        task = _remote(_score_partition)
        done = _run([task.remote(settings, name, model_ref, p, at) for p in parts])
    return DistributedRun(cpus, done, time.perf_counter() - started, name)


# -- review -----------------------------------------------------------------------------
def _audit(settings: Settings) -> AuditLog:
    return AuditLog(settings.audit_dir, key=settings.audit_key_bytes)


def partition_profiles(store: GraphStore, svc: LimitsService, part: Partition, at_ms: int,
                       last_raises: dict[tuple[str, str], int]) -> list[Profile]:
    """The profiles of a partition's users, in id order, built as
    ``LimitsService.profiles`` builds them for everyone."""
    kinds = {pid: line for line, pid in svc.line_products().items()}
    users: list[tuple[str, dict[str, Any]]] = []
    for chunk in store.export_node_range("User", list(USER_PROPS), part.lo, part.hi):
        cols = {p: chunk[p].tolist() for p in USER_PROPS}
        users += [(uid, {p: cols[p][i] for p in USER_PROPS})
                  for i, uid in enumerate(chunk["id"].tolist())]
    held: dict[str, dict[str, LineState]] = {}
    for rel in store.relationships("HOLDS", [u for u, _ in users], "out"):
        line = kinds.get(rel.dst)
        lines = held.setdefault(rel.src, {})
        if line is not None and line not in lines:
            lines[line] = line_state(rel.properties, last_raises.get((rel.src, line)))
    return [profile_from_values(uid, props, held.get(uid, {}), None, at_ms)
            for uid, props in users]


def _decide_partition(settings: Settings, policy: Policy, policy_text: str, part: Partition,
                      at_ms: int,
                      last_raises: dict[tuple[str, str], int], record: bool,
                      counterfactuals: bool) -> tuple[PartitionRun, list[Outcome]]:
    started = time.perf_counter()
    store = open_store(settings)
    try:
        svc = LimitsService(store, _audit(settings), policy, policy_text)
        profiles = partition_profiles(store, svc, part, at_ms, last_raises)
    finally:
        store.close()
    outcomes = decide_outcomes(profiles, policy, record=record,
                               counterfactuals=counterfactuals)
    return (PartitionRun(part.index, len(outcomes), len(outcomes), 0,
                         time.perf_counter() - started, _peak_rss_mb()), outcomes)


def _apply_partition(settings: Settings, policy: Policy, policy_text: str,
                     outcomes: list[Outcome]) -> int:
    store = open_store(settings)
    try:
        return LimitsService(store, _audit(settings), policy, policy_text).apply(outcomes)
    finally:
        store.close()


def review(settings: Settings, policy: Policy, policy_text: str, *, dry_run: bool = False,
           workers: int | None = None, partitions: int | None = None,
           at_ms: int | None = None, counterfactuals: bool = False,
           clock: Callable[[], int] = now_ms) -> tuple[ReviewSummary, DistributedRun]:
    """Re-evaluate every user on the cluster (see the module docstring): the same
    decisions, records and writes as ``LimitsService.review``, made in partitions."""
    started = time.perf_counter()
    audit = _audit(settings)
    at = clock() if at_ms is None else at_ms
    summary = ReviewSummary()
    if not dry_run:
        audit.keep_policy(policy, policy_text)
    with cluster(settings.cluster, workers) as cpus:
        store = open_store(settings)
        try:
            parts = id_partitions(store, partitions or cpus)
            queries.ensure_pass(store)  # ring memberships are read from the users
        finally:
            store.close()
        raises = audit.last_raises()
        decide = _remote(_decide_partition)
        apply = _remote(_apply_partition)
        pending = [decide.remote(settings, policy, policy_text, p, at,
                                 {k: v for k, v in raises.items() if _inside(k[0], p)},
                                 not dry_run, counterfactuals)
                   for p in parts]
        runs: list[PartitionRun] = []
        writes = []
        for ref in pending:  # in id order: the chain's one writer
            run, outcomes = _run([ref])[0]
            for o in outcomes:
                summary.add(o)
            if not dry_run:
                summary.recorded += len(audit.append_entries(
                    [o.entry for o in outcomes if o.entry is not None],
                    applied=True, recorded_at_ms=clock()))
                writes.append(apply.remote(settings, policy, policy_text, outcomes))
            runs.append(run)
        written = _run(writes)
    summary.written = sum(written)
    runs = [PartitionRun(r.index, r.users, r.read_users, w, r.seconds, r.peak_rss_mb)
            for r, w in zip(runs, written or [0] * len(runs))]
    summary.seconds = time.perf_counter() - started
    return summary, DistributedRun(cpus, runs, summary.seconds, policy.id)


def _inside(user_id: str, part: Partition) -> bool:
    return (part.lo is None or user_id > part.lo) and (part.hi is None or user_id <= part.hi)
