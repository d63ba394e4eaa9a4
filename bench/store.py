"""Store benchmark: batched upsert throughput and linked-accounts latency, per store.

For each store (embedded, neo4j) on the same generated graph:

* upsert throughput in the store's batches (nodes/s, relationships/s), against a naive
  baseline in the same run on the same store: one row per upsert call, so one
  transaction per row. Batches are the loader's, 100,000 rows, unless ``--batch-size``
  says otherwise (smaller batches pay a commit more often);
* latency of ``linked_accounts`` at depth 2 over many users (p50, p99): through the
  store primitives (the reference path, every store) and, for the embedded store, from
  its link index (graph/linkindex.py), side by side on the same users, with the index's
  build time and size and whether both paths answer the same;
* whether both stores give the same answers to those queries.

The Neo4j store runs against ArcadeDB started as a Bolt server (tests/bolt_server.py).
A freshly started server is a cold JVM: its first batched load runs two to eight times
slower than later ones (measured on 2 cores), while the JIT compiles. So before
measuring, the same batched load and row-at-a-time pass run once on it and are thrown
away (their figures are kept in the JSON as ``cold``); both sides are then measured
warm, as the baseline, which ran last, always was.
Prints a table and writes JSON with the machine it ran on.

    .venv/bin/python bench/store.py                      # both stores, defaults
    .venv/bin/python bench/store.py --stores embedded --users 20000

``--store-dir DIR`` measures only the linked-accounts latency, on an embedded store
already loaded in DIR (a graph of 1M users takes ~15 minutes to generate and load): the
users queried are those a full run with the same ``--users``, ``--seed``,
``--generator`` and ``--queries`` samples, worked out without generating the files.
It writes to DIR: the link index (DIR/linkindex/). Use a copy of a store that others
rely on.

    .venv/bin/python bench/store.py --store-dir /tmp/copy --users 1000000 --queries 2000
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from graph import queries  # noqa: E402
from graph.model import NODE_TYPES, REL_TYPES  # noqa: E402
from graph.store import GraphStore  # noqa: E402

STORES = ("embedded", "neo4j")
DEFAULT_OUT = ROOT / "bench" / "results" / "store.json"
DEFAULT_LINKED_OUT = ROOT / "bench" / "results" / "store-linked.json"
# Loading order: nodes first, then the relationships that need them.
NODE_FILES = {
    "users": "User", "merchants": "Merchant", "devices": "Device", "products": "Product",
    "phones": "Phone", "ips": "IP", "bank_cards": "BankCard", "credit_features": "User",
}
REL_FILES = {
    "uses": "USES", "paid": "PAID", "holds": "HOLDS", "referred": "REFERRED",
    "transferred": "TRANSFERRED", "has_phone": "HAS_PHONE", "has_card": "HAS_CARD",
    "logged_from": "LOGGED_FROM",
}
Columns = dict[str, list[Any]]


@dataclass
class Dataset:
    generator: str
    nodes: list[tuple[str, Columns]] = field(default_factory=list)  # (label, columns)
    rels: list[tuple[str, Columns]] = field(default_factory=list)  # (type, columns)

    @property
    def node_rows(self) -> int:
        return sum(_rows(c) for _, c in self.nodes)

    @property
    def rel_rows(self) -> int:
        return sum(_rows(c) for _, c in self.rels)

    def user_ids(self) -> list[str]:
        return [str(i) for label, c in self.nodes if label == "User" for i in c["id"]]


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


# -- data ------------------------------------------------------------------------------------
def synthetic_dataset(users: int, seed: int, workdir: Path) -> Dataset:
    """The project's synthetic ecosystem (loaders/synthetic.py), read back from Parquet."""
    import pyarrow.parquet as pq

    from loaders.synthetic import GeneratorConfig, generate

    out = workdir / "synthetic"
    generate(GeneratorConfig(users=users, seed=seed), out, "parquet")
    data = Dataset("loaders.synthetic")
    for stem, label in NODE_FILES.items():
        known = {"id", *NODE_TYPES[label].properties}
        table = pq.read_table(out / f"{stem}.parquet")
        data.nodes.append((label, {c: table.column(c).to_pylist()
                                   for c in table.column_names if c in known}))
    for stem, type_ in REL_FILES.items():
        known = {"src", "dst", *(["id"] if REL_TYPES[type_].keyed else []),
                 *REL_TYPES[type_].properties}
        table = pq.read_table(out / f"{stem}.parquet")
        data.rels.append((type_, {c: table.column(c).to_pylist()
                                  for c in table.column_names if c in known}))
    return data


