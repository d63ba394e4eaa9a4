"""A link index for the embedded store: linked accounts from arrays instead of SQL.

``graph.queries.linked_accounts`` walks the store's ``adjacent`` primitive: at depth 2
around a user whose IP is shared by ~80 accounts that is a few thousand B-tree rows and
as many Python tuples, ~10 ms. The index holds the same links as compressed sparse rows
(CSR), so a query is a few dozen numpy operations on the users of one level at a time.

What it holds, for the embedded store in ``path``, in ``path/linkindex/g<generation>-*/``:

* ``users``: every User id, sorted, as UTF-8 bytes (``S`` arrays sort as SQLite's
  BINARY collation and as Python's ``str`` compare), and ``is_node``;
* per shared-item type (USES, HAS_PHONE, HAS_CARD, LOGGED_FROM): the item ids, sorted;
  user -> items (each user's row sorted as the store's primary key orders it) and
  item -> users (each item's row sorted by user);
* per user-user type (REFERRED, TRANSFERRED): user -> user out and in, one entry per
  relationship (a keyed type can join a pair several times).

The arrays are ``.npy`` files loaded with ``mmap_mode="r"``: a new process starts at
once and processes share the pages. Answers are those of the reference path, link for
link and in the same order: the same per-node limits (``MAX_ITEMS_PER_USER`` items of a
type per user, ``MAX_DIRECT_LINKS_PER_USER`` relationships per type and direction, the
smallest ids first) and the same hubs (an item with more than ``max_item_users`` users
links nobody; the index keeps every holder, so any threshold works).

Staleness. The index is a snapshot at a *link generation*: a counter in the table
``riskgraph_link_generation`` of the database that the embedded store raises in the
same transaction as every write of a linking relationship type and in ``clear``
(graph/embedded.py; scores, node writes and other relationship types leave it alone:
a new user has no links until a relationship says so). A query first reads the
counter (one indexed row, a few microseconds); when it differs from the index's, the
query takes the SQL path, so a stale index never answers. ``PRAGMA data_version``
would not do: it is per connection and not persisted. The counter is raised once per
write transaction, so it costs a load nothing measurable; it is also raised by writes
that only change a link's properties (a device's ``last_seen``), which makes the
index stale until rebuilt, a price paid in speed, never in correctness. A stale index
is rebuilt by ``refresh`` (on demand), or in a background thread once the counter has
been still for ``SETTLE_S`` seconds (so a running load does not cause a rebuild per
batch), but only in a store where an index was built once: building is an explicit
choice (``refresh``), never a side effect of a query.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graph.errors import GraphError, StoreUnavailableError
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.results import (
    LINK_TYPES,
    MAX_DIRECT_LINKS_PER_USER,
    MAX_ITEMS_PER_USER,
    Link,
    LinkedAccount,
)
from graph.sqlnames import LINK_GENERATION_TABLE
from graph.sqlnames import node_table as _ntable
from graph.sqlnames import rel_table as _rtable

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the counter is raised by the store's writes, not by triggers
DIR_NAME = "linkindex"
GEN_TABLE = LINK_GENERATION_TABLE
SETTLE_S = 2.0  # the counter must be still this long before a background rebuild
RESCAN_S = 1.0  # look for an index built by another process at most this often
_FETCH = 262_144  # rows per fetchmany while building
_CODES = {t: i for i, t in enumerate(sorted(LINK_TYPES))}  # link order is by type name
_NAMES = sorted(LINK_TYPES)
_new_link = partial(tuple.__new__, Link)  # Link(*row) without a Python-level call


class LinkIndexError(GraphError):
    """The link index cannot be built or loaded; queries keep using the SQL path."""


# -- the generation counter ----------------------------------------------------------------
def read_generation(conn: sqlite3.Connection) -> tuple[str, int] | None:
    """(token, value) of the counter, or None where it was never installed."""
    try:
        row = conn.execute(
            f"SELECT token, value FROM {_quote(GEN_TABLE)} WHERE id = 0"
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return (str(row[0]), int(row[1])) if row else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the index -----------------------------------------------------------------------------
ITEM_TYPES: tuple[str, ...] = tuple(sorted(SHARED_ITEM_RELS))
DIRECT_TYPES: tuple[str, ...] = tuple(sorted(USER_USER_RELS))
_ITEM_CODES = np.array([_CODES[t] for t in ITEM_TYPES], dtype=np.int64)
_DIRECT_CODES = np.array([_CODES[t] for t in DIRECT_TYPES], dtype=np.int64)
_LABELS = [REL_TYPES[t].dst for t in _NAMES]
_IS_ITEM_CODE = np.array([t in SHARED_ITEM_RELS for t in _NAMES])
_EMPTY = np.empty(0, dtype=np.int64)
_IS_ITEM = _IS_ITEM_CODE.tolist()
_ITEM_CODE_LIST = _ITEM_CODES.tolist()
_DIRECT_CODE_LIST = _DIRECT_CODES.tolist()


@dataclass(frozen=True)
class _Csr:
    indptr: np.ndarray  # int64, rows + 1
    indices: np.ndarray  # int32 or int64

    def ranges(self, rows: np.ndarray, cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``rows``, position in ``indices``) of the first ``cap`` entries of
        each row, row after row."""
        start = self.indptr[rows]
        end = self.indptr[rows + 1]
        if cap is not None:
            end = np.minimum(end, start + cap)
        return _ranges(start, end)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [start, end): (which range, position) of every element, in order."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return _EMPTY, _EMPTY
    which = np.repeat(np.arange(len(starts)), lens)
    offsets = np.cumsum(lens) - lens
    return which, np.arange(total) - offsets[which] + starts[which]


