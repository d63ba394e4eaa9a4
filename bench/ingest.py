"""Ingest benchmark: rows/s from CSV and Parquet into each store, and what validation costs.

On one generated directory, for each format (csv, parquet):

* baseline: a plain pyarrow read of ``paid`` (no validation, no writing);
* read + validate: the loader's reader and validation, nothing written;
* load: parse, validate and write ``paid`` into each store (end to end), and the store
  alone writing the same rows already typed, so the cost of reading and validation
  shows beside the cost of writing;
* the whole directory into each store (every file, nodes first), rows/s.

Peak memory is sampled per phase (resident set size). ``--full`` instead runs the
target check: generate ``--users`` users (1,000,000 by default) and load them into the
embedded store, timing both and recording the peak memory.

    .venv/bin/python bench/ingest.py                          # 20,000 users, embedded
    .venv/bin/python bench/ingest.py --stores embedded neo4j
    .venv/bin/python bench/ingest.py --full --users 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.machine import machine_info  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from loaders.formats import SPEC_BY_STEM  # noqa: E402
from loaders.load import LoadOptions, load_directory, load_file, plan_file  # noqa: E402
from loaders.reader import inspect, iter_batches  # noqa: E402
from loaders.synthetic import GeneratorConfig, generate  # noqa: E402
from loaders.validate import store_columns, validate  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "ingest.json"
TARGET_RELS_PER_S = 100_000
TARGET_FULL_S = 300
TARGET_FULL_GB = 8.0


@dataclass
class Measure:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@contextmanager
def measured() -> Iterator[Measure]:
    """Wall time and peak resident memory of the block (sampled every 50 ms)."""
    proc = psutil.Process()
    m = Measure()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], proc.memory_info().rss)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        done.set()
        t.join()
        m.peak_rss_mb = round(max(peak[0], proc.memory_info().rss) / 2**20, 1)


def _row(phase: str, fmt: str, store: str, rows: int, m: Measure, **extra: Any
         ) -> dict[str, Any]:
    return {"phase": phase, "format": fmt, "store": store, "rows": rows,
            "seconds": round(m.seconds, 3),
            "rows_per_s": round(rows / m.seconds) if m.seconds else None,
            "peak_rss_mb": m.peak_rss_mb, **extra}


class Stores:
    """Opens each store empty; starts the Bolt server when neo4j is asked for."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: Any = None
        self.driver: Any = None
        self.count = 0

    def open(self, name: str) -> GraphStore:
        self.count += 1
        if name == "embedded":
            from graph.embedded import EmbeddedStore

            store: GraphStore = EmbeddedStore(self.workdir / f"embedded-{self.count}")
        else:
            from graph.neo4j_store import Neo4jStore, connect
            from tests.bolt_server import BoltServer

            if self.server is None:
                self.server = BoltServer(root=self.workdir / "bolt").start()
                self.driver = connect(self.server.uri, self.server.user, self.server.password)
            store = Neo4jStore(self.driver, database=self.server.database)
        store.init()
        store.clear()
        return store

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.server is not None:
            self.server.stop()


def _with_endpoints(store: GraphStore, data: Path, options: LoadOptions) -> None:
    """Users and merchants, so that paid rows have their endpoints."""
    for stem in ("users", "merchants"):
        path = next(data.glob(f"{stem}.*"))
        load_file(store, plan_file(path, SPEC_BY_STEM[stem]), options)


