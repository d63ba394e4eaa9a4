"""The Neo4j store: the GraphStore protocol over Bolt with the official ``neo4j`` driver.

The driver is built once, by ``connect``, and passed in; the store never builds one.
Every statement comes from ``graph.cypher``; values travel only as parameters. Writes
are ``UNWIND $rows`` batches, all chunks of one call in one transaction, retried on
transient and constraint errors (a concurrent ``MERGE`` of the same key fails on some
servers where Neo4j would wait for the lock).

Upserts take one of two forms (``graph.cypher`` explains both): ``merge`` on Neo4j and
``split`` (look up, CREATE the new rows, SET the existing ones) on ArcadeDB, where MERGE
and ``SET +=`` are slow. The form follows the server's Bolt agent string, read once.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, TypeVar

import neo4j
import numpy as np
from neo4j import exceptions as neo4j_errors

from graph import cypher
from graph.batch import (
    NormalisedBatch,
    normalise_nodes,
    normalise_relationships,
    positions_of,
)
from graph.errors import (
    GraphError,
    InvalidBatchError,
    NotFoundError,
    RiskGraphError,
    StoreUnavailableError,
    StoreWriteError,
)
from graph.model import (
    NODE_TYPES,
    REL_TYPES,
    SCORE_PROPERTIES,
    Node,
    PropType,
    Relationship,
    RelType,
    node_type,
    rel_type,
)
from graph.store import Adjacency, Columns, Direction, LinkRow, WriteResult

T = TypeVar("T")
WriteForm = Literal["merge", "split"]

CONSTRAINT_ERROR = "Neo.ClientError.Schema.ConstraintValidationFailed"
DATABASE_NOT_FOUND = "Neo.ClientError.Database.DatabaseNotFound"
BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
# Score columns a caller may pass to write_scores; the version and time come apart.
SCORE_COLUMNS = tuple(k for k, v in SCORE_PROPERTIES.items() if v is PropType.FLOAT)


def write_form(agent: str) -> WriteForm:
    """The upsert form for a server, from the agent string it reports over Bolt:
    ``split`` for ArcadeDB (``Neo4j/5.26.0 compatible (ArcadeDB 26.10.2)``), ``merge`` for
    Neo4j and anything else."""
    return "split" if "arcadedb" in agent.lower() else "merge"


def connect(uri: str, user: str, password: str, retry_s: float = 10.0) -> neo4j.Driver:
    """A driver for the server at ``uri``. Building it does no I/O: the first query
    (``Neo4jStore.init`` or ``ping``) is where an unreachable server shows.

    ``retry_s`` bounds how long a transaction is retried while the server cannot be
    reached before StoreUnavailableError is raised: long for a load, which should ride
    out a restart, short for the API, which must answer within its request time limit.
    The driver reconnects by itself once the server is back."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in BOLT_SCHEMES:
        raise StoreUnavailableError(
            f"cannot use {uri!r} as a Neo4j address; give a Bolt URI such as "
            f"bolt://127.0.0.1:7687 (schemes: {', '.join(BOLT_SCHEMES)})"
        )
    try:
        return neo4j.GraphDatabase.driver(
            uri,
            auth=(user, password),
            connection_timeout=10.0,
            max_transaction_retry_time=retry_s,
        )
    except (ValueError, neo4j_errors.ConfigurationError) as exc:
        raise StoreUnavailableError(
            f"cannot use {uri!r} as a Neo4j address ({exc}); "
            "give a URI such as bolt://127.0.0.1:7687 or neo4j://host:7687"
        ) from None