def simple_dataset(users: int, seed: int) -> Dataset:
    """A small graph without the project's generator: users, devices with some sharing,
    USES, REFERRED and TRANSFERRED."""
    rng = np.random.default_rng(seed)
    uid = [f"u{i:07d}" for i in range(users)]
    n_dev = max(1, int(users * 0.8))
    did = [f"d{i:07d}" for i in range(n_dev)]
    t0 = 1_704_067_200_000
    data = Dataset("builtin")
    data.nodes.append(("User", {
        "id": uid,
        "credit_score": rng.integers(350, 950, users).tolist(),
        "income": np.round(rng.lognormal(11, 0.5, users), 2).tolist(),
        "signup_ts": (t0 + rng.integers(0, 365, users) * 86_400_000).tolist(),
        "city": rng.choice(["Shanghai", "Hangzhou", "Chengdu"], users).tolist(),
    }))
    data.nodes.append(("Device", {"id": did, "os": rng.choice(["ios", "android"], n_dev).tolist()}))
    # One or two devices per user; a device is shared with a Zipf-like pull to a few.
    per_user = rng.integers(1, 3, users)
    src = np.repeat(np.arange(users), per_user)
    dst = np.minimum(rng.zipf(1.6, src.size) - 1 + rng.integers(0, n_dev, src.size) // 2,
                     n_dev - 1)
    pairs = sorted({(int(s), int(d)) for s, d in zip(src, dst)})
    data.rels.append(("USES", {
        "src": [uid[s] for s, _ in pairs], "dst": [did[d] for _, d in pairs],
        "sessions": rng.integers(1, 200, len(pairs)).tolist(),
    }))
    referred = rng.choice(users, users // 10, replace=False)
    referrer = rng.integers(0, users, referred.size)
    data.rels.append(("REFERRED", {
        "src": [uid[r] for r in referrer], "dst": [uid[r] for r in referred],
        "ts": [t0] * int(referred.size),
    }))
    n_tx = users // 4
    a, b = rng.integers(0, users, n_tx), rng.integers(0, users, n_tx)
    data.rels.append(("TRANSFERRED", {
        "src": [uid[i] for i in a], "dst": [uid[i] for i in b],
        "id": [f"t{i:07d}" for i in range(n_tx)],
        "amount": np.round(rng.lognormal(6, 1, n_tx), 2).tolist(),
        "ts": (t0 + rng.integers(0, 365 * 86_400_000, n_tx)).tolist(),
    }))
    return data


def make_dataset(users: int, seed: int, workdir: Path, generator: str) -> Dataset:
    if generator == "synthetic":
        return synthetic_dataset(users, seed, workdir)
    return simple_dataset(users, seed)


# -- measuring -------------------------------------------------------------------------------
def _chunks(columns: Columns, size: int) -> Iterator[Columns]:
    n = _rows(columns)
    for start in range(0, n, size):
        yield {k: v[start:start + size] for k, v in columns.items()}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def load_batched(store: GraphStore, data: Dataset, batch: int) -> dict[str, Any]:
    node_s = rel_s = 0.0
    missing = 0
    for label, columns in data.nodes:
        for chunk in _chunks(columns, batch):
            node_s += _timed(partial(store.upsert_nodes, label, chunk))[0]
    for type_, columns in data.rels:
        for chunk in _chunks(columns, batch):
            dt, result = _timed(partial(store.upsert_relationships, type_, chunk))
            rel_s += dt
            missing += len(result.missing_endpoints)
    return {
        "nodes": _rate(data.node_rows, node_s),
        "relationships": _rate(data.rel_rows, rel_s),
        "missing_endpoints": missing,
    }


def load_row_at_a_time(store: GraphStore, data: Dataset, rows: int) -> dict[str, Any]:
    """The naive baseline: new users and their USES rows, one upsert call per row."""
    users = next(c for label, c in data.nodes if label == "User")
    uses = next(c for t, c in data.rels if t == "USES")
    n = min(rows, _rows(users), _rows(uses))
    ids = [f"naive-{i}" for i in users["id"][:n]]
    props = {k: v[:n] for k, v in users.items() if k != "id"}
    t = time.perf_counter()
    for i in range(n):
        store.upsert_nodes("User", {"id": [ids[i]], **{k: [v[i]] for k, v in props.items()}})
    node_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        store.upsert_relationships("USES", {"src": [ids[i]], "dst": [uses["dst"][i]],
                                            "sessions": [1]})
    rel_s = time.perf_counter() - t
    return {"nodes": _rate(n, node_s), "relationships": _rate(n, rel_s)}


def warm_up(store: GraphStore, data: Dataset, batch: int, naive_rows: int) -> dict[str, Any]:
    """One untimed round of both loads on a freshly started Bolt server (a cold JVM),
    then an empty store again. Returns that round's figures, for the record."""
    cold = {"batched": load_batched(store, data, batch),
            "row_at_a_time": load_row_at_a_time(store, data, naive_rows)}
    store.clear()
    return cold


def _rate(rows: int, seconds: float) -> dict[str, float]:
    return {"rows": rows, "seconds": round(seconds, 4),
            "per_s": round(rows / seconds, 1) if seconds > 0 else float("inf")}


def _latency(ms: list[float], sizes: list[int]) -> dict[str, float]:
    a = np.array(ms)
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "mean_ms": round(float(a.mean()), 3),
        "mean_linked": round(statistics.fmean(sizes), 2),
    }


