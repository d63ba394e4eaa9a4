"""Bulk decisions: what a review needs of each decision, small enough to pass between
processes, and the per-process worker that computes them.

``decide`` (limits.engine) stays the one way a decision is made; an ``Outcome`` is the
part of its Decision a review uses (the summary, the write-back and the audit record
text), so the decision step can run in worker processes while a single writer keeps
the hash chain. ``outcome_of(decide(p, policy))`` is the reference the workers are
tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from limits.audit import Entry, entry_of
from limits.counterfactuals import decide_with_counterfactuals
from limits.decision import Decision
from limits.errors import LimitsError
from limits.features import Profile
from limits.policy import Policy


class LineOutcome(NamedTuple):
    line: str
    action: str
    current_limit: float | None  # None when the line is not held
    new_limit: float
    current_temp_limit: float
    temp_limit: float
    temp_until_ms: int | None
    held_status: str | None  # the stored status of a held line
    held_temp_until_ms: int | None  # the stored end of its temporary raise

    @property
    def effective_limit(self) -> float:
        return self.new_limit + self.temp_limit


class Outcome(NamedTuple):
    user_id: str
    action: str
    refer: str | None
    decided_at_ms: int
    lines: tuple[LineOutcome, ...]
    entry: Entry | None  # the audit record, when one is wanted


def outcome_of(d: Decision, *, record: bool = True) -> Outcome:
    lines = []
    for ld in d.lines:
        held = d.inputs.lines.get(ld.line)
        lines.append(LineOutcome(
            ld.line, ld.action, ld.current_limit, ld.new_limit, ld.current_temp_limit,
            ld.temp_limit, ld.temp_until_ms, held.status if held else None,
            held.temp_until_ms if held else None))
    return Outcome(d.user_id, d.action, d.refer, d.decided_at_ms, tuple(lines),
                   entry_of(d) if record else None)


def decide_outcomes(profiles: Sequence[Profile], policy: Policy, *, record: bool,
                    counterfactuals: bool = False) -> list[Outcome]:
    return [outcome_of(decide_with_counterfactuals(p, policy, counterfactuals), record=record)
            for p in profiles]


# -- worker processes ---------------------------------------------------------------
# The policy is sent once per worker, not with every chunk.
_worker_policy: Policy | None = None


def init_worker(policy: Policy) -> None:
    global _worker_policy
    _worker_policy = policy


def worker_outcomes(args: tuple[Sequence[Profile], bool, bool]) -> list[Outcome]:
    """``decide_outcomes`` in a worker started with ``init_worker``."""
    profiles, record, counterfactuals = args
    if _worker_policy is None:
        raise LimitsError("worker_outcomes runs in a process started with init_worker")
    return decide_outcomes(profiles, _worker_policy, record=record,
                           counterfactuals=counterfactuals)
