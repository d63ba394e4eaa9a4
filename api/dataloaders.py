"""Batched reads behind the per-request DataLoaders.

A page of users with their linked accounts costs a bounded number of store calls: users
come in one ``get_nodes`` call, and linked accounts of every user in the batch are
found by one breadth-first search over all of them at once (a few ``adjacent`` calls
per depth level, whatever the number of users). Results are the same as
``graph.queries.linked_accounts`` and ``ring_of`` user by user. When the embedded store
has a current link index (graph/linkindex.py) it answers each user it holds, without a
store call; the others still go through the batched search.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from graph import linkindex, queries
from graph.errors import InvalidBatchError, NotFoundError
from graph.model import Node, Relationship
from graph.queries import DEFAULT_MAX_ITEM_USERS, LINK_TYPES, Link, LinkedAccount, Ring
from graph.store import Adjacency, GraphStore


def _links_by_user(
    store: GraphStore, users: Sequence[str], via: Sequence[str], max_item_users: int
) -> dict[str, list[tuple[Link, str]]]:
    by_user: dict[str, list[tuple[Link, str]]] = defaultdict(list)
    for u, link, other in queries.user_links(store, sorted(set(users)), via, max_item_users):
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
    chosen = queries.check_via(via)
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
    store: GraphStore,
    user_ids: Sequence[str],
    min_size: int = 3,
    max_members: int = 2000,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
) -> dict[str, Ring | None | NotFoundError]:
    """The ring of each user (None when its group is smaller than ``min_size``)."""
    uniq = list(dict.fromkeys(user_ids))
    missing = store.missing_nodes("User", uniq)
    out: dict[str, Ring | None | NotFoundError] = {
        u: NotFoundError(f"no user with id {u!r}") for u in missing
    }
    sources = [u for u in uniq if u not in missing]
    index = linkindex.fresh_index(store)
    if index is not None:  # the embedded store's link index: no store call at all
        roots = {s: index.user_index(s) for s in sources}
        for s, root in roots.items():
            if root is not None:
                out[s] = index.ring(root, min_size, LINK_TYPES, max_item_users, max_members)
        sources = [s for s in sources if roots[s] is None]  # the index cannot tell
    members = {s: {s} for s in sources}
    level = {s: [s] for s in sources}
    steps: dict[str, list[tuple[str, Link, str]]] = {s: [] for s in sources}
    while True:
        active = [s for s in sources if level[s] and len(members[s]) < max_members]
        if not active:
            break
        links = _links_by_user(store, [u for s in active for u in level[s]], LINK_TYPES,
                               max_item_users)
        for s in active:
            step = [(u, lk, o) for u in level[s] for lk, o in links.get(u, ())]
            steps[s].extend(step)
            new = sorted({o for _, _, o in step} - members[s])[: max_members - len(members[s])]
            members[s].update(new)
            level[s] = new
    for s in sources:
        m = members[s]
        if len(m) < min_size:
            out[s] = None
        else:
            out[s] = queries._ring(m, ((u, lk, o) for u, lk, o in steps[s]
                                       if u in m and o in m))
    return out


def holdings_many(store: GraphStore, user_ids: Sequence[str]) -> list[list[Relationship]]:
    """HOLDS relationships (products, limits, balances) of each user, one store call."""
    by_user: dict[str, list[Relationship]] = defaultdict(list)
    for r in store.relationships("HOLDS", list(dict.fromkeys(user_ids)), "out"):
        by_user[r.src].append(r)
    return [by_user.get(u, []) for u in user_ids]


def adjacent_many(
    store: GraphStore, label: str, ids: Sequence[str], rel_type: str, direction: str,
    limit_per_node: int,
) -> list[list[Adjacency]]:
    by_node: dict[str, list[Adjacency]] = defaultdict(list)
    for a in store.adjacent(label, list(dict.fromkeys(ids)), [rel_type], direction,  # type: ignore[arg-type]
                            limit_per_node):
        by_node[a.node_id].append(a)
    return [by_node.get(i, []) for i in ids]


def scan_users(
    store: GraphStore,
    after: str | None,
    want: int,
    keep: object,
    batch: int = 500,
    max_scanned: int = 20_000,
) -> tuple[list[Node], str | None, bool]:
    """Users in id order after ``after`` for which ``keep(node)`` holds, up to ``want``.

    Returns (nodes, last id scanned, whether more ids may follow). The scan stops after
    ``max_scanned`` ids so a rare filter cannot turn one page into a full table scan;
    the caller then pages on from the last id scanned.
    """
    found: list[Node] = []
    last = after
    scanned = 0
    while len(found) < want + 1 and scanned < max_scanned:
        ids = store.node_ids("User", after=last, limit=batch)
        if not ids:
            return found, last, False
        for node in store.get_nodes("User", ids):
            scanned += 1
            if node is None:
                continue
            last = node.id
            if keep(node):  # type: ignore[operator]
                found.append(node)
                if len(found) == want + 1:
                    break
        if len(ids) < batch and len(found) <= want:
            return found, last, False
    return found, last, True
