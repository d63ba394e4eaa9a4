"""The ring pass: groups of users tied by weighed evidence, fraud rings told apart from
communities, and each user's ring exposure.

1. **Evidence between two users** (``pair_evidence``). Every non-hub item two users share
   adds ``kind weight / log2(holders)``: a card or phone shared by 3 accounts says far
   more than an IP seen by 40 (an item with more than ``max_item_users`` holders links
   nobody). Several distinct identifiers add up. Referrals and transfers add a direct
   weight that grows with their count and, for money, with the amount moved. What
   shared items say is multiplied by a time-coherence factor in [0.5, 1.5]: accounts
   opened within days of each other are more likely to be one operator's (a referral
   or a transfer needs no such help: a referrer is older than the account it brings).
2. **Groups** (``find_groups``): Leiden with the constant Potts model (igraph's
   implementation, fixed seed) on the graph of ``group_edges``: that evidence, plus
   what ties two accounts through a third (accounts one referrer brought in share the
   referrer, as an item weighed like the others; money relayed A -> B -> C within
   hours ties A and C), each pair's total saturating at ``pair_cap`` so that one strong
   tie (a large transfer, a referral) cannot glue two groups or a bystander to a
   group; pairs under a quarter of the resolution (most of them: an IP seen by dozens)
   are left out, as they cannot hold a group together. A group must be denser in
   evidence than ``resolution`` per pair, so an office whose members only share an IP
   does not become a group, and a dense ring is not swallowed by the community around
   it (modularity would merge it; docs/graph-queries.md compares both).
3. **Suspicion** (``score_groups``) from structure, not from any one generator's
   patterns: accounts opened in a burst, one identifier held by most members, money
   passed on within a day, one member recruiting the others, and the members' stored
   model scores (``fraud_risk``) when they are scored. ``ring`` when it reaches
   ``ring_threshold``, else ``community``. ``why`` names the facts.
4. **Exposure** (``exposures``): ``max(suspicion of the own group, max over linked users v
   of strength(u, v) * evidence(v))`` with ``evidence(v) = max(suspicion of v's group,
   fraud_risk(v))``. It is what limit decisions read (docs/limits.md says why it never
   falls when a fraud link is added).

Everything is numpy over arrays of positions (ids are matched in Arrow);
docs/graph-queries.md gives the measured time at 1M users (Leiden dominates).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graph.errors import InvalidBatchError
from graph.model import RING_PROPERTIES, SHARED_ITEM_RELS
from graph.results import DEFAULT_MAX_ITEM_USERS
from graph.store import GraphStore

DAY_MS = 86_400_000
RING_PROPS: tuple[str, ...] = ("ring_id", "ring_kind", "ring_size", "ring_suspicion",
                               "ring_exposure", "ring_why")
STRONG_KINDS: frozenset[str] = frozenset({"HAS_CARD", "HAS_PHONE", "USES"})
_STORED_KINDS = {k: ("float" if k in ("ring_size", "ring_suspicion", "ring_exposure")
                     else "str") for k in RING_PROPERTIES}
_LABEL = {"HAS_CARD": "bank card", "HAS_PHONE": "phone", "USES": "device",
          "LOGGED_FROM": "IP"}


@dataclass(frozen=True)
class RingConfig:
    """The knobs of a ring pass; the defaults are what docs/graph-queries.md measured."""

    max_item_users: int = DEFAULT_MAX_ITEM_USERS
    min_size: int = 3
    resolution: float = 0.2  # CPM: evidence per pair a group must exceed
    max_ring_size: int = 200  # larger groups are split again at a finer resolution
    ring_threshold: float = 0.5
    seed: int = 42
    # Leiden iterations (igraph's default); -1 runs until the partition is stable, which
    # found the same groups in 20 times the time at 100k users (docs/graph-queries.md)
    iterations: int = 2
    # leiden: igraph's Leiden, constant Potts model (the default, docs/graph-queries.md);
    # louvain: networkx's Louvain on modularity, kept to be measured against it.
    method: str = "leiden"
    kind_weight: Mapping[str, float] = field(default_factory=lambda: {
        "HAS_CARD": 1.0, "HAS_PHONE": 1.0, "USES": 0.8, "LOGGED_FROM": 0.3})
    referral_weight: float = 1.0
    transfer_weight: float = 0.5
    coherence_days: float = 30.0  # accounts opened this close are "together"
    burst_days: float = 30.0  # window of a sign-up burst
    pass_through_hours: float = 24.0  # money forwarded within this counts as passed on
    pass_through_share: float = 0.8  # ... when at least this share of what came in
    strength_scale: float = 1.0  # link strength = 1 - exp(-evidence / scale)
    # Grouping only (``group_edges``): the evidence of one pair saturates at
    # ``pair_cap``, so one strong tie (a large transfer) cannot glue two groups together;
    # accounts one referrer brought in share that referrer as an item; money relayed
    # A -> B -> C within ``pass_through_hours`` ties A and C as well.
    pair_cap: float = 1.0  # 0: no cap
    # Pairs with less than this share of ``resolution`` (an IP seen by dozens) cannot
    # hold a group together; most pairs are such, and they are left out of grouping.
    weak_pair_share: float = 0.25
    co_referral_weight: float = 0.8
    relay_weight: float = 1.0

    def check(self) -> None:
        if self.min_size < 2:
            raise InvalidBatchError(f"min_size must be at least 2, got {self.min_size}")
        if self.max_item_users < 2:
            raise InvalidBatchError("max_item_users must be at least 2")
        if not self.resolution > 0:
            raise InvalidBatchError("resolution must be positive")
        if not 0 <= self.weak_pair_share < 1:
            raise InvalidBatchError("weak_pair_share must be in [0, 1)")
        if self.pair_cap < 0:
            raise InvalidBatchError("pair_cap must be 0 (no cap) or positive")
        if self.iterations == 0 or self.iterations < -1:
            raise InvalidBatchError("iterations must be positive or -1 (until stable)")
        if self.method not in ("leiden", "louvain"):
            raise InvalidBatchError(f"method must be leiden or louvain, not {self.method!r}")


@runtime_checkable
class TableReader(Protocol):
    """A store that reads whole tables as Arrow in one go (the embedded store)."""

    def tables(self, requests: Sequence[tuple[str, str, Sequence[str]]],
               processes: int = 2) -> list[Any]: ...


@dataclass
class RingInputs:
    """What a ring pass reads, as arrays of positions into ``users`` (sorted ids)."""

    users: np.ndarray  # object array of ids, sorted
    signup_ms: np.ndarray  # float64, NaN unknown
    fraud_risk: np.ndarray  # float64, NaN unscored
    # shared-item type -> (user position, item position, item ids)
    items: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    referred: tuple[np.ndarray, np.ndarray]  # (src, dst)
    transferred: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # src, dst, amount, ts
    # what the last pass stored (``RingPass.rows`` columns, by position), when read
    stored: dict[str, np.ndarray] | None = None


@dataclass
class Pairs:
    """Evidence between pairs of users ``a < b`` (positions), one row per pair."""

    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray
    identifiers: np.ndarray  # distinct strong identifiers (card, phone, device) shared


@dataclass(frozen=True)
class Group:
    id: str
    kind: str
    suspicion: float
    members: tuple[str, ...]
    why: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class RingPass:
    """The result of a pass: the groups (most suspicious first) and, per user, its group
    (index into ``groups``, -1 for none) and exposure."""

    users: np.ndarray
    groups: list[Group]
    group_of: np.ndarray
    exposure: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> dict[str, list[Any]]:
        """The ring properties of every user, as a node batch (graph.model.RING_PROPERTIES).
        A user in no group gets empty values, so the previous pass's group does not
        linger; a group's reasons and members go on its smallest member only."""
        g = self.group_of
        k = len(self.groups)
        gids = [x.id for x in self.groups] + [""]
        kinds = [x.kind for x in self.groups] + [""]
        sizes = [x.size for x in self.groups] + [0]
        sus = [x.suspicion for x in self.groups] + [0.0]
        idx = np.where(g >= 0, g, k).tolist()
        users = self.users.tolist()
        why = [""] * len(users)
        members = [""] * len(users)
        if k:
            heads = np.searchsorted(self.users, np.array([x.members[0] for x in self.groups],
                                                         dtype=object))
            for i, grp in zip(heads.tolist(), self.groups):
                why[i] = json.dumps(list(grp.why), ensure_ascii=False)
                members[i] = json.dumps(list(grp.members), ensure_ascii=False)
        return {
            "id": users,
            "ring_id": [gids[i] for i in idx],
            "ring_kind": [kinds[i] for i in idx],
            "ring_size": [sizes[i] for i in idx],
            "ring_suspicion": [sus[i] for i in idx],
            "ring_exposure": np.round(self.exposure, 6).tolist(),
            "ring_why": why,
            "ring_members": members,
        }