def query_latency(store: GraphStore, users: list[str]) -> tuple[dict[str, Any], list[Any]]:
    """Depth-2 linked accounts of each user through the store primitives (the reference)
    and, on the embedded store, from its link index (built first, and timed), user by
    user in alternating order so both paths see the same machine."""
    from graph import linkindex
    from graph.embedded import EmbeddedStore

    out: dict[str, Any] = {}
    paths: dict[str, Callable[[str], Any]] = {
        "reference": partial(queries.linked_accounts_from_primitives, store, depth=2),
    }
    if isinstance(store, EmbeddedStore):
        index = linkindex.fresh_index(store)
        if index is None:
            build_s, index = _timed(partial(linkindex.refresh, store))
            out["index_built_s"] = round(build_s, 2)
        out["index"] = {"mb": round(index.nbytes / 2**20, 1), "users": len(index.users),
                        "items": len(index.items), "generation": index.generation[1],
                        "built": index.meta.get("build_s")}

        def indexed(u: str) -> Any:
            found = queries.linked_accounts(store, u, depth=2)
            if linkindex.fresh_index(store) is not index:
                raise SystemExit("the link index went stale during the benchmark")
            return found

        paths["indexed"] = indexed
    for fn in paths.values():
        fn(users[0])  # warm caches and connections
    times: dict[str, list[float]] = {p: [] for p in paths}
    cpu: dict[str, list[float]] = {p: [] for p in paths}
    sizes: list[int] = []
    digests: list[str] = []
    same = True
    names = list(paths)
    gc.collect()
    for i, u in enumerate(users):
        found: dict[str, Any] = {}
        for p in names if i % 2 == 0 else names[::-1]:
            c0 = time.thread_time()
            dt, found[p] = _timed(partial(paths[p], u))
            cpu[p].append((time.thread_time() - c0) * 1000)
            times[p].append(dt * 1000)
        same = same and all(found[p] == found["reference"] for p in names)
        sizes.append(len(found["reference"]))
        # Answers are compared now and kept as digests: thousands of kept answers make
        # the collector's full passes, inside the timings, cost more than the queries.
        digests.append(hashlib.sha1(repr(found["reference"]).encode()).hexdigest())
        del found
    for p in names:
        out[p] = _latency(times[p], sizes)
        # CPU time of the querying thread: what the query costs when the machine is
        # shared (wall-clock tails then include waits for a core).
        cpu_ms = np.array(cpu[p])
        out[p]["cpu_p50_ms"] = round(float(np.percentile(cpu_ms, 50)), 3)
        out[p]["cpu_p99_ms"] = round(float(np.percentile(cpu_ms, 99)), 3)
    out["paths_identical"] = same
    # The default path, as a user of linked_accounts gets it, for the store comparison.
    default = "indexed" if "indexed" in paths else "reference"
    out.update({k: out[default][k] for k in ("p50_ms", "p99_ms", "mean_linked")})
    return out, digests


# -- stores ----------------------------------------------------------------------------------
class Stores:
    """Opens each store empty; starts and stops the Bolt server when neo4j is asked for."""

    def __init__(self, workdir: Path, batch_size: int) -> None:
        self.workdir = workdir
        self.batch_size = batch_size
        self.server: Any = None
        self.driver: Any = None

    def open(self, name: str) -> GraphStore:
        if name == "embedded":
            from graph.embedded import EmbeddedStore

            store: GraphStore = EmbeddedStore(self.workdir / "embedded")
        else:
            from graph.neo4j_store import Neo4jStore, connect
            from tests.bolt_server import BoltServer

            if self.server is None:
                self.server = BoltServer(root=self.workdir / "bolt").start()
                self.driver = connect(self.server.uri, self.server.user, self.server.password)
            store = Neo4jStore(self.driver, database=self.server.database,
                               batch_size=self.batch_size)
        store.init()
        store.clear()
        return store

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()
        if self.server is not None:
            self.server.stop()


