"""The GraphStore protocol: what every storage backend offers the rest of RiskGraph.

Batches are columnar: a mapping from column name to a sequence (list or numpy array)
of equal length. Node batches carry ``id`` plus any of the label's properties;
relationship batches carry ``src`` and ``dst`` (and ``id`` for keyed types such as
``PAID``) plus properties. A ``None`` (or NaN for numbers) means "not given": it never
erases a stored value, so re-sending a batch changes nothing and a newer value for
the same key replaces the old one.

Graph queries (linked accounts, rings, neighbourhoods) are written once in
``graph.queries`` on top of the primitives below, so both stores give identical
answers on the same data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from graph.model import Node, Relationship

Columns = Mapping[str, Sequence[Any]]
Direction = Literal["out", "in", "both"]


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a relationship upsert."""

    written: int
    # Row positions in the batch whose src or dst node does not exist; not written.
    missing_endpoints: list[int] = field(default_factory=list)


class Adjacency(NamedTuple):
    """One relationship seen from one of its ends. A tuple: queries make many of
    these, and tuples are built and sorted several times faster than dataclasses."""

    node_id: str  # the end the question was asked about
    rel_type: str
    direction: Literal["out", "in"]  # out: node_id is the source
    other_label: str
    other_id: str
    rel_key: str = ""  # the relationship's own id for keyed types, else ""


@runtime_checkable
class GraphStore(Protocol):
    """Storage of the graph. Implementations: EmbeddedStore (default), Neo4jStore."""

    name: str

    def init(self) -> None:
        """Create tables, constraints and indexes. Idempotent. Call once before use."""

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailableError when the store cannot answer."""

    def clear(self) -> None:
        """Delete every node and relationship (tests and full reloads)."""

    # -- writes ----------------------------------------------------------------
    def upsert_nodes(self, label: str, columns: Columns) -> int:
        """Insert or update nodes by ``id``; returns the number of rows applied."""

    def upsert_relationships(self, rel_type: str, columns: Columns) -> WriteResult:
        """Insert or update relationships; rows with an unknown endpoint are not written."""

    def write_scores(
        self,
        ids: Sequence[str],
        scores: Mapping[str, Sequence[float]],
        model_version: str,
        scored_at_ms: int,
    ) -> int:
        """Set score properties on existing users; returns how many were updated."""

    def bulk(self, rel_type: str, expected_rows: int) -> AbstractContextManager[None]:
        """Many writes of one relationship type follow (a file load). The store may
        defer index upkeep until the block ends; reads inside it stay correct."""

    # -- reads -----------------------------------------------------------------
    def missing_nodes(self, label: str, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that have no node of that label."""

    def get_nodes(self, label: str, ids: Sequence[str]) -> list[Node | None]:
        """Nodes in the order asked, None where a node does not exist."""

    def node_ids(self, label: str, after: str | None = None, limit: int = 100) -> list[str]:
        """Ids of a label in ascending order, starting after ``after`` (pagination)."""

    def adjacent(
        self,
        label: str,
        ids: Sequence[str],
        rel_types: Sequence[str],
        direction: Direction = "both",
        limit_per_node: int = 1000,
    ) -> list[Adjacency]:
        """Relationships of the given types at each node, sorted; at most
        ``limit_per_node`` per node, relationship type and direction, taking the
        smallest ``(other_id, rel_key)`` first."""

    def relationships(
        self,
        rel_type: str,
        ids: Sequence[str],
        direction: Literal["out", "in"] = "out",
        limit_per_node: int = 1000,
    ) -> list[Relationship]:
        """Relationships of one type with their properties, at each node in ``ids``
        (as source for "out", as target for "in"), sorted by (src, dst, key); at most
        ``limit_per_node`` per node. Properties that were never set are absent."""

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"nodes": {label: n}, "relationships": {type: n}}`` for every type."""

    def export_nodes(
        self, label: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        """Stream nodes in ascending id order as numpy arrays: ``id`` (object) and each
        property (float64 with NaN for numbers, timestamps and booleans; object with
        None for strings)."""

    def export_node_range(
        self, label: str, properties: Sequence[str], lo: str | None, hi: str | None,
        batch_size: int = 100_000,
    ) -> Iterator[dict[str, Any]]:
        """As ``export_nodes``, for the nodes with ``lo < id <= hi`` (no bound where
        None): one id-range partition of a label, for workers that each read one."""

    def export_relationships(
        self, rel_type: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        """Stream relationships as numpy arrays ``src``, ``dst``, ``id`` and properties,
        ordered by (src, dst, id)."""

    def export_relationship_columns(
        self, rel_type: str, columns: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        """As ``export_relationships``, with only the named columns (any of ``src``,
        ``dst``, ``id`` and the type's properties): a whole-graph export that needs two
        of them reads a fraction of the values."""


# One link as a store answers it in the database: (from user, relationship type, item
# label ("User" for direct links), item id (the other user's for direct links), other
# user, relationships between the pair (1 for shared items)).
LinkRow = tuple[str, str, str, str, str, int]


@runtime_checkable
class LinkedInDatabase(Protocol):
    """A store that answers linked accounts in one statement on its server (the Neo4j
    store), instead of a walk over ``adjacent``. graph.queries defines the answer;
    ``linked_accounts_from_primitives`` is the reference it must equal."""

    def linked_levels(
        self, user_id: str, depth: int, via: Sequence[str], max_item_users: int,
        max_items: int, max_direct: int,
    ) -> list[list[tuple[str, list[LinkRow]]]]:
        """Per level (1 to ``depth``), the users first reached there, each with its
        links from the previous level; raises NotFoundError for an unknown user."""


def get_node(store: GraphStore, label: str, id_: str) -> Node | None:
    """One node by its business key, or None."""
    return store.get_nodes(label, [id_])[0]
