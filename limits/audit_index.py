"""A lookup index beside the audit log: user -> record offsets, and the last applied raise
per (user, line), so that one user's history and cool-down are found without reading the
whole log.

The index (``decisions.idx.sqlite``) is derived data, never the record: it holds how far
into the log it reaches (``covered`` bytes) and the hash of the last record it has seen.
When the log has grown past it, the missing tail is indexed on the next use; when the
log no longer matches it (shorter, or another record at its end), or the file is missing
or unreadable, it is rebuilt from the log. Appends update it under the log's lock, after
the records are synced.

Each process keeps one connection to the index open, and the log's identity, size and
modification time from when the index last covered it exactly. A read whose stat of the
log still finds them answers at once, without the log's lock, without looking at the
log and without writing: every decision, dry runs included, reads the last raises, and
reconnecting and checking the log's tail each time would cost more than the decision.
Another process's append changes the log's size, so the next read takes the lock and
catches up. A read that races such an append sees the index before or after the append
commits, never half of it (one SQLite transaction).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

INDEX_NAME = "decisions.idx.sqlite"
INDEX_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v)",
    "CREATE TABLE IF NOT EXISTS rec (seq INTEGER PRIMARY KEY, user_id TEXT NOT NULL, "
    "offset INTEGER NOT NULL, length INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rec_user ON rec (user_id, seq)",
    "CREATE TABLE IF NOT EXISTS last_raise (user_id TEXT NOT NULL, line TEXT NOT NULL, "
    "seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (user_id, line))",
)
_INSERT_REC = "INSERT OR REPLACE INTO rec (seq, user_id, offset, length) VALUES (?, ?, ?, ?)"
# Log order decides, as in the log itself: a later record's raise replaces an earlier one.
_UPSERT_RAISE = (
    "INSERT INTO last_raise (user_id, line, seq, at_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id, line) DO UPDATE SET seq = excluded.seq, at_ms = excluded.at_ms "
    "WHERE excluded.seq > last_raise.seq"
)

# (seq, user_id, offset, length) and (user_id, line, seq, at_ms)
RecRow = tuple[int, str, int, int]
RaiseRow = tuple[str, str, int, int]


def rows_of(rec: dict[str, Any], offset: int, length: int
            ) -> tuple[RecRow, list[RaiseRow]]:
    """The index rows of one record found at ``offset`` in the log."""
    d = rec["decision"]
    seq, uid = int(rec["seq"]), str(d["user_id"])
    raises: list[RaiseRow] = []
    if rec.get("applied"):
        raises = [(uid, str(ld["line"]), seq, int(d["decided_at_ms"]))
                  for ld in d["lines"] if ld["action"] == "raise"]
    return (seq, uid, offset, length), raises


# (device, inode, size, modification time in ns) of the log
LogState = tuple[int, int, int, int]


class AuditIndex:
    """The index of the log at ``log_path``, in ``path``. No I/O until a method is called.

    ``log_lock`` is the log's exclusive lock (``AuditLog._locked``), taken to catch the
    index up before a read; ``add``, ``rebuild``, ``refresh`` and ``is_current`` expect
    their caller to hold it. Lock order: the log's lock, then this object's mutex."""

    def __init__(self, path: str | Path, log_path: str | Path,
                 log_lock: Callable[[], AbstractContextManager[Any]]) -> None:
        self.path = Path(path)
        self.log_path = Path(log_path)
        self._log_lock = log_lock
        self._mutex = threading.RLock()  # one connection, shared by the process's threads
        self._conn: sqlite3.Connection | None = None
        self._conn_of: tuple[int, int, int] | None = None  # (pid, device, inode)
        self._covers: LogState | None = None  # the log as the index last covered it

    def __repr__(self) -> str:
        return f"AuditIndex({str(self.path)!r})"

    # -- the connection -----------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened once; again after a fork or when the file
        was replaced (removed and rebuilt by another process or object)."""
        if self._conn is not None:
            if self._conn_of == (os.getpid(), *_file_id(self.path)):
                return self._conn
            self.close()
        conn = self._connect()
        self._conn, self._conn_of = conn, (os.getpid(), *_file_id(self.path))
        return conn

    def close(self) -> None:
        """Close this process's connection (the next use opens it again)."""
        with self._mutex:
            conn, self._conn, self._covers = self._conn, None, None
            if conn is not None and self._conn_of is not None \
                    and self._conn_of[0] == os.getpid():
                conn.close()  # a connection inherited through fork is left alone
            self._conn_of = None

    def _current(self) -> sqlite3.Connection | None:
        """The connection, when the log is as it was when the index last covered it."""
        if self._conn is None or self._covers is None or self._conn_of is None \
                or self._conn_of[0] != os.getpid():
            return None
        return self._conn if _log_state(self.log_path) == self._covers else None

    def _mark_covered(self, covered: int) -> None:
        """Remember the log's state if the index covers all of it (log lock held)."""
        state = _log_state(self.log_path)
        self._covers = state if state is not None and state[2] == covered else None

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of a query on an index that covers the whole log as it is now."""
        with self._mutex:
            conn = self._current()
            if conn is not None:
                return conn.execute(sql, params).fetchall()
        with self._log_lock(), self._mutex:
            return self.refresh().execute(sql, params).fetchall()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # Derived data: losing the last transaction on a power cut only means catching up.
        conn.execute("PRAGMA synchronous=NORMAL")
        for stmt in _SCHEMA:
            conn.execute(stmt)
        return conn

    def _meta(self, conn: sqlite3.Connection) -> tuple[int, int, str | None]:
        """(covered bytes, next seq, last hash); (0, 0, None) for a new index."""
        m = dict(conn.execute("SELECT k, v FROM meta").fetchall())
        if m.get("version") != INDEX_VERSION:
            return -1, 0, None
        return int(m["covered"]), int(m["next_seq"]), m.get("last_hash")

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, covered: int, next_seq: int,
                  last_hash: str | None) -> None:
        conn.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [
            ("version", INDEX_VERSION), ("covered", covered), ("next_seq", next_seq),
            ("last_hash", last_hash)])
        # The high-water mark only rises: a log found shorter does not lower it.
        m = dict(conn.execute("SELECT k, v FROM meta WHERE k IN ('high_seq', 'high_hash')")
                 .fetchall())
        if next_seq > int(m.get("high_seq") or 0):
            conn.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [
                ("high_seq", next_seq), ("high_hash", last_hash)])

    def high_water(self) -> tuple[int, str | None]:
        """(records, hash of the last of them) of the longest log this index has seen;
        (0, None) when it knows of none or cannot be read. Kept through rebuilds, so
        that a log made shorter is found out (``AuditLog.verify``)."""
        if not self.path.exists():
            return 0, None
        with self._mutex:
            try:
                conn = self._connection()
                m = dict(conn.execute(
                    "SELECT k, v FROM meta WHERE k IN ('high_seq', 'high_hash')").fetchall())
            except sqlite3.DatabaseError:
                return 0, None
        return int(m.get("high_seq") or 0), m.get("high_hash")

    def _keep_high_water(self, high: tuple[int, str | None], conn: sqlite3.Connection) -> None:
        if high[0]:
            conn.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [
                ("high_seq", high[0]), ("high_hash", high[1])])

    # -- writing ------------------------------------------------------------------
    def add(self, start: int, end: int, recs: Iterable[RecRow], raises: Iterable[RaiseRow],
            next_seq: int, last_hash: str) -> None:
        """Index records just appended between byte ``start`` and ``end`` of the log.

        Called under the log's lock. If the index did not reach ``start`` (missing,
        behind, or out of step) it is brought up to date from the log first."""
        with self._mutex:
            try:
                conn = self._connection()
                covered = self._meta(conn)[0]
            except sqlite3.DatabaseError:
                self.remove()
                conn = self._connection()
                covered = self._meta(conn)[0]
            if covered != start or not self._tail_matches(conn, start):
                self._catch_up(conn, start)
            with _transaction(conn):
                conn.executemany(_INSERT_REC, recs)
                conn.executemany(_UPSERT_RAISE, raises)
                self._set_meta(conn, end, next_seq, last_hash)
            self._mark_covered(end)

    def remove(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def rebuild(self, entries: Iterable[tuple[dict[str, Any], int, int]], end: int,
                next_seq: int, last_hash: str | None) -> None:
        """Replace the index with one built from ``(record, offset, length)`` entries."""
        with self._mutex:
            high = self.high_water()
            self.remove()
            conn = self._connection()
            with _transaction(conn):
                self._keep_high_water(high, conn)
                self._insert_entries(conn, entries)
                self._set_meta(conn, end, next_seq, last_hash)
            self._mark_covered(end)

    @staticmethod
    def _insert_entries(conn: sqlite3.Connection,
                        entries: Iterable[tuple[dict[str, Any], int, int]]) -> None:
        recs: list[RecRow] = []
        raises: list[RaiseRow] = []
        for rec, offset, length in entries:
            r, rs = rows_of(rec, offset, length)
            recs.append(r)
            raises.extend(rs)
            if len(recs) >= 50_000:
                conn.executemany(_INSERT_REC, recs)
                conn.executemany(_UPSERT_RAISE, raises)
                recs, raises = [], []
        conn.executemany(_INSERT_REC, recs)
        conn.executemany(_UPSERT_RAISE, raises)

    def _tail_matches(self, conn: sqlite3.Connection, covered: int) -> bool:
        """Whether the log's record ending at ``covered`` is the one the index saw last."""
        _, _, last_hash = self._meta(conn)
        if covered == 0:
            return last_hash is None
        last = _line_ending_at(self.log_path, covered)
        if last is None:
            return False
        try:
            return bool(json.loads(last).get("hash") == last_hash)
        except ValueError:
            return False

    def _catch_up(self, conn: sqlite3.Connection, upto: int) -> None:
        """Index the log up to byte ``upto``: from where the index ends, or from scratch."""
        covered, _, _ = self._meta(conn)
        if covered < 0 or covered > upto or not self._tail_matches(conn, covered):
            with _transaction(conn):
                for table in ("rec", "last_raise"):
                    conn.execute(f"DELETE FROM {table}")  # fixed table names
                conn.execute("DELETE FROM meta WHERE k NOT IN ('high_seq', 'high_hash')")
            covered = 0
        entries = list(_read_entries(self.log_path, covered, upto))
        with _transaction(conn):
            self._insert_entries(conn, entries)
            if entries:
                rec, offset, length = entries[-1]
                self._set_meta(conn, offset + length, int(rec["seq"]) + 1, str(rec["hash"]))
            elif covered == 0:
                self._set_meta(conn, 0, 0, None)

    def refresh(self) -> sqlite3.Connection:
        """This process's connection to an index that covers the whole log as it is now.
        Called under the log's lock; the connection stays open (``close``)."""
        with self._mutex:
            try:
                conn = self._connection()
                size = self._log_size()
                covered, _, _ = self._meta(conn)
                if covered != size or not self._tail_matches(conn, covered):
                    self._catch_up(conn, _complete_end(self.log_path, size))
            except sqlite3.DatabaseError:
                self.remove()
                conn = self._connection()
                self._catch_up(conn, _complete_end(self.log_path, self._log_size()))
            self._mark_covered(self._meta(conn)[0])
            return conn

    def _log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    # -- reading ------------------------------------------------------------------
    def offsets(self, user_id: str) -> list[tuple[int, int, int]]:
        """(seq, offset, length) of every record of ``user_id``, oldest first."""
        return self._read("SELECT seq, offset, length FROM rec WHERE user_id = ? "
                          "ORDER BY seq", (user_id,))

    def last_raises(self, user_id: str | None = None) -> dict[tuple[str, str], int]:
        if user_id is None:
            rows = self._read("SELECT user_id, line, at_ms FROM last_raise", ())
        else:
            rows = self._read("SELECT user_id, line, at_ms FROM last_raise "
                              "WHERE user_id = ?", (user_id,))
        return {(u, line): int(at) for u, line, at in rows}

    def is_current(self) -> bool:
        """Whether the index exists and covers the log exactly as it is."""
        if not self.path.exists():
            return False
        with self._mutex:
            try:
                conn = self._connection()
                covered, _, _ = self._meta(conn)
                return covered == self._log_size() and self._tail_matches(conn, covered)
            except sqlite3.DatabaseError:
                return False


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; rolled back on failure, so the connection kept open stays
    usable."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _file_id(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_dev, st.st_ino


def _log_state(path: Path) -> LogState | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _line_ending_at(path: Path, end: int) -> bytes | None:
    """The log line whose newline is the byte before ``end``, or None."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) < end:
                return None
            pos, buf = end, b""
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
                if buf[:-1].count(b"\n") >= 1 or pos == 0:
                    break
    except OSError:
        return None
    if not buf.endswith(b"\n"):
        return None
    return buf[:-1].rsplit(b"\n", 1)[-1]


def _complete_end(path: Path, size: int) -> int:
    """The end of the last complete line at or before ``size``."""
    if size == 0:
        return 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return pos - step + i + 1
            pos -= step
    return 0


def _read_entries(path: Path, start: int, end: int
                  ) -> Iterator[tuple[dict[str, Any], int, int]]:
    """(record, offset, length) for each readable record between ``start`` and ``end``;
    stops at the first line that is not a record (verify names it)."""
    if end <= start:
        return
    with open(path, "rb") as f:
        f.seek(start)
        offset = start
        while offset < end:
            raw = f.readline()
            if not raw:
                return
            try:
                rec = json.loads(raw)
                rec["decision"]["user_id"]  # a record names its user
            except (ValueError, KeyError, TypeError):
                return
            yield rec, offset, len(raw)
            offset += len(raw)
