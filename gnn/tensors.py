"""From the store to tensors: users, the items they share, direct user-user links.

The user graph keeps every relationship that ties accounts together
(``graph.model.SHARED_ITEM_RELS`` through a device, phone, card or IP, and
``USER_USER_RELS`` directly). An item held by more than ``max_item_users`` users is a
hub and is left out, as ``graph.queries`` does: sharing a café's IP says little, and it
keeps one user's receptive field small enough to score on demand. Payments (PAID) are
both: aggregated into each payer's own features (amounts, channels, time), and, through
merchants with at most ``MAX_MERCHANT_PAYERS`` distinct payers, a shared item like a
device (``item_edges["PAID"]``): buying from the same small shop ties users together,
buying at a supermarket with 100k customers does not.

The same code builds the tensors for the whole graph (``export_graph``) and for one
user's neighbourhood (``neighbourhood_graph``), which is why the two give equal scores.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gnn.errors import GnnError
from gnn.features import PAID_EXPORT_PROPS, USER_EXPORT_PROPS
from graph.model import REL_TYPES, SHARED_ITEM_RELS, USER_USER_RELS
from graph.queries import DEFAULT_MAX_ITEM_USERS
from graph.store import GraphStore

# The property that says when each linking relationship began, for as-of exports.
EDGE_TIME: dict[str, str | None] = {
    "USES": "first_seen", "HAS_PHONE": "since", "HAS_CARD": "since", "LOGGED_FROM": None,
    "REFERRED": "ts", "TRANSFERRED": "ts",
}
MAX_LINKS_PER_USER = 100_000
MAX_MERCHANT_PAYERS = 100  # a merchant with more distinct payers is a hub (see above)
COLUMNAR_MIN_USERS = 50_000  # see _columnar


@dataclass
class GraphArrays:
    """The user graph as numpy arrays, with the id maps to get back to the store."""

    user_ids: np.ndarray  # object, ascending
    users: dict[str, np.ndarray]  # exported user columns, aligned with user_ids
    paid_user: np.ndarray  # user index per payment
    paid: dict[str, np.ndarray]  # amount, ts, channel per payment
    item_edges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    item_ids: dict[str, np.ndarray] = field(default_factory=dict)
    direct_edges: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    max_time_ms: float = float("nan")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def index_of(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def labels(self) -> np.ndarray:
        """1.0 fraud, 0.0 legitimate, NaN unknown."""
        y = np.asarray(self.users["is_fraud"], dtype=np.float64)
        return np.where(np.isin(y, (0.0, 1.0)), y, np.nan)


def _concat(chunks: list[dict[str, Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    if not chunks:
        return {n: np.zeros(0, dtype=object) for n in names}
    return {n: np.concatenate([c[n] for c in chunks]) for n in names}


class _IdIndex:
    """Position of each id in ``ids``; -1 where absent. One dict, built once per
    export: a sorted-array search compared Python strings row by row."""

    def __init__(self, ids: np.ndarray) -> None:
        self._at = dict(zip(ids.tolist(), range(len(ids))))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        # exports come sorted by src: look each run of equal values up once
        head = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
        at = self._at.get
        found = np.fromiter((at(v, -1) for v in values[head].tolist()), np.int64, len(head))
        return np.repeat(found, np.diff(np.append(head, len(values))))


def _distinct(x: np.ndarray) -> np.ndarray:
    """``np.unique(x)`` for integers by sorting: numpy 2's hash-based unique took 1.6 s
    where this takes 0.03 s on 1.7M keys."""
    x = np.sort(x)
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if len(x) else x


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs in lexicographic order, as ``np.unique(axis=0)`` gives
    them, from one sort of int64 keys."""
    width = int(b.max()) + 1
    key = _distinct(a.astype(np.int64) * width + b)
    return key // width, key % width