# -- report ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "ram_gb": _ram_gb(),
        # Other work on the machine skews every figure: recorded so runs can be compared.
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "packages": {},
    }
    for pkg in ("numpy", "scipy", "neo4j", "neo4j-rust-ext", "arcadedb-embedded", "pyarrow"):
        try:
            info["packages"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info["packages"][pkg] = None
    return info


def _ram_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        return None


def print_table(result: dict[str, Any]) -> None:
    rows = [("", *result["stores"])]

    def add(title: str, get: Callable[[dict[str, Any]], Any]) -> None:
        rows.append((title, *(str(get(r)) for r in result["stores"].values())))

    add("nodes/s, batched", lambda r: f"{r['batched']['nodes']['per_s']:,.0f}")
    add("nodes/s, row at a time", lambda r: f"{r['row_at_a_time']['nodes']['per_s']:,.0f}")
    add("  ratio", lambda r: f"{r['ratios']['nodes']:.1f}x")
    add("rels/s, batched", lambda r: f"{r['batched']['relationships']['per_s']:,.0f}")
    add("rels/s, row at a time",
        lambda r: f"{r['row_at_a_time']['relationships']['per_s']:,.0f}")
    add("  ratio", lambda r: f"{r['ratios']['relationships']:.1f}x")
    _linked_rows(add)
    d = result["data"]
    print(f"\nstore benchmark: {d['users']} users, {d['nodes']:,} nodes, "
          f"{d['relationships']:,} relationships ({d['generator']})")
    _print_rows(rows)
    if result.get("answers_identical") is not None:
        print(f"same linked accounts in every store: {result['answers_identical']}")
    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cpu_count']} cpus, {m['ram_gb']} GB, "
          f"python {m['python']}, load average {m['load_avg_1_5_15'][0]} at start")


def _linked_rows(add: Callable[[str, Callable[[dict[str, Any]], Any]], None]) -> None:
    def path(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda r: r["linked_depth2"].get(name, {}).get(key, "-")

    for key in ("p50_ms", "p99_ms", "max_ms", "cpu_p50_ms", "cpu_p99_ms"):
        what = key[:-3].replace("_", " ")
        add(f"linked d2 {what} ms, primitives", path("reference", key))
        add(f"linked d2 {what} ms, link index", path("indexed", key))
    add("linked d2 mean found", lambda r: r["linked_depth2"]["mean_linked"])
    add("  both paths agree", lambda r: r["linked_depth2"]["paths_identical"])
    add("link index MB", lambda r: r["linked_depth2"].get("index", {}).get("mb", "-"))
    add("link index build s", lambda r: r["linked_depth2"].get("index_built_s", "-"))


def _print_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))


def print_linked_table(result: dict[str, Any]) -> None:
    """The table of a ``--store-dir`` run: linked-accounts latency only."""
    rows = [("", "embedded")]

    def add(title: str, get: Callable[[dict[str, Any]], Any]) -> None:
        rows.append((title, str(get(result))))

    _linked_rows(add)
    c = result["data"]["counts"]
    print(f"\nlinked accounts at depth 2, store in {result['config']['store_dir']}: "
          f"{c['nodes']['User']:,} users, {sum(c['relationships'].values()):,} "
          f"relationships; {result['linked_depth2']['reference']['n']} users sampled as "
          f"a run with --users {result['config']['users']} --seed {result['config']['seed']}")
    _print_rows(rows)
    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cpu_count']} cpus, {m['ram_gb']} GB, "
          f"python {m['python']}, load average {m['load_avg_1_5_15'][0]} at start")


def generated_user_ids(users: int, seed: int, generator: str) -> list[str]:
    """``Dataset.user_ids()`` of a run's data, without generating it: loaders.synthetic
    numbers users from its first random stream, and lists them in the users file and
    again in the credit-features file."""
    if generator == "builtin":
        return [f"u{i:07d}" for i in range(users)]
    from loaders.synthetic import GeneratorConfig, _make_users

    streams = np.random.SeedSequence(seed).spawn(12)
    made = _make_users(GeneratorConfig(users=users, seed=seed),
                       np.random.default_rng(streams[0]))
    ids = [str(i) for i in made.ids(np.arange(made.n)).to_pylist()]
    return ids + ids


def sample_users(args: argparse.Namespace, all_users: list[str]) -> list[str]:
    """The users whose linked accounts are timed: the same for a given seed."""
    rng = np.random.default_rng(args.seed)
    return sorted(rng.choice(all_users, min(args.queries, len(all_users)),
                             replace=False).tolist())


