"""Wiring between the store and the limit engine: profiles in, decisions recorded and
written back. The engine (limits/) never sees the store; this module never decides.

* ``profile`` builds one user's Profile from the User node, its HOLDS relationships
  (joined with the Product nodes' ``kind`` to tell the BNPL line from the cash-loan
  line), its group and ring exposure (graph.queries.membership: what the last ring pass
  stored, the exposure brought up to date with links added since) and the last raises in the
  audit trail.
* ``review`` streams every user (export_nodes / export_relationships, merged by id,
  with the ring pass's stored result on each user), decides in batches, records each
  batch in the audit trail and
  only then writes the batch's changes back to the store. With ``workers`` > 1 the
  decisions (and their record texts) are made in worker processes while this process
  streams the next batch and stays the single writer of the chain and the store.
* ``apply`` writes a decision: HOLDS ``limit``, ``temp_limit``, ``temp_until``,
  ``status``; opening a line creates the HOLDS relationship to the line's product.
* ``applying`` is the per-user lock (threads and processes, e.g. the API's workers) held
  by an applied decision from reading the user's limits and last raise to writing them.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph import queries
from graph.errors import NotFoundError
from graph.model import CREDIT_PROPERTIES, SCORE_PROPERTIES, Node
from graph.results import RingMembership
from graph.store import GraphStore
from limits.audit import AuditLog
from limits.bulk import Outcome, decide_outcomes, init_worker, outcome_of, worker_outcomes
from limits.counterfactuals import decide_with_counterfactuals
from limits.engine import Decision, decide
from limits.errors import LimitsError
from limits.features import LINES, LineState, Profile
from limits.policy import Policy

USER_PROPS: tuple[str, ...] = ("lifecycle", *CREDIT_PROPERTIES, *SCORE_PROPERTIES,
                                "ring_id", "ring_kind", "ring_size", "ring_suspicion",
                                "ring_exposure")
HOLDS_PROPS: tuple[str, ...] = ("limit", "balance", "status", "since", "temp_limit",
                                "temp_until")
# Profiles sent to a worker at a time: small enough to keep every process busy.
_WORKER_CHUNK = 2_000
_INT_FIELDS = {"months_on_book", "overdue_count", "worst_dpd", "merchant_categories",
               "active_days_30d", "other_products"}


APPLY_LOCK_NAME = "apply.lock"
_APPLY_STRIPES = 256


class ApplyLocks:
    """Exclusive locks by user, shared by threads (a lock per stripe) and by processes
    (an fcntl byte-range lock per stripe of one file). Users are spread over
    ``stripes`` stripes, so that decisions for different users seldom wait on each other.
    The file is opened once and kept open: closing any descriptor of it would drop this
    process's locks."""

    def __init__(self, path: Path, stripes: int = _APPLY_STRIPES) -> None:
        self.path = path
        self._threads = [threading.Lock() for _ in range(stripes)]
        self._fd: int | None = None
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApplyLocks({str(self.path)!r}, stripes={len(self._threads)})"

    def _file(self) -> int:
        with self._open_lock:
            if self._fd is None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
                except OSError as exc:
                    raise LimitsError(
                        f"cannot open the lock file {self.path}: {exc.strerror}; check "
                        "RISKGRAPH_HOME points to a writable directory") from exc
            return self._fd

    @contextmanager
    def user(self, user_id: str) -> Iterator[None]:
        stripe = zlib.crc32(user_id.encode("utf-8")) % len(self._threads)
        with self._threads[stripe]:
            fd = self._file()
            _lock_stripe(fd, stripe)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, stripe, os.SEEK_SET)


def _lock_stripe(fd: int, stripe: int) -> None:
    """Wait for the stripe's byte of the lock file. POSIX locks belong to processes, so
    when a thread of each of two processes holds a stripe and another thread of each
    waits for the other process's stripe, the kernel sees a cycle and refuses the last
    wait (EDEADLK, seen under load with `serve --workers 2`). It is no deadlock: a
    thread holds one stripe at a time and its holder finishes. So the wait is asked
    again, after a short pause, until the stripe is free."""
    pause = 0.001
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, stripe, os.SEEK_SET)
            return
        except OSError as exc:
            if exc.errno != errno.EDEADLK:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class LineProductError(LimitsError):
    """The store has no Product node for a credit line."""