def run_formats(users: int, stores: list[str], workdir: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    opened = Stores(workdir)
    try:
        for fmt in ("csv", "parquet"):
            data = workdir / f"data-{fmt}"
            generate(GeneratorConfig(users=users, seed=1), data, fmt)  # type: ignore[arg-type]
            paid = data / f"paid.{fmt}"
            n = pq.ParquetFile(paid).metadata.num_rows if fmt == "parquet" else \
                pacsv.read_csv(paid).num_rows
            with measured() as m:
                if fmt == "csv":
                    opts = pacsv.ConvertOptions(column_types={})
                    rows = sum(b.num_rows for b in pacsv.open_csv(paid, convert_options=opts))
                else:
                    rows = sum(b.num_rows for b in pq.ParquetFile(paid).iter_batches(100_000))
            results.append(_row("baseline: pyarrow read", fmt, "-", rows, m))

            spec = SPEC_BY_STEM["paid"]
            info = inspect(paid)
            with measured() as m:
                rows = 0
                for raw in iter_batches(info, 100_000):
                    validate(spec, raw.table)
                    rows += raw.table.num_rows
            results.append(_row("read + validate", fmt, "-", rows, m))

            for name in stores:
                options = LoadOptions(workdir / "quarantine")
                store = opened.open(name)
                try:
                    _with_endpoints(store, data, options)
                    with measured() as m:
                        report = load_file(store, plan_file(paid, spec), options)
                finally:
                    store.close()
                results.append(_row("load paid (end to end)", fmt, name, report.rows, m,
                                    loaded=report.loaded, rejected=report.rejected))
                # The same without reading ahead: parse, validate and write in turn.
                store = opened.open(name)
                try:
                    _with_endpoints(store, data, options)
                    with measured() as m:
                        report = load_file(store, plan_file(paid, spec),
                                           replace(options, read_ahead=0))
                finally:
                    store.close()
                results.append(_row("load paid (no read-ahead)", fmt, name, report.rows, m,
                                    loaded=report.loaded, rejected=report.rejected))
                # The store's share: the same rows, already typed, written only.
                typed = [store_columns(spec, validate(spec, raw.table).good_columns())
                         for raw in iter_batches(info, 100_000)]
                store = opened.open(name)
                try:
                    _with_endpoints(store, data, options)
                    with measured() as m:
                        rows = 0
                        for cols in typed:
                            rows += store.upsert_relationships("PAID", cols).written
                finally:
                    store.close()
                results.append(_row("write only (typed rows)", fmt, name, rows, m))

                store = opened.open(name)
                try:
                    with measured() as m:
                        reports = load_directory(store, data,
                                                 LoadOptions(workdir / "quarantine"))
                finally:
                    store.close()
                results.append(_row("load whole directory", fmt, name,
                                    sum(r.rows for r in reports), m,
                                    rejected=sum(r.rejected for r in reports)))
            assert n > 0
    finally:
        opened.close()
    return results


def run_full(users: int, workdir: Path) -> list[dict[str, Any]]:
    from graph.embedded import EmbeddedStore

    data = workdir / "full"
    with measured() as gen:
        summary = generate(GeneratorConfig(users=users, seed=1), data)
    rels = sum(n for f, n in summary.files.items()
               if SPEC_BY_STEM[f.split(".")[0]].kind == "relationships")
    store = EmbeddedStore(workdir / "full-store")
    store.init()
    try:
        with measured() as load:
            reports = load_directory(store, data, LoadOptions(workdir / "quarantine"))
        counts = store.counts()
    finally:
        store.close()
    rel_seconds = sum(r.seconds for r in reports
                      if SPEC_BY_STEM[r.file.split(".")[0]].kind == "relationships")
    total = gen.seconds + load.seconds
    peak = max(gen.peak_rss_mb, load.peak_rss_mb)
    return [
        _row("generate", "csv", "-", sum(summary.files.values()), gen, users=users),
        _row("load generated directory", "csv", "embedded",
             sum(r.rows for r in reports), load,
             relationships=rels, relationships_per_s=round(rels / rel_seconds),
             rejected=sum(r.rejected for r in reports),
             stored_relationships=sum(counts["relationships"].values())),
        {"phase": "generate + load", "users": users, "relationships": rels,
         "seconds": round(total, 1), "peak_rss_mb": peak,
         "target_seconds": TARGET_FULL_S, "target_peak_gb": TARGET_FULL_GB,
         "meets_target": total <= TARGET_FULL_S and peak / 1024 <= TARGET_FULL_GB},
    ]


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'phase':<30}{'format':<9}{'store':<10}{'rows':>11}{'seconds':>9}"
          f"{'rows/s':>10}{'peak MB':>9}")
    for r in results:
        rps = r.get("rows_per_s")
        print(f"{r['phase']:<30}{r.get('format', ''):<9}{r.get('store', ''):<10}"
              f"{r.get('rows', r.get('relationships', 0)):>11,}{r['seconds']:>9.2f}"
              f"{(f'{rps:,}' if rps else '-'):>10}{r['peak_rss_mb']:>9,.0f}")


def _ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput against the plain read of the same file, and validation's share."""
    out: dict[str, Any] = {}
    for fmt in ("csv", "parquet"):
        base = next((r for r in results if r["phase"].startswith("baseline")
                     and r["format"] == fmt), None)
        if base is None:
            continue
        for r in results:
            if r["format"] == fmt and r is not base and r.get("rows_per_s"):
                key = f"{fmt}/{r['store']}/{r['phase']}"
                out[key] = round(r["rows_per_s"] / base["rows_per_s"], 4)
        for store in {r["store"] for r in results if r["format"] == fmt} - {"-"}:
            full = next((r for r in results if r["format"] == fmt and r["store"] == store
                         and r["phase"] == "load paid (end to end)"), None)
            raw = next((r for r in results if r["format"] == fmt and r["store"] == store
                        and r["phase"] == "write only (typed rows)"), None)
            if full and raw:
                out[f"{fmt}/{store}/reading and validation share of load time"] = round(
                    1 - raw["seconds"] / full["seconds"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--stores", nargs="+", default=["embedded"], choices=["embedded", "neo4j"])
    p.add_argument("--full", action="store_true", help="generate and load --users users")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = p.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="riskgraph-ingest-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.full:
            users = args.users or 1_000_000
            results = run_full(users, workdir)
        else:
            users = args.users or 20_000
            results = run_formats(users, args.stores, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    doc: dict[str, Any] = {
        "benchmark": "ingest", "mode": "full" if args.full else "formats", "users": users,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "results": results,
    }
    if not args.full:
        doc["ratio_to_baseline"] = _ratios(results)
        doc["target_rels_per_s"] = TARGET_RELS_PER_S
        csv_end_to_end = [r["rows_per_s"] for r in results if r["format"] == "csv"
                          and r["store"] == "embedded"
                          and r["phase"] == "load paid (end to end)"]
        if csv_end_to_end:
            doc["target_met"] = csv_end_to_end[0] >= TARGET_RELS_PER_S
    out = args.out or DEFAULT_OUT.with_name("ingest-full.json" if args.full else "ingest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