def run_pass(store: GraphStore, cfg: RingConfig | None = None,
             batch_size: int = 50_000) -> RingPass:
    """Read the store, find the groups and write them to every User node: what
    ``riskgraph load`` does after a load and ``riskgraph rings`` does when asked."""
    import time

    t0 = time.perf_counter()
    inp = read_inputs(store)
    t1 = time.perf_counter()
    result = detect(inp, cfg)
    t2 = time.perf_counter()
    rows = changed_rows(result.rows(), inp.stored)
    for start in range(0, len(rows["id"]), batch_size):
        store.upsert_nodes("User", {k: v[start:start + batch_size] for k, v in rows.items()})
    result.seconds.update(read=t1 - t0, detect=t2 - t1, write=time.perf_counter() - t2,
                          written=float(len(rows["id"])))
    return result


def changed_rows(rows: dict[str, list[Any]], stored: Mapping[str, np.ndarray] | None
                 ) -> dict[str, list[Any]]:
    """The ``rows`` whose values differ from what is ``stored`` (every row when nothing
    was read): a pass that finds what the last one found writes nothing."""
    n = len(rows["id"])
    if stored is None or any(k not in stored or len(stored[k]) != n
                             for k in rows if k != "id"):
        return rows
    changed = np.zeros(n, dtype=bool)
    for k, v in rows.items():
        if k == "id":
            continue
        old = stored[k]
        new = np.asarray(v, dtype=np.float64 if old.dtype.kind == "f" else object)
        changed |= np.asarray(new != old, dtype=bool)
    if changed.all():
        return rows
    keep = np.flatnonzero(changed).tolist()
    return {k: [v[i] for i in keep] for k, v in rows.items()}


