"""The embedded store: the default, no server, persisted in a data directory.

One SQLite database (``graph.sqlite``, write-ahead log): a table per node label keyed by
``id``, a table per relationship type keyed by ``(src, dst, key)`` with a reverse index
on ``(dst, src, key)``, properties as typed columns generated from graph.model. Every
upsert is one transaction: a crash leaves the previous state readable, and ``load`` in
one process is seen by ``linked`` in the next. Global algorithms (rings) export arrays
and run on scipy. Why SQLite and not an in-memory graph: docs/scale.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from graph import linkindex
from graph.batch import NormalisedBatch, gc_paused, normalise_nodes, normalise_relationships
from graph.errors import InvalidBatchError, StoreUnavailableError, StoreWriteError
from graph.model import (
    NODE_TYPES,
    REL_TYPES,
    SCORE_PROPERTIES,
    SHARED_ITEM_RELS,
    USER_USER_RELS,
    Node,
    PropType,
    Relationship,
    node_type,
    rel_type,
)
from graph.sqlnames import LINK_GENERATION_TABLE, node_table, quote, rel_table
from graph.store import Adjacency, Columns, Direction, WriteResult

log = logging.getLogger(__name__)

_SQL_TYPE = {
    PropType.STR: "TEXT",
    PropType.INT: "INTEGER",
    PropType.TS: "INTEGER",
    PropType.BOOL: "INTEGER",
    PropType.FLOAT: "REAL",
}
_CHUNK = 20_000  # ids per IN (...) list
_UNION_MAX = 128  # subqueries per compound statement (SQLite allows 500)
_BULK_MIN_ROWS = 500_000  # below this, index upkeep during a load is cheap enough
_LINKING = frozenset(SHARED_ITEM_RELS + USER_USER_RELS)
_BUMP_SQL = f'UPDATE "{LINK_GENERATION_TABLE}" SET value = value + 1 WHERE id = 0'


@functools.lru_cache(maxsize=512)
def _bounded_sql(type_: str, end: str, width: int) -> str:
    other = "dst" if end == "src" else "src"
    one = (
        f"SELECT * FROM (SELECT {end}, {other}, key FROM {_rtable(type_)} "
        f"WHERE {end} = ? ORDER BY {other}, key LIMIT ?)"
    )
    return " UNION ALL ".join([one] * width)


_q, _ntable, _rtable = quote, node_table, rel_table


# SQLite result codes (and their extended forms) that mean the file is damaged or
# unreadable, not that the request was wrong.
_DAMAGE_ERRORS = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR", "SQLITE_CANTOPEN")


class EmbeddedStore:
    """GraphStore on an embedded SQLite database in ``path`` (a directory)."""

    name = "embedded"

    def __init__(self, path: str | Path, cache_mb: int = 256) -> None:
        self.path = Path(path)
        self.cache_mb = cache_mb
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        self._damaged = False  # a read found the file damaged (unavailable_from)

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r})"

    def link_index(self) -> linkindex.LinkIndex | None:
        """The store's link index when one exists and matches the data, else None: the
        optional capability graph/queries.py asks for (graph/linkindex.py)."""
        return linkindex.current(self)

    # -- connections -------------------------------------------------------------
    @property
    def db_file(self) -> Path:
        return self.path / "graph.sqlite"

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if not self._ready:
            raise StoreUnavailableError(
                f"embedded store at {self.path} is not open; call init() first"
            )
        try:
            conn = sqlite3.connect(
                self.db_file, timeout=60, isolation_level=None, check_same_thread=False,
                cached_statements=512,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size=-{int(self.cache_mb) * 1024}")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA mmap_size=1073741824")
            # Fewer, larger checkpoints: a page rewritten by many batches is copied once.
            conn.execute("PRAGMA wal_autocheckpoint=50000")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(
                f"cannot open the embedded store at {self.db_file}: {exc}; "
                "check RISKGRAPH_HOME points to a writable directory"
            ) from exc
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def init(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create data directory {self.path}: {exc}"
            ) from exc
        self._ready = True
        conn = self._conn()
        with self._write(conn):
            for label, nt in NODE_TYPES.items():
                cols = "".join(f", {_q(p)} {_SQL_TYPE[t]}" for p, t in nt.properties.items())
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_ntable(label)} "
                    f"(id TEXT PRIMARY KEY NOT NULL{cols}) WITHOUT ROWID"
                )
                self._add_missing_columns(conn, "n_" + label, nt.properties)
            for t, rt in REL_TYPES.items():
                cols = "".join(f", {_q(p)} {_SQL_TYPE[k]}" for p, k in rt.properties.items())
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_rtable(t)} (src TEXT NOT NULL, "
                    f"dst TEXT NOT NULL, key TEXT NOT NULL{cols}, "
                    "PRIMARY KEY (src, dst, key)) WITHOUT ROWID"
                )
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {_q('ri_' + t)} ON {_rtable(t)} (dst, src, key)"
                )
                self._add_missing_columns(conn, "r_" + t, rt.properties)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_q(LINK_GENERATION_TABLE)} (id INTEGER PRIMARY "
                "KEY CHECK (id = 0), value INTEGER NOT NULL, token TEXT NOT NULL)"
            )
            conn.execute(
                f"INSERT OR IGNORE INTO {_q(LINK_GENERATION_TABLE)} VALUES (0, 0, ?)",
                (uuid.uuid4().hex,),
            )
            # Per-row triggers kept the counter in stores of an earlier version; the
            # write path raises it once per transaction instead.
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'lg\\_%' "
                "ESCAPE '\\'"
            ).fetchall():
                conn.execute(f"DROP TRIGGER IF EXISTS {_q(name)}")

    @staticmethod
    def _add_missing_columns(
        conn: sqlite3.Connection, table: str, props: Mapping[str, PropType]
    ) -> None:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({_q(table)})")}
        for p, t in props.items():
            if p not in have:
                conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(p)} {_SQL_TYPE[t]}")

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._conns.clear()
        self._local = threading.local()
        self._ready = False

    def ping(self) -> None:
        """Raise StoreUnavailableError unless the store answers and its file looks sound:
        the file's header, the schema, and, after a read found the file damaged, a
        check of the whole file (so that a repaired file is ready again)."""
        try:
            with open(self.db_file, "rb") as f:
                header = f.read(16)
            if header != b"SQLite format 3\x00":
                raise StoreUnavailableError(
                    f"embedded store file {self.db_file} is damaged (its header is not "
                    "SQLite's); restore it from a backup or load the data again")
            conn = self._conn()
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if self._damaged:
                found = conn.execute("PRAGMA quick_check(1)").fetchone()
                if not found or found[0] != "ok":
                    raise StoreUnavailableError(
                        f"embedded store file {self.db_file} is damaged ({found}); restore "
                        "it from a backup or load the data again")
                self._damaged = False
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailableError(
                f"embedded store at {self.path} does not answer: {exc}"
            ) from exc

    def unavailable_from(self, exc: BaseException) -> StoreUnavailableError | None:
        """The StoreUnavailableError for an error that says the store's file is damaged
        or cannot be read (corrupt, not a database, an I/O error), else None. Such an
        error also marks the store not ready until ``ping`` finds the file sound."""
        if not isinstance(exc, sqlite3.DatabaseError):
            return None
        name = str(getattr(exc, "sqlite_errorname", ""))
        if not name.startswith(_DAMAGE_ERRORS):
            return None
        self._damaged = True
        return StoreUnavailableError(
            f"embedded store file {self.db_file} cannot be read ({name}); restore it from a "
            "backup or load the data again")

    class _write:
        """One IMMEDIATE transaction: all of it or none of it."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreWriteError(f"cannot start a write: {exc}") from exc
            return self.conn

        def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
            if et is None:
                try:
                    self.conn.execute("COMMIT")
                    return
                except sqlite3.Error as exc:
                    self.conn.execute("ROLLBACK")
                    raise StoreWriteError(f"write failed, nothing applied: {exc}") from exc
            self.conn.execute("ROLLBACK")
            if isinstance(ev, sqlite3.Error):
                raise StoreWriteError(f"write failed, nothing applied: {ev}") from ev

    def clear(self) -> None:
        conn = self._conn()
        with self._write(conn):
            for label in NODE_TYPES:
                conn.execute(f"DELETE FROM {_ntable(label)}")
            for t in REL_TYPES:
                conn.execute(f"DELETE FROM {_rtable(t)}")
            conn.execute(_BUMP_SQL)

    # -- writes ------------------------------------------------------------------
    @staticmethod
    def _upsert_sql(table: str, keys: Sequence[str], props: Sequence[str]) -> str:
        cols = [*keys, *props]
        marks = ", ".join("?" for _ in cols)
        conflict = ", ".join(keys)
        if props:
            sets = ", ".join(f"{_q(p)} = COALESCE(excluded.{_q(p)}, {_q(p)})" for p in props)
            action = f"DO UPDATE SET {sets}"
        else:
            action = "DO NOTHING"
        return (
            f"INSERT INTO {table} ({', '.join(_q(c) for c in cols)}) VALUES ({marks}) "
            f"ON CONFLICT ({conflict}) {action}"
        )

    def upsert_nodes(self, label: str, columns: Columns) -> int:
        with gc_paused():
            return self._upsert_nodes(label, columns)

    def _upsert_nodes(self, label: str, columns: Columns) -> int:
        batch = normalise_nodes(label, columns)
        if not len(batch):
            return 0
        sql = self._upsert_sql(_ntable(label), ["id"], batch.props)
        conn = self._conn()
        with self._write(conn):
            conn.executemany(sql, (k + v for k, v in zip(batch.keys, batch.values)))
        return len(batch)

    def upsert_relationships(self, rel_type_: str, columns: Columns) -> WriteResult:
        with gc_paused():
            return self._upsert_relationships(rel_type_, columns)

    def _upsert_relationships(self, rel_type_: str, columns: Columns) -> WriteResult:
        rt = rel_type(rel_type_)
        batch = normalise_relationships(rel_type_, columns)
        if not len(batch):
            return WriteResult(0, [])
        conn = self._conn()
        missing_src = self._absent(conn, rt.src, [k[0] for k in batch.keys])
        missing_dst = self._absent(conn, rt.dst, [k[1] for k in batch.keys])
        missing_pos: list[int] = []
        if missing_src or missing_dst:
            src_col = [str(v) for v in columns["src"]]
            dst_col = [str(v) for v in columns["dst"]]
            missing_pos = [
                i for i, (s, d) in enumerate(zip(src_col, dst_col))
                if s in missing_src or d in missing_dst
            ]
            keep = [
                i for i, k in enumerate(batch.keys)
                if k[0] not in missing_src and k[1] not in missing_dst
            ]
            batch = NormalisedBatch(
                [batch.keys[i] for i in keep], batch.props, [batch.values[i] for i in keep]
            )
        sql = self._upsert_sql(_rtable(rel_type_), ["src", "dst", "key"], batch.props)
        if len(batch):
            # Rows go in as they come: sorting them in Python first costs more than the
            # page locality it buys (bench/store.py).
            with self._write(conn):
                conn.executemany(sql, map(tuple.__add__, batch.keys, batch.values))
                if rel_type_ in _LINKING:
                    conn.execute(_BUMP_SQL)
        return WriteResult(len(batch), missing_pos)

    def write_scores(
        self,
        ids: Sequence[str],
        scores: Mapping[str, Sequence[float]],
        model_version: str,
        scored_at_ms: int,
    ) -> int:
        unknown = [s for s in scores if s not in SCORE_PROPERTIES]
        if unknown:
            raise InvalidBatchError(f"not score properties: {unknown}")
        names = list(scores)
        cols = [_optional_floats(scores[n]) for n in names]
        if any(len(c) != len(ids) for c in cols):
            raise InvalidBatchError("every score column must have one value per id")
        # A missing score keeps the stored one, as everywhere in the store.
        sets = ", ".join(
            [f"{_q(n)} = COALESCE(?, {_q(n)})" for n in names]
            + [f"{_q(n)} = ?" for n in ("model_version", "scored_at")]
        )
        sql = f"UPDATE {_ntable('User')} SET {sets} WHERE id = ?"
        conn = self._conn()
        before = conn.total_changes
        with self._write(conn):
            conn.executemany(
                sql,
                (
                    (*vals, model_version, int(scored_at_ms), str(i))
                    for i, *vals in zip(ids, *cols)
                ),
            )
        return conn.total_changes - before

    @staticmethod
    def _absent(conn: sqlite3.Connection, label: str, ids: Sequence[str]) -> set[str]:
        """The ids with no ``label`` node: one statement, the ids passed as one JSON
        array and probed in SQLite, so a batch costs no Python set of found ids."""
        if not ids:
            return set()
        sql = (
            f"SELECT DISTINCT j.value FROM json_each(?) AS j WHERE NOT EXISTS "
            f"(SELECT 1 FROM {_ntable(label)} AS n WHERE n.id = j.value)"
        )
        return {row[0] for row in conn.execute(sql, (json.dumps(list(dict.fromkeys(ids))),))}

    @contextlib.contextmanager
    def bulk(self, rel_type_: str, expected_rows: int) -> Iterator[None]:
        """When a load will at least double a relationship table, drop its reverse
        index for the load and rebuild it by one sort at the end: random inserts into
        a second B-tree cost more than the rebuild. A crash inside leaves the index
        missing; the next init() builds it again."""
        rel_type(rel_type_)
        conn = self._conn()
        table = _rtable(rel_type_)
        have = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        if expected_rows < max(_BULK_MIN_ROWS, have):
            yield
            return
        index = _q("ri_" + rel_type_)
        conn.execute(f"PRAGMA cache_size=-{max(self.cache_mb, 1024) * 1024}")
        conn.execute(f"DROP INDEX IF EXISTS {index}")
        try:
            yield
        finally:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (dst, src, key)")
            conn.execute(f"PRAGMA cache_size=-{int(self.cache_mb) * 1024}")

    # -- reads -------------------------------------------------------------------
    def _chunks(self, ids: Sequence[str]) -> Iterator[list[str]]:
        ids = [str(i) for i in ids]
        for start in range(0, len(ids), _CHUNK):
            yield ids[start : start + _CHUNK]

    def missing_nodes(self, label: str, ids: Sequence[str]) -> set[str]:
        table = _ntable(label)
        conn = self._conn()
        wanted = {str(i) for i in ids}
        found: set[str] = set()
        for chunk in self._chunks(list(wanted)):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(
                f"SELECT id FROM {table} WHERE id IN ({marks})", chunk))
        return wanted - found

    def get_nodes(self, label: str, ids: Sequence[str]) -> list[Node | None]:
        nt = node_type(label)
        props = list(nt.properties)
        cols = ", ".join(["id", *(_q(p) for p in props)])
        conn = self._conn()
        got: dict[str, Node] = {}
        for chunk in self._chunks(list(dict.fromkeys(ids))):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {cols} FROM {_ntable(label)} WHERE id IN ({marks})", chunk
            ):
                got[row[0]] = Node(
                    label, row[0], {p: v for p, v in zip(props, row[1:]) if v is not None}
                )
        return [got.get(str(i)) for i in ids]

    def node_ids(self, label: str, after: str | None = None, limit: int = 100) -> list[str]:
        conn = self._conn()
        table = _ntable(label)
        if after is None:
            rows = conn.execute(f"SELECT id FROM {table} ORDER BY id LIMIT ?", (limit,))
        else:
            rows = conn.execute(
                f"SELECT id FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        return [r[0] for r in rows]

    def adjacent(
        self,
        label: str,
        ids: Sequence[str],
        rel_types: Sequence[str],
        direction: Direction = "both",
        limit_per_node: int = 1000,
    ) -> list[Adjacency]:
        node_type(label)
        if direction not in ("out", "in", "both"):
            raise InvalidBatchError(f"direction must be out, in or both, not {direction!r}")
        conn = self._conn()
        out: list[Adjacency] = []
        uniq = list(dict.fromkeys(str(i) for i in ids))
        for t in dict.fromkeys(rel_types):
            rt = rel_type(t)
            if direction in ("out", "both") and rt.src == label:
                for me, other, key in self._bounded(conn, t, "src", uniq, limit_per_node):
                    out.append(Adjacency(me, t, "out", rt.dst, other, key))
            if direction in ("in", "both") and rt.dst == label:
                for me, other, key in self._bounded(conn, t, "dst", uniq, limit_per_node):
                    out.append(Adjacency(me, t, "in", rt.src, other, key))
        out.sort()
        return out

    def _bounded(
        self, conn: sqlite3.Connection, type_: str, end: str, ids: list[str], limit: int
    ) -> Iterator[tuple[str, str, str]]:
        """(id, other end, key) for each id, at most ``limit`` per id, smallest first.

        Many ids go in one statement, a UNION ALL of one bounded subquery per id: the
        per-node limit holds (a hub costs ``limit`` rows, not its degree) and a
        depth-2 query makes a handful of calls instead of hundreds."""
        for start in range(0, len(ids), _UNION_MAX):
            chunk = ids[start : start + _UNION_MAX]
            width = 1
            while width < len(chunk):
                width *= 2  # a few statement shapes, all kept in the statement cache
            padded = chunk + [""] * (width - len(chunk))  # "" is never an id
            params: list[object] = []
            for i in padded:
                params += (i, limit)
            yield from conn.execute(_bounded_sql(type_, end, width), params)

    def relationships(
        self,
        rel_type_: str,
        ids: Sequence[str],
        direction: Literal["out", "in"] = "out",
        limit_per_node: int = 1000,
    ) -> list[Relationship]:
        rt = rel_type(rel_type_)
        if direction not in ("out", "in"):
            raise InvalidBatchError(f"direction must be out or in, not {direction!r}")
        props = list(rt.properties)
        cols = ", ".join(["src", "dst", "key", *(_q(p) for p in props)])
        where, order = ("src", "dst, key") if direction == "out" else ("dst", "src, key")
        sql = (
            f"SELECT {cols} FROM {_rtable(rel_type_)} WHERE {where} = ? "
            f"ORDER BY {order} LIMIT ?"
        )
        conn = self._conn()
        out = [
            Relationship(
                rel_type_, row[0], row[1], row[2],
                {p: v for p, v in zip(props, row[3:]) if v is not None},
            )
            for i in dict.fromkeys(str(x) for x in ids)
            for row in conn.execute(sql, (i, limit_per_node))
        ]
        out.sort(key=lambda r: (r.src, r.dst, r.key))
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        conn = self._conn()
        return {
            "nodes": {
                label: conn.execute(f"SELECT COUNT(*) FROM {_ntable(label)}").fetchone()[0]
                for label in NODE_TYPES
            },
            "relationships": {
                t: conn.execute(f"SELECT COUNT(*) FROM {_rtable(t)}").fetchone()[0]
                for t in REL_TYPES
            },
        }

    def export_nodes(
        self, label: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        nt = node_type(label)
        bad = [p for p in properties if p not in nt.properties]
        if bad:
            raise InvalidBatchError(f"{label} has no properties {bad}")
        kinds = [nt.properties[p] for p in properties]
        cols = ", ".join(["id", *(_q(p) for p in properties)])
        cur = self._conn().execute(f"SELECT {cols} FROM {_ntable(label)} ORDER BY id")
        yield from _stream(cur, ["id"], list(properties), kinds, batch_size)

    def export_node_range(
        self, label: str, properties: Sequence[str], lo: str | None, hi: str | None,
        batch_size: int = 100_000,
    ) -> Iterator[dict[str, Any]]:
        nt = node_type(label)
        bad = [p for p in properties if p not in nt.properties]
        if bad:
            raise InvalidBatchError(f"{label} has no properties {bad}")
        kinds = [nt.properties[p] for p in properties]
        cols = ", ".join(["id", *(_q(p) for p in properties)])
        cur = self._conn().execute(
            f"SELECT {cols} FROM {_ntable(label)} WHERE id > ? AND (? IS NULL OR id <= ?) "
            "ORDER BY id", (lo or "", hi, hi))
        yield from _stream(cur, ["id"], list(properties), kinds, batch_size)

    def export_relationships(
        self, rel_type_: str, properties: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        rt = rel_type(rel_type_)
        bad = [p for p in properties if p not in rt.properties]
        if bad:
            raise InvalidBatchError(f"{rel_type_} has no properties {bad}")
        kinds = [rt.properties[p] for p in properties]
        cols = ", ".join(["src", "dst", "key", *(_q(p) for p in properties)])
        cur = self._conn().execute(
            f"SELECT {cols} FROM {_rtable(rel_type_)} ORDER BY src, dst, key"
        )
        yield from _stream(cur, ["src", "dst", "id"], list(properties), kinds, batch_size)

    def export_relationship_columns(
        self, rel_type_: str, columns: Sequence[str], batch_size: int = 100_000
    ) -> Iterator[dict[str, Any]]:
        rt = _checked_columns(rel_type_, columns)
        keys = [c for c in columns if c in _ENDS]
        props = [c for c in columns if c not in _ENDS]
        kinds = [rt.properties[p] for p in props]
        # the table is stored in key order, so ORDER BY costs nothing
        cols = ", ".join([*(_ENDS[k] for k in keys), *(_q(p) for p in props)])
        cur = self._conn().execute(
            f"SELECT {cols} FROM {_rtable(rel_type_)} ORDER BY src, dst, key"
        )
        yield from _stream(cur, keys, props, kinds, batch_size)

    # -- whole tables, columnar ---------------------------------------------------------
    def tables(self, requests: Sequence[TableRequest], processes: int = 2) -> list[Any]:
        """Whole tables as ``pyarrow.Table`` s, one per request, in order. A request is
        ``("node", label, properties)``: ``id`` then the properties, by id, what
        ``export_nodes`` gives; or ``("relationship", type, columns)``: ``src``,
        ``dst``, ``id`` and properties as ``export_relationship_columns`` takes them,
        in key order. Numbers (int, float, bool, time) come as float64, strings as
        string, a missing value as null.

        Read by the ADBC SQLite driver, which builds the columns in C with no Python
        object per value, in ``processes`` child processes (graph/arrow_child.py says
        why not in this one) that take the requests in turn; each child reads its
        tables in one snapshot. 1M users with 17 properties and 4.5M payments: about
        2 s, against 4 s and 7 s of CPU through the row exports. When the driver is
        not installed or cannot read a table, the row exports answer (same tables)."""
        import pyarrow as pa

        plans = [self._table_plan(*r) for r in requests]
        self._conn()  # the store must be open
        if not plans:
            return []
        groups = [list(range(i, len(plans), processes))
                  for i in range(min(max(processes, 1), len(plans)))]
        try:
            with ThreadPoolExecutor(len(groups)) as pool:
                read = list(pool.map(
                    lambda g: _adbc_read(self.db_file, [plans[i].sql for i in g]), groups))
            got = {i: t for g, tables in zip(groups, read) for i, t in zip(g, tables)}
            return [pa.table({n: _arrow_typed(got[i].column(j), k)
                              for j, (n, k) in enumerate(zip(p.names, p.kinds))})
                    for i, p in enumerate(plans)]
        except (ImportError, OSError) as exc:
            log.info("columnar read unavailable, reading rows (%s)", exc)
            return [p.from_rows() for p in plans]

    def node_table(self, label: str, properties: Sequence[str]) -> Any:
        """``tables`` for one node label."""
        return self.tables([("node", label, properties)], 1)[0]

    def relationship_table(self, rel_type_: str, columns: Sequence[str]) -> Any:
        """``tables`` for one relationship type."""
        return self.tables([("relationship", rel_type_, columns)], 1)[0]

    def _table_plan(self, kind: str, name: str, columns: Sequence[str]) -> _TablePlan:
        if kind == "node":
            nt = node_type(name)
            bad = [p for p in columns if p not in nt.properties]
            if bad:
                raise InvalidBatchError(f"{name} has no properties {bad}")
            cols = ", ".join(["id", *(_q(p) for p in columns)])
            return _TablePlan(f"SELECT {cols} FROM {_ntable(name)} ORDER BY id",
                              ["id", *columns],
                              [PropType.STR, *(nt.properties[p] for p in columns)],
                              lambda: self.export_nodes(name, columns, 200_000))
        if kind == "relationship":
            rt = _checked_columns(name, columns)
            cols = ", ".join(_ENDS[c] if c in _ENDS else _q(c) for c in columns)
            return _TablePlan(
                f"SELECT {cols} FROM {_rtable(name)} ORDER BY src, dst, key", list(columns),
                [PropType.STR if c in _ENDS else rt.properties[c] for c in columns],
                lambda: self.export_relationship_columns(name, columns, 200_000))
        raise InvalidBatchError(f"a table request is node or relationship, not {kind!r}")


# ("node", label, properties) or ("relationship", type, columns): see EmbeddedStore.tables
TableRequest = tuple[str, str, Sequence[str]]


@dataclass(frozen=True)
class _TablePlan:
    """One requested table: its query, column names and types, and the row export
    that gives the same table without the driver."""

    sql: str
    names: list[str]
    kinds: list[PropType]
    rows: Callable[[], Iterator[dict[str, Any]]]

    def from_rows(self) -> Any:
        import pyarrow as pa

        chunks = list(self.rows())
        return pa.table({n: _arrow_from_numpy([c[n] for c in chunks], k)
                         for n, k in zip(self.names, self.kinds)})


# One result batch: the ADBC SQLite driver infers a column's type from the first batch,
# so a column that starts with nulls and then holds numbers must be seen whole.
_ADBC_BATCH_ROWS = str(10**9)  # the driver refuses 2**31 - 1


def _adbc_read(db_file: Path, queries: list[str]) -> list[Any]:
    """The results of ``queries`` as pyarrow Tables, read by the ADBC SQLite driver in
    one child process (graph/arrow_child.py) and passed back as Arrow IPC streams.
    ImportError when the driver is not installed, OSError when the read failed."""
    import pyarrow as pa

    child = Path(__file__).with_name("arrow_child.py")
    proc = subprocess.run([sys.executable, str(child), str(db_file), _ADBC_BATCH_ROWS,
                           *queries], capture_output=True, check=False)
    message = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 3:
        raise ImportError(message)
    if proc.returncode != 0:
        raise OSError(f"columnar read of {db_file} failed ({proc.returncode}): {message}")
    out = pa.BufferReader(pa.py_buffer(proc.stdout))
    tables = []
    while out.tell() < out.size():
        tables.append(pa.ipc.open_stream(out).read_all())
    if len(tables) != len(queries):
        raise OSError(f"columnar read of {db_file} returned {len(tables)} of "
                      f"{len(queries)} tables")
    return tables


def _arrow_typed(col: Any, kind: PropType) -> Any:
    """A column as the store's type says: strings as string, anything else as float64.
    A column with no value at all comes typed int64 from the driver."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks()
    if kind is PropType.STR:
        if pa.types.is_string(col.type):
            return col
        if col.null_count == len(col):
            return pa.nulls(len(col), pa.string())
        raise OSError(f"column of {col.type} values where the store keeps strings")
    return pc.cast(col, pa.float64())


def _arrow_from_numpy(parts: list[np.ndarray], kind: PropType) -> Any:
    import pyarrow as pa

    if kind is PropType.STR:
        values = np.concatenate(parts) if parts else np.zeros(0, dtype=object)
        return pa.array(values, type=pa.string())
    values = np.concatenate(parts) if parts else np.zeros(0)
    return pa.array(values.astype(np.float64), from_pandas=True)  # NaN becomes null


# A relationship's own columns, by the names the exports take.
_ENDS = {"src": "src", "dst": "dst", "id": "key"}


def _checked_columns(rel_type_: str, columns: Sequence[str]) -> Any:
    """The relationship type, once every asked column is an end, ``id`` or one of its
    properties."""
    rt = rel_type(rel_type_)
    bad = [c for c in columns if c not in _ENDS and c not in rt.properties]
    if bad or not columns:
        raise InvalidBatchError(
            f"{rel_type_} has no columns {bad}; ask for src, dst, id or its properties"
        )
    return rt


def _optional_floats(values: Sequence[float | None]) -> list[float | None]:
    """Floats, None where missing (None or NaN): one numpy pass, not a Python test per
    value (a million scores are written at a time)."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    out = a.astype(object)
    out[np.isnan(a)] = None
    return out.tolist()


def _stream(
    cur: sqlite3.Cursor,
    key_names: list[str],
    props: list[str],
    kinds: list[PropType],
    batch_size: int,
) -> Iterator[dict[str, Any]]:
    """Rows of a cursor as dicts of numpy arrays, ``batch_size`` rows at a time."""
    nk = len(key_names)
    while True:
        rows = cur.fetchmany(batch_size)
        if not rows:
            return
        # one 2-D object array, then a column at a time: faster than zip(*rows)
        table = np.array(rows, dtype=object).reshape(len(rows), -1)
        out: dict[str, Any] = {name: table[:, j].copy() for j, name in enumerate(key_names)}
        for j, (p, k) in enumerate(zip(props, kinds), start=nk):
            # None becomes NaN in a float64 column
            out[p] = table[:, j].copy() if k is PropType.STR else table[:, j].astype(np.float64)
        yield out