def run_on_store_dir(args: argparse.Namespace) -> dict[str, Any]:
    """Linked-accounts latency on an embedded store already loaded in ``--store-dir``."""
    from graph.embedded import EmbeddedStore

    directory = Path(args.store_dir)
    if not (directory / "graph.sqlite").is_file():
        raise SystemExit(f"no embedded store in {directory}: expected {directory}/graph.sqlite")
    result: dict[str, Any] = {
        "benchmark": "store-linked",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in vars(args).items() if k != "out"},
    }
    store = EmbeddedStore(directory)
    store.init()
    try:
        sample = sample_users(args, generated_user_ids(args.users, args.seed, args.generator))
        missing = store.missing_nodes("User", sample)
        if missing:
            raise SystemExit(
                f"{len(missing)} of the sampled users are not in {directory}: was it "
                f"loaded from --users {args.users} --seed {args.seed} --generator "
                f"{args.generator}?")
        result["data"] = {"counts": store.counts()}
        print(f"[embedded] {len(sample)} linked-accounts queries on {directory} ...",
              flush=True)
        result["linked_depth2"], _ = query_latency(store, sample)
    finally:
        store.close()
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [s.strip() for s in args.stores.split(",") if s.strip()]
    bad = [s for s in names if s not in STORES]
    if bad or not names:
        raise SystemExit(f"--stores takes a comma-separated list of {', '.join(STORES)}")
    result: dict[str, Any] = {
        "benchmark": "store",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "stores": {},
    }
    with tempfile.TemporaryDirectory(prefix="riskgraph-bench-") as tmp:
        work = Path(tmp)
        data = make_dataset(args.users, args.seed, work, args.generator)
        sample = sample_users(args, data.user_ids())
        result["data"] = {"users": args.users, "generator": data.generator,
                          "nodes": data.node_rows, "relationships": data.rel_rows}
        stores = Stores(work, args.batch_size)
        answers: dict[str, list[Any]] = {}
        try:
            for name in names:
                print(f"[{name}] loading {data.node_rows:,} nodes and "
                      f"{data.rel_rows:,} relationships ...", flush=True)
                store = stores.open(name)
                try:
                    cold = None
                    if name == "neo4j":
                        print(f"[{name}] warming the server up (one load, not counted) ...",
                              flush=True)
                        cold = warm_up(store, data, args.batch_size, args.naive_rows)
                    batched = load_batched(store, data, args.batch_size)
                    print(f"[{name}] {args.queries} linked-accounts queries ...", flush=True)
                    latency, answers[name] = query_latency(store, sample)
                    print(f"[{name}] row-at-a-time baseline, {args.naive_rows} rows ...",
                          flush=True)
                    naive = load_row_at_a_time(store, data, args.naive_rows)
                finally:
                    store.close()
                result["stores"][name] = {
                    "batched": batched,
                    "row_at_a_time": naive,
                    "ratios": {
                        k: round(batched[k]["per_s"] / naive[k]["per_s"], 2)
                        for k in ("nodes", "relationships")
                    },
                    "linked_depth2": latency,
                }
                if cold is not None:
                    result["stores"][name]["cold"] = cold
        finally:
            stores.close()
    found = list(answers.values())
    result["answers_identical"] = (
        all(a == found[0] for a in found[1:]) if len(found) > 1 else None
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default=",".join(STORES), help="comma-separated: embedded,neo4j")
    p.add_argument("--users", type=int, default=3000, help="users in the generated graph")
    p.add_argument("--queries", type=int, default=300, help="users to query at depth 2")
    p.add_argument("--naive-rows", type=int, default=300,
                   help="rows in the one-row-per-call baseline")
    p.add_argument("--batch-size", type=int, default=100_000,
                   help="rows per upsert call (default: the loader's batch)")
    p.add_argument("--generator", choices=("synthetic", "builtin"), default="synthetic",
                   help="loaders.synthetic (default) or the small generator in this script")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON result file (default {DEFAULT_OUT.relative_to(ROOT)}, or "
                        f"{DEFAULT_LINKED_OUT.relative_to(ROOT)} with --store-dir)")
    p.add_argument("--store-dir", type=Path, default=None,
                   help="time linked accounts on the embedded store already loaded here "
                        "(no generating or loading; writes its link index there)")
    args = p.parse_args(argv)
    if args.store_dir is not None:
        args.out = args.out or DEFAULT_LINKED_OUT
        result = run_on_store_dir(args)
        print_linked_table(result)
    else:
        args.out = args.out or DEFAULT_OUT
        result = run(args)
        print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
