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
* A **ring** is a connected group of at least ``min_size`` users under the same links.
  Its id is ``ring:`` followed by its smallest member id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from graph.errors import InvalidBatchError, NotFoundError
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.store import Adjacency, GraphStore, LinkedInDatabase, LinkRow

if TYPE_CHECKING:
    from graph.linkindex import LinkIndex

DEFAULT_MAX_ITEM_USERS = 50
MAX_ITEMS_PER_USER = 200
MAX_DIRECT_LINKS_PER_USER = 1000
LINK_TYPES: tuple[str, ...] = SHARED_ITEM_RELS + USER_USER_RELS


class Link(NamedTuple):
    """One reason two users are tied: a shared item, or a direct relationship. A
    tuple, because a depth-2 query can make thousands and sort them."""

    rel_type: str
    item_label: str  # "User" for direct links
    item_id: str  # the shared item's id; for direct links, the other user's id
    from_user: str  # the user on the previous level it was reached from
    # relationships between the pair (both directions), or 1; shadows tuple.count
    count: int = 1  # type: ignore[assignment]


@dataclass
class LinkedAccount:
    user_id: str
    depth: int
    links: list[Link] = field(default_factory=list)

    @property
    def strength(self) -> int:
        return len(self.links)


@dataclass(frozen=True)
class SharedItem:
    rel_type: str
    label: str
    id: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Ring:
    id: str
    members: tuple[str, ...]
    shared_items: tuple[SharedItem, ...]
    direct_links: tuple[tuple[str, str, str, int], ...]  # (rel_type, src, dst, count)

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Subgraph:
    nodes: tuple[tuple[str, str], ...]  # (label, id), in breadth-first order
    edges: tuple[Adjacency, ...]
    truncated: bool


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
    from graph import linkindex  # it builds on this module

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


def ring_of(
    store: GraphStore,
    user_id: str,
    min_size: int = 3,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    max_members: int = 2000,
) -> Ring | None:
    """The ring that contains ``user_id``, or None when its group is smaller than
    ``min_size``. A group larger than ``max_members`` is cut there.

    The embedded store's link index answers when it has a current one that holds the
    user (graph/linkindex.py); otherwise, and for every other store, this is
    ``ring_of_from_primitives``. Both give the same ring."""
    chosen = check_via(via)
    indexed = _in_link_index(store, user_id)
    if indexed is None:
        return ring_of_from_primitives(store, user_id, min_size, chosen, max_item_users,
                                       max_members)
    index, root = indexed
    return index.ring(root, min_size, chosen, max_item_users, max_members)


def _in_link_index(store: GraphStore, user_id: str) -> tuple[LinkIndex, int] | None:
    """(the store's current link index, the user's position in it), or None when there
    is no current index or it does not hold the user: then the primitives answer."""
    from graph import linkindex  # it builds on this module

    index = linkindex.fresh_index(store)
    root = index.user_index(user_id) if index is not None else None
    return None if index is None or root is None else (index, root)


def ring_summary(
    store: GraphStore,
    user_id: str,
    min_size: int = 3,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    max_members: int = 2000,
) -> tuple[str, int] | None:
    """(id, size) of ``ring_of``'s ring, or None: what a limit decision needs. The link
    index finds the members without gathering the links that tie them."""
    chosen = check_via(via)
    indexed = _in_link_index(store, user_id)
    if indexed is None:
        ring = ring_of_from_primitives(store, user_id, min_size, chosen, max_item_users,
                                       max_members)
        return (ring.id, ring.size) if ring is not None else None
    index, root = indexed
    members = index.ring_members(root, chosen, max_item_users, max_members)
    if len(members) < min_size:
        return None
    return f"ring:{index.user_id(members[0])}", len(members)


def ring_of_from_primitives(
    store: GraphStore,
    user_id: str,
    min_size: int = 3,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    max_members: int = 2000,
) -> Ring | None:
    """``ring_of`` by walking ``user_links`` over the store's primitives: the reference
    every store answers the same way, and what a link index must match."""
    chosen = check_via(via)
    if store.missing_nodes("User", [user_id]):
        raise NotFoundError(f"no user with id {user_id!r}")
    return _walk_ring(user_id, min_size, max_members,
                      lambda level: user_links(store, level, chosen, max_item_users))


def _walk_ring(
    user_id: str, min_size: int, max_members: int,
    step: Callable[[Sequence[str]], list[tuple[str, Link, str]]],
) -> Ring | None:
    members = {user_id}
    level = [user_id]
    links: list[tuple[str, Link, str]] = []
    while level and len(members) < max_members:
        found = step(level)
        links.extend(found)
        new = sorted({o for _, _, o in found} - members)
        new = new[: max_members - len(members)]
        members.update(new)
        level = new
    if len(members) < min_size:
        return None
    return _ring(members, ((u, lk, o) for u, lk, o in links if u in members and o in members))


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


