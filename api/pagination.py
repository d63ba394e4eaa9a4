"""Cursor pagination over a ranked order: opaque base64 cursors that encode the rank key
of the last item seen, so a page starts strictly after it even if items were added."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from api.errors import BadInputError

T = TypeVar("T")


def encode_cursor(kind: str, key: Any) -> str:
    raw = json.dumps([kind, key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_cursor(kind: str, cursor: str) -> Any:
    """The rank key in a cursor made by ``encode_cursor(kind, ...)``."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
        got_kind, key = json.loads(raw)
    except (ValueError, TypeError, UnicodeError):
        raise BadInputError(
            "the cursor is not one this API made; pass an endCursor or cursor "
            "from a previous page unchanged"
        ) from None
    if got_kind != kind:
        raise BadInputError(f"that cursor belongs to another list ({got_kind}, not {kind})")
    return key


def check_first(first: int, max_page: int) -> int:
    if first < 0:
        raise BadInputError(f"first must be zero or more, got {first}")
    if first > max_page:
        raise BadInputError(f"first is at most {max_page} per page, got {first}; page on")
    return first


@dataclass
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next: bool
    has_previous: bool
    total: int


def paginate(
    ranked: Sequence[T],
    rank_key: Callable[[T], Any],
    kind: str,
    first: int,
    after: str | None,
    max_page: int,
) -> Page[T]:
    """One page of an already-ranked list; ``rank_key`` must increase along it."""
    check_first(first, max_page)
    start = 0
    if after is not None:
        key = _tuple(decode_cursor(kind, after))
        lo, hi = 0, len(ranked)
        while lo < hi:  # first item whose key is greater than the cursor's
            mid = (lo + hi) // 2
            if _tuple(rank_key(ranked[mid])) <= key:
                lo = mid + 1
            else:
                hi = mid
        start = lo
    items = list(ranked[start : start + first])
    cursors = [encode_cursor(kind, rank_key(i)) for i in items]
    return Page(items, cursors, start + first < len(ranked), start > 0, len(ranked))


def _tuple(key: Any) -> Any:
    try:
        return tuple(key) if isinstance(key, (list, tuple)) else (key,)
    except TypeError:
        raise BadInputError("malformed cursor") from None
