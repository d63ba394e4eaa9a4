"""Graph queries written once over the GraphStore primitives: linked accounts, rings,
bounded neighbourhoods. Both stores answer them identically because they run here.

Definitions (docs/graph-queries.md says the same for users):

* Two users are **linked** when they share an item (a device, phone, bank card or IP:
  ``user -> item <- user``) or when one referred or transferred money to the other.
* An item used by more than ``max_item_users`` users is a **hub** (a café's IP, a
  family tablet in a dormitory) and links nobody: sharing it says little.
* **Linked accounts** at depth ``d`` are the users reached in ``d`` such steps and no
  fewer, each with the links that reached it, ranked by depth, then by number of
  links (more first), then by id.
* A **group** is what the last ring pass (graph/rings.py) found on the evidence-weighted
  user graph: a ``ring`` (suspicious) or a ``community``, with a suspicion and the facts
  behind it. Its id is ``ring:`` followed by its smallest member id. The pass writes its
  result on the User nodes; ``ring_of``, ``rings`` and limit decisions read it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from graph import linkindex
from graph import rings as rings_pass
from graph.errors import InvalidBatchError, NotFoundError
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.results import (
    DEFAULT_MAX_ITEM_USERS,
    LINK_TYPES,
    MAX_DIRECT_LINKS_PER_USER,
    MAX_ITEMS_PER_USER,
    RING_KINDS,
    Link,
    LinkedAccount,
    Ring,
    RingMembership,
    SharedItem,
    Subgraph,
)
from graph.store import Adjacency, GraphStore, LinkedInDatabase, LinkRow

__all__ = [
    "DEFAULT_MAX_ITEM_USERS", "LINK_TYPES", "MAX_DIRECT_LINKS_PER_USER", "MAX_ITEMS_PER_USER",
    "Link", "LinkedAccount", "Ring", "RingHeader", "RingMembership", "SharedItem", "Subgraph",
    "check_via", "describe", "ensure_pass", "linked_accounts", "linked_accounts_from_primitives",
    "linked_accounts_many", "rings_of_many",
    "membership", "neighbourhood", "pass_done", "ring_by_id", "ring_exposure", "ring_headers",
    "ring_of", "rings", "user_links",
]

def check_via(via: Iterable[str] | None) -> tuple[str, ...]:
    """The link types asked for (all when None), each known, in order, once."""
    if via is None:
        return LINK_TYPES
    chosen = tuple(dict.fromkeys(via))
    bad = [v for v in chosen if v not in LINK_TYPES]
    if bad:
        raise InvalidBatchError(f"cannot link accounts via {bad}; choose from {list(LINK_TYPES)}")
    return chosen


def user_links(
    store: GraphStore,
    users: Sequence[str],
    via: Sequence[str] = LINK_TYPES,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
) -> list[tuple[str, Link, str]]:
    """Every (user, link, other user) one step out of ``users``, sorted."""
    out: list[tuple[str, Link, str]] = []
    item_rels = [r for r in via if r in SHARED_ITEM_RELS]
    if item_rels and users:
        out += _shared_item_links(store, users, item_rels, max_item_users)
    direct_rels = [r for r in via if r in USER_USER_RELS]
    if direct_rels and users:
        pairs: dict[tuple[str, str, str], int] = defaultdict(int)
        for a in store.adjacent("User", users, direct_rels, "both", MAX_DIRECT_LINKS_PER_USER):
            if a.other_id != a.node_id:
                pairs[(a.node_id, a.rel_type, a.other_id)] += 1
        for (u, rt, other), n in pairs.items():
            out.append((u, Link(rt, "User", other, u, n), other))
    out.sort()
    return out


def _shared_item_links(
    store: GraphStore, users: Sequence[str], item_rels: list[str], max_item_users: int,
) -> list[tuple[str, Link, str]]:
    """(user, link, other user) for every non-hub item of ``item_rels`` a user shares."""
    out: list[tuple[str, Link, str]] = []
    held = store.adjacent("User", users, item_rels, "out", MAX_ITEMS_PER_USER)
    by_rel: dict[str, list[Adjacency]] = defaultdict(list)
    for a in held:
        by_rel[a.rel_type].append(a)
    for rt, adj in sorted(by_rel.items()):
        label = REL_TYPES[rt].dst
        items = sorted({a.other_id for a in adj})
        holders: dict[str, list[str]] = defaultdict(list)
        for b in store.adjacent(label, items, [rt], "in", max_item_users + 1):
            holders[b.node_id].append(b.other_id)
        for a in adj:
            others = holders.get(a.other_id, [])
            if len(others) > max_item_users:
                continue  # a hub links nobody
            for other in others:
                if other != a.node_id:
                    out.append((a.node_id, Link(rt, label, a.other_id, a.node_id), other))
    return out


def linked_accounts(
    store: GraphStore,
    user_id: str,
    depth: int = 1,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    limit: int | None = None,
) -> list[LinkedAccount]:
    """The users linked to ``user_id`` within ``depth`` steps, ranked.

    The embedded store answers from its link index (graph/linkindex.py) when it has one
    that matches the data; otherwise, and for every other store, this is
    ``linked_accounts_from_primitives``. Both give the same answer."""
    if depth < 1 or depth > 4:
        raise InvalidBatchError(f"depth must be between 1 and 4, got {depth}")
    chosen = check_via(via)
    if isinstance(store, LinkedInDatabase):  # one statement on the server (Neo4j)
        return _ranked_levels(store.linked_levels(
            user_id, depth, chosen, max_item_users, MAX_ITEMS_PER_USER,
            MAX_DIRECT_LINKS_PER_USER), limit)
    index = linkindex.fresh_index(store)
    if index is not None:
        found = index.linked_accounts(user_id, depth, chosen, max_item_users, limit)
        if found is not None:
            return found
    return linked_accounts_from_primitives(store, user_id, depth, chosen, max_item_users, limit)


def _ranked_levels(levels: list[list[tuple[str, list[LinkRow]]]], limit: int | None
                   ) -> list[LinkedAccount]:
    """``LinkedInDatabase.linked_levels`` as ranked LinkedAccounts, links in the order
    the reference gives them."""
    found = [LinkedAccount(user, d, sorted((Link(rt, label, item, src, n)
                                            for src, rt, label, item, _, n in links),
                                           key=lambda lk: (lk.from_user, lk)))
             for d, level in enumerate(levels, 1) for user, links in level]
    ranked = sorted(found, key=lambda a: (a.depth, -a.strength, a.user_id))
    return ranked[:limit] if limit is not None else ranked


def linked_accounts_from_primitives(
    store: GraphStore,
    user_id: str,
    depth: int = 1,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    limit: int | None = None,
) -> list[LinkedAccount]:
    """``linked_accounts`` by breadth-first search over ``GraphStore.adjacent``: the
    reference every store answers the same way, and what a link index must match."""
    if depth < 1 or depth > 4:
        raise InvalidBatchError(f"depth must be between 1 and 4, got {depth}")
    chosen = check_via(via)
    if store.missing_nodes("User", [user_id]):
        raise NotFoundError(f"no user with id {user_id!r}")
    found: dict[str, LinkedAccount] = {}
    level = [user_id]
    for d in range(1, depth + 1):
        reached: dict[str, LinkedAccount] = {}
        for _, link, other in user_links(store, level, chosen, max_item_users):
            if other == user_id or other in found:
                continue
            acc = reached.setdefault(other, LinkedAccount(other, d))
            acc.links.append(link)
        if not reached:
            break
        found.update(reached)
        level = sorted(reached)
    ranked = sorted(found.values(), key=lambda a: (a.depth, -a.strength, a.user_id))
    return ranked[:limit] if limit is not None else ranked


def _links_by_user(
    store: GraphStore, users: Sequence[str], via: Sequence[str], max_item_users: int
) -> dict[str, list[tuple[Link, str]]]:
    by_user: dict[str, list[tuple[Link, str]]] = defaultdict(list)
    for u, link, other in user_links(store, sorted(set(users)), via, max_item_users):
        by_user[u].append((link, other))
    return by_user


def linked_accounts_many(
    store: GraphStore,
    user_ids: Sequence[str],
    depth: int = 1,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
) -> dict[str, list[LinkedAccount] | NotFoundError]:
    """Ranked linked accounts of each user, searched level by level for all at once."""
    if depth < 1 or depth > 4:
        raise InvalidBatchError(f"depth must be between 1 and 4, got {depth}")
    chosen = check_via(via)
    uniq = list(dict.fromkeys(user_ids))
    missing = store.missing_nodes("User", uniq)
    out: dict[str, list[LinkedAccount] | NotFoundError] = {
        u: NotFoundError(f"no user with id {u!r}") for u in missing
    }
    sources = [u for u in uniq if u not in missing]
    index = linkindex.fresh_index(store)
    if index is not None:  # the embedded store's link index: no store call at all
        answered = {s: index.linked_accounts(s, depth, chosen, max_item_users)
                    for s in sources}
        out.update((s, a) for s, a in answered.items() if a is not None)
        sources = [s for s in sources if answered[s] is None]  # the index cannot tell
    found: dict[str, dict[str, LinkedAccount]] = {s: {} for s in sources}
    frontier: dict[str, list[str]] = {s: [s] for s in sources}
    for d in range(1, depth + 1):
        active = [s for s in sources if frontier[s]]
        if not active:
            break
        links = _links_by_user(store, [u for s in active for u in frontier[s]], chosen,
                               max_item_users)
        for s in active:
            reached: dict[str, LinkedAccount] = {}
            seen = found[s]
            for u in frontier[s]:  # sorted, as user_links orders its answer
                for link, other in links.get(u, ()):
                    if other == s or other in seen:
                        continue
                    reached.setdefault(other, LinkedAccount(other, d)).links.append(link)
            seen.update(reached)
            frontier[s] = sorted(reached)
    for s in sources:
        out[s] = sorted(found[s].values(), key=lambda a: (a.depth, -a.strength, a.user_id))
    return out


def rings_of_many(
    store: GraphStore, user_ids: Sequence[str],
) -> dict[str, Ring | None | NotFoundError]:
    """``ring_of`` of each user, with one ``get_nodes`` for the users and one
    description per distinct group."""
    uniq = list(dict.fromkeys(user_ids))
    nodes = dict(zip(uniq, store.get_nodes("User", uniq)))
    out: dict[str, Ring | None | NotFoundError] = {
        u: NotFoundError(f"no user with id {u!r}") for u, n in nodes.items() if n is None}
    if any(n is not None and n.properties.get("ring_id") is None for n in nodes.values()):
        ensure_pass(store)
        nodes = dict(zip(uniq, store.get_nodes("User", uniq)))
    found: dict[str, Ring | None] = {}
    for u, n in nodes.items():
        if n is None:
            continue
        rid = n.properties.get("ring_id")
        if not isinstance(rid, str) or not rid.startswith("ring:"):
            out[u] = None
            continue
        if rid not in found:
            found[rid] = ring_by_id(store, rid)
        out[u] = found[rid]
    return out


# -- rings: the stored result of the last ring pass (graph/rings.py) ----------------------
def pass_done(store: GraphStore) -> bool:
    """Whether a ring pass has written its result (it writes every user, so the first
    user tells), or there are no users."""
    first = store.node_ids("User", limit=1)
    if not first:
        return True
    node = store.get_nodes("User", first)[0]
    return node is not None and node.properties.get("ring_id") is not None


def ensure_pass(store: GraphStore, cfg: rings_pass.RingConfig | None = None) -> None:
    """Run the ring pass once on a store that never had one (a load runs it; a store
    filled through the API or by tests may not have)."""
    if not pass_done(store):
        rings_pass.run_pass(store, cfg)


def membership(store: GraphStore, user_id: str,
               props: Mapping[str, object] | None = None) -> RingMembership:
    """What the last pass stored on a user, with its ring exposure brought up to date
    with the links added since (``ring_exposure``). ``props`` are the user's node
    properties when the caller has them."""
    if props is None:
        node = store.get_nodes("User", [user_id])[0]
        if node is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        props = node.properties
    p = props
    rid = p.get("ring_id") or None
    return RingMembership(
        user_id=user_id, ring_id=rid if isinstance(rid, str) else None,
        kind=(p.get("ring_kind") or None) if rid else None,  # type: ignore[arg-type]
        size=int(p.get("ring_size") or 0) if rid else 0,  # type: ignore[call-overload]
        suspicion=float(p.get("ring_suspicion") or 0.0) if rid else 0.0,  # type: ignore[arg-type]
        exposure=ring_exposure(store, user_id, p),
    )


def ring_exposure(store: GraphStore, user_id: str, props: Mapping[str, object] | None = None,
                  cfg: rings_pass.RingConfig | None = None) -> float:
    """A user's ring exposure: the larger of what the last pass stored and
    ``max over linked users v of strength(u, v) * evidence(v)`` over the links the user
    has now, with ``evidence(v) = max(v's stored group suspicion, v's fraud_risk)``.

    Between passes it can only grow when a link is added: the stored part does not
    move, a new link adds a term to the max, and a new shared item or transfer only
    adds evidence to a pair (docs/limits.md)."""
    cfg = cfg or rings_pass.RingConfig()
    if props is None:
        node = store.get_nodes("User", [user_id])[0]
        if node is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        props = node.properties
    stored = _num(props.get("ring_exposure"))
    links = _indexed_links(store, [user_id], cfg.max_item_users)
    if not links:
        return stored
    holders: dict[tuple[str, str], int] = defaultdict(lambda: 1)
    for _, lk, _ in links:
        if lk.item_label != "User":
            holders[(lk.rel_type, lk.item_id)] += 1
    others = sorted({o for _, _, o in links})
    nodes = dict(zip(others, store.get_nodes("User", others)))
    mine = _num(props.get("signup_ts"), math.nan)
    evidence: dict[str, float] = defaultdict(float)
    for _, lk, o in links:
        if lk.item_label != "User":
            n = nodes[o]
            theirs = _num(n.properties.get("signup_ts"), math.nan) if n else math.nan
            evidence[o] += float(
                rings_pass.item_weight(cfg.kind_weight.get(lk.rel_type, 0.3),
                                       holders[(lk.rel_type, lk.item_id)])
                * rings_pass.coherence(cfg, np.array([mine]), np.array([theirs]))[0])
        elif lk.rel_type == "REFERRED":
            evidence[o] += cfg.referral_weight * lk.count
    for o, w in _transfer_evidence(store, user_id, cfg).items():
        evidence[o] += w
    best = stored
    for o, w in evidence.items():
        n = nodes.get(o)
        if n is None:
            continue
        e = max(_num(n.properties.get("ring_suspicion")), _num(n.properties.get("fraud_risk")))
        best = max(best, float(rings_pass.link_strength(cfg, w)) * e)
    return min(1.0, best)


def _transfer_evidence(store: GraphStore, user_id: str, cfg: rings_pass.RingConfig
                       ) -> dict[str, float]:
    """The evidence the user's transfers (either way) give each counterpart."""
    moved: dict[str, list[float]] = defaultdict(list)
    for direction in ("out", "in"):
        for r in store.relationships("TRANSFERRED", [user_id], direction,
                                     MAX_DIRECT_LINKS_PER_USER):
            other = r.dst if direction == "out" else r.src
            if other != user_id:
                moved[other].append(_num(r.properties.get("amount")))
    return {o: float(rings_pass.transfer_weight(
                cfg, np.array([len(amounts)]), np.array([sum(amounts)]))[0])
            for o, amounts in moved.items()}