def rings(
    store: GraphStore,
    min_size: int = 3,
    via: Iterable[str] | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
) -> list[Ring]:
    """Every ring of at least ``min_size`` users, largest first, then by id."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if min_size < 2:
        raise InvalidBatchError(f"min_size must be at least 2, got {min_size}")
    chosen = check_via(via)
    # Gather every link edge as arrays: users on one side, items or users on the other.
    item_src: list[np.ndarray] = []
    item_dst: list[np.ndarray] = []
    item_kind: list[np.ndarray] = []
    direct: list[tuple[str, np.ndarray, np.ndarray]] = []
    for k, rt in enumerate(chosen):
        for chunk in store.export_relationships(rt, []):
            if rt in USER_USER_RELS:
                direct.append((rt, chunk["src"], chunk["dst"]))
            else:
                item_src.append(chunk["src"])
                item_dst.append(chunk["dst"])
                item_kind.append(np.full(len(chunk["src"]), k, dtype=np.int32))
    all_users = [a for a in item_src] + [a for _, s, d in direct for a in (s, d)]
    if not all_users or sum(len(a) for a in all_users) == 0:
        return []
    names, inverse = np.unique(np.concatenate(all_users).astype(str), return_inverse=True)
    n_users = len(names)
    pos = 0
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    item_users = np.empty(0, dtype=np.int64)
    item_of_edge = np.empty(0, dtype=np.int64)
    item_keys = np.empty(0, dtype=str)
    item_kinds = np.empty(0, dtype=np.int32)
    if item_src:
        n_item_edges = sum(len(a) for a in item_src)
        item_users = inverse[:n_item_edges]
        pos = n_item_edges
        kinds = np.concatenate(item_kind)
        # An item is identified by its relationship type and id.
        keyed = np.char.add(np.char.add(kinds.astype(str), "\x1f"),
                            np.concatenate(item_dst).astype(str))
        item_keys, item_of_edge = np.unique(keyed, return_inverse=True)
        item_kinds = np.array([int(k.split("\x1f", 1)[0]) for k in item_keys], dtype=np.int32)
        pairs = np.unique(np.stack([item_of_edge, item_users], axis=1), axis=0)
        per_item = np.bincount(pairs[:, 0], minlength=len(item_keys))
        linking = (per_item >= 2) & (per_item <= max_item_users)
        keep = linking[item_of_edge]
        rows.append(item_users[keep])
        cols.append(n_users + item_of_edge[keep])
    direct_pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    for rt, s_arr, _ in direct:
        u = inverse[pos : pos + len(s_arr)]
        v = inverse[pos + len(s_arr) : pos + 2 * len(s_arr)]
        pos += 2 * len(s_arr)
        direct_pairs.append((rt, u, v))
        rows.append(u)
        cols.append(v)
    n = n_users + len(item_keys)
    r = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    m = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, comp = connected_components(m, directed=False)
    user_comp = comp[:n_users]
    sizes = np.bincount(user_comp, minlength=int(comp.max()) + 1)
    big = sizes >= min_size
    if not big.any():
        return []
    members: dict[int, set[str]] = defaultdict(set)
    for ui in np.nonzero(big[user_comp])[0].tolist():
        members[int(user_comp[ui])].add(str(names[ui]))
    links: dict[int, list[tuple[str, Link, str]]] = defaultdict(list)
    if item_src:
        sel = keep & big[user_comp[item_users]]
        for u, it in zip(item_users[sel].tolist(), item_of_edge[sel].tolist()):
            rt = chosen[int(item_kinds[it])]
            item_id = str(item_keys[it]).split("\x1f", 1)[1]
            user = str(names[u])
            links[int(user_comp[u])].append(
                (user, Link(rt, REL_TYPES[rt].dst, item_id, user), user)
            )
    for rt, u, v in direct_pairs:
        sel = (u != v) & big[user_comp[u]]
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for a, b in zip(u[sel].tolist(), v[sel].tolist()):
            counts[(min(a, b), max(a, b))] += 1  # both directions count, as in user_links
        for (a, b), k in counts.items():
            links[int(user_comp[a])].append(
                (str(names[a]), Link(rt, "User", str(names[b]), str(names[a]), k), str(names[b]))
            )
    out = [_ring(members[cid], links[cid]) for cid in members]
    out.sort(key=lambda ring: (-ring.size, ring.id))
    return out


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
    # keep each relationship once, seen from its source
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
    nodes = tuple(sorted(seen, key=lambda k: seen[k]))
    return Subgraph(nodes, tuple(sorted(canon)), truncated)