# -- reading ---------------------------------------------------------------------------
def read_inputs(store: GraphStore) -> RingInputs:
    """The users and every linking relationship, as arrays: through ``tables`` where the
    store offers it (one columnar read), else through the row exports. Ids are matched
    and numbered in Arrow (hashing, sorting in C), not as Python strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    item_cols = ["src", "dst"]
    requests: list[tuple[str, str, Sequence[str]]] = [
        ("node", "User", ["signup_ts", "fraud_risk", *RING_PROPERTIES])]
    requests += [("relationship", t, item_cols) for t in SHARED_ITEM_RELS]
    requests += [("relationship", "REFERRED", ["src", "dst"]),
                 ("relationship", "TRANSFERRED", ["src", "dst", "amount", "ts"])]
    if isinstance(store, TableReader):
        cols = [{n: _ids(t.column(n)) for n in t.column_names} for t in store.tables(requests)]
    else:
        cols = [{k: _ids(pa.array(v.tolist())) for k, v in _export(store, *r).items()}
                for r in requests]
    users_t = cols[0]
    order = pc.sort_indices(users_t["id"])
    sorted_ids = users_t["id"].take(order)
    users = np.asarray(sorted_ids.to_numpy(zero_copy_only=False), dtype=object)
    order_np = np.asarray(order)
    signup = _floats(users_t["signup_ts"])[order_np]
    risk = _floats(users_t["fraud_risk"])[order_np]
    stored = {k: (_floats(users_t[k]) if t == "float" else
                  np.asarray(users_t[k].to_numpy(zero_copy_only=False), dtype=object))[order_np]
              for k, t in _STORED_KINDS.items()}
    items: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for t, c in zip(SHARED_ITEM_RELS, cols[1:1 + len(SHARED_ITEM_RELS)]):
        u, ok = _positions(sorted_ids, c["src"])
        ids, it = _numbered(c["dst"].filter(pa.array(ok)))
        items[t] = (u[ok], it, ids)
    ref = cols[-2]
    s, ok1 = _positions(sorted_ids, ref["src"])
    d, ok2 = _positions(sorted_ids, ref["dst"])
    ok = ok1 & ok2
    tr = cols[-1]
    ts_, tok1 = _positions(sorted_ids, tr["src"])
    td, tok2 = _positions(sorted_ids, tr["dst"])
    tok = tok1 & tok2
    return RingInputs(
        users=users, signup_ms=signup, fraud_risk=risk, items=items, stored=stored,
        referred=(s[ok], d[ok]),
        transferred=(ts_[tok], td[tok], np.nan_to_num(_floats(tr["amount"])[tok]),
                     _floats(tr["ts"])[tok]),
    )


def _ids(col: Any) -> Any:
    """One contiguous Arrow array; strings as ``large_string`` so that every id column
    has one type."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _floats(col: Any) -> np.ndarray:
    """A number column as float64, null as NaN."""
    import pyarrow as pa

    if col.type != pa.float64():
        col = col.cast(pa.float64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _numbered(ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``ids`` in sorted order and the number of each value in them
    (what ``np.unique(..., return_inverse=True)`` gives, computed in Arrow)."""
    import pyarrow.compute as pc

    enc = pc.dictionary_encode(ids)
    values = enc.dictionary
    rank_of = np.empty(len(values), dtype=np.int64)
    order = np.asarray(pc.sort_indices(values))
    rank_of[order] = np.arange(len(values))
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    uniq = np.asarray(values.take(order).to_numpy(zero_copy_only=False), dtype=object)
    return uniq, rank_of[codes]


def _export(store: GraphStore, kind: str, name: str, props: Sequence[str]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    if kind == "node":
        chunks = store.export_nodes(name, list(props))
        want = ["id", *props]
    else:
        chunks = store.export_relationship_columns(name, list(props))
        want = list(props)
    for chunk in chunks:
        for k in want:
            parts.setdefault(k, []).append(np.asarray(chunk[k]))
    return {k: (np.concatenate(parts[k]) if parts.get(k) else np.empty(0, dtype=object))
            for k in want}


def _positions(sorted_ids: Any, ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in the sorted user ids (both Arrow), and which of them are
    users."""
    import pyarrow.compute as pc

    if not len(sorted_ids) or not len(ids):
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    pos = pc.index_in(ids, value_set=sorted_ids)
    ok = np.asarray(pos.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pos.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64), ok


# -- evidence --------------------------------------------------------------------------
def item_weight(kind_weight: float, holders: np.ndarray | int) -> np.ndarray:
    """What one shared item says about a pair of its holders: rarer says more."""
    n = np.maximum(np.asarray(holders, dtype=np.float64), 2.0)
    return np.asarray(kind_weight / np.log2(n))


def transfer_weight(cfg: RingConfig, count: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Money between a pair: more transfers and larger sums tie the pair closer."""
    return np.asarray(cfg.transfer_weight * (1 + np.log2(np.maximum(count, 1)))
                      * (1 + np.log10(1 + np.maximum(amount, 0) / 1000.0)))


def coherence(cfg: RingConfig, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Time coherence of two accounts: 1.5 when opened together, down to 0.5; 1 when a
    sign-up time is unknown."""
    gap = np.abs(sa - sb) / DAY_MS
    f = 0.5 + np.exp(-gap / cfg.coherence_days)
    return np.where(np.isfinite(gap), f, 1.0)


def link_strength(cfg: RingConfig, evidence: np.ndarray | float) -> np.ndarray:
    """Evidence between two users mapped to [0, 1), increasing."""
    return np.asarray(1.0 - np.exp(-np.asarray(evidence, dtype=np.float64) / cfg.strength_scale))


def pair_evidence(inp: RingInputs, cfg: RingConfig) -> Pairs:
    n = len(inp.users)
    keys: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    strong: list[np.ndarray] = []
    m = np.int64(max(n, 1))
    for t, (u, it, ids) in inp.items.items():
        a, b, holders = _holder_pairs(n, u, it, len(ids), cfg.max_item_users)
        if not len(a):
            continue
        keys.append(a * m + b)
        weights.append(item_weight(cfg.kind_weight.get(t, 0.3), holders)
                       * coherence(cfg, inp.signup_ms[a], inp.signup_ms[b]))
        strong.append(np.full(len(a), t in STRONG_KINDS, dtype=np.int64))
    rs, rd = inp.referred
    if len(rs):
        lo, hi = np.minimum(rs, rd), np.maximum(rs, rd)
        ok = lo != hi
        keys.append(lo[ok] * m + hi[ok])
        weights.append(np.full(int(ok.sum()), cfg.referral_weight))
        strong.append(np.zeros(int(ok.sum()), dtype=np.int64))
    ts_, td, amount, _ = inp.transferred
    if len(ts_):
        lo, hi = np.minimum(ts_, td), np.maximum(ts_, td)
        ok = lo != hi
        k, inv = np.unique(lo[ok] * m + hi[ok], return_inverse=True)
        count = np.bincount(inv, minlength=len(k))
        total = np.bincount(inv, weights=amount[ok], minlength=len(k))
        keys.append(k)
        weights.append(transfer_weight(cfg, count, total))
        strong.append(np.zeros(len(k), dtype=np.int64))
    if not keys:
        e = np.empty(0, dtype=np.int64)
        return Pairs(e, e, np.empty(0), e)
    uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
    w = np.bincount(inv, weights=np.concatenate(weights), minlength=len(uniq))
    ident = np.bincount(inv, weights=np.concatenate(strong), minlength=len(uniq))
    a, b = uniq // m, uniq % m
    return Pairs(a, b, w, ident.astype(np.int64))


def _holder_pairs(n: int, u: np.ndarray, it: np.ndarray, n_items: int, max_users: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``a < b`` of users holding one item (``u`` holds ``it``), with the
    item's number of holders; items held by one user or by more than ``max_users`` tie
    nobody."""
    e = np.empty(0, dtype=np.int64)
    if not len(u):
        return e, e, e
    m = np.int64(max(n, 1))
    key = _sorted_unique(it * m + u)
    it2, u2 = key // m, key % m
    holders = np.bincount(it2, minlength=n_items)[it2]
    keep = (holders >= 2) & (holders <= max_users)
    it2, u2, holders = it2[keep], u2[keep], holders[keep]
    if not len(it2):
        return e, e, e
    ends = np.searchsorted(it2, it2, side="right")
    which, second = _ranges(np.arange(len(it2)) + 1, ends)
    return u2[which], u2[second], holders[which]  # a < b: holders of an item come sorted


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique(x)`` for integers by a sort (numpy's hashing path for ``np.unique``
    took 4 of the 7 s of ``pair_evidence`` at 1M users)."""
    x = np.sort(x)
    if len(x) > 1:
        x = x[np.concatenate(([True], x[1:] != x[:-1]))]
    return x


def group_edges(inp: RingInputs, pairs: Pairs, cfg: RingConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The weighted graph groups are found on: the pair evidence, plus what ties accounts
    through a third one (the referrer who brought both in, money relayed through a
    middle account), each pair's total saturating at ``pair_cap``."""
    n = len(inp.users)
    m = np.int64(max(n, 1))
    keys = [pairs.a * m + pairs.b]
    weights = [pairs.weight]
    rs, rd = inp.referred
    a, b, holders = _holder_pairs(n, rd, rs, n, cfg.max_item_users)
    if len(a):
        keys.append(a * m + b)
        weights.append(item_weight(cfg.co_referral_weight, holders)
                       * coherence(cfg, inp.signup_ms[a], inp.signup_ms[b]))
    first, _, last = _relays(*inp.transferred, cfg)
    ok = first != last
    if ok.any():
        lo, hi = np.minimum(first[ok], last[ok]), np.maximum(first[ok], last[ok])
        keys.append(lo * m + hi)
        weights.append(np.full(len(lo), cfg.relay_weight))
    uniq, inv = np.unique(np.concatenate(keys), return_inverse=True)
    w: np.ndarray = np.bincount(inv, weights=np.concatenate(weights),
                                minlength=len(uniq)).astype(np.float64)
    if cfg.pair_cap > 0:
        w = cfg.pair_cap * (1.0 - np.exp(-w / cfg.pair_cap))
    keep = w >= cfg.weak_pair_share * cfg.resolution
    uniq, w = uniq[keep], w[keep]
    return uniq // m, uniq % m, w


def _ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [start, end): (which range, position) of every element, in order."""
    lens = np.maximum(ends - starts, 0)
    total = int(lens.sum())
    if total == 0:
        e = np.empty(0, dtype=np.int64)
        return e, e
    which = np.repeat(np.arange(len(starts)), lens)
    offsets = np.cumsum(lens) - lens
    return which, np.arange(total) - offsets[which] + starts[which]


# -- groups ----------------------------------------------------------------------------
def find_groups(n: int, edges: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: RingConfig
                ) -> np.ndarray:
    """Group number of every user (-1 alone or in a group under ``min_size``) on the
    weighted ``edges`` (a, b, weight) of ``group_edges``."""
    import igraph as ig

    out = np.full(n, -1, dtype=np.int64)
    ea, eb, weight = edges
    if not len(ea):
        return out
    active, inv = np.unique(np.concatenate([ea, eb]), return_inverse=True)
    ia, ib = inv[: len(ea)], inv[len(ea):]
    if cfg.method == "louvain":
        labels = _louvain(len(active), ia, ib, weight, cfg.seed)
    else:
        labels = _leiden(ig, len(active), ia, ib, weight, cfg.resolution, cfg.seed,
                         cfg.iterations)
    # A group too large to act on is split again, finer, a few times at most.
    for step in range(1, 4):
        sizes = np.bincount(labels)
        big = np.flatnonzero(sizes > cfg.max_ring_size)
        if not len(big):
            break
        next_label = int(labels.max()) + 1
        for g in big.tolist():
            nodes = np.flatnonzero(labels == g)
            inside = np.isin(ia, nodes) & np.isin(ib, nodes)
            local = np.searchsorted(nodes, np.concatenate([ia[inside], ib[inside]]))
            k = int(inside.sum())
            sub = _leiden(ig, len(nodes), local[:k], local[k:], weight[inside],
                          cfg.resolution * 4 ** step, cfg.seed, cfg.iterations)
            labels[nodes] = sub + next_label
            next_label += int(sub.max()) + 1
    _, labels = np.unique(labels, return_inverse=True)
    sizes = np.bincount(labels)
    kept = sizes >= cfg.min_size
    renumber = np.where(kept, np.cumsum(kept) - 1, -1)
    out[active] = renumber[labels]
    return out


def _louvain(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray, seed: int) -> np.ndarray:
    """networkx's Louvain (modularity, resolution 1), for the comparison only."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(a.tolist(), b.tolist(), w.tolist()))
    labels = np.empty(n, dtype=np.int64)
    for k, com in enumerate(nx.community.louvain_communities(g, weight="weight", seed=seed)):
        labels[list(com)] = k
    return labels


def _leiden(ig: Any, n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray,
            resolution: float, seed: int, iterations: int = -1) -> np.ndarray:
    """Leiden (igraph's implementation) with the constant Potts model.
    igraph draws from its own generator: seeding it makes the pass deterministic."""
    import random

    g = ig.Graph(n=n, edges=np.column_stack([a, b]), directed=False)
    ig.set_random_number_generator(random.Random(seed))
    try:
        part = g.community_leiden(objective_function="CPM", weights=w, resolution=resolution,
                                  n_iterations=iterations)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, dtype=np.int64)


# -- suspicion -------------------------------------------------------------------------
@dataclass
class GroupFacts:
    """Measures of every group, arrays indexed by group number."""

    size: np.ndarray
    density: np.ndarray  # internal evidence per pair
    overlap: np.ndarray  # share of members holding the group's most held strong identifier
    overlap_kind: list[str]
    burst: np.ndarray  # share of members opened within burst_days of each other
    burst_span: list[tuple[float, float]]
    pass_through: np.ndarray  # members who passed money on within a day
    moved: np.ndarray  # money moved between members
    recruited: np.ndarray  # share of members referred by one member
    scored: np.ndarray  # members with a model score
    mean_score: np.ndarray


def group_facts(inp: RingInputs, pairs: Pairs, group_of: np.ndarray, cfg: RingConfig
                ) -> GroupFacts:
    k = int(group_of.max()) + 1 if len(group_of) and group_of.max() >= 0 else 0
    size = np.bincount(group_of[group_of >= 0], minlength=k).astype(np.float64)
    ga, gb = group_of[pairs.a], group_of[pairs.b]
    inside = (ga == gb) & (ga >= 0)
    w_in = np.bincount(ga[inside], weights=pairs.weight[inside], minlength=k)
    density = w_in / np.maximum(size * (size - 1) / 2, 1)
    # The most held strong identifier of each group.
    overlap = np.zeros(k)
    overlap_kind = [""] * k
    for t, (u, it, _) in inp.items.items():
        if t not in STRONG_KINDS or not len(u):
            continue
        g = group_of[u]
        sel = g >= 0
        if not sel.any():
            continue
        width = np.int64(it.max() + 1)
        gi, uu = g[sel] * width + it[sel], u[sel]
        order = np.lexsort((uu, gi))
        gi, uu = gi[order], uu[order]
        first = np.ones(len(gi), dtype=bool)
        first[1:] = (gi[1:] != gi[:-1]) | (uu[1:] != uu[:-1])
        key, cnt = np.unique(gi[first], return_counts=True)
        gg = key // width
        best = np.zeros(k)
        np.maximum.at(best, gg, cnt.astype(np.float64))
        share = best / np.maximum(size, 1)
        better = share > overlap
        for i in np.flatnonzero(better).tolist():
            overlap_kind[i] = _LABEL[t]
        overlap = np.maximum(overlap, share)
    # Sign-up burst: the most members opened within burst_days of one another.
    burst = np.zeros(k)
    span: list[tuple[float, float]] = [(math.nan, math.nan)] * k
    mem = np.flatnonzero(group_of >= 0)
    s = inp.signup_ms[mem]
    known = np.isfinite(s)
    mem, s = mem[known], s[known]
    if len(mem):
        g = group_of[mem]
        order = np.lexsort((s, g))
        g, s = g[order], s[order]
        base = g.astype(np.float64) * 1e15  # groups apart by far more than any time
        key = base + s
        end = np.searchsorted(key, key + cfg.burst_days * DAY_MS, side="right")
        count = (end - np.arange(len(key))).astype(np.float64)
        best = np.zeros(k)
        np.maximum.at(best, g, count)
        burst = best / np.maximum(size, 1)
        # the window of the best burst, for ``why``
        first = np.full(k, -1, dtype=np.int64)
        hit = count == best[g]
        idx = np.flatnonzero(hit)
        first[g[idx[::-1]]] = idx[::-1]
        span = [(float(s[i]), float(s[min(int(end[i]) - 1, len(s) - 1)])) if i >= 0
                else (math.nan, math.nan) for i in first.tolist()]
    # Money passed on: a member who sent at least pass_through_share of a received
    # transfer within pass_through_hours.
    src, dst, amount, ts = inp.transferred
    passer = _pass_through(len(group_of), src, dst, amount, ts, cfg)
    pass_through = np.bincount(group_of[passer & (group_of >= 0)], minlength=k).astype(float)
    gs, gd = group_of[src], group_of[dst]
    same = (gs == gd) & (gs >= 0)
    moved = np.bincount(gs[same], weights=amount[same], minlength=k)
    # Recruiting: one member referred a large share of the group.
    rs, rd = inp.referred
    gr = group_of[rs]
    sel = (gr == group_of[rd]) & (gr >= 0)
    recruited = np.zeros(k)
    if sel.any():
        key, cnt = np.unique(rs[sel], return_counts=True)
        np.maximum.at(recruited, group_of[key], cnt.astype(np.float64))
    recruited = recruited / np.maximum(size - 1, 1)
    scored_mask = np.isfinite(inp.fraud_risk) & (group_of >= 0)
    scored = np.bincount(group_of[scored_mask], minlength=k).astype(float)
    total = np.bincount(group_of[scored_mask], weights=inp.fraud_risk[scored_mask], minlength=k)
    mean_score = np.where(scored > 0, total / np.maximum(scored, 1), 0.0)
    return GroupFacts(size, density, overlap, overlap_kind, burst, span, pass_through,
                      moved, recruited, scored, mean_score)


def _relays(src: np.ndarray, dst: np.ndarray, amount: np.ndarray, ts: np.ndarray,
            cfg: RingConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Money passed on: (from, through, to) for every transfer into an account that sent
    at least ``pass_through_share`` of it on within ``pass_through_hours``."""
    ok = np.isfinite(ts) & (amount > 0)
    src, dst, amount, ts = src[ok], dst[ok], amount[ok], ts[ok]
    e = np.empty(0, dtype=np.int64)
    if not len(src):
        return e, e, e
    # Sent transfers by (sender, time); for each received one, the receiver's sends
    # in the window after it.
    order = np.lexsort((ts, src))
    s_user, s_ts, s_amt, s_dst = src[order], ts[order], amount[order], dst[order]
    key = s_user.astype(np.float64) * 1e14 + s_ts
    q = dst.astype(np.float64) * 1e14 + ts
    window = cfg.pass_through_hours * 3_600_000
    lo = np.searchsorted(key, q, side="right")
    hi = np.searchsorted(key, q + window, side="right")
    which, pos = _ranges(lo, hi)
    passed = s_amt[pos] >= cfg.pass_through_share * amount[which]
    which, pos = which[passed], pos[passed]
    return src[which], dst[which], s_dst[pos]


def _pass_through(n: int, src: np.ndarray, dst: np.ndarray, amount: np.ndarray,
                  ts: np.ndarray, cfg: RingConfig) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    _, through, _ = _relays(src, dst, amount, ts, cfg)
    out[through] = True
    return out


def suspicion_of(f: GroupFacts) -> tuple[np.ndarray, list[list[str]]]:
    """Suspicion in [0, 1] of every group and the facts that made it, combined as
    independent signals (1 - product of (1 - signal))."""
    size = f.size
    # Chance makes small coincidences: three accounts opened in one month, one member
    # who referred two friends. A signal grows with how many members it takes.
    in_burst = np.round(f.burst * size)
    burst = np.clip((f.burst - 0.4) / 0.5, 0, 1) * np.clip((in_burst - 2) / 4, 0, 1)
    dense = np.clip(f.density / 0.5, 0, 1)
    # Opened together AND holding the same card, phone or device: one operator's
    # accounts. Opened together and sharing only a network is a dorm or a class.
    together = burst * np.clip(f.overlap - 0.2, 0, 0.6) / 0.6 * (0.7 + 0.3 * dense)
    money = np.clip(f.pass_through / np.maximum(2, size / 2), 0, 1) * (f.pass_through >= 2)
    referred = np.round(f.recruited * (size - 1))
    recruit = (np.clip((f.recruited - 0.3) / 0.4, 0, 1) * np.clip((referred - 1) / 4, 0, 1)
               * np.maximum(burst, 0.5))
    scores = np.clip(f.mean_score, 0, 1) * np.minimum(1.0, f.scored / np.maximum(size, 1) * 2)
    s = 1 - (1 - together) * (1 - money) * (1 - recruit) * (1 - scores)
    s = np.round(np.clip(s, 0, 1), 4)
    whys: list[list[str]] = []
    for i in range(len(size)):
        n = int(size[i])
        why: list[tuple[float, str]] = []
        if burst[i] > 0:
            lo, hi = f.burst_span[i]
            why.append((together[i], f"{round(f.burst[i] * n)} of {n} accounts opened within "
                        f"{_days(hi - lo)} days ({_date(lo)} to {_date(hi)})"))
        if f.overlap[i] >= 0.5 and n >= 3:
            why.append((0.3 * f.overlap[i] * max(burst[i], 0.2),
                        f"{round(f.overlap[i] * n)} of {n} share one {f.overlap_kind[i]}"))
        if f.pass_through[i] >= 2:
            why.append((money[i], f"{int(f.pass_through[i])} members passed money on within a "
                        f"day of receiving it; {f.moved[i]:,.0f} CNY moved between members"))
        if recruit[i] > 0:
            why.append((recruit[i], f"one member referred {round(f.recruited[i] * (n - 1))} "
                        f"of the other {n - 1}"))
        if f.scored[i] > 0 and scores[i] >= 0.2:
            why.append((scores[i], f"mean fraud score {f.mean_score[i]:.2f} over "
                        f"{int(f.scored[i])} scored members"))
        why.append((0.0, f"evidence {f.density[i]:.2f} per pair of members"))
        why.sort(key=lambda x: -x[0])
        whys.append([w for _, w in why[:4]])
    return s, whys


def _days(ms: float) -> int:
    return max(1, int(math.ceil(ms / DAY_MS))) if math.isfinite(ms) else 0


def _date(ms: float) -> str:
    import datetime as dt

    if not math.isfinite(ms):
        return "?"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


# -- exposure --------------------------------------------------------------------------
def exposures(inp: RingInputs, pairs: Pairs, group_of: np.ndarray, suspicion: np.ndarray,
              cfg: RingConfig) -> np.ndarray:
    """Ring exposure of every user (see the module docstring)."""
    n = len(inp.users)
    own = np.where(group_of >= 0, suspicion[np.maximum(group_of, 0)], 0.0) if len(suspicion) \
        else np.zeros(n)
    evidence = np.maximum(own, np.nan_to_num(inp.fraud_risk, nan=0.0))
    out = own.copy()
    if len(pairs.a):
        s = link_strength(cfg, pairs.weight)
        np.maximum.at(out, pairs.a, s * evidence[pairs.b])
        np.maximum.at(out, pairs.b, s * evidence[pairs.a])
    return np.clip(out, 0.0, 1.0)


# -- the pass --------------------------------------------------------------------------
def detect(inp: RingInputs, cfg: RingConfig | None = None) -> RingPass:
    """Groups, kinds, suspicion and exposures of the users in ``inp``."""
    import time

    cfg = cfg or RingConfig()
    cfg.check()
    t0 = time.perf_counter()
    pairs = pair_evidence(inp, cfg)
    t1 = time.perf_counter()
    raw = find_groups(len(inp.users), group_edges(inp, pairs, cfg), cfg)
    t2 = time.perf_counter()
    facts = group_facts(inp, pairs, raw, cfg)
    sus, whys = suspicion_of(facts)
    # Renumber groups: most suspicious first, then by id (the smallest member).
    k = len(sus)
    first = np.full(k, len(inp.users), dtype=np.int64)
    mem = np.flatnonzero(raw >= 0)
    np.minimum.at(first, raw[mem], mem)
    order = np.lexsort((first, -sus)) if k else np.empty(0, dtype=np.int64)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    group_of = np.where(raw >= 0, rank[np.maximum(raw, 0)], -1) if k else raw
    members_sorted = mem[np.argsort(group_of[mem], kind="stable")]
    bounds = np.searchsorted(group_of[members_sorted], np.arange(k + 1))
    groups = []
    for new, old in enumerate(order.tolist()):
        ids = tuple(inp.users[members_sorted[bounds[new]:bounds[new + 1]]].tolist())
        kind = "ring" if sus[old] >= cfg.ring_threshold and len(ids) <= cfg.max_ring_size \
            else "community"
        groups.append(Group(f"ring:{ids[0]}", kind, float(sus[old]), ids, tuple(whys[old])))
    sus_new = sus[order] if k else sus
    exp = exposures(inp, pairs, group_of, sus_new, cfg)
    t3 = time.perf_counter()
    return RingPass(inp.users, groups, group_of, exp,
                    {"evidence": t1 - t0, "groups": t2 - t1, "suspicion": t3 - t2})