def _indexed_links(store: GraphStore, users: Sequence[str],
                   max_item_users: int = DEFAULT_MAX_ITEM_USERS) -> list[tuple[str, Link, str]]:
    """``user_links`` over every link type, from the store's link index when it has a
    current one that holds the users (the same answer, without walking the store)."""
    index = linkindex.fresh_index(store)
    found = index.user_links(users, LINK_TYPES, max_item_users) if index is not None else None
    return found if found is not None else user_links(store, users, LINK_TYPES, max_item_users)


def _num(v: object, default: float = 0.0) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return default


def ring_of(store: GraphStore, user_id: str) -> Ring | None:
    """The group the last ring pass put ``user_id`` in (a ``ring`` or a ``community``),
    or None when it is in none. Runs the pass first on a store that never had one."""
    node = store.get_nodes("User", [user_id])[0]
    if node is None:
        raise NotFoundError(f"no user with id {user_id!r}")
    if node.properties.get("ring_id") is None and not pass_done(store):
        ensure_pass(store)
        node = store.get_nodes("User", [user_id])[0]
    rid = node.properties.get("ring_id") if node is not None else None
    if not isinstance(rid, str) or not rid.startswith("ring:"):
        return None
    return ring_by_id(store, rid)


def ring_by_id(store: GraphStore, ring_id: str) -> Ring | None:
    """The stored group with this id, or None (no such user, or it names no group)."""
    head = store.get_nodes("User", [ring_id[len("ring:"):]])[0] if ring_id.startswith(
        "ring:") else None
    if head is None or head.properties.get("ring_id") != ring_id:
        return None
    header = _header(head.id, head.properties)
    return describe(store, header) if header is not None else None


