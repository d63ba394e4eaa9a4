"""Batch normalisation helpers shared by both stores."""

from __future__ import annotations

import gc
import threading

import pytest

from graph.batch import _fast_column, gc_paused
from graph.model import PropType


def test_gc_paused_nests_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer holder still holds it
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failed write")
    assert gc.isenabled()


def test_gc_paused_keeps_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_paused_from_threads_restores_once_all_leave() -> None:
    inside = threading.Barrier(4)
    leave = threading.Event()

    def hold() -> None:
        with gc_paused():
            inside.wait()
            leave.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait()
    assert not gc.isenabled()
    leave.set()
    for t in threads:
        t.join()
    assert gc.isenabled()


def test_list_columns_take_the_vectorised_path_with_the_same_values() -> None:
    assert _fast_column([1.5, None, 2, float("nan")], PropType.FLOAT) == [1.5, None, 2.0, None]
    assert _fast_column([3, None], PropType.INT) == [3, None]
    assert _fast_column(["a", None], PropType.STR) == ["a", None]
    # what needs a row-by-row check (and a message naming the row) is left to it
    assert _fast_column([1.0, float("inf")], PropType.FLOAT) is None
    assert _fast_column([True, 2], PropType.INT) is None
    assert _fast_column(["3", 4], PropType.INT) is None