# The safe action when the store cannot be read (see docs/reliability.md): nothing the
# decision needs (scores, features, current limits) can be read, so nothing is changed.
RISK_DATA_UNAVAILABLE = "RISK_DATA_UNAVAILABLE"
RISK_DATA_UNAVAILABLE_EN = (
    "Risk data unavailable: the graph store cannot be reached, so the limits stay as they "
    "are (no raise, no new line, no new exposure). Ask again when the service is back.")
RISK_DATA_UNAVAILABLE_ZH = (
    "风险数据暂不可用：无法读取图数据库，额度保持不变（不提额、不开通新额度、不新增敞口）。"
    "请在服务恢复后重新评估。")


def unavailable_decision(user_id: str, *, dry_run: bool, at_ms: int,
                         policy_version: str | None = None) -> dict[str, Any]:
    """The fallback decision for a user whose risk data cannot be read: action ``keep``,
    no line changed, reason RISK_DATA_UNAVAILABLE, flagged ``fallback``. It is not
    recorded in the audit trail and nothing is written to the store: no decision was
    made, the current limits stand."""
    return {
        "user_id": user_id, "action": "keep", "dry_run": dry_run, "fallback": True,
        "policy_version": policy_version, "model_version": None, "decided_at_ms": at_ms,
        "refer": None, "lines": [], "counterfactuals": [],
        "reasons": [{"code": RISK_DATA_UNAVAILABLE, "line": None,
                     "en": RISK_DATA_UNAVAILABLE_EN, "zh": RISK_DATA_UNAVAILABLE_ZH}],
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def stored_membership(user_id: str, props: dict[str, Any]) -> RingMembership:
    """What the last ring pass stored on a user (a bulk review reads it as it is)."""
    rid = props.get("ring_id")
    rid = rid if isinstance(rid, str) and rid else None
    kind = props.get("ring_kind")
    return RingMembership(
        user_id=user_id, ring_id=rid, kind=kind if rid and isinstance(kind, str) else None,
        size=int(_num(props.get("ring_size")) or 0) if rid else 0,
        suspicion=(_num(props.get("ring_suspicion")) or 0.0) if rid else 0.0,
        exposure=_num(props.get("ring_exposure")) or 0.0,
    )


def profile_from_values(
    user_id: str,
    props: dict[str, Any],
    lines: dict[str, LineState],
    ring: RingMembership | None,
    at_ms: int,
) -> Profile:
    """A Profile from stored values (None or NaN meaning "not known")."""
    args: dict[str, Any] = {"user_id": user_id, "now_ms": at_ms, "lines": lines}
    for name in CREDIT_PROPERTIES:
        v = props.get(name)
        if name == "repayment_history":
            args[name] = v if isinstance(v, str) else ""
            continue
        f = _num(v)
        if name in ("credit_score", "income"):
            args[name] = f
        elif f is not None:
            args[name] = int(f) if name in _INT_FIELDS else f
    for name in ("fraud_risk", "relational_risk", "own_risk"):
        args[name] = _num(props.get(name))
    mv = props.get("model_version")
    args["score_model_version"] = mv if isinstance(mv, str) else None
    lc = props.get("lifecycle")
    args["lifecycle"] = lc if isinstance(lc, str) else None
    if ring is None:
        ring = stored_membership(user_id, props)
    args["ring_id"], args["ring_size"], args["ring_kind"] = ring.ring_id, ring.size, ring.kind
    args["ring_suspicion"] = min(1.0, max(0.0, ring.suspicion))
    args["ring_exposure"] = min(1.0, max(0.0, ring.exposure))
    return Profile(**args)


def line_state(props: dict[str, Any], last_raise: int | None) -> LineState:
    def ts(v: Any) -> int | None:
        f = _num(v)
        return None if f is None else int(f)

    status = props.get("status")
    return LineState(
        limit=_num(props.get("limit")) or 0.0,
        balance=_num(props.get("balance")) or 0.0,
        status=status if isinstance(status, str) else "active",
        since_ms=ts(props.get("since")),
        temp_limit=_num(props.get("temp_limit")) or 0.0,
        temp_until_ms=ts(props.get("temp_until")),
        last_raise_ms=last_raise,
    )


@dataclass
class ReviewSummary:
    users: int = 0
    seconds: float = 0.0
    actions: Counter[str] = field(default_factory=Counter)
    line_actions: dict[str, Counter[str]] = field(
        default_factory=lambda: {line: Counter() for line in LINES})
    exposure_before: float = 0.0
    exposure_after: float = 0.0
    referred: int = 0
    written: int = 0
    recorded: int = 0

    def add(self, d: Decision | Outcome) -> None:
        self.users += 1
        self.actions[d.action] += 1
        if d.refer:
            self.referred += 1
        for ld in d.lines:
            self.line_actions[ld.line][ld.action] += 1
            self.exposure_before += (ld.current_limit or 0.0) + ld.current_temp_limit
            self.exposure_after += ld.effective_limit

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": self.users, "seconds": round(self.seconds, 3),
            "users_per_second": round(self.users_per_second, 1),
            "actions": dict(sorted(self.actions.items())),
            "line_actions": {k: dict(sorted(v.items())) for k, v in self.line_actions.items()},
            "exposure_before": round(self.exposure_before, 2),
            "exposure_after": round(self.exposure_after, 2),
            "referred": self.referred, "recorded": self.recorded, "written": self.written,
        }