@dataclass(frozen=True)
class RingHeader:
    """A stored group without its shared items and links: what a listing sorts."""

    id: str
    kind: str
    suspicion: float
    members: tuple[str, ...]
    why: tuple[str, ...]


def _header(user_id: str, p: Mapping[str, object]) -> RingHeader | None:
    raw = p.get("ring_members")
    if not isinstance(raw, str) or not raw:
        return None
    why = p.get("ring_why")
    return RingHeader(
        id=f"ring:{user_id}", kind=str(p.get("ring_kind") or "community"),
        suspicion=_num(p.get("ring_suspicion")), members=tuple(json.loads(raw)),
        why=tuple(json.loads(why)) if isinstance(why, str) and why else (),
    )


def ring_headers(store: GraphStore, kind: str = "ring", min_size: int = 3
                 ) -> list[RingHeader]:
    """Every stored group of ``kind`` (``ring``, ``community`` or ``all``) with at least
    ``min_size`` members, most suspicious first, then by id."""
    if kind not in (*RING_KINDS, "all"):
        raise InvalidBatchError(f"kind must be one of {[*RING_KINDS, 'all']}, not {kind!r}")
    if min_size < 1:
        raise InvalidBatchError(f"min_size must be at least 1, got {min_size}")
    ensure_pass(store)
    out: list[RingHeader] = []
    for chunk in store.export_nodes("User", ["ring_kind", "ring_suspicion", "ring_members",
                                             "ring_why"]):
        members = chunk["ring_members"]
        for i in np.flatnonzero([isinstance(m, str) and m != "" for m in members]).tolist():
            h = _header(str(chunk["id"][i]), {
                "ring_members": members[i], "ring_kind": chunk["ring_kind"][i],
                "ring_suspicion": chunk["ring_suspicion"][i], "ring_why": chunk["ring_why"][i]})
            if h is not None and len(h.members) >= min_size and kind in ("all", h.kind):
                out.append(h)
    out.sort(key=lambda h: (-h.suspicion, h.id))
    return out


