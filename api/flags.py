"""Investigator flags and the API's own audit log: append-only JSON Lines files.

Each record is one line written with a single ``write`` on a file opened for appending
and fsynced, so a crash loses at most the line being written and never rewrites history.
Flags are read back into memory and re-read when the file grows (another server
process may have appended).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from graph.errors import RiskGraphError

MAX_REASON_CHARS = 2000


class FlagStoreError(RiskGraphError):
    """The flag or audit file cannot be written or read."""


@dataclass(frozen=True)
class Flag:
    id: str
    user_id: str
    reason: str
    by: str  # the key id of who flagged
    at_ms: int
    request_id: str


def _append_line(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise FlagStoreError(
            f"cannot append to {path}: {exc}; check RISKGRAPH_HOME is writable"
        ) from exc


class FlagStore:
    """Flags on users, kept in ``flags.jsonl`` under a directory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "flags.jsonl"
        self._lock = threading.Lock()
        self._by_user: dict[str, list[Flag]] = {}
        self._read_to = 0  # bytes of the file already indexed

    def __repr__(self) -> str:
        return f"FlagStore({str(self.path)!r})"

    def add(self, user_id: str, reason: str, by: str, request_id: str) -> Flag:
        reason = reason.strip()
        if not reason:
            raise ValueError("a flag needs a reason; say what the investigator saw")
        if len(reason) > MAX_REASON_CHARS:
            raise ValueError(f"a flag reason is at most {MAX_REASON_CHARS} characters")
        flag = Flag(uuid.uuid4().hex, user_id, reason, by, int(time.time() * 1000), request_id)
        with self._lock:
            _append_line(self.path, asdict(flag))
        return flag

    def for_users(self, user_ids: list[str]) -> list[list[Flag]]:
        with self._lock:
            self._refresh()
            return [list(self._by_user.get(u, ())) for u in user_ids]

    def _refresh(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._read_to:
            return
        with open(self.path, "rb") as f:
            f.seek(self._read_to)
            chunk = f.read(size - self._read_to)
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        for raw in chunk[:end].splitlines():
            if not raw.strip():
                continue
            try:
                flag = Flag(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                raise FlagStoreError(f"{self.path} has a malformed line: {exc}") from exc
            self._by_user.setdefault(flag.user_id, []).append(flag)
        self._read_to += end


class ActionLog:
    """The API's audit trail of state-changing calls: who did what, when, in which request."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "api-actions.jsonl"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ActionLog({str(self.path)!r})"

    def record(self, action: str, by: str, request_id: str, **detail: Any) -> None:
        entry = {
            "at_ms": int(time.time() * 1000),
            "action": action,
            "by": by,
            "request_id": request_id,
            **detail,
        }
        with self._lock:
            _append_line(self.path, entry)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