class LimitsService:
    """Limit decisions for users in ``store`` under ``policy``, recorded in ``audit``."""

    def __init__(self, store: GraphStore, audit: AuditLog, policy: Policy, policy_text: str,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.audit = audit
        self.policy = policy
        self.policy_text = policy_text
        self.clock = clock
        self._products: dict[str, str] | None = None
        self._apply_locks: ApplyLocks | None = None

    # -- products -------------------------------------------------------------------
    def line_products(self) -> dict[str, str]:
        """line -> Product id, found by Product ``kind`` (the smallest id of each kind)."""
        if self._products is None:
            found: dict[str, str] = {}
            for chunk in self.store.export_nodes("Product", ["kind"]):
                for pid, kind in zip(chunk["id"].tolist(), chunk["kind"].tolist()):
                    if kind in LINES and kind not in found:
                        found[kind] = pid
            self._products = found
        return self._products

    def _product_id(self, line: str) -> str:
        pid = self.line_products().get(line)
        if pid is None:
            raise LineProductError(
                f"no Product node with kind {line!r}; load the ecosystem products "
                f"(a Product with kind={line!r}) before deciding limits"
            )
        return pid

    # -- one user -------------------------------------------------------------------
    def profile(self, user_id: str, at_ms: int | None = None,
                last_raises: dict[tuple[str, str], int] | None = None,
                node: Node | None = None) -> Profile:
        """One user's profile; ``node`` is the User node when the caller has just read
        it (the API's resolver has), so it is not read twice."""
        if node is None or node.id != user_id:
            node = self.store.get_nodes("User", [user_id])[0]
        if node is None:
            raise NotFoundError(f"no user with id {user_id!r}; check the id with "
                                "`riskgraph stats` or load the user first")
        if last_raises is None:
            last_raises = self._user_last_raises(user_id)
        kinds = {pid: line for line, pid in self.line_products().items()}
        lines: dict[str, LineState] = {}
        for rel in self.store.relationships("HOLDS", [user_id]):
            line = kinds.get(rel.dst)
            if line is not None and line not in lines:
                lines[line] = line_state(rel.properties, last_raises.get((user_id, line)))
        ring = queries.membership(self.store, user_id, node.properties)
        return profile_from_values(user_id, node.properties, lines, ring,
                                   self.clock() if at_ms is None else at_ms)

    def _user_last_raises(self, user_id: str) -> dict[tuple[str, str], int]:
        return self.audit.last_raises(user_id)

    def decide(self, user_id: str, *, apply: bool = True, at_ms: int | None = None,
               counterfactuals: bool = True) -> Decision:
        """Decide for one user (with counterfactuals unless told not to); when ``apply``,
        record and write it, holding the user's apply lock from the read to the write."""
        if not apply:
            return self.decide_profile(self.profile(user_id, at_ms), apply=False,
                                       counterfactuals=counterfactuals)
        with self.applying(user_id):
            return self.decide_profile(self.profile(user_id, at_ms), apply=True,
                                       counterfactuals=counterfactuals)

    def applying(self, user_id: str) -> AbstractContextManager[None]:
        """Held while a decision for ``user_id`` is read, decided, recorded and applied,
        by every thread and process deciding on this audit trail (API workers, the CLI):
        two decisions for one user made at once would both read the limits and the last
        raise before either is applied, and could raise twice within the cool-down."""
        if self._apply_locks is None:
            self._apply_locks = ApplyLocks(self.audit.directory / APPLY_LOCK_NAME)
        return self._apply_locks.user(user_id)

    def decide_profile(self, profile: Profile, *, apply: bool = True,
                       counterfactuals: bool = True) -> Decision:
        """Decide on a profile already read; when ``apply``, record it (synced to disk)
        and then write it to the store."""
        d = decide_with_counterfactuals(profile, self.policy, counterfactuals)
        if apply:
            self.audit.keep_policy(self.policy, self.policy_text)
            self.audit.append(d, applied=True, recorded_at_ms=self.clock())
            self.apply([d])
        return d

    # -- everyone -------------------------------------------------------------------
    def profiles(self, at_ms: int, batch_size: int = 20_000,
                 last_raises: dict[tuple[str, str], int] | None = None
                 ) -> Iterator[list[Profile]]:
        """Every user's profile, in id order, ``batch_size`` at a time."""
        if last_raises is None:
            last_raises = self.audit.last_raises()
        queries.ensure_pass(self.store)
        holds = _holds_by_user(self.store, {pid: line for line, pid
                                            in self.line_products().items()})
        pending: tuple[str, dict[str, dict[str, Any]]] | None = next(holds, None)
        batch: list[Profile] = []
        for chunk in self.store.export_nodes("User", list(USER_PROPS), batch_size):
            ids = chunk["id"].tolist()
            cols = {p: chunk[p].tolist() for p in USER_PROPS}
            for i, uid in enumerate(ids):
                while pending is not None and pending[0] < uid:
                    pending = next(holds, None)
                lines: dict[str, LineState] = {}
                if pending is not None and pending[0] == uid:
                    lines = {line: line_state(props, last_raises.get((uid, line)))
                             for line, props in pending[1].items()}
                props = {p: cols[p][i] for p in USER_PROPS}
                batch.append(profile_from_values(uid, props, lines, None, at_ms))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def review(self, *, dry_run: bool = False, batch_size: int = 20_000,
               progress: Callable[[int], None] | None = None,
               at_ms: int | None = None, workers: int = 1,
               counterfactuals: bool = False) -> ReviewSummary:
        """Re-evaluate every user. Without ``dry_run`` each batch is recorded, then applied.

        ``workers`` > 1 decides in that many processes; the result, the records and
        their order are the same as with one. Counterfactuals are searched only when
        asked for (they cost many decisions per user)."""
        at = self.clock() if at_ms is None else at_ms
        summary = ReviewSummary()
        start = time.perf_counter()
        if not dry_run:
            self.audit.keep_policy(self.policy, self.policy_text)

        def finish(outcomes: list[Outcome]) -> None:
            for o in outcomes:
                summary.add(o)
            if not dry_run:
                summary.recorded += len(self.audit.append_entries(
                    [o.entry for o in outcomes if o.entry is not None],
                    applied=True, recorded_at_ms=self.clock()))
                summary.written += self.apply(outcomes)
            if progress is not None:
                progress(len(outcomes))

        if workers <= 1:
            for batch in self.profiles(at, batch_size):
                finish(decide_outcomes(batch, self.policy, record=not dry_run,
                                       counterfactuals=counterfactuals))
        else:
            self._review_in_workers(at, batch_size, workers, not dry_run, counterfactuals,
                                    finish)
        summary.seconds = time.perf_counter() - start
        return summary

    def _review_in_workers(self, at: int, batch_size: int, workers: int, record: bool,
                           counterfactuals: bool,
                           finish: Callable[[list[Outcome]], None]) -> None:
        """Decide in ``workers`` processes, in chunks, while this process reads the next
        profiles and records and applies finished batches, in id order and in the same
        batches as one process would."""
        from concurrent.futures import Future, ProcessPoolExecutor

        chunk = max(1, min(batch_size, _WORKER_CHUNK))
        ready: list[Outcome] = []

        def collect(fut: Future[list[Outcome]]) -> None:
            ready.extend(fut.result())
            while len(ready) >= batch_size:
                finish(ready[:batch_size])
                del ready[:batch_size]

        with ProcessPoolExecutor(workers, initializer=init_worker,
                                 initargs=(self.policy,)) as ex:
            pending: deque[Future[list[Outcome]]] = deque()
            for profiles in self.profiles(at, chunk):
                pending.append(ex.submit(worker_outcomes, (profiles, record, counterfactuals)))
                while len(pending) > 2 * workers:
                    collect(pending.popleft())
            while pending:
                collect(pending.popleft())
        if ready:
            finish(ready)

    def simulate(self, policies: Sequence[Policy], at_ms: int | None = None,
                 batch_size: int = 20_000) -> list[tuple[ReviewSummary, list[float]]]:
        """Each policy's dry-run summary and every user's total limit, on one population."""
        at = self.clock() if at_ms is None else at_ms
        out: list[tuple[ReviewSummary, list[float]]] = [
            (ReviewSummary(), []) for _ in policies]
        start = time.perf_counter()
        for batch in self.profiles(at, batch_size):
            for policy, (summary, limits) in zip(policies, out):
                for p in batch:
                    d = decide(p, policy)
                    summary.add(d)
                    limits.append(sum(ld.effective_limit for ld in d.lines))
        for summary, _ in out:
            summary.seconds = time.perf_counter() - start
        return out

    # -- writing back ---------------------------------------------------------------
    def apply(self, decisions: Iterable[Decision | Outcome]) -> int:
        """Write the changed lines of ``decisions`` to HOLDS; returns rows written."""
        rows: dict[str, list[Any]] = {k: [] for k in ("src", "dst", "limit", "temp_limit",
                                                       "temp_until", "status", "since")}
        for d in decisions:
            o = d if isinstance(d, Outcome) else outcome_of(d, record=False)
            for ld in o.lines:
                if ld.current_limit is None and ld.action != "open":
                    continue  # a line not held and not opened stays absent
                status = "frozen" if ld.action == "freeze" else "active"
                unchanged = (
                    ld.current_limit is not None and ld.current_limit == ld.new_limit
                    and ld.held_status == status and ld.current_temp_limit == ld.temp_limit
                    and (ld.temp_limit == 0 or ld.held_temp_until_ms == ld.temp_until_ms)
                )
                if unchanged:
                    continue
                rows["src"].append(o.user_id)
                rows["dst"].append(self._product_id(ld.line))
                rows["limit"].append(ld.new_limit)
                rows["temp_limit"].append(ld.temp_limit)
                # A stored value is never erased; an ended raise keeps 0 and its end time.
                rows["temp_until"].append(ld.temp_until_ms if ld.temp_limit > 0
                                          else o.decided_at_ms)
                rows["status"].append(status)
                rows["since"].append(o.decided_at_ms if ld.action == "open" else None)
        if not rows["src"]:
            return 0
        return self.store.upsert_relationships("HOLDS", rows).written


def _holds_by_user(store: GraphStore, kinds: dict[str, str]
                   ) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(user, {line: HOLDS properties}) in user id order, lines found by product kind."""
    cur: str | None = None
    acc: dict[str, dict[str, Any]] = {}
    for chunk in store.export_relationships("HOLDS", list(HOLDS_PROPS)):
        srcs, dsts = chunk["src"].tolist(), chunk["dst"].tolist()
        cols = {p: chunk[p].tolist() for p in HOLDS_PROPS}
        for i, (s, dst) in enumerate(zip(srcs, dsts)):
            line = kinds.get(dst)
            if line is None:
                continue
            if s != cur:
                if cur is not None:
                    yield cur, acc
                cur, acc = s, {}
            if line not in acc:
                acc[line] = {p: cols[p][i] for p in HOLDS_PROPS}
    if cur is not None:
        yield cur, acc