class Neo4jStore:
    """GraphStore on a Neo4j 5 (or Bolt-compatible) server.

    ``driver`` comes from ``connect``; with ``owns_driver`` the store closes it on
    ``close()``. ``batch_size`` is the number of rows per ``UNWIND`` statement.
    ``form`` is the upsert form (see ``write_form``); ``"auto"`` asks the server on the
    first write. ``export_fetch_size`` is how many records a whole-table export pulls
    per round trip (the driver's default is 1,000). A batch of fewer than
    ``split_min_rows`` rows is always merged: the split form sends two statements,
    which costs more than it saves on a single row (on ArcadeDB, one row takes about
    1.2 ms merged and 1.6 ms split).
    """

    name = "neo4j"

    def __init__(
        self,
        driver: neo4j.Driver,
        database: str = "neo4j",
        owns_driver: bool = False,
        batch_size: int = 5000,
        max_attempts: int = 5,
        form: Literal["auto", "merge", "split"] = "auto",
        split_min_rows: int = 2,
        export_fetch_size: int = 20_000,
    ) -> None:
        if batch_size < 1:
            raise InvalidBatchError(f"batch_size must be at least 1, got {batch_size}")
        if max_attempts < 1:
            raise InvalidBatchError(f"max_attempts must be at least 1, got {max_attempts}")
        if form not in ("auto", "merge", "split"):
            raise InvalidBatchError(f"form must be 'auto', 'merge' or 'split', got {form!r}")
        if split_min_rows < 1:
            raise InvalidBatchError(f"split_min_rows must be at least 1, got {split_min_rows}")
        self._driver = driver
        self.database = database
        self.owns_driver = owns_driver
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self._form: WriteForm | None = None if form == "auto" else form
        self.split_min_rows = split_min_rows
        self.export_fetch_size = export_fetch_size
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(database={self.database!r}, "
            f"batch_size={self.batch_size}, form={self._form or 'auto'!r}, "
            f"owns_driver={self.owns_driver})"
        )

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------------------
    def init(self) -> None:
        """Create the constraints and indexes the server lacks. One read of their names
        (two statements) when all exist, as they do after the first run: every
        command opens the store, and sending the 11 DDL statements each time cost more
        than many commands' own work."""
        wanted = cypher.schema_statements()

        def names(tx: neo4j.ManagedTransaction) -> set[str]:
            found: set[str] = set()
            for statement in (cypher.SCHEMA_NAMES_CONSTRAINTS, cypher.SCHEMA_NAMES_INDEXES):
                found.update(_single(tx.run(statement), "names", []))
            return found

        existing = self._read("reading constraints and indexes", names)
        missing = [s for name, s in wanted.items() if name not in existing]
        if not missing:
            return
        with (self._translated("creating constraints and indexes", GraphError),
              self._session() as session):
            for statement in missing:
                session.run(statement).consume()

    def close(self) -> None:
        if self.owns_driver and not self._closed:
            self._driver.close()
        self._closed = True

    def ping(self) -> None:
        with (self._translated("answering a ping", StoreUnavailableError),
              self._session(neo4j.READ_ACCESS) as session):
            session.run(cypher.PING).consume()

    def clear(self) -> None:
        # In bounded transactions, so a large graph does not need one huge transaction.
        for t in REL_TYPES:
            self._delete_all(cypher.DELETE_RELATIONSHIPS[t], f"deleting {t} relationships")
        for label in NODE_TYPES:
            self._delete_all(cypher.DELETE_NODES[label], f"deleting {label} nodes")

    def _delete_all(self, statement: str, doing: str) -> None:
        def step(tx: neo4j.ManagedTransaction) -> int:
            return _count(tx.run(statement, limit=self.batch_size))

        while self._write(doing, step) > 0:
            pass

    # -- writes --------------------------------------------------------------------------
    def upsert_nodes(self, label: str, columns: Columns) -> int:
        batch = normalise_nodes(label, columns)
        if not batch:
            return 0
        doing = f"upserting {label} nodes"
        ids = [key[0] for key in batch.keys]
        if self._write_form(len(batch)) == "merge":
            rows = [{"id": i, "props": _given(batch, values)}
                    for i, values in zip(ids, batch.values)]
            self._write_rows(cypher.UPSERT_NODES[label], rows, doing)
            return len(rows)

        lists = _list_rows([ids], batch, node_type(label).properties)

        def work(tx: neo4j.ManagedTransaction) -> None:
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start:start + self.batch_size]
                found: list[str] = _single(tx.run(cypher.EXISTING_IDS[label], ids=chunk),
                                           "ids", [])
                existing = set(found)
                new, old = [], []
                for j in range(start, start + len(chunk)):
                    if ids[j] not in existing:
                        new.append(lists[j])
                    elif props := _given(batch, batch.values[j]):
                        old.append({"id": ids[j], "props": props})
                if new:
                    tx.run(cypher.CREATE_NODES[label], rows=new).consume()
                if old:
                    tx.run(cypher.UPDATE_NODES[label], rows=old).consume()

        self._write(doing, work)
        return len(batch)

    def upsert_relationships(self, rel_type: str, columns: Columns) -> WriteResult:
        rt = _rel(rel_type)
        batch = normalise_relationships(rel_type, columns)
        if not batch:
            return WriteResult(0, [])
        doing = f"upserting {rel_type} relationships"
        if self._write_form(len(batch)) == "merge":
            written = self._merge_relationships(rt, batch, doing)
        else:
            written = self._split_relationships(rt, batch, doing)
        unwritten = {batch.keys[i] for i in range(len(batch)) if i not in written}
        return WriteResult(len(written), _positions(columns, unwritten))

    def _merge_relationships(self, rt: RelType, batch: NormalisedBatch, doing: str) -> set[int]:
        rows = []
        for i, ((src, dst, key), values) in enumerate(zip(batch.keys, batch.values)):
            row: dict[str, Any] = {"i": i, "src": src, "dst": dst,
                                   "props": _given(batch, values)}
            if rt.keyed:
                row["id"] = key
            rows.append(row)
        statement = cypher.UPSERT_RELATIONSHIPS[rt.type]

        def work(tx: neo4j.ManagedTransaction) -> set[int]:
            written: set[int] = set()
            for chunk in _chunks(rows, self.batch_size):
                written.update(_single(tx.run(statement, rows=chunk), "written", []))
            return written

        return self._write(doing, work)

    def _split_relationships(self, rt: RelType, batch: NormalisedBatch, doing: str) -> set[int]:
        """Look up which rows exist already, then CREATE the others and SET the existing
        rows that bring values. CREATE matches both endpoints, so a row with a missing
        endpoint writes nothing; only when CREATE writes fewer rows than it was sent are
        the endpoints looked up, to tell which rows those were."""
        keys = batch.keys
        lookup = cypher.EXISTING_RELATIONSHIPS[rt.type]
        lookups = _relationship_lookups(rt, keys)
        heads = [[k[0] for k in keys], [k[1] for k in keys]]
        if rt.keyed:
            heads.append([k[2] for k in keys])
        rows = _list_rows(heads, batch, rt.properties)

        def work(tx: neo4j.ManagedTransaction) -> set[int]:
            existing: set[tuple[str, ...]] = set()
            for chunk in _chunks(lookups, self.batch_size):
                params = {"rows" if rt.keyed else "ids": chunk}
                for rec in tx.run(lookup, params):
                    existing.update((rec["src"], dst, key) for dst, key in rec["rels"])
            written: set[int] = set()
            new: list[int] = []
            old: list[Any] = []
            for i, key in enumerate(keys):
                if key not in existing:
                    new.append(i)
                elif props := _given(batch, batch.values[i]):
                    old.append({"i": i, "src": key[0], "dst": key[1], "id": key[2],
                                "props": props})
                else:
                    written.add(i)  # there already, and nothing to change
            for positions in _chunks(new, self.batch_size):
                statement = cypher.CREATE_RELATIONSHIPS[rt.type]
                created = _count(tx.run(statement, rows=[rows[i] for i in positions]))
                if created < len(positions):
                    positions = self._with_endpoints(tx, rt, [keys[i] for i in positions],
                                                     positions)
                written.update(positions)
            for chunk_rows in _chunks(old, self.batch_size):
                statement = cypher.UPDATE_RELATIONSHIPS[rt.type]
                written.update(_single(tx.run(statement, rows=chunk_rows), "written", []))
            return written

        return self._write(doing, work)

    @staticmethod
    def _with_endpoints(
        tx: neo4j.ManagedTransaction, rt: RelType, keys: list[tuple[str, ...]],
        positions: list[int],
    ) -> list[int]:
        """The positions whose rows have both endpoints in the store."""
        found: dict[str, set[str]] = {
            end: set(_single(tx.run(cypher.EXISTING_IDS[label], ids=_unique(ids)), "ids", []))
            for end, label, ids in (("src", rt.src, [k[0] for k in keys]),
                                    ("dst", rt.dst, [k[1] for k in keys]))
        }
        return [p for p, k in zip(positions, keys)
                if k[0] in found["src"] and k[1] in found["dst"]]

    def write_scores(
        self,
        ids: Sequence[str],
        scores: Mapping[str, Sequence[float]],
        model_version: str,
        scored_at_ms: int,
    ) -> int:
        unknown = [k for k in scores if k not in SCORE_COLUMNS]
        if unknown:
            raise InvalidBatchError(
                f"{unknown} are not scores; write_scores takes {list(SCORE_COLUMNS)}"
            )
        if not model_version:
            raise InvalidBatchError("model_version is empty; give the version of the model")
        n = len(ids)
        batch = normalise_nodes(
            "User",
            {
                "id": ids,
                **scores,
                "model_version": [model_version] * n,
                "scored_at": [scored_at_ms] * n,
            },
        )
        rows = [{"id": key[0], "props": _given(batch, values)}
                for key, values in zip(batch.keys, batch.values)]
        if not rows:
            return 0
        return self._write_rows(cypher.WRITE_SCORES, rows, "writing scores")

    def _write_rows(self, statement: str, rows: list[dict[str, Any]], doing: str) -> int:
        def work(tx: neo4j.ManagedTransaction) -> int:
            return sum(
                _count(tx.run(statement, rows=chunk)) for chunk in _chunks(rows, self.batch_size)
            )

        return self._write(doing, work)

    # -- reads ---------------------------------------------------------------------------
    def bulk(self, rel_type: str, expected_rows: int) -> AbstractContextManager[None]:
        """Neo4j keeps its indexes online; nothing to defer."""
        return contextlib.nullcontext()

    def missing_nodes(self, label: str, ids: Sequence[str]) -> set[str]:
        node_type(label)
        wanted = _unique(ids)
        statement = cypher.EXISTING_IDS[label]

        def work(tx: neo4j.ManagedTransaction) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(wanted, self.batch_size):
                found.update(_single(tx.run(statement, ids=chunk), "ids", []))
            return found

        existing = self._read(f"looking up {label} ids", work) if wanted else set()
        return set(wanted) - existing

    def get_nodes(self, label: str, ids: Sequence[str]) -> list[Node | None]:
        node_type(label)
        asked = [str(i) for i in ids]
        wanted = _unique(asked)
        statement = cypher.GET_NODES[label]

        def work(tx: neo4j.ManagedTransaction) -> dict[str, Node]:
            found: dict[str, Node] = {}
            for chunk in _chunks(wanted, self.batch_size):
                for rec in tx.run(statement, ids=chunk):
                    found[rec["id"]] = Node(label, rec["id"], _without_id(rec["props"]))
            return found

        found = self._read(f"reading {label} nodes", work) if wanted else {}
        return [found.get(i) for i in asked]

    def node_ids(self, label: str, after: str | None = None, limit: int = 100) -> list[str]:
        node_type(label)
        if limit < 1:
            return []
        statement = cypher.NODE_IDS[label]

        def work(tx: neo4j.ManagedTransaction) -> list[str]:
            return [rec["id"] for rec in tx.run(statement, after=after or "", limit=limit)]

        return self._read(f"listing {label} ids", work)

    def linked_levels(
        self, user_id: str, depth: int, via: Sequence[str], max_item_users: int,
        max_items: int, max_direct: int,
    ) -> list[list[tuple[str, list[LinkRow]]]]:
        """Linked accounts in one statement and one read transaction (see
        graph.cypher.LINKED_ACCOUNTS)."""
        if not 1 <= depth <= len(cypher.LINKED_ACCOUNTS):
            raise InvalidBatchError(f"depth must be between 1 and 4, got {depth}")
        statement = cypher.LINKED_ACCOUNTS[depth - 1]
        params = {"id": user_id, "via": list(via), "max_item_users": max_item_users,
                  "max_items": max_items, "max_direct": max_direct}

        def work(tx: neo4j.ManagedTransaction) -> Any:
            record = tx.run(statement, params).single()
            return None if record is None else record["levels"]

        levels = self._read("finding linked accounts", work)
        if levels is None:
            raise NotFoundError(f"no user with id {user_id!r}")
        return [[(user, [(a, b, c, d, e, int(n)) for a, b, c, d, e, n in links])
                 for user, links in level] for level in levels]

    def adjacent(
        self,
        label: str,
        ids: Sequence[str],
        rel_types: Sequence[str],
        direction: Direction = "both",
        limit_per_node: int = 1000,
    ) -> list[Adjacency]:
        node_type(label)
        types = [_rel(t) for t in dict.fromkeys(rel_types)]
        wanted = _unique(ids)
        # Only the types and directions that can end at this label.
        plan = [
            {"type": rt.type, "dir": d}
            for rt in types
            for d in _directions(direction)
            if (rt.src if d == "out" else rt.dst) == label
        ]
        if not wanted or not plan or limit_per_node < 1:
            return []
        statement = cypher.ADJACENT[label]

        def work(tx: neo4j.ManagedTransaction) -> list[Adjacency]:
            out = []
            for chunk in _chunks(wanted, self.batch_size):
                for rec in tx.run(statement, ids=chunk, plan=plan, limit=limit_per_node):
                    rt = REL_TYPES[rec["type"]]
                    d: Literal["out", "in"] = "out" if rec["dir"] == "out" else "in"
                    other_label = rt.dst if d == "out" else rt.src
                    out.append(Adjacency(rec["id"], rt.type, d, other_label, rec["other"],
                                         rec["key"]))
            return out

        found = self._read(f"reading relationships of {label} nodes", work)
        found.sort()
        return found

    def relationships(
        self,
        rel_type: str,
        ids: Sequence[str],
        direction: Literal["out", "in"] = "out",
        limit_per_node: int = 1000,
    ) -> list[Relationship]:
        rt = _rel(rel_type)
        if direction not in ("out", "in"):
            raise InvalidBatchError(f"direction must be 'out' or 'in', got {direction!r}")
        wanted = _unique(ids)
        if not wanted or limit_per_node < 1:
            return []
        statement = (cypher.RELATIONSHIPS_OUT if direction == "out" else cypher.RELATIONSHIPS_IN)[
            rel_type
        ]

        def work(tx: neo4j.ManagedTransaction) -> list[Relationship]:
            out = []
            for chunk in _chunks(wanted, self.batch_size):
                for rec in tx.run(statement, ids=chunk, limit=limit_per_node):
                    src, dst = (
                        (rec["id"], rec["other"]) if direction == "out"
                        else (rec["other"], rec["id"])
                    )
                    out.append(Relationship(rt.type, src, dst, rec["key"],
                                            _without_id(rec["props"])))
            return out

        found = self._read(f"reading {rel_type} relationships", work)
        found.sort(key=lambda r: (r.src, r.dst, r.key))
        return found

    def counts(self) -> dict[str, dict[str, int]]:
        def work(tx: neo4j.ManagedTransaction) -> dict[str, dict[str, int]]:
            return {
                "nodes": {lb: _count(tx.run(cypher.COUNT_NODES[lb])) for lb in NODE_TYPES},
                "relationships": {
                    t: _count(tx.run(cypher.COUNT_RELATIONSHIPS[t])) for t in REL_TYPES
                },
            }

        return self._read("counting nodes and relationships", work)

    def export_nodes(
        self, label: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        return self.export_node_range(label, properties, None, None, batch_size)

    def export_node_range(
        self, label: str, properties: Sequence[str], lo: str | None, hi: str | None,
        batch_size: int = 100_000,
    ) -> Iterator[dict[str, Any]]:
        kinds = _property_kinds(label, node_type(label).properties, properties)
        _check_page_size(batch_size)
        return self._export_nodes(label, kinds, lo, hi, batch_size)

    def _export_nodes(
        self, label: str, kinds: dict[str, PropType], lo: str | None, hi: str | None,
        batch_size: int,
    ) -> Iterator[dict[str, Any]]:
        params = {"lo": lo or "", "hi": hi, "props": list(kinds)}
        for records in self._stream(f"exporting {label} nodes", cypher.EXPORT_NODES[label],
                                    params, batch_size):
            chunk: dict[str, Any] = {"id": _objects([rec["id"] for rec in records])}
            chunk.update(_columns(kinds, [rec["vals"] for rec in records]))
            yield chunk

    def export_relationships(
        self, rel_type: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        rt = _rel(rel_type)
        kinds = _property_kinds(rel_type, rt.properties, properties)
        _check_page_size(batch_size)
        return self._export_relationships(rt, kinds, batch_size)

    def export_relationship_columns(
        self, rel_type: str, columns: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        ends = ("src", "dst", "id")
        if not columns:
            raise InvalidBatchError(f"no columns asked of {rel_type}; ask for src, dst or id")
        props = [c for c in columns if c not in ends]
        chunks = self.export_relationships(rel_type, props, batch_size)
        return ({c: chunk[c] for c in columns} for chunk in chunks)

    def _export_relationships(
        self, rt: RelType, kinds: dict[str, PropType], batch_size: int
    ) -> Iterator[dict[str, Any]]:
        statement = cypher.EXPORT_RELATIONSHIPS[rt.type]
        for records in self._stream(f"exporting {rt.type} relationships", statement,
                                    {"props": list(kinds)}, batch_size):
            chunk: dict[str, Any] = {
                "src": _objects([rec["src"] for rec in records]),
                "dst": _objects([rec["dst"] for rec in records]),
                "id": _objects([rec["key"] for rec in records]),
            }
            chunk.update(_columns(kinds, [rec["vals"] for rec in records]))
            yield chunk

    def _stream(self, doing: str, statement: str, params: dict[str, Any], batch_size: int
                ) -> Iterator[list[neo4j.Record]]:
        """A statement's records, ``batch_size`` at a time, from one read transaction:
        the table is read once, as of that transaction (what Neo4j's read-committed
        isolation gives one statement), and never re-sorted per page. The driver pulls
        ``export_fetch_size`` records per round trip. An export is not retried: a
        server restart in the middle of it raises, and the export is run again."""
        with (self._translated(doing, GraphError),
              self._driver.session(database=self.database,
                                   default_access_mode=neo4j.READ_ACCESS,
                                   fetch_size=self.export_fetch_size) as session,
              session.begin_transaction() as tx):
            page: list[neo4j.Record] = []
            for record in tx.run(statement, params):
                page.append(record)
                if len(page) >= batch_size:
                    yield page
                    page = []
            if page:
                yield page

    # -- transactions and errors ------------------------------------------------------------
    def _write_form(self, rows: int) -> WriteForm:
        """The upsert form for ``rows`` rows on this server, asked of it once (see
        ``write_form``)."""
        if rows < self.split_min_rows:
            return "merge"
        if self._form is None:
            with (self._translated("asking the server what it is", StoreUnavailableError),
                  self._session(neo4j.READ_ACCESS) as session):
                agent = session.run(cypher.PING).consume().server.agent
            self._form = write_form(agent or "")
        return self._form

    def _session(self, access: str = neo4j.WRITE_ACCESS) -> neo4j.Session:
        return self._driver.session(database=self.database, default_access_mode=access)

    def _read(self, doing: str, work: Callable[[neo4j.ManagedTransaction], T]) -> T:
        with (self._translated(doing, GraphError),
              self._session(neo4j.READ_ACCESS) as session):
            return session.execute_read(work)

    def _write(self, doing: str, work: Callable[[neo4j.ManagedTransaction], T]) -> T:
        """Run ``work`` in one write transaction. The driver retries it, with backoff, on
        transient errors and a lost server (for ``connect(retry_s=...)``); this retries
        only what the driver does not: a ConstraintError from two writers creating the
        same key at once (a MERGE race), which succeeds as an update when run again."""
        last: neo4j_errors.ConstraintError | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
            try:
                with (self._translated(doing, StoreWriteError, retryable=True),
                      self._session() as session):
                    return session.execute_write(work)
            except neo4j_errors.ConstraintError as exc:
                last = exc
        code = getattr(last, "code", None)
        raise StoreWriteError(
            f"{doing} failed {self.max_attempts} times ({code}: {_message(last)}); "
            "nothing of this batch was written. Retry it later, with fewer writers at once."
        ) from last

    @contextmanager
    def _translated(
        self, doing: str, failure: type[GraphError], retryable: bool = False
    ) -> Iterator[None]:
        """Driver errors as RiskGraph errors, each saying what to do."""
        where = f"the Neo4j server (database {self.database!r})"
        try:
            yield
        except RiskGraphError:
            raise
        except neo4j_errors.ConstraintError:
            if retryable:
                raise
            raise failure(
                f"{where} was busy while {doing}; retry in a moment"
            ) from None
        except neo4j_errors.TransientError:
            # what the driver's own retry (connect's retry_s) did not get through
            raise failure(
                f"{where} was busy while {doing}; retry in a moment"
            ) from None
        except neo4j_errors.AuthError as exc:
            raise StoreUnavailableError(
                f"{where} refused the user and password while {doing} ({exc.code}); "
                "check the configured Neo4j user and password"
            ) from exc
        except (
            neo4j_errors.ServiceUnavailable,
            neo4j_errors.SessionExpired,
            neo4j_errors.IncompleteCommit,
            OSError,
        ) as exc:
            raise StoreUnavailableError(
                f"{where} cannot be reached while {doing} ({_message(exc)}); "
                "start the server or fix the URI, then retry"
            ) from exc
        except neo4j_errors.Neo4jError as exc:
            if exc.code == DATABASE_NOT_FOUND:
                raise StoreUnavailableError(
                    f"{where} does not exist; create the database on the server or "
                    "configure one that exists"
                ) from exc
            raise failure(
                f"{where} rejected a statement while {doing} ({exc.code}: {_message(exc)}); "
                "check that the server runs Neo4j 5.23 or later, and report it if it does"
            ) from exc
        except neo4j_errors.DriverError as exc:
            raise failure(
                f"the Neo4j driver failed while {doing} ({_message(exc)}); "
                "check the driver configuration and retry"
            ) from exc


# -- helpers ------------------------------------------------------------------------------
def _rel(type_: str) -> RelType:
    return rel_type(type_)


def _directions(direction: str) -> tuple[Literal["out", "in"], ...]:
    if direction == "both":
        return ("out", "in")
    if direction == "out":
        return ("out",)
    if direction == "in":
        return ("in",)
    raise InvalidBatchError(f"direction must be 'out', 'in' or 'both', got {direction!r}")


def _relationship_lookups(rt: RelType, keys: list[tuple[str, ...]]) -> list[Any]:
    """The parameters of EXISTING_RELATIONSHIPS for ``keys``: [src, [id, ...]] per source
    for a keyed type, else the distinct sources."""
    if rt.keyed:
        wanted: dict[str, list[str]] = {}
        for key in keys:
            wanted.setdefault(key[0], []).append(key[2])
        return [[src, ids] for src, ids in wanted.items()]
    return _unique(k[0] for k in keys)


def _unique(ids: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in ids))


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _positions(columns: Columns, keys: set[tuple[str, ...]]) -> list[int]:
    """Positions in the batch as given (before duplicate keys were merged) of the rows
    with these keys."""
    if not keys:
        return []
    n = len(columns["src"])
    ids = columns["id"] if "id" in columns else [""] * n
    original = [(str(s), str(d), str(k)) for s, d, k in zip(columns["src"], columns["dst"], ids)]
    return sorted(p for k, ps in positions_of(original).items() if k in keys for p in ps)


def _list_rows(
    heads: list[list[Any]], batch: NormalisedBatch, schema: Mapping[str, PropType]
) -> list[list[Any]]:
    """One list per row of ``batch`` for the split-form CREATE statements: its ``heads``
    entries, then the type's properties in ``schema`` (graph.model) order, None where no
    value was given. Properties past the last column given are left off: an index past
    the end of a list reads as null in Cypher. Built column-wise, with zip, because this
    runs for every row of every load."""
    order = {name: j for j, name in enumerate(schema)}
    slots = [order[name] for name in batch.props]
    columns: list[Sequence[Any]] = [[None] * len(batch)] * (max(slots, default=-1) + 1)
    for slot, column in zip(slots, zip(*batch.values)):
        columns[slot] = column
    return list(map(list, zip(*heads, *columns)))


def _single(result: neo4j.Result, key: str, default: T) -> T:
    """The value under ``key`` of a statement's one record, or ``default`` if none."""
    record = result.single()
    return record[key] if record is not None else default


def _count(result: neo4j.Result) -> int:
    record = result.single()
    return int(record["n"]) if record is not None else 0


def _given(batch: NormalisedBatch, values: tuple[Any, ...]) -> dict[str, Any]:
    """The values of one row that were given; None must never reach ``SET +=``, where
    it would erase the stored property."""
    return {name: v for name, v in zip(batch.props, values) if v is not None}


def _without_id(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "id"}


def _message(exc: BaseException | None) -> str:
    if exc is None:
        return "no error recorded"
    text = getattr(exc, "message", None) or str(exc)
    return str(text).splitlines()[0][:300] if text else type(exc).__name__


def _property_kinds(
    owner: str, schema: Mapping[str, PropType], properties: Sequence[str]
) -> dict[str, PropType]:
    unknown = [p for p in properties if p not in schema]
    if unknown:
        raise InvalidBatchError(
            f"{owner} has no properties {unknown}; known: {sorted(schema)}"
        )
    return {p: schema[p] for p in dict.fromkeys(properties)}


def _check_page_size(batch_size: int) -> None:
    if batch_size < 1:
        raise InvalidBatchError(f"batch_size must be at least 1, got {batch_size}")


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _columns(kinds: dict[str, PropType], rows: list[list[Any]]) -> dict[str, np.ndarray]:
    """Property columns as numpy arrays: float64 with NaN for numbers, timestamps and
    booleans; object with None for strings."""
    out: dict[str, np.ndarray] = {}
    for j, (name, kind) in enumerate(kinds.items()):
        values = [row[j] for row in rows]
        if kind is PropType.STR:
            out[name] = _objects(values)
        else:
            out[name] = np.array(
                [np.nan if v is None else float(v) for v in values], dtype=np.float64
            )
    return out
