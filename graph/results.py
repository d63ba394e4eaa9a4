"""Result types of the graph queries, and their limits: a leaf module that every other
module of graph/ (queries, the link index, rings) and the layers above import, so no two
of them need to import each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from graph.model import SHARED_ITEM_RELS, USER_USER_RELS
from graph.store import Adjacency

DEFAULT_MAX_ITEM_USERS = 50
MAX_ITEMS_PER_USER = 200
MAX_DIRECT_LINKS_PER_USER = 1000
LINK_TYPES: tuple[str, ...] = SHARED_ITEM_RELS + USER_USER_RELS

RING_KINDS: tuple[str, ...] = ("ring", "community")


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
    """A group of users found by the ring pass (graph/rings.py).

    ``kind`` is ``ring`` (suspicious: act on it) or ``community`` (a household, an
    office, a campus, the users of a public network); ``suspicion`` is in [0, 1] and
    ``why`` gives the facts behind it, readable by an investigator."""

    id: str
    members: tuple[str, ...]
    shared_items: tuple[SharedItem, ...]
    direct_links: tuple[tuple[str, str, str, int], ...]  # (rel_type, src, dst, count)
    kind: str = "community"
    suspicion: float = 0.0
    why: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class RingMembership:
    """What the last ring pass stored on one user: its group, if any, and its ring
    exposure (the relational input of limit decisions, docs/limits.md)."""

    user_id: str
    ring_id: str | None
    kind: str | None
    size: int
    suspicion: float
    exposure: float


@dataclass(frozen=True)
class Subgraph:
    nodes: tuple[tuple[str, str], ...]  # (label, id), in breadth-first order
    edges: tuple[Adjacency, ...]
    truncated: bool