class LinkIndex:
    """The links of one store at one generation, as arrays (see the module docstring).

    Rows of ``user_items`` are ``user * len(ITEM_TYPES) + type``, so one lookup serves
    every type asked for; items of all types share one numbering (type by type, each
    sorted), so an item's number orders it as its id does. ``sent`` and ``received``
    hold user-user relationships the same way, by ``user * len(DIRECT_TYPES) + type``."""

    def __init__(
        self,
        generation: tuple[str, int],
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.generation = generation
        self.arrays = arrays
        # Plain views: a memmap subclass costs a Python call on every indexing.
        a = {k: np.asarray(v) for k, v in arrays.items()}
        self.users = a["users"]
        self.is_node = a["is_node"]
        self.items = a["items"]
        self.user_items = _Csr(a["user_items.indptr"], a["user_items.indices"])
        self.item_users = _Csr(a["item_users.indptr"], a["item_users.indices"])
        self.sent = _Csr(a["sent.indptr"], a["sent.indices"])
        self.received = _Csr(a["received.indptr"], a["received.indices"])
        # The same arrays as memoryviews, for ``_step_small``: reading one element of a
        # memoryview makes a Python int directly, at a third of a numpy scalar's cost.
        self._views = tuple(np.ascontiguousarray(x).data for x in (
            self.user_items.indptr, self.user_items.indices, self.item_users.indptr,
            self.item_users.indices, self.sent.indptr, self.sent.indices,
            self.received.indptr, self.received.indices))
        self.meta = meta or {}
        self._blocks: dict[str, tuple[int, int]] | None = None

    def __repr__(self) -> str:
        return (f"LinkIndex(generation={self.generation[1]}, users={len(self.users)}, "
                f"items={len(self.items)}, mb={self.nbytes / 2**20:.0f})")

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    # -- queries ---------------------------------------------------------------------
    def user_index(self, user_id: str) -> int | None:
        """Position of a User node, or None (not a node at this generation, or an id
        the arrays cannot hold: then the SQL path answers)."""
        key = user_id.encode("utf-8", "surrogatepass")
        if not key or key.endswith(b"\0") or len(key) > self.users.dtype.itemsize:
            return None
        i = int(np.searchsorted(self.users, key))
        if i < len(self.users) and self.users[i] == key and self.is_node[i]:
            return i
        return None

    def user_id(self, position: int) -> str:
        """The id of the user at ``position``."""
        return bytes(self.users[position]).decode("utf-8", "surrogatepass")

    # -- whole tables ------------------------------------------------------------------
    def relationships(self, rel_type: str) -> tuple[np.ndarray, np.ndarray]:
        """Every relationship of the linking type ``rel_type`` as (source, target)
        positions, one pair per relationship (a keyed type repeats a pair), by source.
        The source is a position in ``users``; the target one in
        ``item_ids(rel_type)`` for a shared-item type, in ``users`` for a user-user
        type. What a whole-graph export reads instead of the table."""
        if rel_type in SHARED_ITEM_RELS:
            csr, types, k = self.user_items, len(ITEM_TYPES), ITEM_TYPES.index(rel_type)
        elif rel_type in USER_USER_RELS:
            csr, types, k = self.sent, len(DIRECT_TYPES), DIRECT_TYPES.index(rel_type)
        else:
            raise ValueError(f"{rel_type} is not a linking relationship type; "
                             f"the link index holds {sorted(LINK_TYPES)}")
        starts = np.asarray(csr.indptr[k:-1:types])  # row user * types + k, user by user
        ends = np.asarray(csr.indptr[k + 1::types])
        src, at = _ranges(starts, ends)
        dst = np.asarray(csr.indices)[at].astype(np.int64)
        if rel_type in SHARED_ITEM_RELS:
            dst -= self._item_blocks()[rel_type][0]
        return src, dst

    def item_ids(self, rel_type: str) -> np.ndarray:
        """The ids of the items of a shared-item type (UTF-8 bytes), sorted: the
        targets of ``relationships(rel_type)``."""
        lo, hi = self._item_blocks()[rel_type]
        return self.items[lo:hi]

    def _item_blocks(self) -> dict[str, tuple[int, int]]:
        """[start, end) of each shared-item type's block in ``items``. Blocks follow
        ITEM_TYPES, and every item has a holder (items come from relationships), so a
        block runs from the smallest to the largest number its relationships use."""
        blocks = self._blocks
        if blocks is None:
            indptr = np.asarray(self.user_items.indptr)
            types = len(ITEM_TYPES)
            type_of = np.repeat(np.arange(len(indptr) - 1) % types, np.diff(indptr))
            items = np.asarray(self.user_items.indices)
            blocks = {}
            for k, t in enumerate(ITEM_TYPES):
                mine = items[type_of == k]
                start = max((b[1] for b in blocks.values()), default=0)
                blocks[t] = ((int(mine.min()), int(mine.max()) + 1) if len(mine)
                             else (start, start))
            self._blocks = blocks
        return blocks

    def linked_accounts(
        self,
        user_id: str,
        depth: int,
        via: tuple[str, ...],
        max_item_users: int,
        limit: int | None = None,
    ) -> list[LinkedAccount] | None:
        """What ``queries.linked_accounts`` answers, or None when the index cannot tell
        (the user is not in it, or a negative limit): the caller then asks the store."""
        root = self.user_index(user_id)
        if root is None or (limit is not None and limit < 0):
            return None
        item_types = np.array([i for i, t in enumerate(ITEM_TYPES) if t in via], dtype=np.int64)
        direct_types = np.array([i for i, t in enumerate(DIRECT_TYPES) if t in via],
                                dtype=np.int64)
        seen = np.array([root], dtype=np.int64)  # sorted: root and every user found
        level = seen
        accounts: list[LinkedAccount] = []
        for d in range(1, depth + 1):
            u, c, item, other, count = self._step(level, item_types, direct_types,
                                                  max_item_users)
            keep = ~np.isin(other, seen, kind="sort")
            u, c, item, other, count = u[keep], c[keep], item[keep], other[keep], count[keep]
            if not len(other):
                break
            # An account's links in the reference order: by (from user, type, item).
            order = np.lexsort((item, c, u, other))
            u, c, item, other, count = u[order], c[order], item[order], other[order], count[order]
            starts = np.flatnonzero(np.concatenate(([True], other[1:] != other[:-1])))
            level = other[starts]
            seen = np.union1d(seen, level)
            ends = np.append(starts[1:], len(other))
            ranked = np.lexsort((level, starts - ends))  # more links first, then id
            if limit is not None:
                ranked = ranked[: limit - len(accounts)]
            self._emit(accounts, d, (u, c, item, count), starts[ranked], ends[ranked],
                       level[ranked])
            if limit is not None and len(accounts) >= limit:
                break  # ranked by depth first: deeper accounts would be cut
        return accounts

    def user_links(
        self, users: Sequence[str], via: tuple[str, ...], max_item_users: int,
    ) -> list[tuple[str, Link, str]] | None:
        """What ``queries.user_links`` answers, sorted the same way, or None when a
        user is not in the index (the caller then asks the store)."""
        idx = [self.user_index(u) for u in users]
        if any(i is None for i in idx):
            return None
        item_types = np.array([i for i, t in enumerate(ITEM_TYPES) if t in via], dtype=np.int64)
        direct_types = np.array([i for i, t in enumerate(DIRECT_TYPES) if t in via],
                                dtype=np.int64)
        level = np.unique(np.array(idx, dtype=np.int64))
        u, c, item, other, count = self._step(level, item_types, direct_types, max_item_users)
        if not len(u):
            return []
        names = self._user_names(np.concatenate([u, other]))
        item_names = self._item_names(c, item, names)
        user_names = [names[i] for i in u.tolist()]
        out = [
            (me, _new_link((_NAMES[code], _LABELS[code], it, me, n)), names[o])
            for me, code, it, n, o in zip(user_names, c.tolist(), item_names.tolist(),
                                          count.tolist(), other.tolist())
        ]
        out.sort()
        return out

    def _step(
        self, level: np.ndarray, item_types: np.ndarray, direct_types: np.ndarray,
        max_item_users: int,
    ) -> tuple[np.ndarray, ...]:
        """Every (user, type code, item, other user, count) one step out of ``level``,
        as ``queries.user_links`` finds them; ``item`` is the other user for direct
        links."""
        parts: list[tuple[np.ndarray, ...]] = []
        k = len(item_types)
        if k:
            rows = (level[:, None] * len(ITEM_TYPES) + item_types[None, :]).ravel()
            which, pos = self.user_items.ranges(rows, MAX_ITEMS_PER_USER)
            u, c = level[which // k], _ITEM_CODES[item_types[which % k]]
            item = self.user_items.indices[pos].astype(np.int64)
            start, end = self.item_users.indptr[item], self.item_users.indptr[item + 1]
            open_ = (end - start) <= max_item_users  # a hub links nobody
            which, pos = _ranges(start[open_], end[open_])
            u, c, item = u[open_][which], c[open_][which], item[open_][which]
            other = self.item_users.indices[pos].astype(np.int64)
            mine = other != u
            u, c, item, other = u[mine], c[mine], item[mine], other[mine]
            parts.append((u, c, item, other, np.ones(len(u), dtype=np.int64)))
        k = len(direct_types)
        if k:
            rows = (level[:, None] * len(DIRECT_TYPES) + direct_types[None, :]).ravel()
            w1, p1 = self.sent.ranges(rows, MAX_DIRECT_LINKS_PER_USER)
            w2, p2 = self.received.ranges(rows, MAX_DIRECT_LINKS_PER_USER)
            which = np.concatenate([w1, w2])
            other = np.concatenate([self.sent.indices[p1],
                                    self.received.indices[p2]]).astype(np.int64)
            u = level[which // k]
            t = direct_types[which % k]
            mine = other != u
            n = len(self.users)
            # Relationships between a pair, both directions, count as one link.
            pair, count = np.unique((u[mine] * len(DIRECT_TYPES) + t[mine]) * n
                                    + other[mine], return_counts=True)
            other = pair % n
            ut = pair // n
            u, c = ut // len(DIRECT_TYPES), _DIRECT_CODES[ut % len(DIRECT_TYPES)]
            parts.append((u, c, other, other, count))
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return (_EMPTY,) * 5
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(5))

    def _emit(
        self, accounts: list[LinkedAccount], depth: int, rows: tuple[np.ndarray, ...],
        starts: np.ndarray, ends: np.ndarray, others: np.ndarray,
    ) -> None:
        """Append the accounts (rows ``starts[i]:ends[i]`` each) as Python objects."""
        u, c, item, count = rows
        _, pos = _ranges(starts, ends)
        u, c, item = u[pos], c[pos], item[pos]
        names = self._user_names(np.concatenate([u, others]))
        item_names = self._item_names(c, item, names)
        cc = c.tolist()
        links = list(map(_new_link, zip([_NAMES[x] for x in cc], [_LABELS[x] for x in cc],
                                        item_names.tolist(), [names[i] for i in u.tolist()],
                                        count[pos].tolist())))
        p = 0
        for o, n in zip(others.tolist(), (ends - starts).tolist()):
            accounts.append(LinkedAccount(names[o], depth, links[p:p + n]))
            p += n

    def _item_names(self, c: np.ndarray, item: np.ndarray, names: dict[int, str]
                    ) -> np.ndarray:
        """The id of each link's item: a shared item's id, or for a user-user link the
        other user's (from ``names``, ``_user_names`` of them)."""
        is_item = _IS_ITEM_CODE[c]
        out = np.empty(len(item), dtype=object)
        out[~is_item] = [names[i] for i in item[~is_item].tolist()]
        if is_item.any():
            uniq, inv = np.unique(item[is_item], return_inverse=True)
            decoded = np.array([b.decode("utf-8", "surrogatepass")
                                for b in self.items[uniq].tolist()], dtype=object)
            out[is_item] = decoded[inv]
        return out

    def _user_names(self, idx: np.ndarray) -> dict[int, str]:
        uniq = np.unique(idx)
        return dict(zip(uniq.tolist(), (b.decode("utf-8", "surrogatepass")
                                        for b in self.users[uniq].tolist())))

    # -- files -----------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the arrays to a new directory under ``directory``, the meta file last
        (a directory without it is incomplete and never loaded)."""
        token, gen = self.generation
        target = directory / f"g{gen:012d}-{uuid.uuid4().hex[:8]}"
        target.mkdir(parents=True)
        for name, a in self.arrays.items():
            np.save(target / f"{name}.npy", a, allow_pickle=False)
        meta = {**self.meta, "format": FORMAT, "token": token, "generation": gen,
                "arrays": list(self.arrays)}
        tmp = target / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, target / "meta.json")
        return target

    @classmethod
    def load(cls, target: Path) -> LinkIndex:
        try:
            meta = json.loads((target / "meta.json").read_text())
            if meta.get("format") != FORMAT:
                raise LinkIndexError(f"link index at {target} has format {meta.get('format')}")
            arrays = {name: np.load(target / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                      for name in meta["arrays"]}
            return cls((str(meta["token"]), int(meta["generation"])), arrays, meta)
        except (OSError, ValueError, KeyError) as exc:
            raise LinkIndexError(f"cannot load the link index at {target}: {exc}") from exc


# -- building ------------------------------------------------------------------------------
def _fetch(conn: sqlite3.Connection, sql: str, width: int) -> list[np.ndarray]:
    """Columns of a query of BLOB columns as ``S`` arrays, fetched in bounded chunks."""
    parts: list[list[np.ndarray]] = [[] for _ in range(width)]
    cur = conn.execute(sql)
    while rows := cur.fetchmany(_FETCH):
        for k, col in enumerate(zip(*rows)):
            if any(b[-1:] == b"\0" for b in col):
                raise LinkIndexError("an id ends with a NUL character; the link index "
                                     "cannot hold it, queries keep using the SQL path")
            parts[k].append(np.array(col, dtype=bytes))
    return [np.concatenate(p) if p else np.empty(0, dtype="S1") for p in parts]


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, ids)
    if len(ids) and (pos.max(initial=0) >= len(sorted_ids)
                     or not np.array_equal(sorted_ids[np.minimum(pos, len(sorted_ids) - 1)],
                                           ids)):
        raise LinkIndexError("ids missing from the sorted id table")  # never: see build
    return pos.astype(np.int64)


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, name: str,
         into: dict[str, np.ndarray]) -> None:
    """CSR of (row, col) pairs into ``into``; a stable sort by row keeps the order of
    ``cols`` within a row."""
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    small = np.int32 if int(cols.max(initial=0)) < 2**31 else np.int64
    into[f"{name}.indptr"] = indptr
    into[f"{name}.indices"] = cols[order].astype(small)


def build(db_file: Path) -> LinkIndex:
    """Read every linking relationship of the database in one snapshot, with the
    generation it was taken at."""
    started = time.perf_counter()
    conn = sqlite3.connect(db_file, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one read snapshot for the counter and every table
        generation = read_generation(conn)
        if generation is None:
            raise LinkIndexError(
                f"{db_file} has no link generation counter; open it with "
                "EmbeddedStore.init() first")
        (node_users,) = _fetch(conn, f"SELECT CAST(id AS BLOB) FROM {_ntable('User')} "
                               "ORDER BY id", 1)
        raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for t in LINK_TYPES:
            # The primary key's order: within a user, by (item or other user, key).
            raw[t] = tuple(_fetch(conn, f"SELECT CAST(src AS BLOB), CAST(dst AS BLOB) "
                                  f"FROM {_rtable(t)} ORDER BY src, dst, key", 2))  # type: ignore[assignment]
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreUnavailableError(
            f"cannot read {db_file} to build the link index: {exc}") from exc
    finally:
        conn.close()
    read_s = time.perf_counter() - started
    # Every endpoint was a User when written, so the node ids cover them all unless the
    # data says otherwise; then the union does, and is_node tells them apart.
    ends = [raw[t][0] for t in LINK_TYPES] + [raw[t][1] for t in DIRECT_TYPES]
    users = node_users
    if any(len(e) and not np.isin(e, node_users).all() for e in ends):
        users = np.unique(np.concatenate([node_users, *ends]))
    n = len(users)
    arrays: dict[str, np.ndarray] = {"users": users, "is_node": np.isin(users, node_users)}
    # Items: type by type, each sorted; (user, type) rows in type order.
    item_ids: list[np.ndarray] = []
    ui_rows: list[np.ndarray] = []
    ui_cols: list[np.ndarray] = []
    offset = 0
    for k, t in enumerate(ITEM_TYPES):
        src, dst = raw.pop(t)
        ids, local = np.unique(dst, return_inverse=True)
        item_ids.append(ids)
        ui_rows.append(_positions(users, src) * len(ITEM_TYPES) + k)
        ui_cols.append(local.astype(np.int64) + offset)
        offset += len(ids)
    rows, cols = np.concatenate(ui_rows), np.concatenate(ui_cols)
    del ui_rows, ui_cols
    arrays["items"] = np.concatenate(item_ids) if item_ids else np.empty(0, dtype="S1")
    _csr(rows, cols, n * len(ITEM_TYPES), "user_items", arrays)
    # Within an item, holders by user: the pairs come type by type, each by user.
    _csr(cols, rows // len(ITEM_TYPES), offset, "item_users", arrays)
    del rows, cols
    sent_rows, sent_cols = [], []
    for k, t in enumerate(DIRECT_TYPES):
        src, dst = raw.pop(t)
        sent_rows.append(_positions(users, src) * len(DIRECT_TYPES) + k)
        sent_cols.append(_positions(users, dst))
    s_rows, s_cols = np.concatenate(sent_rows), np.concatenate(sent_cols)
    _csr(s_rows, s_cols, n * len(DIRECT_TYPES), "sent", arrays)
    # Received, by (target, type); within it by (source, key) as the reverse index.
    _csr(s_cols * len(DIRECT_TYPES) + s_rows % len(DIRECT_TYPES), s_rows // len(DIRECT_TYPES),
         n * len(DIRECT_TYPES), "received", arrays)
    meta = {"built_at": time.time(), "read_s": round(read_s, 2),
            "build_s": round(time.perf_counter() - started, 2), "users": n,
            "links": int(len(arrays["user_items.indices"]) + len(arrays["sent.indices"]))}
    return LinkIndex(generation, arrays, meta)


# -- per store: load, check, refresh -------------------------------------------------------
def _complete(directory: Path) -> list[Path]:
    try:
        found = [p for p in directory.iterdir() if (p / "meta.json").is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name)


class _Handle:
    """The index of one EmbeddedStore object: loaded lazily, checked on every query."""

    def __init__(self, store: IndexedStore) -> None:
        self.db_file = store.db_file
        self.directory = store.path / DIR_NAME
        self.index: LinkIndex | None = None
        self.scanned_at = -RESCAN_S
        self.lock = threading.Lock()
        self.local = threading.local()
        self.builder: threading.Thread | None = None
        self.last_gen: tuple[str, int] | None = None
        self.gen_since = 0.0
        self.background = True

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_file, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            self.local.conn = conn
        return conn

    def fresh(self) -> LinkIndex | None:
        now = time.monotonic()
        if self.index is None:
            if now - self.scanned_at < RESCAN_S:
                return None
            self._scan(now)
            if self.index is None:
                return None
        index = self.index
        gen = read_generation(self._conn())
        if gen == index.generation:
            return index
        # Stale: the SQL path answers. Another process may have built a newer index.
        if now - self.scanned_at >= RESCAN_S:
            self._scan(now)
            if self.index is not None and self.index.generation == gen:
                return self.index
        self._maybe_rebuild(gen, now)
        return None

    def _scan(self, now: float) -> None:
        self.scanned_at = now
        done = _complete(self.directory)
        if not done or (self.index is not None
                        and self.index.meta.get("path") == str(done[-1])):
            return
        try:
            loaded = LinkIndex.load(done[-1])
        except (LinkIndexError, sqlite3.Error) as exc:
            log.warning("%s", exc)
            return
        loaded.meta["path"] = str(done[-1])
        self.index = loaded

    def _maybe_rebuild(self, gen: tuple[str, int] | None, now: float) -> None:
        if gen != self.last_gen:
            self.last_gen, self.gen_since = gen, now
            return
        if not self.background or now - self.gen_since < SETTLE_S:
            return
        with self.lock:
            if self.builder is not None and self.builder.is_alive():
                return
            self.builder = threading.Thread(target=self._rebuild_quietly,
                                            name="linkindex-rebuild", daemon=True)
            self.builder.start()

    def _rebuild_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a background rebuild must never take the process down
            log.warning("link index rebuild failed, queries use the SQL path: %s", exc)

    def refresh(self) -> LinkIndex:
        index = build(self.db_file)
        target = index.save(self.directory)
        index = LinkIndex.load(target)  # answer from the mapped files, as a new process
        index.meta["path"] = str(target)
        self.index = index
        others = [p for p in _complete(self.directory) if p != target]
        for old in others + _incomplete(self.directory, target):
            shutil.rmtree(old, ignore_errors=True)  # mapped pages stay valid on POSIX
        return index


def _incomplete(directory: Path, keep: Path) -> list[Path]:
    """Directories without a meta file, left by a build that died, older than a minute."""
    try:
        return [p for p in directory.iterdir() if p.is_dir() and p != keep
                and not (p / "meta.json").exists() and time.time() - p.stat().st_mtime > 60]
    except OSError:
        return []


_handles: weakref.WeakKeyDictionary[IndexedStore, _Handle] = weakref.WeakKeyDictionary()
_handles_lock = threading.Lock()


def _handle(store: IndexedStore) -> _Handle:
    h = _handles.get(store)
    if h is None or h.db_file != store.db_file:
        with _handles_lock:
            h = _handles.get(store)
            if h is None or h.db_file != store.db_file:
                h = _handles[store] = _Handle(store)
    return h


class IndexedStore(Protocol):
    """What a link index needs of its store: the database file and the data directory
    (the embedded store)."""

    path: Path

    @property
    def db_file(self) -> Path: ...


@runtime_checkable
class LinkIndexed(Protocol):
    """A store with the optional link-index capability (the embedded store)."""

    def link_index(self) -> LinkIndex | None: ...


def fresh_index(store: object) -> LinkIndex | None:
    """The store's link index when the store offers the capability and its index exists
    and matches the data, else None (any other store)."""
    return store.link_index() if isinstance(store, LinkIndexed) else None


def current(store: IndexedStore) -> LinkIndex | None:
    """What the embedded store's ``link_index`` answers: its index when it exists and
    matches the data, else None."""
    try:
        return _handle(store).fresh()
    except sqlite3.Error:
        return None


def refresh(store: IndexedStore) -> LinkIndex:
    """Build the store's link index now, save it next to the database and use it."""
    return _handle(store).refresh()


def set_background_rebuild(store: IndexedStore, enabled: bool) -> None:
    """Whether a stale index of this store is rebuilt in a background thread."""
    _handle(store).background = enabled