def _item_links(
    u: np.ndarray, items: np.ndarray, max_item_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs, hubs removed; items re-numbered 0..k-1."""
    if len(u) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, dtype=object)
    names, item_idx = np.unique(items.astype(str), return_inverse=True)
    pu, pi, used = _item_pairs(u, item_idx.reshape(-1), len(names), max_item_users)
    return pu, pi, names[used]


def _item_pairs(u: np.ndarray, item: np.ndarray, n_items: int, max_item_users: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs of items numbered 0..n_items-1 (in id order), hubs
    removed, items re-numbered 0..k-1; and which old numbers the k items had."""
    if len(u) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    pu, pi = _unique_pairs(u, item)
    deg = np.bincount(pi, minlength=n_items)
    keep = deg[pi] <= max_item_users
    pu, pi = pu[keep], pi[keep]
    used, new_idx = np.unique(pi, return_inverse=True)
    return pu.astype(np.int64), new_idx.reshape(-1).astype(np.int64), used


def _direct_links(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct undirected user pairs, both directions, self-loops removed."""
    ok = (u >= 0) & (v >= 0) & (u != v)
    a, b = u[ok], v[ok]
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    x, y = _unique_pairs(np.concatenate([a, b]), np.concatenate([b, a]))
    return x.astype(np.int64), y.astype(np.int64)


def _before(col: np.ndarray, as_of_ms: float | None) -> np.ndarray:
    if as_of_ms is None:
        return np.ones(len(col), dtype=bool)
    # a link with no start time is kept: the store cannot say it is new
    return ~(np.asarray(col, dtype=np.float64) >= as_of_ms)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Millions of row tuples come and go while exporting; the cyclic collector would
    rescan the survivors again and again, and none of them hold cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read(store: GraphStore, rel_type: str, columns: list[str], batch_size: int
          ) -> list[dict[str, Any]]:
    return list(store.export_relationship_columns(rel_type, columns, batch_size))


class _SortedIndex:
    """Position of each id in ``ids`` (strictly ascending); -1 where absent. Ids and
    looked-up values are compared as fixed-width numpy strings, a binary search in C: a
    dict lookup per value cost 4 s of the 1M-user export."""

    def __init__(self, ids: np.ndarray) -> None:
        self._ids = np.asarray(ids, dtype=str)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if len(values) == 0 or len(self._ids) == 0:
            return np.full(len(values), -1, np.int64)
        v = np.asarray(values, dtype=str)
        pos = np.minimum(np.searchsorted(self._ids, v), len(self._ids) - 1)
        return np.where(self._ids[pos] == v, pos, -1).astype(np.int64)


def _id_index(ids: np.ndarray) -> _SortedIndex | _IdIndex:
    """The sorted index when the ids are strictly ascending as numpy strings (the order
    stores return them in), else the dict."""
    u = np.asarray(ids, dtype=str)
    if len(u) > 1 and not bool(np.all(u[1:] > u[:-1])):
        return _IdIndex(ids)
    return _SortedIndex(u)


def _kept(chunk: dict[str, Any], tprop: str | None, as_of_ms: float | None
          ) -> dict[str, Any]:
    if tprop is None or as_of_ms is None:
        return chunk
    keep = _before(chunk[tprop], as_of_ms)
    return {k: v[keep] for k, v in chunk.items()}


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _payments(chunks: Iterable[dict[str, Any]], index: Callable[[np.ndarray], np.ndarray],
              as_of_ms: float | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """User index per payment and the payment columns, payments of unknown users and
    (with ``as_of_ms``) later ones left out; in the store's order."""
    users: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {p: [] for p in (*PAID_EXPORT_PROPS, "merchant")}
    for chunk in chunks:
        c = _kept(chunk, "ts", as_of_ms)
        u = index(c["src"])
        ok = u >= 0
        users.append(u[ok])
        for p in PAID_EXPORT_PROPS:
            cols[p].append(c[p][ok])
        cols["merchant"].append(np.asarray(c["dst"], dtype=object)[ok])
    kinds = {"amount": np.float64, "ts": np.float64, "channel": object, "merchant": object}
    return _cat(users, np.int64), {p: _cat(v, kinds[p]) for p, v in cols.items()}


def _items(chunks: Iterable[dict[str, Any]], index: Callable[[np.ndarray], np.ndarray],
           tprop: str | None, as_of_ms: float | None, max_item_users: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for chunk in chunks:
        c = _kept(chunk, tprop, as_of_ms)
        u = index(c["src"])
        ok = u >= 0
        users.append(u[ok])
        items.append(c["dst"][ok].astype(str))
    return _item_links(_cat(users, np.int64), _cat(items, object), max_item_users)


def _direct(chunks: Iterable[dict[str, Any]], index: Callable[[np.ndarray], np.ndarray],
            tprop: str | None, as_of_ms: float | None) -> tuple[np.ndarray, np.ndarray]:
    a: list[np.ndarray] = []
    b: list[np.ndarray] = []
    for chunk in chunks:
        c = _kept(chunk, tprop, as_of_ms)
        a.append(index(c["src"]))
        b.append(index(c["dst"]))
    return _direct_links(_cat(a, np.int64), _cat(b, np.int64))


@dataclass(frozen=True)
class _Table:
    """One relationship table to export and what to make of it."""

    rel_type: str
    tprop: str | None  # the link's start time, read only for as-of exports

    @property
    def columns(self) -> list[str]:
        if self.rel_type == "PAID":
            return ["src", "dst", *PAID_EXPORT_PROPS]
        return ["src", "dst", *([self.tprop] if self.tprop else [])]

    def part(self, chunks: Iterable[dict[str, Any]], index: Callable[[np.ndarray], np.ndarray],
             as_of_ms: float | None, max_item_users: int) -> Any:
        if self.rel_type == "PAID":
            return _payments(chunks, index, as_of_ms)
        if self.rel_type in SHARED_ITEM_RELS:
            return _items(chunks, index, self.tprop, as_of_ms, max_item_users)
        return _direct(chunks, index, self.tprop, as_of_ms)


def _tables(as_of_ms: float | None) -> list[_Table]:
    """PAID first: the largest table, started first."""
    return [_Table("PAID", None)] + [
        _Table(rt, EDGE_TIME.get(rt) if as_of_ms is not None else None)
        for rt in (*SHARED_ITEM_RELS, *USER_USER_RELS)
    ]


def _users(store: GraphStore, batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    users = _concat(list(store.export_nodes("User", USER_EXPORT_PROPS, batch_size)),
                    ["id", *USER_EXPORT_PROPS])
    ids = users.pop("id").astype(str).astype(object)
    if len(ids) == 0:
        raise GnnError("the store holds no users; load data first (riskgraph load DIR)")
    return ids, users


# What the export adds once it has the users: the parts read from the link index.
_AfterUsers = Callable[[np.ndarray], dict[str, Any]]


def _columnar(store: GraphStore) -> bool:
    """Whether to read whole tables as Arrow (``EmbeddedStore.tables``): the embedded
    store of COLUMNAR_MIN_USERS users or more. Its child processes cost ~0.5 s to start
    and import, more than a small graph takes to read as rows (5k users: 0.05 s); at
    100k users the two paths are level, at 1M the columns take 5 s against 11 s."""
    if not callable(getattr(store, "tables", None)):
        return False
    return len(store.node_ids("User", None, COLUMNAR_MIN_USERS)) >= COLUMNAR_MIN_USERS


def _numpy(col: Any) -> np.ndarray:
    """An Arrow column as ``export_nodes`` gives it: float64 with NaN, or objects
    (str, None)."""
    return np.asarray(col.to_numpy(zero_copy_only=False))


def _parts_columnar(store: Any, tables: list[_Table], as_of_ms: float | None,
                    max_item_users: int, after_users: _AfterUsers
                    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Users and tables read whole as Arrow (``EmbeddedStore.tables``, in child
    processes); user ids turned into positions by Arrow's hash lookup. The same arrays
    as ``_parts_in_threads``."""
    import pyarrow.compute as pc

    with _collector_paused(), ThreadPoolExecutor(max_workers=2) as pool:
        # The users apart, so that the link index's parts are made while the other
        # tables are still being read.
        users_f = pool.submit(store.tables, [("node", "User", list(USER_EXPORT_PROPS))], 1)
        read_f = pool.submit(store.tables,
                             [("relationship", t.rel_type, t.columns) for t in tables],
                             1 if len(tables) == 1 else 2)
        users_t = users_f.result()[0]
        if users_t.num_rows == 0:
            raise GnnError("the store holds no users; load data first (riskgraph load DIR)")
        id_col = users_t.column("id").combine_chunks()
        ids = _numpy(id_col)
        users = {p: _numpy(users_t.column(p)) for p in USER_EXPORT_PROPS}
        parts = after_users(ids)

        def positions(col: Any) -> np.ndarray:
            return np.asarray(pc.index_in(col, value_set=id_col).fill_null(-1).to_numpy(),
                              dtype=np.int64)

        for t, got in zip(tables, read_f.result()):
            chunk = {name: positions(got.column(name))
                     if name == "src" or (name == "dst" and t.rel_type in USER_USER_RELS)
                     else _numpy(got.column(name)) for name in got.column_names}
            # ids are positions already: the parts look them up as themselves
            parts[t.rel_type] = t.part([chunk], _as_is, as_of_ms, max_item_users)
    return ids, users, parts


def _as_is(positions: np.ndarray) -> np.ndarray:
    return positions


def _parts_in_threads(store: GraphStore, tables: list[_Table], as_of_ms: float | None,
                      max_item_users: int, batch_size: int, after_users: _AfterUsers
                      ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Two tables at a time: a store that reads without holding the GIL (SQLite steps,
    a Bolt socket) turns rows into objects on one core while the other reads."""
    with _collector_paused(), ThreadPoolExecutor(max_workers=2) as pool:
        users_f = pool.submit(_users, store, batch_size)
        chunks_f = {t.rel_type: pool.submit(_read, store, t.rel_type, t.columns, batch_size)
                    for t in tables}
        ids, users = users_f.result()
        parts = after_users(ids)
        index = _id_index(ids)
        parts.update({t.rel_type: t.part(chunks_f.pop(t.rel_type).result(), index, as_of_ms,
                                         max_item_users) for t in tables})
    return ids, users, parts


def _usable_link_index(store: GraphStore, as_of_ms: float | None) -> Any:
    """The embedded store's link index when it matches the data and the export needs
    no link times (``as_of_ms`` None), else None."""
    if as_of_ms is not None:
        return None  # the index holds no times
    from graph import linkindex

    return linkindex.fresh_index(store)


def _text(utf8: np.ndarray) -> np.ndarray:
    """A numpy ``S`` array of UTF-8 ids as a ``str`` array: numpy's own cast when every
    id is ASCII (a C loop), else decoded one by one."""
    try:
        return utf8.astype(str)
    except UnicodeDecodeError:
        return np.char.decode(utf8, "utf-8")


def _parts_from_link_index(index: Any, ids: np.ndarray, max_item_users: int
                           ) -> dict[str, Any]:
    """The linking types' parts from the link index (graph/linkindex.py): the tables'
    relationships already as positions, so no row is read. Index positions are mapped
    to ``ids`` by id; links of users not in ``ids`` are left out, as the tables' path
    leaves out rows whose user it cannot find."""
    at = _id_index(ids)(_text(index.users))
    parts: dict[str, Any] = {}
    for rt in SHARED_ITEM_RELS:
        src, item = index.relationships(rt)
        u = at[src]
        ok = u >= 0
        names = index.item_ids(rt)
        pu, pi, used = _item_pairs(u[ok], item[ok], len(names), max_item_users)
        parts[rt] = (pu, pi, _text(names[used]))
    for rt in USER_USER_RELS:
        src, dst = index.relationships(rt)
        parts[rt] = _direct_links(at[src], at[dst])
    return parts


def export_graph(
    store: GraphStore,
    as_of_ms: float | None = None,
    max_item_users: int = DEFAULT_MAX_ITEM_USERS,
    batch_size: int = 200_000,
) -> GraphArrays:
    """The whole user graph; with ``as_of_ms``, payments and links that began at or
    after that time are left out (what was known before a time split).

    Reads only the columns it uses. Row by row, most of the time would go into the
    store's driver making Python objects of ~45M values at 1M users. So the linking
    relationships come from the embedded store's link index when it is current (and no
    time cut is asked for), and the embedded store reads the users and the other
    tables whole, as Arrow columns; other stores export rows, two tables at a time."""
    index = _usable_link_index(store, as_of_ms)
    tables = [t for t in _tables(as_of_ms) if index is None or t.rel_type == "PAID"]

    def after_users(ids: np.ndarray) -> dict[str, Any]:
        return {} if index is None else _parts_from_link_index(index, ids, max_item_users)

    if _columnar(store):
        ids, users, parts = _parts_columnar(store, tables, as_of_ms, max_item_users,
                                            after_users)
    else:
        ids, users, parts = _parts_in_threads(store, tables, as_of_ms, max_item_users,
                                              batch_size, after_users)
    paid_user, paid_cols = parts["PAID"]
    g = GraphArrays(ids, users, paid_user, paid_cols)
    for rt in SHARED_ITEM_RELS:
        uu, ii, names = parts[rt]
        g.item_edges[rt] = (uu, ii)
        g.item_ids[rt] = names
    for rt in USER_USER_RELS:
        g.direct_edges[rt] = parts[rt]
    add_merchant_links(g)
    times = [np.asarray(users["signup_ts"], np.float64), paid_cols["ts"]]
    finite = [t[np.isfinite(t)] for t in times]
    allt = np.concatenate(finite) if finite else np.zeros(0)
    g.max_time_ms = float(allt.max()) if len(allt) else float("nan")
    if as_of_ms is not None:
        g.max_time_ms = float(as_of_ms)
    return g


def add_merchant_links(g: GraphArrays) -> None:
    """``item_edges["PAID"]``: distinct (payer, merchant) pairs of the payments, merchants
    with more than MAX_MERCHANT_PAYERS distinct payers left out."""
    import pandas as pd

    # a hash table, not a sort of 4.5M strings at 1M users
    codes, names = pd.factorize(np.asarray(g.paid["merchant"], dtype=object), sort=True)
    ok = codes >= 0
    uu, ii, used = _item_pairs(g.paid_user[ok], codes[ok].astype(np.int64), len(names),
                               MAX_MERCHANT_PAYERS)
    g.item_edges["PAID"] = (uu, ii)
    g.item_ids["PAID"] = np.asarray(names, dtype=str)[used]


def _merchant_payers(store: GraphStore, merchants: list[str]) -> dict[str, set[str]]:
    """The distinct payers of each merchant that has at most MAX_MERCHANT_PAYERS.
    Reads a few payments per payer first; a merchant whose first rows already name more
    payers is a hub; one whose rows ran out is complete; only the rest are read whole."""
    first = 4 * (MAX_MERCHANT_PAYERS + 1)
    payers: dict[str, set[str]] = defaultdict(set)
    rows: dict[str, int] = defaultdict(int)
    for a in store.adjacent("Merchant", merchants, ["PAID"], "in", first):
        payers[a.node_id].add(a.other_id)
        rows[a.node_id] += 1
    unsure = [m for m in merchants
              if rows[m] >= first and len(payers[m]) <= MAX_MERCHANT_PAYERS]
    for a in store.adjacent("Merchant", unsure, ["PAID"], "in", MAX_LINKS_PER_USER):
        payers[a.node_id].add(a.other_id)
    return {m: payers[m] for m in merchants if len(payers[m]) <= MAX_MERCHANT_PAYERS}


def _user_columns(store: GraphStore, ids: list[str]) -> dict[str, np.ndarray]:
    from graph.model import NODE_TYPES, PropType

    props = NODE_TYPES["User"].properties
    nodes = store.get_nodes("User", ids)
    cols: dict[str, np.ndarray] = {}
    for p in USER_EXPORT_PROPS:
        vals = [None if n is None else n.properties.get(p) for n in nodes]
        if props[p] is PropType.STR:
            cols[p] = np.array(vals, dtype=object)
        else:
            cols[p] = np.array([np.nan if v is None else float(v)  # type: ignore[arg-type]
                                for v in vals], np.float64)
    return cols


def neighbourhood_graph(
    store: GraphStore, user_id: str, max_item_users: int = DEFAULT_MAX_ITEM_USERS
) -> GraphArrays:
    """The part of the graph one user's score depends on: the user, every non-hub item
    it holds with all of that item's holders, every non-hub merchant it paid with all
    of that merchant's payers, and its direct neighbours. User 0 is the
    target; the others follow in ascending id order."""
    from graph.errors import NotFoundError

    if store.missing_nodes("User", [user_id]):
        raise NotFoundError(f"no user with id {user_id!r}")
    item_pairs: dict[str, list[tuple[str, str]]] = {}
    held = store.adjacent("User", [user_id], list(SHARED_ITEM_RELS), "out", MAX_LINKS_PER_USER)
    by_rel: dict[str, list[str]] = defaultdict(list)
    for a in held:
        by_rel[a.rel_type].append(a.other_id)
    others: set[str] = set()
    for rt, items in by_rel.items():
        label = REL_TYPES[rt].dst
        holders: dict[str, set[str]] = defaultdict(set)
        for b in store.adjacent(label, sorted(set(items)), [rt], "in", max_item_users + 1):
            holders[b.node_id].add(b.other_id)
        pairs = []
        for item, hs in holders.items():
            if len(hs) > max_item_users:
                continue
            pairs += [(h, item) for h in hs]
            others |= hs
        item_pairs[rt] = pairs
    shops = sorted({a.other_id for a in store.adjacent("User", [user_id], ["PAID"], "out",
                                                        MAX_LINKS_PER_USER)})
    shop_payers = _merchant_payers(store, shops)
    for hs in shop_payers.values():
        others |= hs
    direct: dict[str, list[str]] = defaultdict(list)
    for a in store.adjacent("User", [user_id], list(USER_USER_RELS), "both", MAX_LINKS_PER_USER):
        if a.other_id != user_id:
            direct[a.rel_type].append(a.other_id)
            others.add(a.other_id)
    others.discard(user_id)
    ids = np.array([user_id, *sorted(others)], dtype=object)
    index = {u: i for i, u in enumerate(ids.tolist())}
    users = _user_columns(store, ids.tolist())
    rels = store.relationships("PAID", ids.tolist(), "out", MAX_LINKS_PER_USER)
    paid_user = np.array([index[r.src] for r in rels], dtype=np.int64)
    paid = {
        "amount": np.array([r.properties.get("amount", np.nan) for r in rels], np.float64),
        "ts": np.array([r.properties.get("ts", np.nan) for r in rels], np.float64),
        "channel": np.array([r.properties.get("channel") for r in rels], dtype=object),
        "merchant": np.array([r.dst for r in rels], dtype=object),
    }
    g = GraphArrays(ids, users, paid_user, paid)
    for rt in SHARED_ITEM_RELS:
        pairs = item_pairs.get(rt, [])
        u = np.array([index[h] for h, _ in pairs], dtype=np.int64)
        held_items = np.array([i for _, i in pairs], dtype=object)
        uu, ii, names = _item_links(u, held_items, max_item_users)
        g.item_edges[rt] = (uu, ii)
        g.item_ids[rt] = names
    for rt in USER_USER_RELS:
        v = np.array([index[o] for o in direct.get(rt, [])], dtype=np.int64)
        g.direct_edges[rt] = _direct_links(np.zeros(len(v), np.int64), v)
    # the user's own non-hub merchants only: a neighbour's merchant seen through a few
    # payers here may be a hub
    payer_merchant = [(index[h], m) for m, hs in shop_payers.items() for h in hs]
    uu, ii, names = _item_links(np.array([a for a, _ in payer_merchant], dtype=np.int64),
                                np.array([m for _, m in payer_merchant], dtype=object),
                                MAX_MERCHANT_PAYERS)
    g.item_edges["PAID"] = (uu, ii)
    g.item_ids["PAID"] = names
    return g


def to_heterodata(g: GraphArrays, x: np.ndarray, label_in: np.ndarray) -> Any:
    """A torch_geometric HeteroData: ``user`` nodes with encoded features and the
    visible-label input, one node type per shared item, and edges user->item and
    user->user for each relationship type."""
    import torch
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    data["user"].label_in = torch.from_numpy(np.ascontiguousarray(label_in, dtype=np.float32))
    data["user"].num_nodes = g.n_users
    for rt, (u, i) in g.item_edges.items():
        item = REL_TYPES[rt].dst.lower()
        data[item].num_nodes = len(g.item_ids[rt])
        data["user", rt.lower(), item].edge_index = torch.from_numpy(np.stack([u, i]))
    for rt, (a, b) in g.direct_edges.items():
        data["user", rt.lower(), "user"].edge_index = torch.from_numpy(np.stack([a, b]))
    return data
