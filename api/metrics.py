"""Prometheus metrics in the text exposition format (version 0.0.4), without a client
library: counters and histograms with labels, enough for this service.

With several server processes (``riskgraph serve --workers N``) each process counts its
own requests and writes a snapshot of its series to a directory the processes share,
once a second (``Metrics.publish``); /metrics, whichever process answers it, sums the
snapshots of every process, its own taken live. Figures from the other processes are at
most a second old, and those of a worker that has exited are kept, so counters never go
backwards.
"""

from __future__ import annotations

import json
import os
import threading
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Counter:
    def __init__(self, name: str, doc: str, labels: Sequence[str] = ()) -> None:
        self.name, self.doc, self.label_names = name, doc, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + by

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def snapshot(self) -> list[list[Any]]:
        with self._lock:
            return [[list(k), v] for k, v in self._values.items()]

    def render(self, others: Sequence[list[list[Any]]] = ()) -> list[str]:
        """The series, plus those of other processes' snapshots."""
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        with self._lock:
            total = dict(self._values)
        for snap in others:
            for k, v in snap:
                key = tuple(k)
                total[key] = total.get(key, 0.0) + float(v)
        out += [f"{self.name}{_labels(self.label_names, k)} {_num(v)}"
                for k, v in sorted(total.items())]
        return out


class Histogram:
    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.doc, self.label_names = name, doc, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts, sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        i = bisect_left(self.buckets, value)
        with self._lock:
            s = self._series.get(labels)
            if s is None:
                s = self._series[labels] = [0.0] * (len(self.buckets) + 2)
            if i < len(self.buckets):
                s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, *labels: str) -> float:
        s = self._series.get(labels)
        return s[-1] if s else 0.0

    def snapshot(self) -> list[list[Any]]:
        with self._lock:
            return [[list(k), list(v)] for k, v in self._series.items()]

    def render(self, others: Sequence[list[list[Any]]] = ()) -> list[str]:
        """The series, plus those of other processes' snapshots."""
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        with self._lock:
            total = {k: list(v) for k, v in self._series.items()}
        for snap in others:
            for k, v in snap:
                key = tuple(k)
                have = total.setdefault(key, [0.0] * (len(self.buckets) + 2))
                if len(v) == len(have):  # same buckets: the same build of the server
                    for i, x in enumerate(v):
                        have[i] += float(x)
        items = sorted(total.items())
        for k, s in items:
            running = 0.0
            for b, n in zip(self.buckets, s):
                running += n
                le = f'le="{_num(b)}"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {_num(running)}")
            inf = _labels(self.label_names, k, 'le="+Inf"')
            out.append(f"{self.name}_bucket{inf} {_num(s[-1])}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {_num(s[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {_num(s[-1])}")
        return out


class Metrics:
    """Every metric the API exports, one instance per app. ``share_dir``: the directory
    where the server's processes publish their snapshots (None for a single process)."""

    def __init__(self, share_dir: Path | None = None) -> None:
        self.share_dir = share_dir
        self.requests = Counter(
            "riskgraph_http_requests_total", "HTTP requests by route and status.",
            ("route", "status"),
        )
        self.latency = Histogram(
            "riskgraph_request_duration_seconds",
            "Time to answer a request, by route and GraphQL operation.",
            ("route", "operation"),
        )
        self.decisions = Counter(
            "riskgraph_limit_decisions_total", "Limit decisions by action and dry run.",
            ("action", "dry_run"),
        )
        self.errors = Counter(
            "riskgraph_graphql_errors_total", "GraphQL errors returned, by code.", ("code",)
        )

    def __repr__(self) -> str:
        return f"Metrics(share_dir={str(self.share_dir) if self.share_dir else None!r})"

    @property
    def _all(self) -> dict[str, Counter | Histogram]:
        return {m.name: m for m in (self.requests, self.latency, self.decisions, self.errors)}

    def publish(self) -> None:
        """Write this process's snapshot to ``share_dir`` (replaced whole, atomically)."""
        if self.share_dir is None:
            return
        snap = {name: m.snapshot() for name, m in self._all.items()}
        target = self.share_dir / f"{os.getpid()}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap), encoding="utf-8")
        os.replace(tmp, target)

    def _others(self) -> list[dict[str, Any]]:
        if self.share_dir is None:
            return []
        mine = f"{os.getpid()}.json"
        out = []
        for f in sorted(self.share_dir.glob("*.json")):
            if f.name == mine:
                continue
            try:
                out.append(json.loads(f.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # being replaced right now: its figures come next scrape
        return out

    def render(self) -> str:
        others = self._others()
        lines: list[str] = []
        for name, m in self._all.items():
            lines += m.render([o[name] for o in others if name in o])
        return "\n".join(lines) + "\n"