def rings(store: GraphStore, kind: str = "ring", min_size: int = 3,
          limit: int | None = None) -> list[Ring]:
    """``ring_headers`` with their shared items and direct links, the first ``limit``."""
    heads = ring_headers(store, kind, min_size)
    return [describe(store, h) for h in (heads if limit is None else heads[:limit])]


def describe(store: GraphStore, h: RingHeader) -> Ring:
    """A stored group with the items its members share and the links between them."""
    members = set(h.members)
    links = [(u, lk, o) for u, lk, o in _indexed_links(store, sorted(members))
             if o in members]
    base = _ring(members, links)
    return Ring(id=h.id, members=base.members, shared_items=base.shared_items,
                direct_links=base.direct_links, kind=h.kind, suspicion=h.suspicion,
                why=h.why)


def _ring(members: set[str], links: Iterable[tuple[str, Link, str]]) -> Ring:
    items: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    direct: dict[tuple[str, str, str], int] = {}
    for u, lk, o in links:
        if lk.item_label == "User":
            a, b = sorted((u, o))
            direct[(lk.rel_type, a, b)] = max(direct.get((lk.rel_type, a, b), 0), lk.count)
        else:
            items[(lk.rel_type, lk.item_label, lk.item_id)].update((u, o))
    ordered = sorted(members)
    return Ring(
        id=f"ring:{ordered[0]}",
        members=tuple(ordered),
        shared_items=tuple(
            SharedItem(rt, label, iid, tuple(sorted(m)))
            for (rt, label, iid), m in sorted(items.items())
        ),
        direct_links=tuple((rt, a, b, n) for (rt, a, b), n in sorted(direct.items())),
    )


