"""Prometheus metrics in the text exposition format (version 0.0.4), without a client
library: counters and histograms with labels, enough for this service."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence

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

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        out += [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]
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

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
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
    """Every metric the API exports, one instance per app."""

    def __init__(self) -> None:
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

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.latency, self.decisions, self.errors):
            lines += m.render()
        return "\n".join(lines) + "\n"
