"""The graph ring groups are found on (graph/rings.py ``group_edges``): ties through a
third account, and a cap on what one pair can say."""

from __future__ import annotations

import numpy as np

from graph import rings

DAY = rings.DAY_MS
T0 = 1_720_000_000_000


def _inputs(n: int, *, items: dict[str, tuple[list[int], list[int]]] | None = None,
            referred: tuple[list[int], list[int]] = ([], []),
            transfers: list[tuple[int, int, float, int]] = (),  # type: ignore[assignment]
            signup: list[float] | None = None) -> rings.RingInputs:
    users = np.array([f"u{i:03d}" for i in range(n)], dtype=object)
    item_arrays = {}
    for t, (u, it) in (items or {}).items():
        ids = np.array([f"{t}-{k}" for k in range(max(it) + 1)], dtype=object)
        item_arrays[t] = (np.array(u, dtype=np.int64), np.array(it, dtype=np.int64), ids)
    src = np.array([x[0] for x in transfers], dtype=np.int64)
    dst = np.array([x[1] for x in transfers], dtype=np.int64)
    return rings.RingInputs(
        users=users,
        signup_ms=np.array(signup if signup is not None else [T0] * n, dtype=np.float64),
        fraud_risk=np.full(n, np.nan),
        items=item_arrays,
        referred=(np.array(referred[0], dtype=np.int64), np.array(referred[1], dtype=np.int64)),
        transferred=(src, dst, np.array([x[2] for x in transfers], dtype=np.float64),
                     np.array([x[3] for x in transfers], dtype=np.float64)),
    )


def _edges(inp: rings.RingInputs, cfg: rings.RingConfig | None = None
           ) -> dict[tuple[int, int], float]:
    cfg = cfg or rings.RingConfig()
    a, b, w = rings.group_edges(inp, rings.pair_evidence(inp, cfg), cfg)
    return {(int(x), int(y)): float(z) for x, y, z in zip(a, b, w)}


def test_money_relayed_through_a_middle_account_ties_both_ends() -> None:
    hour = 3_600_000
    inp = _inputs(3, transfers=[(0, 1, 10_000.0, T0), (1, 2, 9_800.0, T0 + 2 * hour)])
    e = _edges(inp)
    assert (0, 2) in e and e[(0, 2)] > 0
    # money sent on two days later is not relayed
    late = _inputs(3, transfers=[(0, 1, 10_000.0, T0), (1, 2, 9_800.0, T0 + 48 * hour)])
    assert (0, 2) not in _edges(late)
    # nor is a small part of it
    part = _inputs(3, transfers=[(0, 1, 10_000.0, T0), (1, 2, 500.0, T0 + hour)])
    assert (0, 2) not in _edges(part)


def test_accounts_one_referrer_brought_in_together_are_tied() -> None:
    together = _inputs(4, referred=([0, 0, 0], [1, 2, 3]),
                       signup=[T0 - 400 * DAY, T0, T0 + DAY, T0 + 2 * DAY])
    apart = _inputs(4, referred=([0, 0, 0], [1, 2, 3]),
                    signup=[T0 - 400 * DAY, T0, T0 + 150 * DAY, T0 + 300 * DAY])
    e_together, e_apart = _edges(together), _edges(apart)
    assert e_together[(1, 2)] > e_apart[(1, 2)] > 0
    assert _edges(together, rings.RingConfig(co_referral_weight=0.0)).get((1, 2), 0.0) == 0.0


def test_no_pair_says_more_than_the_cap() -> None:
    inp = _inputs(2, transfers=[(0, 1, 500_000.0, T0 + k * DAY) for k in range(8)])
    raw = rings.pair_evidence(inp, rings.RingConfig()).weight
    assert raw[0] > 3
    assert _edges(inp)[(0, 1)] <= rings.RingConfig().pair_cap
    assert _edges(inp, rings.RingConfig(pair_cap=0.0))[(0, 1)] == raw[0]


def test_one_large_transfer_does_not_merge_two_rings() -> None:
    # two rings of six, each sharing one card; a member of the first sends the second
    # a large sum again and again
    u = list(range(12))
    it = [0] * 6 + [1] * 6
    inp = _inputs(12, items={"HAS_CARD": (u, it)},
                  transfers=[(0, 6, 200_000.0, T0 + k * DAY) for k in range(6)])
    cfg = rings.RingConfig()
    groups = rings.find_groups(12, rings.group_edges(inp, rings.pair_evidence(inp, cfg), cfg),
                               cfg)
    assert len(set(groups[:6].tolist())) == 1 and len(set(groups[6:].tolist())) == 1
    assert groups[0] != groups[6] and groups[0] >= 0 and groups[6] >= 0


def test_a_pass_writes_only_the_users_whose_ring_values_changed() -> None:
    rows = {"id": ["a", "b", "c"], "ring_id": ["ring:a", "ring:a", ""],
            "ring_size": [2, 2, 0], "ring_exposure": [0.5, 0.5, 0.1]}
    same = {"ring_id": np.array(["ring:a", "ring:a", ""], dtype=object),
            "ring_size": np.array([2.0, 2.0, 0.0]), "ring_exposure": np.array([0.5, 0.5, 0.1])}
    assert rings.changed_rows(rows, same)["id"] == []
    moved = {**same, "ring_exposure": np.array([0.5, 0.4, np.nan]),
             "ring_id": np.array(["ring:a", "ring:a", None], dtype=object)}
    assert rings.changed_rows(rows, moved)["id"] == ["b", "c"]
    assert rings.changed_rows(rows, None) is rows
    assert rings.changed_rows(rows, {"ring_id": same["ring_id"]}) is rows  # not all read