def neighbourhood(
    store: GraphStore,
    label: str,
    node_id: str,
    hops: int = 2,
    max_nodes: int = 200,
    rel_types: Sequence[str] | None = None,
) -> Subgraph:
    """Breadth-first neighbourhood of a node: at most ``max_nodes`` nodes, so a
    merchant with 100k payers cannot explode the answer."""
    if hops < 0 or max_nodes < 1:
        raise InvalidBatchError("hops must be >= 0 and max_nodes >= 1")
    types = list(rel_types) if rel_types is not None else list(REL_TYPES)
    if store.missing_nodes(label, [node_id]):
        raise NotFoundError(f"no {label} with id {node_id!r}")
    seen: dict[tuple[str, str], int] = {(label, node_id): 0}
    edges: set[Adjacency] = set()
    level = [(label, node_id)]
    truncated = False
    for _ in range(hops):
        nxt: list[tuple[str, str]] = []
        by_label: dict[str, list[str]] = defaultdict(list)
        for lb, i in level:
            by_label[lb].append(i)
        for lb in sorted(by_label):
            for a in store.adjacent(lb, sorted(by_label[lb]), types, "both", max_nodes):
                key = (a.other_label, a.other_id)
                if key not in seen:
                    if len(seen) >= max_nodes:
                        truncated = True
                        continue
                    seen[key] = len(seen)
                    nxt.append(key)
                edges.add(a)
        if not nxt:
            break
        level = nxt
    nodes = tuple(sorted(seen, key=lambda k: seen[k]))
    return Subgraph(nodes, tuple(sorted(_from_sources(edges, seen))), truncated)


def _from_sources(edges: Iterable[Adjacency], seen: Mapping[tuple[str, str], int]
                  ) -> set[Adjacency]:
    """Each relationship between ``seen`` nodes once, as seen from its source."""
    canon = set()
    for a in edges:
        if (a.other_label, a.other_id) not in seen:
            continue
        if a.direction == "out":
            canon.add(a)
        else:
            src_label = REL_TYPES[a.rel_type].src
            canon.add(Adjacency(a.other_id, a.rel_type, "out", REL_TYPES[a.rel_type].dst,
                                a.node_id, a.rel_key) if src_label else a)
    return canon
